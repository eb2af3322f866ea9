//! What an allowed request carries upstream: claim headers, the verified payload, and
//! dynamic metadata for Envoy's access log, RBAC and rate limiting.
//!
//! Every header this module may set is also removed when it has no value, so a client can
//! never forge one: Envoy applies `headers_to_remove` after the header mutations, so a
//! header is either overwritten with the verified value or removed, never both.

use prost_types::value::Kind;
use serde_json::Value;

use crate::claims::{Claims, claim};

/// One claim copied into one upstream header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHeader {
    /// A top-level claim name, or a dot path (`org.id`) when no top-level claim has that
    /// exact name (Auth0's namespaced claims contain dots).
    pub claim: String,
    /// Lower-case header name.
    pub header: String,
}

/// Upstream request mutations on allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub claim_headers: Vec<ClaimHeader>,
    /// Joins array claims into one header value.
    pub array_separator: String,
    /// Header that receives the verified payload, base64url as in the token.
    pub forward_payload_header: Option<String>,
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
                header: "x-jwt-sub".into(),
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
                Some(v) => m.set.push((&mapping.header, v)),
                None => m.remove.push(&mapping.header),
            }
        }
        if let Some(header) = &self.forward_payload_header {
            m.set.push((header, payload_b64));
        }
        if self.strip_authorization {
            m.remove
                .extend(self.token_headers.iter().map(String::as_str));
        }
        m
    }

    /// Mutations for a request allowed without a token: every identity header removed,
    /// and `authorization` too when it is stripped (an unverified token must not reach
    /// the upstream either).
    pub fn for_anonymous(&self) -> Mutations<'_> {
        let mut m = Mutations::default();
        m.remove
            .extend(self.claim_headers.iter().map(|c| c.header.as_str()));
        m.remove.extend(self.forward_payload_header.as_deref());
        if self.strip_authorization {
            m.remove
                .extend(self.token_headers.iter().map(String::as_str));
        }
        m
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

    fn config() -> UpstreamConfig {
        UpstreamConfig {
            claim_headers: vec![
                ClaimHeader {
                    claim: "sub".into(),
                    header: "x-jwt-sub".into(),
                },
                ClaimHeader {
                    claim: "scope".into(),
                    header: "x-jwt-scope".into(),
                },
                ClaimHeader {
                    claim: "org.id".into(),
                    header: "x-jwt-org".into(),
                },
                ClaimHeader {
                    claim: "https://example.com/roles".into(),
                    header: "x-jwt-roles".into(),
                },
                ClaimHeader {
                    claim: "email".into(),
                    header: "x-jwt-email".into(),
                },
            ],
            array_separator: ";".into(),
            forward_payload_header: Some("x-jwt-payload".into()),
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
        assert_eq!(remove, ["x-jwt-email", "authorization"]);
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
        assert_eq!(remove, ["x-jwt-sub"]);
    }

    #[test]
    fn anonymous_requests_lose_every_identity_header() {
        let config = config();
        let m = config.for_anonymous();
        assert_eq!(
            m.remove,
            [
                "x-jwt-sub",
                "x-jwt-scope",
                "x-jwt-org",
                "x-jwt-roles",
                "x-jwt-email",
                "x-jwt-payload",
                "authorization"
            ]
        );
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
                    let set = set_headers.iter().any(|(h, _)| *h == mapping.header);
                    let removed = removed_headers.contains(&mapping.header);
                    prop_assert!(set != removed, "{}", mapping.header);
                }
            }
        }
    }
}
