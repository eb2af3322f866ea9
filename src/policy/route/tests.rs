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
            "", ".", "..", "%2e", "%2E%2e", "%2f", "%5C", "\\", "api", "public", "admin", "static",
            "items", "edit", "7", "é", "日本", "*", "{id}", "?", "#", "?a=/b",
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
