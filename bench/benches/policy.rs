//! Route matching alone: the request model (path and host normalisation, the readings
//! compared for ambiguity) and the rule scan, for a route table of a dozen rules, the size
//! a typical API gateway configuration has. The cost per Check of deciding which rule
//! applies, without the token. `policy_operations`: the same for a gRPC method under
//! `grpc` rules, and for a POST to an MCP endpoint under `mcp` rules, read from its
//! headers alone and with its JSON-RPC body.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jwt_authz::policy::{
    Action, HostPattern, PathPattern, Policy, Rule, ScopeRule, Selector, TokenRule,
};

fn table() -> Policy {
    let scopes = |s: &str| Action::Token(TokenRule::scopes(ScopeRule::AllOf(vec![s.into()])));
    let prefix = |p: &str| PathPattern::parse_prefix(p).expect("prefix");
    let path = |p: &str| PathPattern::parse_path(p).expect("pattern");
    let mut rules = vec![
        Rule::new("health", path("/healthz"), Action::Anonymous),
        Rule::new("public", prefix("/api/public"), Action::Anonymous),
        Rule::new("internal", prefix("/internal"), Action::Deny),
        Rule::new("admin", prefix("/api/admin"), scopes("admin")),
        Rule::new(
            "message",
            path("/api/messages/{id}"),
            scopes("read:messages"),
        ),
        Rule::new("items", path("/api/*/items/**"), scopes("read:items")),
        Rule::new(
            "users",
            path("/api/users/{id}/profile"),
            scopes("read:users"),
        ),
        Rule::new("orders", prefix("/api/orders"), scopes("read:orders")),
        Rule::new("billing", prefix("/api/billing"), scopes("billing")),
        Rule::new("reports", prefix("/api/reports"), scopes("reports")),
        Rule::new("static", path("/static/**"), Action::Anonymous),
    ];
    rules[4].methods = vec!["GET".into()];
    let mut hosted = Rule::new("tenant", prefix("/api"), scopes("tenant"));
    hosted.host = Some(HostPattern::parse("*.tenants.example.com").expect("host"));
    rules.push(hosted);
    Policy::new(rules)
}

fn requirement(c: &mut Criterion) {
    let policy = table();
    let mut group = c.benchmark_group("policy");
    for (name, path) in [
        ("plain_path", "/api/orders/1234/lines?page=2"),
        ("escaped_path", "/api/%6frders/1234/lines"),
        ("mixed_case_path", "/api/Orders/ABC-1234"),
        ("no_rule", "/api/unknown/thing"),
        ("dot_segment", "/api/public/../admin"),
    ] {
        let request = Selector {
            method: "GET",
            host: "api.example.com:443",
            path,
            ..Selector::default()
        };
        group.bench_function(name, |b| {
            b.iter(|| black_box(policy.requirement(black_box(&request), false)).rule)
        });
    }
    group.finish();
}

/// A dozen rules on gRPC methods and MCP operations, with an MCP endpoint.
fn operations_table() -> Policy {
    use jwt_authz::policy::mcp::{BodyCheck, McpMatch, McpSettings};
    let scopes = |s: &str| Action::Token(TokenRule::scopes(ScopeRule::AllOf(vec![s.into()])));
    let grpc = |g: &str| PathPattern::parse_grpc(g).expect("grpc");
    let mcp_rule = |name: &str, method: &str, tool: Option<&str>, scope: &str| {
        let mut rule = Rule::new(
            name,
            PathPattern::parse_path("/mcp").expect("path"),
            scopes(scope),
        );
        rule.methods = vec!["POST".into()];
        rule.mcp = Some(Box::new(McpMatch {
            method: method.into(),
            name: tool.map(str::to_owned),
        }));
        rule
    };
    let rules = vec![
        Rule::new(
            "health",
            grpc("grpc.health.v1.Health/Check"),
            Action::Anonymous,
        ),
        Rule::new(
            "orders-read",
            grpc("shop.v1.Orders/Get*"),
            scopes("orders:read"),
        ),
        Rule::new(
            "orders-list",
            grpc("shop.v1.Orders/List*"),
            scopes("orders:read"),
        ),
        Rule::new("orders", grpc("shop.v1.Orders/*"), scopes("orders:write")),
        Rule::new("billing", grpc("shop.v1.Billing/*"), scopes("billing")),
        mcp_rule("mcp-admin", "tools/call", Some("admin_*"), "mcp:admin"),
        mcp_rule("mcp-delete", "tools/call", Some("delete_*"), "mcp:admin"),
        mcp_rule("mcp-tools", "tools/call", None, "mcp:tools"),
        mcp_rule("mcp-prompts", "prompts/get", None, "mcp:prompts"),
        mcp_rule("mcp-resources", "resources/*", None, "mcp:resources"),
        Rule::new(
            "mcp",
            PathPattern::parse_path("/mcp").expect("path"),
            scopes("mcp"),
        ),
    ];
    Policy::new(rules).with_mcp(Some(McpSettings {
        endpoints: vec!["/mcp".into()],
        body: BodyCheck::WhenSent,
        max_body_bytes: 64 * 1024,
    }))
}

fn operations(c: &mut Criterion) {
    let policy = operations_table();
    let mut group = c.benchmark_group("policy_operations");
    let grpc = Selector {
        method: "POST",
        host: "orders.internal:50051",
        path: "/shop.v1.Orders/ListOrders",
        ..Selector::default()
    };
    group.bench_function("grpc_method", |b| {
        b.iter(|| black_box(policy.requirement(black_box(&grpc), false)).rule)
    });
    let headers: [(&str, &[u8]); 4] = [
        ("content-type", b"application/json"),
        ("accept", b"application/json, text/event-stream"),
        ("mcp-method", b"tools/call"),
        ("mcp-name", b"search_catalogue"),
    ];
    let body = br#"{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"search_catalogue","arguments":{"query":"blue shoes","limit":20}}}"#;
    for (name, body) in [
        ("mcp_headers_only", None),
        ("mcp_with_body", Some(&body[..])),
    ] {
        let request = Selector {
            method: "POST",
            host: "mcp.example.com",
            path: "/mcp",
            headers: &headers,
            body,
            ..Selector::default()
        };
        assert_eq!(policy.requirement(&request, false).rule, Some("mcp-tools"));
        group.bench_function(name, |b| {
            b.iter(|| black_box(policy.requirement(black_box(&request), false)).rule)
        });
    }
    group.finish();
}

criterion_group!(benches, requirement, operations);
criterion_main!(benches);
