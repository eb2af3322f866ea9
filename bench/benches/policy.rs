//! Route matching alone: the request model (path and host normalisation, the readings
//! compared for ambiguity) and the rule scan, for a route table of a dozen rules, the size
//! a typical API gateway configuration has. The cost per Check of deciding which rule
//! applies, without the token.

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

criterion_group!(benches, requirement);
criterion_main!(benches);
