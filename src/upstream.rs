//! What an allowed request carries upstream: claim headers, the verified payload, and
//! dynamic metadata for Envoy's access log, RBAC and rate limiting.
//!
//! Every header this module may set is also removed when it has no value, so a client can
//! never forge one: Envoy applies `headers_to_remove` after the header mutations, so a
//! header is either overwritten with the verified value or removed, never both. Each such
//! header is also removed in every other spelling an upstream could read as the same
//! header (`x_jwt_sub` for `x-jwt-sub`), whatever the decision.

use prost_types::value::Kind;
use serde_json::Value;

use crate::claims::{Claims, claim};

/// At most this many `-` and `_` in an identity header's name: each one doubles the
/// spellings removed on every request.
pub const MAX_SEPARATORS: usize = 6;

/// The name of a header the service sets upstream, with the other spellings of that name
/// an upstream could read as the same header: any `-` written `_` or the reverse. CGI,
/// WSGI and PHP servers, and frameworks built on them, map `x-jwt-sub`, `x_jwt_sub` and
/// `x-jwt_sub` all to `HTTP_X_JWT_SUB`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeader {
    name: String,
    /// Every spelling but `name`, computed once when the configuration is built.
    confusable: Vec<String>,
}

impl IdentityHeader {
    /// The header `name` (lower-case, a valid header name) and its other spellings.
    /// Fails when the name has more than [`MAX_SEPARATORS`] `-` and `_`.
    pub fn new(name: &str) -> Result<IdentityHeader, String> {
        let separators: Vec<usize> = name
            .bytes()
            .enumerate()
            .filter(|(_, b)| matches!(b, b'-' | b'_'))
            .map(|(i, _)| i)
            .collect();
        if separators.len() > MAX_SEPARATORS {
            return Err(format!(
                "`{name}` has more than {MAX_SEPARATORS} `-` or `_`; use a shorter name"
            ));
        }
        let mut confusable = Vec::new();
        for choice in 0u32..(1 << separators.len()) {
            let mut spelling = name.as_bytes().to_vec();
            for (bit, &at) in separators.iter().enumerate() {
                spelling[at] = if choice & (1 << bit) == 0 { b'-' } else { b'_' };
            }
            // Only `-` and `_` were swapped, so the bytes are still the name's ASCII.
            let spelling = String::from_utf8_lossy(&spelling).into_owned();
            if spelling != name {
                confusable.push(spelling);
            }
        }
        Ok(IdentityHeader {
            name: name.to_owned(),
            confusable,
        })
    }

    /// The header name as configured.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every other spelling of the name an upstream could confuse with it.
    pub fn confusable(&self) -> &[String] {
        &self.confusable
    }

    /// The name with every `_` written `-`: two headers with the same key are the same
    /// header to some upstream.
    pub fn spelling_key(&self) -> String {
        self.name.replace('_', "-")
    }
}

/// One claim copied into one upstream header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHeader {
    /// A top-level claim name, or a dot path (`org.id`) when no top-level claim has that
    /// exact name (Auth0's namespaced claims contain dots).
    pub claim: String,
    /// Lower-case header name.
    pub header: IdentityHeader,
}

/// Upstream request mutations on allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub claim_headers: Vec<ClaimHeader>,
    /// Joins array claims into one header value.
    pub array_separator: String,
    /// Header that receives the verified payload, base64url as in the token.
    pub forward_payload_header: Option<IdentityHeader>,
    /// Remove the token's sources before the request goes upstream.
    pub strip_authorization: bool,
    /// The headers `token_sources` reads (default `authorization`): removed upstream
    /// when `strip_authorization` is on. Cookies and query parameters are the Check
    /// path's to rewrite, since they depend on the request.
    pub token_headers: Vec<String>,
    /// Claims copied into `CheckResponse.dynamic_metadata`.
    pub metadata_claims: Vec<String>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            claim_headers: vec![ClaimHeader {
                claim: "sub".into(),
                // safety: two separators, well under MAX_SEPARATORS
                header: IdentityHeader::new("x-jwt-sub").expect("a valid identity header"),
            }],
            array_separator: ",".into(),
            forward_payload_header: None,
            strip_authorization: false,
            token_headers: vec!["authorization".into()],
            metadata_claims: Vec::new(),
        }
    }
}

/// The header changes of one allowed request, borrowed from the configuration and the
/// token's cache entry.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Mutations<'a> {
    pub set: Vec<(&'a str, &'a str)>,
    pub remove: Vec<&'a str>,
}

impl UpstreamConfig {
    /// The value of each configured claim header for these claims, in configuration order;
    /// `None` where the claim is absent, null, or holds control characters.
    pub fn header_values(&self, claims: &Claims) -> Vec<Option<String>> {
        self.claim_headers
            .iter()
            .map(|m| claim(claims, &m.claim).and_then(|v| render(v, &self.array_separator)))
            .collect()
    }

    /// `CheckResponse.dynamic_metadata` for these claims, when metadata claims are configured.
    pub fn metadata(&self, claims: &Claims) -> Option<prost_types::Struct> {
        if self.metadata_claims.is_empty() {
            return None;
        }
        let fields = self
            .metadata_claims
            .iter()
            .filter_map(|name| Some((name.clone(), to_proto(claim(claims, name)?))))
            .collect();
        Some(prost_types::Struct { fields })
    }

    /// Mutations for a verified token: `value(i)` is the value of the `i`-th claim header
    /// (from [`Self::header_values`]), `payload_b64` the token's payload segment.
    pub fn mutations<'a>(
        &'a self,
        value: impl Fn(usize) -> Option<&'a str>,
        payload_b64: &'a str,
    ) -> Mutations<'a> {
        let mut m = Mutations::default();
        for (i, mapping) in self.claim_headers.iter().enumerate() {
            match value(i) {
                Some(v) => m.set.push((mapping.header.name(), v)),
                None => m.remove.push(mapping.header.name()),
            }
        }
        if let Some(header) = &self.forward_payload_header {
            m.set.push((header.name(), payload_b64));
        }
        self.remove_confusable(&mut m);
        if self.strip_authorization {
            m.remove
                .extend(self.token_headers.iter().map(String::as_str));
        }
        m
    }

    /// Mutations for a request allowed without a token (an anonymous route or a CORS
    /// preflight): every identity header removed, and `authorization` too when it is
    /// stripped (an unverified token must not reach the upstream either).
    pub fn for_anonymous(&self) -> Mutations<'_> {
        let mut m = Mutations::default();
        m.remove
            .extend(self.identity_headers().map(IdentityHeader::name));
        self.remove_confusable(&mut m);
        if self.strip_authorization {
            m.remove
                .extend(self.token_headers.iter().map(String::as_str));
        }
        m
    }

    /// Every header this configuration sets upstream.
    fn identity_headers(&self) -> impl Iterator<Item = &IdentityHeader> {
        self.claim_headers
            .iter()
            .map(|c| &c.header)
            .chain(&self.forward_payload_header)
    }

    // invariant: no configured name is another's confusable spelling (the configuration
    // refuses two headers with one spelling key), so this never removes a header just set.
    fn remove_confusable<'a>(&'a self, m: &mut Mutations<'a>) {
        for header in self.identity_headers() {
            m.remove
                .extend(header.confusable().iter().map(String::as_str));
        }
    }
}

/// Renders a claim as a header value. Strings as-is, numbers and booleans as JSON text,
/// arrays joined by `separator`, objects as compact JSON. `None` for null, and for values
/// with control characters, which no header may carry.
pub fn render(value: &Value, separator: &str) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Bool(_) | Value::Number(_) | Value::Object(_) => value.to_string(),
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|item| match item {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            parts.join(separator)
        }
    };
    (!text.chars().any(char::is_control)).then_some(text)
}

fn to_proto(value: &Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(to_proto).collect(),
        }),
        Value::Object(map) => Kind::StructValue(prost_types::Struct {
            fields: map.iter().map(|(k, v)| (k.clone(), to_proto(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
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
}
