//! Token verification: header checks, key selection, signature, then claims.
//!
//! The signature is checked with the key aws-lc parsed when the JWKS loaded
//! ([`crate::jwks::VerifyingKey::verify`]). The claim checks are written out here rather
//! than left to `jsonwebtoken::decode` (which re-parses the key on every call), so that each
//! failure maps to exactly one [`AuthError`] and the payload is parsed once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::bearer::BearerToken;
use crate::config::IssuerConfig;
use crate::error::AuthError;
use crate::jwks::JwksCache;

/// The verified payload of a token.
pub type Claims = Map<String, Value>;

/// What a successful verification yields.
#[derive(Debug)]
pub struct Verified {
    pub claims: Claims,
    /// `kid` of the key that verified the token, if the token named one.
    pub kid: Option<String>,
    pub alg: Algorithm,
    /// [`crate::jwks::VerifyingKey::fingerprint`] of the key that verified the token.
    pub key_fingerprint: u64,
    /// The issuer's clock leeway, for re-checking `exp`/`nbf` of a cached verification.
    pub leeway: f64,
}

/// One trusted issuer with its keys.
pub struct Issuer {
    pub config: IssuerConfig,
    pub jwks: Arc<JwksCache>,
}

/// Verifies tokens from a fixed set of issuers.
pub struct Verifier {
    /// Keyed by the exact `iss` string.
    issuers: HashMap<String, Issuer>,
}

/// The JOSE header members this service reads, taken from a strictly parsed object.
struct JoseHeader {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    crit: bool,
    // invariant: `jku`, `x5u`, `jwk` and `x5c` are never read. Keys come from the configured
    // JWKS only, never from the token.
}

impl JoseHeader {
    /// Parses a header: a JSON object without duplicate members, `alg` a string, `kid` and
    /// `typ` strings when present.
    fn parse(json: &[u8]) -> Result<JoseHeader, AuthError> {
        let StrictObject(mut members) =
            serde_json::from_slice(json).map_err(|_| AuthError::Malformed)?;
        let mut text = |name: &str| match members.remove(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(AuthError::Malformed),
        };
        Ok(JoseHeader {
            alg: text("alg")?.ok_or(AuthError::Malformed)?,
            kid: text("kid")?,
            typ: text("typ")?,
            crit: members.contains_key("crit"),
        })
    }
}

/// The unverified facts a log line may carry about a rejected token.
#[derive(Debug, Default, Clone)]
pub struct TokenFacts {
    pub kid: Option<String>,
    pub iss: Option<String>,
}

impl Verifier {
    pub fn new(issuers: Vec<Issuer>) -> Self {
        Verifier {
            issuers: issuers
                .into_iter()
                .map(|i| (i.config.issuer.clone(), i))
                .collect(),
        }
    }

    /// Every issuer's JWKS cache.
    pub fn caches(&self) -> impl Iterator<Item = &Arc<JwksCache>> {
        self.issuers.values().map(|i| &i.jwks)
    }

    /// Verifies `token`. `facts` is filled with the unverified `kid` and `iss` as soon as
    /// they are known, for the decision log.
    pub async fn verify(
        &self,
        token: BearerToken<'_>,
        facts: &mut TokenFacts,
    ) -> Result<Verified, AuthError> {
        let token = token.as_str();
        let mut segments = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(AuthError::Malformed);
        };
        let header_json = decode_segment(header_b64)?;
        let header = JoseHeader::parse(&header_json)?;
        facts.kid = header.kid.clone();
        let alg = asymmetric_algorithm(&header.alg)?;
        if header.crit {
            // RFC 7515 §4.1.11: an unknown critical extension makes the token invalid, and
            // this service implements none.
            return Err(AuthError::UnsupportedCritical);
        }
        let payload_json = decode_segment(payload_b64)?;
        let StrictObject(claims) =
            serde_json::from_slice(&payload_json).map_err(|_| AuthError::Malformed)?;

        // The unverified `iss` only chooses which keys to try; it is compared exactly with
        // the configured issuers before anything is fetched.
        let iss = claims.get("iss").and_then(Value::as_str);
        facts.iss = iss.map(str::to_owned);
        let issuer = iss
            .and_then(|iss| self.issuers.get(iss))
            .ok_or(AuthError::WrongIssuer)?;
        // invariant: allowed algorithms come from config, never from the token header.
        if !issuer.config.algorithms.contains(&alg) {
            return Err(AuthError::DisallowedAlgorithm);
        }
        if issuer.config.require_access_token_type && !is_access_token_type(header.typ.as_deref()) {
            return Err(AuthError::WrongTokenType);
        }

        let kid = header.kid.as_deref();
        let keys = issuer.jwks.lookup(kid, alg).await?;
        let key = keys.select(kid, alg).ok_or(AuthError::UnknownKey)?;
        let signed = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| AuthError::BadSignature)?;
        if !key.verify(alg, signed, &signature) {
            return Err(AuthError::BadSignature);
        }

        check_claims(&claims, &issuer.config, unix_now())?;
        Ok(Verified {
            claims,
            kid: facts.kid.clone(),
            alg,
            key_fingerprint: key.fingerprint,
            leeway: issuer.config.leeway.as_secs_f64(),
        })
    }

    /// Whether `iss`'s current key set still publishes the key (same material) that once
    /// verified a token with this `kid` and `alg`. Lets a cached verification lapse as soon
    /// as its key leaves the JWKS.
    pub fn key_is_current(
        &self,
        iss: &str,
        kid: Option<&str>,
        alg: Algorithm,
        fingerprint: u64,
    ) -> bool {
        self.issuers
            .get(iss)
            .and_then(|issuer| issuer.jwks.current())
            .is_some_and(|keys| {
                keys.select(kid, alg)
                    .is_some_and(|k| k.fingerprint == fingerprint)
            })
    }
}

/// A NumericDate as issuers write it: whole seconds, from 0 to 2^53 (exactly representable
/// in the `f64` the clock comparison uses). RFC 7519 allows fractions, but no mainstream
/// issuer emits them, and refusing them, like numbers past 2^64, leaves no two readings of
/// when a token expires.
fn numeric_date(value: &Value) -> Option<f64> {
    const MAX: u64 = 1 << 53;
    value.as_u64().filter(|&n| n <= MAX).map(|n| n as f64)
}

/// Seconds since the Unix epoch, as `exp` and `nbf` count them.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A JSON object that refuses duplicate top-level names, for the JOSE header and the
/// claims. RFC 7515 §4 and RFC 7519 §4 let a parser either reject them or keep the last;
/// two parsers picking differently (an upstream reading the forwarded payload, say) would
/// disagree on what the token says, so reject.
struct StrictObject(Claims);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Claims;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Claims, A::Error> {
                let mut claims = Claims::new();
                while let Some(name) = map.next_key::<String>()? {
                    let value: Value = map.next_value()?;
                    if claims.insert(name, value).is_some() {
                        return Err(serde::de::Error::custom("duplicate member"));
                    }
                }
                Ok(claims)
            }
        }
        deserializer.deserialize_map(Visitor).map(StrictObject)
    }
}

fn decode_segment(segment: &str) -> Result<Vec<u8>, AuthError> {
    if segment.is_empty() {
        return Err(AuthError::Malformed);
    }
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthError::Malformed)
}

/// Maps a header `alg` to an asymmetric algorithm. `none` in any casing, HMAC and anything
/// unknown are refused here, before any key is looked at.
fn asymmetric_algorithm(name: &str) -> Result<Algorithm, AuthError> {
    crate::jwks::asymmetric_algorithm(name).ok_or(AuthError::DisallowedAlgorithm)
}

/// RFC 9068 §2.1: `at+jwt`, optionally with the `application/` prefix, case-insensitive.
fn is_access_token_type(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| {
        let t = t.strip_prefix("application/").unwrap_or(t);
        t.eq_ignore_ascii_case("at+jwt")
    })
}

/// Checks `exp`, `nbf`, `iss` and `aud` against the issuer's configuration at time `now`.
pub fn check_claims(claims: &Claims, issuer: &IssuerConfig, now: f64) -> Result<(), AuthError> {
    let leeway = issuer.leeway.as_secs_f64();
    let exp = claims
        .get("exp")
        .and_then(numeric_date)
        .ok_or(AuthError::MissingClaim)?;
    if exp + leeway <= now {
        return Err(AuthError::Expired);
    }
    match claims.get("nbf") {
        None => {}
        Some(nbf) => {
            let nbf = numeric_date(nbf).ok_or(AuthError::MissingClaim)?;
            if nbf - leeway > now {
                return Err(AuthError::NotYetValid);
            }
        }
    }
    if claims.get("iss").and_then(Value::as_str) != Some(issuer.issuer.as_str()) {
        return Err(AuthError::WrongIssuer);
    }
    let accepted = |aud: &str| issuer.audiences.iter().any(|a| a == aud);
    match claims.get("aud") {
        Some(Value::String(aud)) if accepted(aud) => Ok(()),
        Some(Value::String(_)) => Err(AuthError::WrongAudience),
        Some(Value::Array(auds)) => {
            if auds.iter().any(|a| !a.is_string()) {
                Err(AuthError::MissingClaim)
            } else if auds.iter().filter_map(Value::as_str).any(accepted) {
                Ok(())
            } else {
                Err(AuthError::WrongAudience)
            }
        }
        _ => Err(AuthError::MissingClaim),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JwksSource;
    use serde_json::json;
    use std::time::Duration;

    const NOW: u64 = 1_800_000_000;
    const NOW_F: f64 = NOW as f64;

    fn issuer() -> IssuerConfig {
        IssuerConfig {
            issuer: "https://idp.example/".into(),
            issuer_url: "https://idp.example/".parse().unwrap(),
            audiences: vec!["api".into(), "other".into()],
            jwks: JwksSource::Discover,
            algorithms: vec![Algorithm::RS256],
            leeway: Duration::from_secs(60),
            require_access_token_type: false,
        }
    }

    fn claims(value: Value) -> Claims {
        value.as_object().unwrap().clone()
    }

    fn base() -> Value {
        json!({"iss": "https://idp.example/", "aud": "api", "exp": NOW + 300, "sub": "u1"})
    }

    fn with(key: &str, value: Value) -> Claims {
        let mut c = claims(base());
        c.insert(key.into(), value);
        c
    }

    fn without(key: &str) -> Claims {
        let mut c = claims(base());
        c.remove(key);
        c
    }

    #[test]
    fn valid_claims_pass() {
        assert_eq!(check_claims(&claims(base()), &issuer(), NOW_F), Ok(()));
    }

    #[test]
    fn expired_token_is_rejected_past_the_leeway_only() {
        let i = issuer();
        assert_eq!(
            check_claims(&with("exp", json!(NOW - 59)), &i, NOW_F),
            Ok(())
        );
        assert_eq!(
            check_claims(&with("exp", json!(NOW - 61)), &i, NOW_F),
            Err(AuthError::Expired)
        );
    }

    #[test]
    fn future_nbf_is_rejected() {
        let i = issuer();
        assert_eq!(
            check_claims(&with("nbf", json!(NOW + 30)), &i, NOW_F),
            Ok(())
        );
        assert_eq!(
            check_claims(&with("nbf", json!(NOW + 120)), &i, NOW_F),
            Err(AuthError::NotYetValid)
        );
        assert_eq!(
            check_claims(&with("nbf", json!("soon")), &i, NOW_F),
            Err(AuthError::MissingClaim)
        );
    }

    #[test]
    fn numeric_dates_are_whole_seconds() {
        let i = issuer();
        for bad in [
            json!(NOW_F + 300.5),
            json!(18446744073709551616.0_f64),
            json!(-5),
            json!(1e300),
        ] {
            assert_eq!(
                check_claims(&with("exp", bad.clone()), &i, NOW_F),
                Err(AuthError::MissingClaim),
                "{bad}"
            );
        }
    }

    #[test]
    fn exp_and_aud_are_required() {
        let i = issuer();
        assert_eq!(
            check_claims(&without("exp"), &i, NOW_F),
            Err(AuthError::MissingClaim)
        );
        assert_eq!(
            check_claims(&without("aud"), &i, NOW_F),
            Err(AuthError::MissingClaim)
        );
        assert_eq!(
            check_claims(&with("exp", json!("1800000300")), &i, NOW_F),
            Err(AuthError::MissingClaim)
        );
    }

    #[test]
    fn aud_may_be_a_string_or_an_array() {
        let i = issuer();
        assert_eq!(
            check_claims(&with("aud", json!(["x", "other"])), &i, NOW_F),
            Ok(())
        );
        assert_eq!(
            check_claims(&with("aud", json!(["x", "y"])), &i, NOW_F),
            Err(AuthError::WrongAudience)
        );
        assert_eq!(
            check_claims(&with("aud", json!([])), &i, NOW_F),
            Err(AuthError::WrongAudience)
        );
        assert_eq!(
            check_claims(&with("aud", json!("nope")), &i, NOW_F),
            Err(AuthError::WrongAudience)
        );
        assert_eq!(
            check_claims(&with("aud", json!(["api", 7])), &i, NOW_F),
            Err(AuthError::MissingClaim)
        );
    }

    #[test]
    fn wrong_issuer_is_rejected() {
        assert_eq!(
            check_claims(
                &with("iss", json!("https://evil.example/")),
                &issuer(),
                NOW_F
            ),
            Err(AuthError::WrongIssuer)
        );
    }

    #[test]
    fn none_and_hmac_algorithms_are_refused() {
        for alg in [
            "none", "None", "NONE", "HS256", "HS384", "HS512", "rs256", "",
        ] {
            assert_eq!(
                asymmetric_algorithm(alg),
                Err(AuthError::DisallowedAlgorithm),
                "{alg}"
            );
        }
        assert_eq!(asymmetric_algorithm("ES384"), Ok(Algorithm::ES384));
    }

    #[test]
    fn duplicate_claims_are_refused() {
        let parse = |s: &str| serde_json::from_str::<StrictObject>(s).map(|c| c.0);
        assert!(parse(r#"{"sub":"a","sub":"b"}"#).is_err());
        assert!(parse(r#"[1,2]"#).is_err());
        assert!(parse(r#""text""#).is_err());
        assert_eq!(parse(r#"{"sub":"a","n":{"x":1}}"#).unwrap().len(), 2);
    }

    #[test]
    fn header_must_be_a_strict_object() {
        let parse = |s: &str| JoseHeader::parse(s.as_bytes()).map(|h| h.alg);
        assert_eq!(parse(r#"{"alg":"RS256","kid":"a"}"#), Ok("RS256".into()));
        for bad in [
            r#"{"alg":"none","alg":"RS256"}"#,
            r#"["RS256","rsa-1"]"#,
            r#"{"kid":"a"}"#,
            r#"{"alg":7}"#,
            r#"{"alg":"RS256","kid":7}"#,
            r#"{"alg":"RS256","typ":null}"#,
        ] {
            assert_eq!(parse(bad), Err(AuthError::Malformed), "{bad}");
        }
        let deep = format!(
            r#"{{"alg":"RS256","x":{}1{}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert_eq!(parse(&deep), Err(AuthError::Malformed));
    }

    #[test]
    fn access_token_type_follows_rfc9068() {
        assert!(is_access_token_type(Some("at+jwt")));
        assert!(is_access_token_type(Some("application/AT+JWT")));
        assert!(!is_access_token_type(Some("JWT")));
        assert!(!is_access_token_type(None));
    }
}
