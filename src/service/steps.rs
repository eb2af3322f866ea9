//! What a trace says about the steps that are not checks: how the request was read, which
//! rule was chosen and why, what shadow rules would have done, where the token was found.
//! Called only when a trace is being built.

use std::borrow::Cow;

use super::Allowed;
use crate::error::AuthError;
use crate::policy::pattern::{HostPattern, PathPattern, Segment};
use crate::policy::{self, Action, ClaimCondition, Policy, Requirement};
use crate::token_source::TokenSource;
use crate::trace::{Trace, step};

/// The request as read, its path as normalised (or why it could not be), and the rule
/// chosen, with what it matched on.
pub(super) fn reading(
    trace: &mut Trace,
    policy: &Policy,
    view: &policy::Selector<'_>,
    requirement: &Requirement<'_>,
) {
    let host = if view.host.is_empty() { "-" } else { view.host };
    // The query string may carry a token: never shown.
    let path = view.path.split(['?', '#']).next().unwrap_or_default();
    let query = if view.path.len() > path.len() {
        " (query not shown)"
    } else {
        ""
    };
    trace.info(
        step::REQUEST,
        "request",
        format!("{} {host} {path}{query}", view.method),
    );
    let path = match policy.grammar().normalize(view.path) {
        Ok(path) => path.to_string(),
        Err(why) => format!("refused ({})", why.reason()),
    };
    trace.info(step::PATH, "path", path);
    let action = match requirement.action.as_ref() {
        Action::Deny => "deny",
        Action::Anonymous => "anonymous (no token needed)",
        Action::Preflight => "CORS preflight (no token needed)",
        Action::Token(_) => "token required",
    };
    let detail = match (requirement.ambiguity, requirement.rule) {
        (Some(why), _) => format!("none: the request is ambiguous ({})", why.reason()),
        (None, None) => format!("default: {action} (no rule matches)"),
        (None, Some(name)) => {
            let matched = policy
                .rules()
                .iter()
                .find(|rule| rule.name == name)
                .map(|rule| matcher(&rule.methods, rule.host.as_ref(), &rule.path))
                .unwrap_or_default();
            format!("{name}: {action} (the first enforcing rule matching: {matched})")
        }
    };
    let detail = if requirement.context_scopes {
        format!("{detail}; the context extension required_scopes decides the scopes")
    } else {
        detail
    };
    trace.info(step::RULE, "rule", detail);
}

/// What a rule matches on, as the configuration says it.
fn matcher(methods: &[String], host: Option<&HostPattern>, path: &PathPattern) -> String {
    let mut parts = Vec::new();
    if !methods.is_empty() {
        parts.push(format!("methods {}", methods.join(",")));
    }
    match host {
        Some(HostPattern::Exact(h)) => parts.push(format!("host {h}")),
        Some(HostPattern::Suffix(h)) => parts.push(format!("host *.{h}")),
        None => {}
    }
    parts.push(match path {
        PathPattern::Any => "any path".to_owned(),
        PathPattern::Exact(p) => format!("path {p}"),
        PathPattern::Prefix(p) => format!("path_prefix {p}"),
        PathPattern::Grpc(grpc) => format!("grpc {}/{}", grpc.service, grpc.method),
        PathPattern::Segments(segments) => {
            let text: Vec<&str> = segments
                .iter()
                .map(|s| match s {
                    Segment::Literal(l) => l.as_str(),
                    Segment::One => "*",
                    Segment::Rest => "**",
                })
                .collect();
            format!("path_pattern /{}", text.join("/"))
        }
    });
    parts.join(", ")
}

/// A shadow rule's would-be outcome, put at `at` (before the deciding rule's steps).
pub(super) fn shadow(
    trace: &mut Trace,
    at: usize,
    name: &str,
    outcome: &Result<Allowed, AuthError>,
) {
    let detail = match outcome {
        Ok(_) => "would allow (reported, does not decide)".to_owned(),
        Err(error) => format!(
            "would deny with {} (reported, does not decide)",
            error.code().as_str()
        ),
    };
    trace.info_at(at, step::SHADOW, format!("shadow rule {name}"), detail);
}

/// A claim condition's step label.
pub(super) fn condition_label(condition: &ClaimCondition) -> Cow<'static, str> {
    Cow::Owned(format!(
        "claim {} {}",
        condition.claim,
        condition.operator()
    ))
}

/// Where the token was found, and its length: never the token.
pub(super) fn source(source: &TokenSource, length: usize) -> String {
    let place = match source {
        TokenSource::Header {
            name,
            scheme: Some(scheme),
        } => format!("header {name}, scheme {scheme}"),
        TokenSource::Header { name, scheme: None } => format!("header {name}"),
        TokenSource::Cookie(name) => format!("cookie {name}"),
        TokenSource::Query(name) => format!("query parameter {name}"),
    };
    format!("{place}: {length} bytes")
}
