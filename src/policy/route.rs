//! Route rules: match a request's host, method and path, in order, to an [`Action`].
//!
//! Paths are matched exactly, by segment-aware prefix, or by pattern, where `{name}` or
//! `*` stands for one non-empty segment and a final `**` for any rest. The query string is
//! never part of the match.

use std::borrow::Cow;

use super::ScopeRule;

/// What a matched rule asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// No token needed; identity headers are stripped.
    Anonymous,
    /// Refused whatever the token.
    Deny,
    /// A valid token with these scopes.
    Token(ScopeRule),
}

/// A host to match, compared case-insensitively and without the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// `*.example.com`: any subdomain (not the apex).
    Suffix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    One,
    Rest,
}

/// A path to match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    Any,
    Exact(String),
    /// Segment-aware: `/api` matches `/api` and `/api/x`, not `/apix`.
    Prefix(String),
    Segments(Vec<Segment>),
}

/// One rule of the route table.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Name for logs; defaults to `routes[i]`.
    pub name: String,
    pub host: Option<HostPattern>,
    /// Upper-case methods; empty matches any.
    pub methods: Vec<String>,
    pub path: PathPattern,
    pub action: Action,
}

/// The ordered route table.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

/// The outcome of matching a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement<'p> {
    /// The matched rule's name, `None` when no rule matched.
    pub rule: Option<&'p str>,
    pub action: Cow<'p, Action>,
}

const DEFAULT_ACTION: Action = Action::Token(ScopeRule::None);

impl HostPattern {
    pub fn parse(value: &str) -> Result<HostPattern, String> {
        let host = value.trim().to_ascii_lowercase();
        if host.is_empty() || host.contains(['/', ' ', ':']) {
            return Err(format!("`{value}` is not a host name (no scheme or port)"));
        }
        match host.strip_prefix("*.") {
            Some(rest) if !rest.is_empty() && !rest.contains('*') => {
                Ok(HostPattern::Suffix(format!(".{rest}")))
            }
            Some(_) => Err(format!("`{value}`: use `*.example.com`")),
            None if host.contains('*') => Err(format!("`{value}`: `*` only as `*.domain`")),
            None => Ok(HostPattern::Exact(host)),
        }
    }

    fn matches(&self, host: &str) -> bool {
        // Strip a port; IPv6 literals keep their brackets.
        let host = match host.rfind(':') {
            Some(i) if !host[i..].contains(']') => &host[..i],
            _ => host,
        };
        match self {
            HostPattern::Exact(h) => host.eq_ignore_ascii_case(h),
            HostPattern::Suffix(s) => {
                host.len() > s.len()
                    && host.is_char_boundary(host.len() - s.len())
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        }
    }
}

impl PathPattern {
    /// `path`: exact, or a pattern with `{name}`, `*` and a final `**`.
    pub fn parse_path(value: &str) -> Result<PathPattern, String> {
        if !value.starts_with('/') {
            return Err(format!("`{value}` must start with `/`"));
        }
        if value.contains('?') || value.contains('#') {
            return Err(format!("`{value}`: query strings are not matched"));
        }
        if !value.contains(['{', '}', '*']) {
            return Ok(PathPattern::Exact(value.to_owned()));
        }
        let parts: Vec<&str> = value[1..].split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let segment = if *part == "**" {
                if i + 1 != parts.len() {
                    return Err(format!("`{value}`: `**` only as the last segment"));
                }
                Segment::Rest
            } else if *part == "*"
                || (part.len() > 2
                    && part.starts_with('{')
                    && part.ends_with('}')
                    && !part[1..part.len() - 1].contains(['{', '}', '*', '/']))
            {
                Segment::One
            } else if part.contains(['{', '}', '*']) {
                return Err(format!(
                    "`{value}`: segment `{part}` must be a literal, `{{name}}`, `*` or a final `**`"
                ));
            } else {
                Segment::Literal((*part).to_owned())
            };
            segments.push(segment);
        }
        Ok(PathPattern::Segments(segments))
    }

    /// `path_prefix`: a literal prefix, matched on segment boundaries.
    pub fn parse_prefix(value: &str) -> Result<PathPattern, String> {
        if !value.starts_with('/') {
            return Err(format!("`{value}` must start with `/`"));
        }
        if value.contains(['{', '}', '*', '?', '#']) {
            return Err(format!(
                "`{value}`: a prefix is literal; use `path` for patterns"
            ));
        }
        Ok(PathPattern::Prefix(value.to_owned()))
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Any => true,
            PathPattern::Exact(p) => path == p,
            PathPattern::Prefix(p) => {
                path.starts_with(p.as_str())
                    && (p.ends_with('/')
                        || path.len() == p.len()
                        || path.as_bytes()[p.len()] == b'/')
            }
            PathPattern::Segments(segments) => {
                let Some(rest) = path.strip_prefix('/') else {
                    return false;
                };
                let mut parts = rest.split('/');
                for segment in segments {
                    match segment {
                        Segment::Rest => return true,
                        Segment::One => match parts.next() {
                            Some(p) if !p.is_empty() => {}
                            _ => return false,
                        },
                        Segment::Literal(l) => {
                            if parts.next() != Some(l.as_str()) {
                                return false;
                            }
                        }
                    }
                }
                parts.next().is_none()
            }
        }
    }
}

impl Rule {
    fn matches(&self, method: &str, host: &str, path: &str) -> bool {
        self.host.as_ref().is_none_or(|h| h.matches(host))
            && (self.methods.is_empty()
                || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
            && self.path.matches(path)
    }
}

impl Policy {
    pub fn new(rules: Vec<Rule>) -> Policy {
        Policy { rules }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// What a request needs. `context_scopes` is Envoy's `required_scopes` context
    /// extension, which wins over the rules when present.
    pub fn requirement<'p>(
        &'p self,
        method: &str,
        host: &str,
        path: &str,
        context_scopes: Option<&str>,
    ) -> Requirement<'p> {
        if let Some(scopes) = context_scopes {
            return Requirement {
                rule: None,
                action: Cow::Owned(Action::Token(ScopeRule::from_context_extension(scopes))),
            };
        }
        if self.rules.is_empty() {
            return Requirement {
                rule: None,
                action: Cow::Borrowed(&DEFAULT_ACTION),
            };
        }
        let path = path.split(['?', '#']).next().unwrap_or("");
        if is_ambiguous(path) {
            // Dot segments and encoded separators could make an upstream that normalises
            // paths serve another route than the one matched here: refuse them outright.
            return Requirement {
                rule: Some("ambiguous-path"),
                action: Cow::Owned(Action::Deny),
            };
        }
        for rule in &self.rules {
            if rule.matches(method, host, path) {
                return Requirement {
                    rule: Some(&rule.name),
                    action: Cow::Borrowed(&rule.action),
                };
            }
        }
        Requirement {
            rule: None,
            action: Cow::Borrowed(&DEFAULT_ACTION),
        }
    }
}

/// Whether a path holds dot segments, encoded dots or slashes, backslashes or empty
/// segments, any of which an upstream might resolve to a different path.
fn is_ambiguous(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || lower.contains('\\')
        || lower.contains("//")
        || lower.split('/').any(|s| s == "." || s == "..")
}

#[cfg(test)]
mod tests;
