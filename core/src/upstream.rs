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
const MAX_SEPARATORS: usize = 6;

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

/// Where the header changes of one allowed request go, in order.
pub trait MutationSink<'a> {
    /// Header `name` is set (overwritten) to `value`.
    fn set_header(&mut self, name: &'a str, value: &'a str);
    /// Header `name` is removed.
    fn remove_header(&mut self, name: &'a str);
}

impl<'a> MutationSink<'a> for Mutations<'a> {
    fn set_header(&mut self, name: &'a str, value: &'a str) {
        self.set.push((name, value));
    }

    fn remove_header(&mut self, name: &'a str) {
        self.remove.push(name);
    }
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
        self.mutations_into(value, payload_b64, &mut m);
        m
    }

    /// [`Self::mutations`], given to `sink` one by one: the Check puts them straight into
    /// its answer, with no list of its own per request.
    pub fn mutations_into<'a>(
        &'a self,
        value: impl Fn(usize) -> Option<&'a str>,
        payload_b64: &'a str,
        sink: &mut impl MutationSink<'a>,
    ) {
        for (i, mapping) in self.claim_headers.iter().enumerate() {
            match value(i) {
                Some(v) => sink.set_header(mapping.header.name(), v),
                None => sink.remove_header(mapping.header.name()),
            }
        }
        if let Some(header) = &self.forward_payload_header {
            sink.set_header(header.name(), payload_b64);
        }
        self.remove_confusable(sink);
        self.remove_token_headers(sink);
    }

    /// Mutations for a request allowed without a token (an anonymous route or a CORS
    /// preflight): every identity header removed, and `authorization` too when it is
    /// stripped (an unverified token must not reach the upstream either).
    #[cfg(test)]
    fn for_anonymous(&self) -> Mutations<'_> {
        let mut m = Mutations::default();
        self.anonymous_into(&mut m);
        m
    }

    /// What an anonymous request gets: every identity header removed, and
    /// `authorization` too when it is stripped (an unverified token must not reach the
    /// upstream either), given to `sink` one by one.
    pub fn anonymous_into<'a>(&'a self, sink: &mut impl MutationSink<'a>) {
        for header in self.identity_headers() {
            sink.remove_header(header.name());
        }
        self.remove_confusable(sink);
        self.remove_token_headers(sink);
    }

    /// The most headers one request's mutations set, and the most they remove: room for
    /// them is made once.
    pub fn most_mutations(&self) -> (usize, usize) {
        let set = self.claim_headers.len() + usize::from(self.forward_payload_header.is_some());
        let confusable: usize = self.identity_headers().map(|h| h.confusable.len()).sum();
        let token_headers = if self.strip_authorization {
            self.token_headers.len()
        } else {
            0
        };
        (set, set + confusable + token_headers)
    }

    /// The spelling keys (`_` and `.` read as `-`, lower case) of every header whose
    /// name a dotted spelling could stand for upstream: the identity headers, the token
    /// headers, and the method-override headers. PHP reads `x.jwt.sub` as
    /// `HTTP_X_JWT_SUB`; a request carrying such a spelling is refused.
    pub fn dotted_spelling_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .identity_headers()
            .map(IdentityHeader::spelling_key)
            .chain(self.token_headers.iter().map(|t| t.replace('_', "-")))
            .chain(
                crate::policy::overrides::HEADERS
                    .iter()
                    .map(|h| (*h).to_owned()),
            )
            .filter(|key| key.contains('-'))
            .collect();
        keys.sort();
        keys.dedup();
        keys
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
    fn remove_confusable<'a>(&'a self, sink: &mut impl MutationSink<'a>) {
        for header in self.identity_headers() {
            for spelling in header.confusable() {
                sink.remove_header(spelling);
            }
        }
    }

    fn remove_token_headers<'a>(&'a self, sink: &mut impl MutationSink<'a>) {
        if self.strip_authorization {
            for name in &self.token_headers {
                sink.remove_header(name);
            }
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
mod tests;
