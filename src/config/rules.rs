//! Route rules and upstream mutations, parsed from the file into the types `policy` and
//! `upstream` own. Each problem is recorded with its field path (`routes[2].path`).

use super::file::{FileRoute, FileUpstream};
use super::values::parse_header_name;
use super::{Errors, trimmed};
use crate::policy::{Action, HostPattern, PathPattern, Policy, Rule, ScopeRule};
use crate::upstream::{ClaimHeader, UpstreamConfig};

pub(super) fn parse_routes(e: &mut Errors, routes: Vec<FileRoute>) -> Policy {
    let mut rules = Vec::new();
    for (i, route) in routes.into_iter().enumerate() {
        let field = |name: &str| format!("routes[{i}].{name}");
        let host = route
            .host
            .as_deref()
            .and_then(|h| e.check(&field("host"), HostPattern::parse(h)));
        let methods: Vec<String> = route
            .methods
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
        let path = match (&route.path, &route.path_prefix) {
            (Some(_), Some(_)) => {
                e.push(&field("path"), "give `path` or `path_prefix`, not both");
                None
            }
            (Some(p), None) => e.check(&field("path"), PathPattern::parse_path(p)),
            (None, Some(p)) => e.check(&field("path_prefix"), PathPattern::parse_prefix(p)),
            (None, None) => Some(PathPattern::Any),
        };
        let anonymous = route.allow_anonymous.unwrap_or(false);
        let deny = route.deny.unwrap_or(false);
        let action = match (anonymous, deny, route.scopes) {
            (true, false, None) => Some(Action::Anonymous),
            (false, true, None) => Some(Action::Deny),
            (false, false, None) => Some(Action::Token(ScopeRule::None)),
            (false, false, Some(scopes)) => match (scopes.all_of, scopes.any_of) {
                (Some(all), None) if !trimmed(&all).is_empty() => {
                    Some(Action::Token(ScopeRule::AllOf(trimmed(&all))))
                }
                (None, Some(any)) if !trimmed(&any).is_empty() => {
                    Some(Action::Token(ScopeRule::AnyOf(trimmed(&any))))
                }
                _ => {
                    e.push(
                        &field("scopes"),
                        "give a non-empty `all_of` or `any_of`, not both",
                    );
                    None
                }
            },
            _ => {
                e.push(
                    &field("allow_anonymous"),
                    "`allow_anonymous`, `deny` and `scopes` exclude each other",
                );
                None
            }
        };
        if let (Some(path), Some(action)) = (path, action) {
            rules.push(Rule {
                name: route.name.unwrap_or_else(|| format!("routes[{i}]")),
                host,
                methods,
                path,
                action,
            });
        }
    }
    Policy::new(rules)
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
            if let Some(header) = e.check(&format!("{field}.header"), parse_header_name(&m.header))
            {
                if claim_headers
                    .iter()
                    .any(|c: &ClaimHeader| c.header == header)
                {
                    e.push(
                        &format!("{field}.header"),
                        format!("`{header}` is mapped twice"),
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
    let forward_payload_header = file
        .forward_payload_header
        .as_deref()
        .and_then(|h| e.check("upstream.forward_payload_header", parse_header_name(h)));
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
        metadata_claims: file
            .metadata_claims
            .map(|c| trimmed(&c))
            .unwrap_or_default(),
    }
}
