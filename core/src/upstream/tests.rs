use super::*;
use serde_json::json;

fn claims(v: Value) -> Claims {
    v.as_object().unwrap().clone()
}

/// The owned mutations of a verified token, as the Check path computes them.
fn verified(
    config: &UpstreamConfig,
    claims: &Claims,
    payload: &str,
) -> (Vec<(String, String)>, Vec<String>) {
    let values = config.header_values(claims);
    let m = config.mutations(|i| values[i].as_deref(), payload);
    let own = |s: &str| s.to_owned();
    (
        m.set.iter().map(|(k, v)| (own(k), own(v))).collect(),
        m.remove.iter().map(|r| own(r)).collect(),
    )
}

fn h(name: &str) -> IdentityHeader {
    IdentityHeader::new(name).unwrap()
}

/// Every other spelling of the configured headers, in configuration order.
fn confusable(config: &UpstreamConfig) -> Vec<String> {
    config
        .identity_headers()
        .flat_map(|h| h.confusable().to_vec())
        .collect()
}

fn config() -> UpstreamConfig {
    UpstreamConfig {
        claim_headers: vec![
            ClaimHeader {
                claim: "sub".into(),
                header: h("x-jwt-sub"),
            },
            ClaimHeader {
                claim: "scope".into(),
                header: h("x-jwt-scope"),
            },
            ClaimHeader {
                claim: "org.id".into(),
                header: h("x-jwt-org"),
            },
            ClaimHeader {
                claim: "https://example.com/roles".into(),
                header: h("x-jwt-roles"),
            },
            ClaimHeader {
                claim: "email".into(),
                header: h("x-jwt-email"),
            },
        ],
        array_separator: ";".into(),
        forward_payload_header: Some(h("x-jwt-payload")),
        strip_authorization: true,
        token_headers: vec!["authorization".into()],
        metadata_claims: vec!["sub".into(), "org".into()],
    }
}

#[test]
fn claims_become_headers_and_missing_ones_are_removed() {
    let c = claims(json!({
        "sub": "u1", "scope": "a b", "org": {"id": 7},
        "https://example.com/roles": ["admin", "dev"],
    }));
    let (set, remove) = verified(&config(), &c, "cGF5bG9hZA");
    assert_eq!(
        set,
        [
            ("x-jwt-sub".into(), "u1".into()),
            ("x-jwt-scope".into(), "a b".into()),
            ("x-jwt-org".into(), "7".into()),
            ("x-jwt-roles".into(), "admin;dev".into()),
            ("x-jwt-payload".into(), "cGF5bG9hZA".into()),
        ]
    );
    let mut expected = vec!["x-jwt-email".to_owned()];
    expected.extend(confusable(&config()));
    expected.push("authorization".into());
    assert_eq!(remove, expected);
    let meta = config().metadata(&c).unwrap();
    assert_eq!(meta.fields.len(), 2);
    assert_eq!(
        meta.fields["sub"].kind,
        Some(Kind::StringValue("u1".into()))
    );
}

#[test]
fn control_characters_never_reach_a_header() {
    let c = claims(json!({"sub": "u1\r\nx-admin: true"}));
    let (set, remove) = verified(&UpstreamConfig::default(), &c, "p");
    assert!(set.is_empty());
    assert_eq!(remove, ["x-jwt-sub", "x_jwt-sub", "x-jwt_sub", "x_jwt_sub"]);
}

#[test]
fn every_hyphen_underscore_spelling_is_confusable() {
    assert_eq!(
        h("x-jwt-sub").confusable(),
        ["x_jwt-sub", "x-jwt_sub", "x_jwt_sub"]
    );
    assert_eq!(h("x_user").confusable(), ["x-user"]);
    assert_eq!(h("x_user").spelling_key(), "x-user");
    assert!(h("xuser").confusable().is_empty());
    assert_eq!(h("a-b-c-d-e-f-g").confusable().len(), 63);
    assert!(IdentityHeader::new("a-b-c-d-e-f-g-h").is_err());
}

#[test]
fn confusable_spellings_are_removed_on_every_decision() {
    let config = config();
    let c = claims(json!({"sub": "u1", "scope": "a"}));
    let (set, remove) = verified(&config, &c, "p");
    let anonymous = config.for_anonymous();
    for spelling in confusable(&config) {
        assert!(remove.contains(&spelling), "{spelling}");
        assert!(anonymous.remove.contains(&spelling.as_str()), "{spelling}");
    }
    assert!(confusable(&config).contains(&"x_jwt_payload".to_owned()));
    for (name, _) in &set {
        assert!(!remove.contains(name), "{name} is set and removed");
    }
}

#[test]
fn anonymous_requests_lose_every_identity_header() {
    let config = config();
    let m = config.for_anonymous();
    let mut expected: Vec<String> = [
        "x-jwt-sub",
        "x-jwt-scope",
        "x-jwt-org",
        "x-jwt-roles",
        "x-jwt-email",
        "x-jwt-payload",
    ]
    .map(str::to_owned)
    .to_vec();
    expected.extend(confusable(&config));
    expected.push("authorization".into());
    assert_eq!(m.remove, expected);
    assert!(m.set.is_empty());
}

#[test]
fn no_metadata_unless_configured() {
    assert_eq!(
        UpstreamConfig::default().metadata(&claims(json!({"sub": "u"}))),
        None
    );
}

mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// Strings rich in C0, DEL and C1 control characters, and arbitrary ones.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}a-z \u{2028}é]{0,12}",
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(text(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn rendered_claims_never_carry_control_characters(
            value in json_value(),
            separator in "[ -~é]{0,3}",
        ) {
            if let Some(text) = render(&value, &separator) {
                prop_assert!(!text.chars().any(char::is_control), "{:?}", text);
            }
        }

        #[test]
        fn clean_strings_render_as_themselves(s in text()) {
            let rendered = render(&Value::String(s.clone()), ",");
            if s.chars().any(char::is_control) {
                prop_assert_eq!(rendered, None);
            } else {
                prop_assert_eq!(rendered, Some(s));
            }
        }

        #[test]
        fn upstream_headers_never_carry_control_characters(
            claims_map in prop::collection::btree_map(
                prop::sample::select(vec!["sub", "scope", "org", "email", "https://example.com/roles"])
                    .prop_map(str::to_owned),
                json_value(),
                0..5,
            ),
        ) {
            let c: Claims = claims_map.into_iter().collect();
            let (set_headers, removed_headers) = verified(&config(), &c, "cGF5bG9hZA");
            for (name, value) in &set_headers {
                prop_assert!(!value.chars().any(char::is_control), "{}: {:?}", name, value);
            }
            // Every mapped header is either set or removed, never left to the client.
            for mapping in &config().claim_headers {
                let name = mapping.header.name();
                let set = set_headers.iter().any(|(h, _)| h == name);
                let removed = removed_headers.iter().any(|h| h == name);
                prop_assert!(set != removed, "{}", name);
            }
        }
    }
}

#[test]
fn most_mutations_bounds_every_request() {
    let mut configs = vec![UpstreamConfig::default(), config()];
    let mut stripped = config();
    stripped.strip_authorization = true;
    stripped.token_headers = vec!["authorization".into(), "x-api-token".into()];
    configs.push(stripped);
    let every_claim = claims(json!({
        "sub": "u1", "scope": "a b", "org": {"id": "o"},
        "https://example.com/roles": ["r"], "email": "e@example.com",
    }));
    for config in &configs {
        let (most_set, most_removed) = config.most_mutations();
        for c in [
            claims(json!({})),
            claims(json!({"sub": "u1"})),
            every_claim.clone(),
        ] {
            let (set, remove) = verified(config, &c, "p");
            assert!(set.len() <= most_set, "{set:?}");
            assert!(remove.len() <= most_removed, "{remove:?}");
        }
        let anonymous = config.for_anonymous();
        assert!(anonymous.set.is_empty());
        assert!(anonymous.remove.len() <= most_removed);
        // Every claim present sets the most; an anonymous request removes the most.
        let (set, _) = verified(config, &every_claim, "p");
        assert_eq!(
            (set.len(), anonymous.remove.len()),
            (most_set, most_removed)
        );
    }
}
