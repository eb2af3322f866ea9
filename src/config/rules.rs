//! Route rules and upstream mutations, parsed from the file into the types `policy` and
//! `upstream` own. Each problem is recorded with its field path (`routes[2].path`).

use serde_json::Value;

use super::file::{FileClaimCondition, FileConfig, FileMcp, FileRoute, FileUpstream};
use super::values::parse_header_name;
use super::{Errors, defaults, trimmed};
use crate::policy::mcp::{BodyCheck, McpMatch, McpSettings};
use crate::policy::{
    Action, ClaimCondition, ClaimTest, DefaultAction, HostPattern, Mode, PathParameters,
    PathPattern, Policy, PolicySettings, Rule, ScopeRule, TokenRule,
};
use crate::upstream::{ClaimHeader, IdentityHeader, UpstreamConfig};

/// The policy-wide settings from the file's top level.
pub(super) fn parse_policy_settings(e: &mut Errors, file: &FileConfig) -> PolicySettings {
    let default_action = file.default_action.as_deref().and_then(|v| {
        e.check(
            "default_action",
            match v {
                "deny" => Ok(DefaultAction::Deny),
                "authenticated" => Ok(DefaultAction::Authenticated),
                other => Err(format!("`{other}` is not deny or authenticated")),
            },
        )
    });
    let cors_preflight = file
        .cors_preflight
        .as_deref()
        .and_then(|v| e.check("cors_preflight", allow_or_deny(v)))
        .unwrap_or(false);
    let path_parameters = file
        .path_parameters
        .as_deref()
        .and_then(|v| {
            e.check(
                "path_parameters",
                match v {
                    "reject" => Ok(PathParameters::Reject),
                    "strip" => Ok(PathParameters::Strip),
                    other => Err(format!("`{other}` is not reject or strip")),
                },
            )
        })
        .unwrap_or_default();
    PolicySettings {
        default_action,
        cors_preflight,
        path_parameters,
        path_utf8: file.path_utf8.unwrap_or(false),
    }
}

fn allow_or_deny(value: &str) -> Result<bool, String> {
    match value {
        "allow" => Ok(true),
        "deny" => Ok(false),
        other => Err(format!("`{other}` is not allow or deny")),
    }
}

/// The route table. `issuers` are the configured issuers a rule's `issuers` may name.
/// The `mcp` block; `None` when absent or bad (recorded).
pub(super) fn parse_mcp(e: &mut Errors, file: Option<&FileMcp>) -> Option<McpSettings> {
    let file = file?;
    if file.endpoints.is_empty() {
        e.push("mcp.endpoints", "at least one endpoint path is required");
    }
    let mut endpoints = Vec::new();
    for (i, path) in file.endpoints.iter().enumerate() {
        match PathPattern::parse_path(path) {
            Ok(PathPattern::Exact(normal)) => endpoints.push(normal),
            Ok(_) => e.push(
                &format!("mcp.endpoints[{i}]"),
                "an endpoint is one exact path",
            ),
            Err(why) => e.push(&format!("mcp.endpoints[{i}]"), why),
        }
    }
    let body = match file.body.as_deref().unwrap_or("required") {
        "when_sent" => Some(BodyCheck::WhenSent),
        "required" => Some(BodyCheck::Required),
        other => {
            e.push(
                "mcp.body",
                format!("`{other}` is not when_sent or required"),
            );
            None
        }
    };
    let max_body_bytes =
        usize::try_from(file.max_body_bytes.unwrap_or(defaults::MCP_MAX_BODY_BYTES))
            .unwrap_or(usize::MAX);
    if max_body_bytes == 0 {
        e.push("mcp.max_body_bytes", "must be greater than 0");
    }
    Some(McpSettings {
        endpoints,
        body: body?,
        max_body_bytes,
    })
}

pub(super) fn parse_routes(
    e: &mut Errors,
    routes: Vec<FileRoute>,
    settings: PolicySettings,
    issuers: &[&str],
    mcp: Option<&McpSettings>,
) -> Policy {
    let mut rules = Vec::new();
    for (i, route) in routes.into_iter().enumerate() {
        let field = |name: &str| format!("routes[{i}].{name}");
        let host = route
            .host
            .as_deref()
            .and_then(|h| e.check(&field("host"), HostPattern::parse(h)));
        let methods: Vec<String> = route
            .methods
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|m| m.trim().to_ascii_uppercase())
            .collect();
        if methods
            .iter()
            .any(|m| m.is_empty() || !m.chars().all(|c| c.is_ascii_alphabetic()))
        {
            e.push(&field("methods"), "each method must be a word such as GET");
        }
        let mut methods = methods;
        let path = match (&route.path, &route.path_prefix, &route.grpc) {
            (Some(p), None, None) => e.check(&field("path"), PathPattern::parse_path(p)),
            (None, Some(p), None) => e.check(&field("path_prefix"), PathPattern::parse_prefix(p)),
            (None, None, Some(g)) => {
                // A gRPC server dispatches on the path whatever the method (tonic; grpc-node
                // accepts any): the rule takes every method, so none slips past it.
                if !methods.is_empty() {
                    e.push(
                        &field("methods"),
                        "a `grpc` rule matches every method: leave `methods` out",
                    );
                }
                e.check(&field("grpc"), PathPattern::parse_grpc(g))
            }
            (None, None, None) => Some(PathPattern::Any),
            _ => {
                e.push(
                    &field("path"),
                    "give one of `path`, `path_prefix` and `grpc`",
                );
                None
            }
        };
        let anonymous = route.allow_anonymous.unwrap_or(false);
        let deny = route.deny.unwrap_or(false);
        let token_keys = route.scopes.is_some()
            || route.issuers.is_some()
            || route.audiences.is_some()
            || route.claims.is_some()
            || route.dpop.is_some();
        let action = match (anonymous, deny, token_keys) {
            (true, false, false) => Some(Action::Anonymous),
            (false, true, false) => Some(Action::Deny),
            (false, false, _) => parse_token_rule(e, i, &route, issuers).map(Action::Token),
            _ => {
                e.push(
                    &field("allow_anonymous"),
                    "`allow_anonymous`, `deny` and the token keys (`scopes`, `issuers`, `audiences`, `claims`, `dpop`) exclude each other",
                );
                None
            }
        };
        let mode = match route.mode.as_deref() {
            None | Some("enforce") => Some(Mode::Enforce),
            Some("shadow") => Some(Mode::Shadow),
            Some(other) => {
                e.push(
                    &field("mode"),
                    format!("`{other}` is not enforce or shadow"),
                );
                None
            }
        };
        let cors_preflight = route
            .cors_preflight
            .as_deref()
            .and_then(|v| e.check(&field("cors_preflight"), allow_or_deny(v)));
        let name = route.name.unwrap_or_else(|| format!("routes[{i}]"));
        if rules.iter().any(|r: &Rule| r.name == name) {
            e.push(&field("name"), format!("`{name}` names two rules"));
        }
        let mcp_match = route.mcp.as_ref().and_then(|m| {
            let pattern_ok = |p: &str| {
                !p.is_empty() && !p.contains("**") && p.bytes().all(|b| (0x21..0x7f).contains(&b))
            };
            if !pattern_ok(&m.method) || m.name.as_deref().is_some_and(|n| !pattern_ok(n)) {
                e.push(
                    &field("mcp"),
                    "`method` and `name` are visible ASCII, with `*` as a wildcard",
                );
                return None;
            }
            let endpoint = match (&path, mcp) {
                (Some(PathPattern::Exact(p)), Some(mcp)) => mcp.endpoints.contains(p),
                _ => false,
            };
            if !endpoint {
                e.push(
                    &field("mcp"),
                    "a rule on MCP operations needs `path` to be one of `mcp.endpoints`",
                );
            }
            if methods.iter().any(|m| m != "POST") {
                e.push(&field("methods"), "an `mcp` rule matches POST only");
            }
            Some(Box::new(McpMatch {
                method: m.method.clone(),
                name: m.name.clone(),
            }))
        });
        if route.mcp.is_some() {
            methods = vec!["POST".to_owned()];
        }
        if let (Some(path), Some(action), Some(mode)) = (path, action, mode) {
            rules.push(Rule {
                name,
                host,
                methods,
                path,
                action,
                mode,
                cors_preflight,
                path_utf8: route.path_utf8,
                mcp: mcp_match,
            });
        }
    }
    Policy::with_settings(rules, settings).with_mcp(mcp.cloned())
}

/// The token requirements of rule `i`: scopes, issuers, audiences and claim conditions.
fn parse_token_rule(
    e: &mut Errors,
    i: usize,
    route: &FileRoute,
    issuers: &[&str],
) -> Option<TokenRule> {
    let field = |name: &str| format!("routes[{i}].{name}");
    let scopes = match &route.scopes {
        None => Some(ScopeRule::None),
        Some(scopes) => match (&scopes.all_of, &scopes.any_of) {
            (Some(all), None) if !trimmed(all).is_empty() => Some(ScopeRule::AllOf(trimmed(all))),
            (None, Some(any)) if !trimmed(any).is_empty() => Some(ScopeRule::AnyOf(trimmed(any))),
            _ => {
                e.push(
                    &field("scopes"),
                    "give a non-empty `all_of` or `any_of`, not both",
                );
                None
            }
        },
    };
    let route_issuers = trimmed(route.issuers.as_deref().unwrap_or_default());
    if route.issuers.is_some() && route_issuers.is_empty() {
        e.push(
            &field("issuers"),
            "list at least one issuer, or leave it out",
        );
    }
    for (j, issuer) in route_issuers.iter().enumerate() {
        if !issuers.contains(&issuer.as_str()) {
            e.push(
                &field(&format!("issuers[{j}]")),
                format!("`{issuer}` is not a configured issuer"),
            );
        }
    }
    let audiences = route.audiences.as_deref().map(trimmed);
    if audiences.as_ref().is_some_and(Vec::is_empty) {
        e.push(
            &field("audiences"),
            "list at least one audience, or leave it out",
        );
    }
    let mut conditions = Vec::new();
    for (j, condition) in route.claims.iter().flatten().enumerate() {
        if let Some(c) = parse_condition(e, &field(&format!("claims[{j}]")), condition) {
            conditions.push(c);
        }
    }
    let dpop_required = match route.dpop.as_deref() {
        None => Some(false),
        Some("required") => Some(true),
        Some(other) => {
            e.push(
                &field("dpop"),
                format!("`{other}` is not `required` (a route can only require DPoP)"),
            );
            None
        }
    };
    let failed = route
        .claims
        .as_ref()
        .is_some_and(|c| c.len() != conditions.len());
    if failed {
        return None;
    }
    Some(TokenRule {
        scopes: scopes?,
        issuers: route_issuers,
        audiences,
        conditions,
        first_condition: 0,
        dpop_required: dpop_required?,
    })
}

fn parse_condition(e: &mut Errors, field: &str, c: &FileClaimCondition) -> Option<ClaimCondition> {
    let claim = c.claim.trim();
    if claim.is_empty() || claim.split('.').any(str::is_empty) {
        e.push(
            &format!("{field}.claim"),
            "must be a claim name or dot path",
        );
        return None;
    }
    let operators = [
        c.equals.is_some(),
        c.contains.is_some(),
        c.contains_any.is_some(),
        c.matches.is_some(),
        c.present.is_some(),
    ];
    if operators.iter().filter(|o| **o).count() != 1 {
        e.push(
            field,
            "give exactly one of `equals`, `contains`, `contains_any`, `matches`, `present`",
        );
        return None;
    }
    let scalar = |e: &mut Errors, name: &str, v: &Value| -> Option<Value> {
        if matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
            Some(v.clone())
        } else {
            e.push(
                &format!("{field}.{name}"),
                "must be a string, number or boolean",
            );
            None
        }
    };
    let test = if let Some(v) = &c.equals {
        ClaimTest::Equals(scalar(e, "equals", v)?)
    } else if let Some(v) = &c.contains {
        ClaimTest::Contains(scalar(e, "contains", v)?)
    } else if let Some(values) = &c.contains_any {
        if values.is_empty() {
            e.push(&format!("{field}.contains_any"), "list at least one value");
            return None;
        }
        let values: Option<Vec<Value>> = values
            .iter()
            .map(|v| scalar(e, "contains_any", v))
            .collect();
        ClaimTest::ContainsAny(values?)
    } else if let Some(pattern) = &c.matches {
        ClaimTest::Matches(e.check(
            &format!("{field}.matches"),
            ClaimCondition::pattern(pattern),
        )?)
    } else {
        ClaimTest::Present(c.present?)
    };
    Some(ClaimCondition {
        claim: claim.to_owned(),
        test,
    })
}

/// A header name the service sets upstream, with its confusable spellings.
fn identity_header(value: &str) -> Result<IdentityHeader, String> {
    IdentityHeader::new(&parse_header_name(value)?)
}

/// Why two configured headers cannot both be set: the service removes every spelling of
/// each, so one would remove the other.
fn same_header(header: &IdentityHeader, other: &IdentityHeader) -> String {
    if header.name() == other.name() {
        format!("`{}` is mapped twice", header.name())
    } else {
        format!(
            "`{}` and `{}` are one header to upstreams that read `_` as `-`",
            header.name(),
            other.name()
        )
    }
}

pub(super) fn parse_upstream(e: &mut Errors, file: FileUpstream) -> UpstreamConfig {
    let defaults = UpstreamConfig::default();
    let mut claim_headers = Vec::new();
    if let Some(mappings) = file.claims_to_headers {
        for (i, m) in mappings.into_iter().enumerate() {
            let field = format!("upstream.claims_to_headers[{i}]");
            if m.claim.trim().is_empty() {
                e.push(&format!("{field}.claim"), "must not be empty");
            }
            if let Some(header) = e.check(&format!("{field}.header"), identity_header(&m.header)) {
                if let Some(other) = claim_headers
                    .iter()
                    .find(|c: &&ClaimHeader| c.header.spelling_key() == header.spelling_key())
                {
                    e.push(
                        &format!("{field}.header"),
                        same_header(&header, &other.header),
                    );
                }
                claim_headers.push(ClaimHeader {
                    claim: m.claim.trim().to_owned(),
                    header,
                });
            }
        }
    } else {
        claim_headers = defaults.claim_headers;
    }
    let forward_payload_header = file.forward_payload_header.as_deref().and_then(|h| {
        let field = "upstream.forward_payload_header";
        let header = e.check(field, identity_header(h))?;
        if let Some(other) = claim_headers
            .iter()
            .find(|c| c.header.spelling_key() == header.spelling_key())
        {
            e.push(field, same_header(&header, &other.header));
        }
        Some(header)
    });
    let array_separator = file.array_separator.unwrap_or(defaults.array_separator);
    if array_separator.chars().any(char::is_control) {
        e.push(
            "upstream.array_separator",
            "must not contain control characters",
        );
    }
    UpstreamConfig {
        claim_headers,
        array_separator,
        forward_payload_header,
        strip_authorization: file.strip_authorization.unwrap_or(false),
        token_headers: defaults.token_headers,
        metadata_claims: file
            .metadata_claims
            .map(|c| trimmed(&c))
            .unwrap_or_default(),
    }
}
