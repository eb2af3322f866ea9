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
mod tests {
    use super::*;

    fn rule(path: PathPattern, action: Action) -> Rule {
        Rule {
            name: "r".into(),
            host: None,
            methods: vec![],
            path,
            action,
        }
    }

    fn pattern(p: &str) -> PathPattern {
        PathPattern::parse_path(p).unwrap()
    }

    #[test]
    fn param_and_glob_segments_match_one_segment() {
        let p = pattern("/api/messages/{id}");
        assert!(p.matches("/api/messages/42"));
        assert!(!p.matches("/api/messages"));
        assert!(!p.matches("/api/messages/"));
        assert!(!p.matches("/api/messages/42/edit"));
        let p = pattern("/api/*/edit");
        assert!(p.matches("/api/7/edit"));
        assert!(!p.matches("/api/7/8/edit"));
    }

    #[test]
    fn double_star_matches_the_rest() {
        let p = pattern("/static/**");
        assert!(p.matches("/static/"));
        assert!(p.matches("/static/a/b/c.css"));
        assert!(!p.matches("/statics/a"));
        assert!(PathPattern::parse_path("/a/**/b").is_err());
    }

    #[test]
    fn prefix_respects_segment_boundaries() {
        let p = PathPattern::parse_prefix("/api/public").unwrap();
        assert!(p.matches("/api/public"));
        assert!(p.matches("/api/public/x"));
        assert!(!p.matches("/api/publicity"));
        let p = PathPattern::parse_prefix("/api/").unwrap();
        assert!(p.matches("/api/x"));
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(PathPattern::parse_path("api").is_err());
        assert!(PathPattern::parse_path("/a/file-{id}.txt").is_err());
        assert!(PathPattern::parse_path("/a?b=1").is_err());
        assert!(PathPattern::parse_prefix("/a/{id}").is_err());
    }

    #[test]
    fn hosts_match_without_port_and_case() {
        let h = HostPattern::parse("API.example.com").unwrap();
        assert!(h.matches("api.example.com:8443"));
        assert!(!h.matches("api.example.com.evil"));
        let w = HostPattern::parse("*.example.com").unwrap();
        assert!(w.matches("a.example.com"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("aexample.com"));
        assert!(HostPattern::parse("https://x").is_err());
        assert!(HostPattern::parse("a.*.com").is_err());
    }

    #[test]
    fn first_matching_rule_wins_and_query_is_ignored() {
        let policy = Policy::new(vec![
            rule(
                PathPattern::parse_prefix("/api/public").unwrap(),
                Action::Anonymous,
            ),
            rule(PathPattern::parse_prefix("/api").unwrap(), Action::Deny),
        ]);
        let r = policy.requirement("GET", "h", "/api/public?x=/admin", None);
        assert_eq!(*r.action, Action::Anonymous);
        assert_eq!(
            *policy.requirement("GET", "h", "/api/admin", None).action,
            Action::Deny
        );
        assert_eq!(
            *policy.requirement("GET", "h", "/other", None).action,
            Action::Token(ScopeRule::None)
        );
    }

    #[test]
    fn context_extension_wins_over_rules() {
        let policy = Policy::new(vec![rule(PathPattern::Any, Action::Deny)]);
        let r = policy.requirement("GET", "h", "/x", Some("read:a"));
        assert_eq!(
            *r.action,
            Action::Token(ScopeRule::AllOf(vec!["read:a".into()]))
        );
    }

    #[test]
    fn methods_filter_rules() {
        let mut r = rule(PathPattern::Any, Action::Deny);
        r.methods = vec!["POST".into()];
        let policy = Policy::new(vec![r]);
        assert_eq!(
            *policy.requirement("post", "h", "/x", None).action,
            Action::Deny
        );
        assert_eq!(
            *policy.requirement("GET", "h", "/x", None).action,
            Action::Token(ScopeRule::None)
        );
    }

    #[test]
    fn ambiguous_paths_are_denied_when_rules_exist() {
        let policy = Policy::new(vec![rule(
            PathPattern::parse_prefix("/api/public").unwrap(),
            Action::Anonymous,
        )]);
        for path in [
            "/api/public/../admin",
            "/api/public/%2e%2e/admin",
            "/api/public/..%2Fadmin",
            "/api/public//x",
            "/api/public\\..\\admin",
            "/api/public/./x",
        ] {
            assert_eq!(
                *policy.requirement("GET", "h", path, None).action,
                Action::Deny,
                "{path}"
            );
        }
    }

    mod proptests {
        use super::*;
        use proptest::prelude::*;

        fn policy() -> Policy {
            let mut host_rule = rule(PathPattern::parse_prefix("/admin").unwrap(), Action::Deny);
            host_rule.host = Some(HostPattern::parse("*.example.com").unwrap());
            let mut method_rule = rule(pattern("/api/{id}/edit"), Action::Deny);
            method_rule.methods = vec!["POST".into(), "PUT".into()];
            let mut exact_host = rule(pattern("/static/**"), Action::Anonymous);
            exact_host.host = Some(HostPattern::parse("cdn.example.com").unwrap());
            Policy::new(vec![
                host_rule,
                method_rule,
                exact_host,
                rule(
                    PathPattern::parse_prefix("/api/public").unwrap(),
                    Action::Anonymous,
                ),
                rule(
                    pattern("/api/*/items/{item}"),
                    Action::Token(ScopeRule::AllOf(vec!["read".into()])),
                ),
                rule(
                    PathPattern::parse_path("/health").unwrap(),
                    Action::Anonymous,
                ),
            ])
        }

        /// Paths built from segments that route matching and the ambiguity check care
        /// about, and arbitrary strings.
        fn path() -> impl Strategy<Value = String> {
            let segment = prop::sample::select(vec![
                "", ".", "..", "%2e", "%2E%2e", "%2f", "%5C", "\\", "api", "public", "admin",
                "static", "items", "edit", "7", "é", "日本", "*", "{id}", "?", "#", "?a=/b",
            ]);
            prop_oneof![
                any::<String>(),
                prop::collection::vec(segment, 0..6).prop_map(|s| format!("/{}", s.join("/"))),
            ]
        }

        fn host() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                prop::sample::select(vec![
                    "",
                    ":",
                    "]:",
                    "[::1]:80",
                    "a.example.com",
                    "A.EXAMPLE.COM:443",
                    "example.com",
                    "cdn.example.com",
                    "é.example.com",
                    "x.exampleé.com",
                    "日本.example.com:",
                ])
                .prop_map(str::to_owned),
            ]
        }

        fn method() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                prop::sample::select(vec!["GET", "post", "PUT", "", "ÉTÉ"]).prop_map(str::to_owned),
            ]
        }

        proptest! {
            #[test]
            fn requirement_never_panics_and_refuses_ambiguous_paths(
                method in method(),
                host in host(),
                path in path(),
                query in "[?#][ -~]{0,10}",
            ) {
                let policy = policy();
                let r = policy.requirement(&method, &host, &path, None);
                let before_query = path.split(['?', '#']).next().unwrap_or("");
                if is_ambiguous(before_query) {
                    prop_assert_eq!(r.rule, Some("ambiguous-path"));
                    prop_assert_eq!(&*r.action, &Action::Deny);
                }
                // A query string or fragment never changes the decision.
                let with_query = format!("{path}{query}");
                let q = policy.requirement(&method, &host, &with_query, None);
                prop_assert_eq!(q, r);
                // Envoy's `required_scopes` wins over every rule.
                let ext = policy.requirement(&method, &host, &path, Some("read"));
                prop_assert_eq!(&*ext.action, &Action::Token(ScopeRule::AllOf(vec!["read".into()])));
            }
        }
    }
}
