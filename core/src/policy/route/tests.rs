use super::*;

fn rule(path: PathPattern, action: Action) -> Rule {
    Rule::new("r", path, action)
}

fn named(name: &str, path: PathPattern, action: Action) -> Rule {
    Rule::new(name, path, action)
}

fn prefix(p: &str) -> PathPattern {
    PathPattern::parse_prefix(p).unwrap()
}

fn token(scopes: &[&str]) -> Action {
    Action::Token(TokenRule::scopes(if scopes.is_empty() {
        ScopeRule::None
    } else {
        ScopeRule::AllOf(scopes.iter().map(|s| (*s).to_owned()).collect())
    }))
}

fn get<'a>(host: &'a str, path: &'a str) -> Selector<'a> {
    Selector {
        method: "GET",
        host,
        path,
        ..Selector::default()
    }
}

fn with_default(rules: Vec<Rule>, default_action: DefaultAction) -> Policy {
    Policy::with_settings(
        rules,
        PolicySettings {
            default_action: Some(default_action),
            ..PolicySettings::default()
        },
    )
}

/// The name of the rule that decides `request`, `"default"` or `"ambiguous-path"`.
fn decided<'p>(policy: &'p Policy, request: &Selector<'_>) -> &'p str {
    policy.requirement(request, false).rule.unwrap_or("default")
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
    let policy = with_default(
        vec![
            rule(prefix("/api/public"), Action::Anonymous),
            rule(prefix("/api"), Action::Deny),
        ],
        DefaultAction::Authenticated,
    );
    let r = policy.requirement(&get("h", "/api/public?x=/admin"), false);
    assert_eq!(*r.action, Action::Anonymous);
    assert_eq!(
        *policy.requirement(&get("h", "/api/admin"), false).action,
        Action::Deny
    );
    assert_eq!(
        *policy.requirement(&get("h", "/other"), false).action,
        token(&[])
    );
}

#[test]
fn context_extension_adds_to_the_matched_rule() {
    let policy = with_default(
        vec![
            named("internal", prefix("/internal"), Action::Deny),
            named("admin", prefix("/admin"), token(&["admin"])),
            named("public", prefix("/public"), Action::Anonymous),
        ],
        DefaultAction::Authenticated,
    );
    // `deny: true` stays a denial.
    let r = policy.requirement(&get("h", "/internal/x"), true);
    assert_eq!((r.rule, &*r.action), (Some("internal"), &Action::Deny));
    // The rule's scopes stay, the extension's are checked besides.
    let r = policy.requirement(&get("h", "/admin"), true);
    assert_eq!(
        (r.rule, &*r.action, r.context_scopes),
        (Some("admin"), &token(&["admin"]), true)
    );
    // An anonymous rule now needs a token.
    let r = policy.requirement(&get("h", "/public"), true);
    assert_eq!(
        (r.rule, &*r.action, r.context_scopes),
        (Some("public"), &token(&[]), true)
    );
    // The default: a token, with the extension's scopes.
    let r = policy.requirement(&get("h", "/other"), true);
    assert_eq!(
        (r.rule, &*r.action, r.context_scopes),
        (None, &token(&[]), true)
    );
    // The ambiguity refusal still applies.
    let r = policy.requirement(&get("h", "/admin/../public"), true);
    assert_eq!((r.rule, &*r.action), (Some(AMBIGUOUS_RULE), &Action::Deny));
    // Under the default deny, an unmatched request stays denied.
    let strict = Policy::new(vec![named("admin", prefix("/admin"), token(&["admin"]))]);
    let r = strict.requirement(&get("h", "/other"), true);
    assert_eq!(*r.action, Action::Deny);
}

#[test]
fn methods_filter_rules() {
    let mut r = rule(PathPattern::Any, Action::Deny);
    r.methods = vec!["POST".into()];
    let policy = with_default(vec![r], DefaultAction::Authenticated);
    let post = Selector {
        method: "post",
        ..get("h", "/x")
    };
    assert_eq!(*policy.requirement(&post, false).action, Action::Deny);
    assert_eq!(
        *policy.requirement(&get("h", "/x"), false).action,
        token(&[])
    );
}

#[test]
fn ambiguous_paths_are_denied_when_rules_exist() {
    let policy = Policy::new(vec![rule(prefix("/api/public"), Action::Anonymous)]);
    for path in [
        "/api/public/../admin",
        "/api/public/%2e%2e/admin",
        "/api/public/..%2Fadmin",
        "/api/public//x",
        "/api/public\\..\\admin",
        "/api/public/./x",
        "/api/public/..;/admin",
        "/api/public/.;/admin",
        "/api/public/..;x=1/admin",
        "/api/public/%2E%2e;/admin",
        "/api/public;x",
        "/api/public/%00",
        "/api/public/%252e%252e/admin",
    ] {
        let r = policy.requirement(&get("h", path), false);
        assert_eq!(*r.action, Action::Deny, "{path}");
        assert_eq!(r.rule, Some(AMBIGUOUS_RULE), "{path}");
        assert!(r.ambiguity.is_some(), "{path}");
    }
}

#[test]
fn requests_matching_no_rule_are_denied_once_rules_exist() {
    let policy = Policy::new(vec![rule(prefix("/api/admin"), token(&["admin"]))]);
    assert_eq!(policy.default_action(), DefaultAction::Deny);
    let r = policy.requirement(&get("h", "/other"), false);
    assert_eq!((r.rule, &*r.action), (None, &Action::Deny));
    // Without rules a valid token is enough, as in the quickstart.
    let open = Policy::new(Vec::new());
    assert_eq!(open.default_action(), DefaultAction::Authenticated);
    assert_eq!(
        *open.requirement(&get("h", "/other"), false).action,
        token(&[])
    );
    // An explicit default wins.
    let explicit = with_default(
        vec![rule(prefix("/a"), Action::Deny)],
        DefaultAction::Authenticated,
    );
    assert_eq!(
        *explicit.requirement(&get("h", "/b"), false).action,
        token(&[])
    );
}

#[test]
fn no_spelling_of_a_protected_path_reaches_another_rule() {
    let mut exact = named("exact", pattern("/api/exact"), token(&["exact"]));
    exact.methods = vec!["GET".into()];
    let mut host_rule = named("host", prefix("/"), token(&["host"]));
    host_rule.host = Some(HostPattern::parse("api.example.com").unwrap());
    let policy = with_default(
        vec![
            named("admin", prefix("/api/admin"), token(&["admin"])),
            named("internal", prefix("/internal"), Action::Deny),
            exact,
            host_rule,
            named("public", prefix("/"), Action::Anonymous),
        ],
        DefaultAction::Authenticated,
    );
    // Each spelling either reaches the protected rule or is refused: never `public`.
    for (path, expected) in [
        ("/api/admin", "admin"),
        ("/api/admin/", "admin"),
        ("/api/admin?x", "admin"),
        // Decoded it is `/api/admin`; a server that routes before decoding reads
        // `public`: two readings, refused.
        ("/api/%61dmin", AMBIGUOUS_RULE),
        ("/api/%61%64%6D%69%6E/x", AMBIGUOUS_RULE),
        // An escape both readings agree on is no ambiguity.
        ("/api/admin/%61b", "admin"),
        ("/api/admin/%40me", "admin"),
        ("/API/ADMIN", AMBIGUOUS_RULE),
        ("/Api/Admin/x", AMBIGUOUS_RULE),
        ("/api/admin;x=1", AMBIGUOUS_RULE),
        ("/internal;x", AMBIGUOUS_RULE),
        ("/INTERNAL", AMBIGUOUS_RULE),
        ("/internal/", "internal"),
        ("/api/exact", "exact"),
        ("/api/exact/", "exact"),
        ("/api/exact/?q=1", "exact"),
        ("/api/EXACT", AMBIGUOUS_RULE),
    ] {
        assert_eq!(
            decided(&policy, &get("other.example", path)),
            expected,
            "{path}"
        );
    }
    for host in [
        "api.example.com",
        "API.EXAMPLE.COM",
        "api.example.com.",
        "api.example.com:8443",
        "Api.Example.Com.:443",
    ] {
        assert_eq!(decided(&policy, &get(host, "/x")), "host", "{host}");
    }
    for host in [
        "api.example.com..",
        "api.example.com@evil",
        "api example.com",
    ] {
        assert_eq!(decided(&policy, &get(host, "/x")), AMBIGUOUS_RULE, "{host}");
    }
    // HEAD is served by GET handlers: a GET rule covers it.
    let head = Selector {
        method: "HEAD",
        ..get("other.example", "/api/exact")
    };
    assert_eq!(decided(&policy, &head), "exact");
    let post = Selector {
        method: "POST",
        ..get("other.example", "/api/exact")
    };
    assert_eq!(decided(&policy, &post), "public");
}

#[test]
fn method_overrides_that_select_another_rule_are_refused() {
    let mut delete = named("delete", prefix("/items"), token(&["delete"]));
    delete.methods = vec!["DELETE".into()];
    let policy = Policy::new(vec![delete, named("items", prefix("/items"), token(&[]))]);
    let overridden = |m: &'static str| Selector {
        method: "POST",
        overrides: Overrides::Methods(vec![m]),
        ..get("h", "/items/1")
    };
    assert_eq!(decided(&policy, &overridden("DELETE")), AMBIGUOUS_RULE);
    assert_eq!(decided(&policy, &overridden("delete")), AMBIGUOUS_RULE);
    assert_eq!(decided(&policy, &overridden("PUT")), "items");
    assert_eq!(decided(&policy, &overridden("POST")), "items");
    // Every method named counts, not the first.
    let several = Selector {
        method: "POST",
        overrides: Overrides::Methods(vec!["PUT", "POST", "DELETE"]),
        ..get("h", "/items/1")
    };
    assert_eq!(decided(&policy, &several), AMBIGUOUS_RULE);
    // A form body or an unreadable value could be any method: refused where methods
    // select different rules, harmless elsewhere.
    let any = |path: &'static str| Selector {
        method: "POST",
        overrides: Overrides::Any,
        ..get("h", path)
    };
    assert_eq!(decided(&policy, &any("/items/1")), AMBIGUOUS_RULE);
    let no_methods = Policy::new(vec![named("items", prefix("/items"), token(&[]))]);
    assert_eq!(decided(&no_methods, &any("/items/1")), "items");
    // A rule for other methods only: the default decides every method alike.
    let mut get_only = named("get", prefix("/read"), token(&[]));
    get_only.methods = vec!["GET".into()];
    let policy = Policy::new(vec![get_only]);
    assert_eq!(decided(&policy, &any("/elsewhere")), "default");
    assert_eq!(decided(&policy, &any("/read/x")), AMBIGUOUS_RULE);
}

#[test]
fn upper_case_literals_match_themselves_without_ambiguity() {
    let policy = Policy::new(vec![
        named("readme", pattern("/docs/README"), Action::Anonymous),
        named("user", pattern("/users/{id}"), token(&[])),
    ]);
    assert_eq!(decided(&policy, &get("h", "/docs/README")), "readme");
    assert_eq!(decided(&policy, &get("h", "/docs/readme")), AMBIGUOUS_RULE);
    assert_eq!(decided(&policy, &get("h", "/users/JohnDoe")), "user");
}

#[test]
fn stripped_path_parameters_match_the_bare_path() {
    let policy = Policy::with_settings(
        vec![named("admin", prefix("/admin"), token(&["admin"]))],
        PolicySettings {
            path_parameters: PathParameters::Strip,
            ..PolicySettings::default()
        },
    );
    assert_eq!(
        decided(&policy, &get("h", "/admin;jsessionid=1/x")),
        "admin"
    );
    assert_eq!(decided(&policy, &get("h", "/x/..;/admin")), AMBIGUOUS_RULE);
}

#[test]
fn escaped_and_decoded_readings_must_select_one_rule() {
    let policy = with_default(
        vec![
            named(
                "featured",
                pattern("/api/items/@featured"),
                Action::Anonymous,
            ),
            named("items", pattern("/api/items/*"), token(&["read"])),
        ],
        DefaultAction::Deny,
    );
    assert_eq!(
        decided(&policy, &get("h", "/api/items/@featured")),
        "featured"
    );
    assert_eq!(
        decided(&policy, &get("h", "/api/items/%40featured")),
        AMBIGUOUS_RULE
    );
    assert_eq!(decided(&policy, &get("h", "/api/items/a%40b")), "items");
    assert_eq!(
        decided(&policy, &get("h", "/api/items/%C3%A9")),
        AMBIGUOUS_RULE
    );
}

#[test]
fn an_options_rule_keeps_its_preflights_behind_it() {
    let mut dav = named("dav", prefix("/dav"), token(&["dav:admin"]));
    dav.methods = vec!["OPTIONS".into()];
    let policy = Policy::with_settings(
        vec![dav, named("all", prefix("/"), token(&[]))],
        PolicySettings {
            cors_preflight: true,
            ..PolicySettings::default()
        },
    );
    let preflight = |path: &'static str| Selector {
        method: "OPTIONS",
        preflight_method: Some("GET"),
        ..get("h", path)
    };
    let r = policy.requirement(&preflight("/dav/x"), false);
    assert_eq!((r.rule, &*r.action), (Some("dav"), &token(&["dav:admin"])));
    let r = policy.requirement(&preflight("/other"), false);
    assert_eq!((r.rule, &*r.action), (Some("all"), &Action::Preflight));
}

#[test]
fn cors_preflights_pass_only_where_allowed() {
    let mut get_rule = named("messages", prefix("/api/messages"), token(&["read"]));
    get_rule.methods = vec!["GET".into()];
    let mut closed = named("closed", prefix("/api/closed"), token(&[]));
    closed.cors_preflight = Some(false);
    let rules = vec![get_rule, closed];
    let preflight = |path: &'static str, method: &'static str| Selector {
        method: "OPTIONS",
        preflight_method: Some(method),
        ..get("h", path)
    };
    let on = Policy::with_settings(
        rules.clone(),
        PolicySettings {
            cors_preflight: true,
            ..PolicySettings::default()
        },
    );
    let r = on.requirement(&preflight("/api/messages", "GET"), false);
    assert_eq!((r.rule, &*r.action), (Some("messages"), &Action::Preflight));
    let r = on.requirement(&preflight("/api/closed", "GET"), false);
    assert_eq!(*r.action, token(&[]));
    // A preflight for a method no rule covers gets the default: here a denial, which no
    // token could pass, so the preflight is an ordinary (denied) OPTIONS request.
    let r = on.requirement(&preflight("/api/messages", "DELETE"), false);
    assert_eq!((r.rule, &*r.action), (None, &Action::Deny));
    // Ambiguous paths are refused for preflights too.
    let r = on.requirement(&preflight("/api/messages/../x", "GET"), false);
    assert_eq!(*r.action, Action::Deny);
    // An OPTIONS request that is not a preflight is an ordinary request.
    let plain = Selector {
        method: "OPTIONS",
        ..get("h", "/api/messages")
    };
    assert_eq!(*on.requirement(&plain, false).action, Action::Deny);

    // With Envoy's `required_scopes`, a preflight passes where preflights do, and needs
    // no scope; any other request needs what its rule needs, plus the extension's scopes.
    let r = on.requirement(&preflight("/api/messages", "GET"), true);
    assert_eq!((&*r.action, r.context_scopes), (&Action::Preflight, false));
    let r = on.requirement(&preflight("/api/closed", "GET"), true);
    assert_eq!((&*r.action, r.context_scopes), (&token(&[]), true));
    let r = on.requirement(&plain, true);
    assert_eq!(*r.action, Action::Deny);

    let off = Policy::new(rules);
    let r = off.requirement(&preflight("/api/messages", "GET"), false);
    assert_eq!(*r.action, Action::Deny);
    let r = off.requirement(&preflight("/api/messages", "GET"), true);
    assert_eq!(*r.action, Action::Deny);
}

#[test]
fn preflights_never_pass_where_no_token_could() {
    let mut closed = named("internal", prefix("/internal"), Action::Deny);
    closed.cors_preflight = Some(true);
    let settings = |default_action| PolicySettings {
        cors_preflight: true,
        default_action: Some(default_action),
        ..PolicySettings::default()
    };
    let preflight = |path: &'static str| Selector {
        method: "OPTIONS",
        preflight_method: Some("POST"),
        ..get("h", path)
    };
    let deny = Policy::with_settings(
        vec![closed.clone(), named("api", prefix("/api"), token(&["x"]))],
        settings(DefaultAction::Deny),
    );
    for path in ["/internal/flush", "/elsewhere"] {
        let r = deny.requirement(&preflight(path), false);
        assert_eq!(*r.action, Action::Deny, "{path}");
    }
    assert_eq!(
        *deny.requirement(&preflight("/api/x"), false).action,
        Action::Preflight
    );
    let open = Policy::with_settings(vec![closed], settings(DefaultAction::Authenticated));
    assert_eq!(
        *open
            .requirement(&preflight("/internal/flush"), false)
            .action,
        Action::Deny
    );
    assert_eq!(
        *open.requirement(&preflight("/elsewhere"), false).action,
        Action::Preflight
    );
    // A preflight with a method override could run as that method upstream: it is an
    // ordinary OPTIONS request, which needs a token.
    let overridden = Selector {
        overrides: Overrides::Methods(vec!["DELETE"]),
        ..preflight("/api/x")
    };
    assert_eq!(*deny.requirement(&overridden, false).action, token(&["x"]));
    // Without any rule, the path grammar still applies to a preflight.
    let none = Policy::with_settings(Vec::new(), settings(DefaultAction::Authenticated));
    assert_eq!(
        *none.requirement(&preflight("/a/..%20/b"), false).action,
        Action::Deny
    );
    assert_eq!(
        *none.requirement(&preflight("/a"), false).action,
        Action::Preflight
    );
}

#[test]
fn shadow_rules_report_but_do_not_decide() {
    let mut new_rule = named("new-admin", prefix("/api/admin"), token(&["admin"]));
    new_rule.mode = Mode::Shadow;
    let mut late = named("late", prefix("/api"), Action::Deny);
    late.mode = Mode::Shadow;
    let policy = Policy::new(vec![
        new_rule,
        named("api", prefix("/api"), token(&[])),
        late,
    ]);
    let r = policy.requirement(&get("h", "/api/admin/x"), false);
    assert_eq!(r.rule, Some("api"));
    assert_eq!(*r.action, token(&[]));
    let shadows: Vec<&str> = r.shadows.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(shadows, ["new-admin"]);
    assert!(
        policy
            .requirement(&get("h", "/api/x"), false)
            .shadows
            .is_empty()
    );
    assert_eq!(
        policy
            .shadow_rules()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["new-admin", "late"]
    );
}

#[test]
fn conditions_are_numbered_across_rules() {
    use crate::policy::{ClaimCondition, ClaimTest};
    let condition = |claim: &str| ClaimCondition {
        claim: claim.into(),
        test: ClaimTest::Present(true),
    };
    let with = |conditions: Vec<ClaimCondition>| {
        Action::Token(TokenRule {
            conditions,
            ..TokenRule::default()
        })
    };
    let policy = Policy::new(vec![
        named(
            "a",
            prefix("/a"),
            with(vec![condition("x"), condition("y")]),
        ),
        named("b", prefix("/b"), Action::Anonymous),
        named("c", prefix("/c"), with(vec![condition("z")])),
    ]);
    let claims: Vec<&str> = policy.conditions().map(|c| c.claim.as_str()).collect();
    assert_eq!(claims, ["x", "y", "z"]);
    let Action::Token(c) = &policy.rules()[2].action else {
        panic!("token rule expected")
    };
    assert_eq!(c.first_condition, 2);
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
        let numbered = |(i, mut r): (usize, Rule)| {
            r.name = format!("rule-{i}");
            r
        };
        Policy::new(
            vec![
                host_rule,
                method_rule,
                exact_host,
                rule(prefix("/api/public"), Action::Anonymous),
                rule(pattern("/api/*/items/{item}"), token(&["read"])),
                rule(
                    PathPattern::parse_path("/health").unwrap(),
                    Action::Anonymous,
                ),
                rule(pattern("/Docs/**"), Action::Anonymous),
            ]
            .into_iter()
            .enumerate()
            .map(numbered)
            .collect(),
        )
    }

    /// Paths built from segments that route matching and the request model care about,
    /// and arbitrary strings.
    fn path() -> impl Strategy<Value = String> {
        let segment = prop::sample::select(vec![
            "", ".", "..", "%2e", "%2E%2e", "%2f", "%5C", "\\", "api", "API", "public", "admin",
            "static", "items", "edit", "7", "é", "日本", "*", "{id}", "?", "#", "?a=/b", "%61dmin",
            "Docs", "docs", ";x=1", "..;", "%25", "health",
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
                "a.example.com.",
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
            prop::sample::select(vec!["GET", "post", "PUT", "HEAD", "", "ÉTÉ"])
                .prop_map(str::to_owned),
        ]
    }

    proptest! {
        #[test]
        fn requirement_never_panics_and_normal_forms_decide_alike(
            method in method(),
            host in host(),
            path in path(),
            query in "[?][ -~&&[^#]]{0,10}",
        ) {
            let policy = policy();
            let request = Selector { method: &method, host: &host, path: &path, ..Selector::default() };
            let r = policy.requirement(&request, false);
            // A generated path is refused, or decides exactly as its normal form does.
            match crate::policy::normalize_path(&path, PathParameters::Reject) {
                Err(_) => prop_assert_eq!(r.rule, Some(AMBIGUOUS_RULE)),
                // Unless its escapes, kept, select another rule than its normal form:
                // then it is refused for that.
                Ok(normal) if r.ambiguity == Some(Ambiguity::EscapedReading) => {
                    // The normal form has no escape left to read two ways.
                    let n = Selector { path: &normal, ..request.clone() };
                    prop_assert_ne!(
                        policy.requirement(&n, false).ambiguity,
                        Some(Ambiguity::EscapedReading)
                    );
                }
                Ok(normal) => {
                    let n = Selector { path: &normal, ..request.clone() };
                    let from_normal = policy.requirement(&n, false);
                    prop_assert_eq!(&from_normal, &r);
                }
            }
            // A query string or fragment never changes the decision.
            let with_query = format!("{path}{query}");
            let q = policy.requirement(&Selector { path: &with_query, ..request.clone() }, false);
            prop_assert_eq!(&q, &r);
            // Envoy's `required_scopes` adds to the rule: the same rule decides, a denial
            // stays one, and whatever passed needs a token now.
            let ext = policy.requirement(&request, true);
            prop_assert_eq!(ext.rule, r.rule);
            match &*r.action {
                Action::Deny => prop_assert_eq!(&*ext.action, &Action::Deny),
                Action::Anonymous => prop_assert_eq!(&*ext.action, &token(&[])),
                action => prop_assert_eq!(&*ext.action, action),
            }
            prop_assert_eq!(ext.context_scopes, *r.action != Action::Deny);
        }
    }
}

/// Hosts are read on every request, with or without rules: a Host that is not a plain
/// name or address never reaches a rule, a token check or a DPoP proof's `htu`.
#[test]
fn hosts_outside_the_grammar_are_refused_without_rules_too() {
    let none = Policy::new(Vec::new());
    for host in [
        "api.example.com?",
        "api.example.com#",
        "api.example.com?x=1",
        "x@other.example.com",
        "api.example.com/api/private#",
        "api.example.com:80:80",
    ] {
        let r = none.requirement(&get(host, "/api/admin"), false);
        assert_eq!(
            (r.rule, r.ambiguity),
            (Some(AMBIGUOUS_RULE), Some(Ambiguity::Host)),
            "{host}"
        );
    }
    assert_eq!(
        *none
            .requirement(&get("API.example.com:443", "/x"), false)
            .action,
        token(&[])
    );
}

#[test]
fn grpc_rules_name_a_service_and_a_method_pattern() {
    let exact = PathPattern::parse_grpc("grpc.health.v1.Health/Check").unwrap();
    assert!(exact.matches("/grpc.health.v1.Health/Check"));
    assert!(!exact.matches("/grpc.health.v1.Health/Watch"));
    assert!(!exact.matches("/grpc.health.v1.Health/Check/x"));
    assert!(!exact.matches("/grpc.health.v1.Healthy/Check"));
    assert!(!exact.matches("/x/grpc.health.v1.Health/Check"));
    let prefixed = PathPattern::parse_grpc("shop.v1.Orders/Get*").unwrap();
    for method in ["Get", "GetOrder", "GetOrderItems"] {
        assert!(
            prefixed.matches(&format!("/shop.v1.Orders/{method}")),
            "{method}"
        );
    }
    for method in ["List", "getOrder", "XGet"] {
        assert!(
            !prefixed.matches(&format!("/shop.v1.Orders/{method}")),
            "{method}"
        );
    }
    let inner = PathPattern::parse_grpc("shop.v1.Orders/*Order*").unwrap();
    assert!(inner.matches("/shop.v1.Orders/DeleteOrderNow"));
    assert!(inner.matches("/shop.v1.Orders/Order"));
    assert!(!inner.matches("/shop.v1.Orders/Ordr"));
    let any = PathPattern::parse_grpc("shop.v1.Orders/*").unwrap();
    assert!(any.matches("/shop.v1.Orders/Anything"));
    assert!(!any.matches("/shop.v1.Orders/"));
    for bad in [
        "",
        "shop.v1.Orders",
        "/shop.v1.Orders/Get",
        "shop..Orders/Get",
        "shop.v1.Orders/Get/More",
        "shop.v1.Orders/",
        "shop.v1.Orders/Get**",
        "shop.1v.Orders/Get",
        "shop.v1.Orders/Get-It",
        "shop.v1.*/Get",
    ] {
        assert!(PathPattern::parse_grpc(bad).is_err(), "{bad}");
    }
    // A method only case tells apart is ambiguous to a server that ignores case.
    let policy = Policy::new(vec![
        named("check", exact.clone(), token(&["health"])),
        named("rest", PathPattern::Any, Action::Anonymous),
    ]);
    let post = |path| Selector {
        method: "POST",
        host: "h",
        path,
        ..Selector::default()
    };
    assert_eq!(
        decided(&policy, &post("/grpc.health.v1.Health/Check")),
        "check"
    );
    assert_eq!(
        policy
            .requirement(&post("/grpc.health.v1.Health/check"), false)
            .ambiguity,
        Some(Ambiguity::Case)
    );
}
