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

/// The JOSE header members this service reads.
#[derive(Deserialize)]
struct JoseHeader<'a> {
    #[serde(borrow)]
    alg: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    kid: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    typ: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    crit: Option<Value>,
    // invariant: `jku`, `x5u`, `jwk` and `x5c` are never read. Keys come from the configured
    // JWKS only, never from the token.
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
        let header: JoseHeader<'_> =
            serde_json::from_slice(&header_json).map_err(|_| AuthError::Malformed)?;
        facts.kid = header.kid.as_deref().map(str::to_owned);
        let alg = asymmetric_algorithm(&header.alg)?;
        if header.crit.is_some() {
            // RFC 7515 §4.1.11: an unknown critical extension makes the token invalid, and
            // this service implements none.
            return Err(AuthError::UnsupportedCritical);
        }
        let payload_json = decode_segment(payload_b64)?;
        let StrictClaims(claims) =
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

/// Seconds since the Unix epoch, as `exp` and `nbf` count them.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A claims object that refuses duplicate top-level names. RFC 7519 §4 lets a parser
/// either reject them or keep the last; two parsers picking differently (an upstream
/// reading the forwarded payload, say) would disagree on who the token is for, so reject.
struct StrictClaims(Claims);

impl<'de> Deserialize<'de> for StrictClaims {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Claims;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object of claims")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Claims, A::Error> {
                let mut claims = Claims::new();
                while let Some(name) = map.next_key::<String>()? {
                    let value: Value = map.next_value()?;
                    if claims.insert(name, value).is_some() {
                        return Err(serde::de::Error::custom("duplicate claim"));
                    }
                }
                Ok(claims)
            }
        }
        deserializer.deserialize_map(Visitor).map(StrictClaims)
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
        .and_then(Value::as_f64)
        .ok_or(AuthError::MissingClaim)?;
    if exp + leeway <= now {
        return Err(AuthError::Expired);
    }
    match claims.get("nbf") {
        None => {}
        Some(nbf) => {
            let nbf = nbf.as_f64().ok_or(AuthError::MissingClaim)?;
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

    const NOW: f64 = 1_800_000_000.0;

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
        json!({"iss": "https://idp.example/", "aud": "api", "exp": NOW + 300.0, "sub": "u1"})
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
        assert_eq!(check_claims(&claims(base()), &issuer(), NOW), Ok(()));
    }

    #[test]
    fn expired_token_is_rejected_past_the_leeway_only() {
        let i = issuer();
        assert_eq!(
            check_claims(&with("exp", json!(NOW - 59.0)), &i, NOW),
            Ok(())
        );
        assert_eq!(
            check_claims(&with("exp", json!(NOW - 61.0)), &i, NOW),
            Err(AuthError::Expired)
        );
    }

    #[test]
    fn future_nbf_is_rejected() {
        let i = issuer();
        assert_eq!(
            check_claims(&with("nbf", json!(NOW + 30.0)), &i, NOW),
            Ok(())
        );
        assert_eq!(
            check_claims(&with("nbf", json!(NOW + 120.0)), &i, NOW),
            Err(AuthError::NotYetValid)
        );
        assert_eq!(
            check_claims(&with("nbf", json!("soon")), &i, NOW),
            Err(AuthError::MissingClaim)
        );
    }

    #[test]
    fn exp_and_aud_are_required() {
        let i = issuer();
        assert_eq!(
            check_claims(&without("exp"), &i, NOW),
            Err(AuthError::MissingClaim)
        );
        assert_eq!(
            check_claims(&without("aud"), &i, NOW),
            Err(AuthError::MissingClaim)
        );
        assert_eq!(
            check_claims(&with("exp", json!("1800000300")), &i, NOW),
            Err(AuthError::MissingClaim)
        );
    }

    #[test]
    fn aud_may_be_a_string_or_an_array() {
        let i = issuer();
        assert_eq!(
            check_claims(&with("aud", json!(["x", "other"])), &i, NOW),
            Ok(())
        );
        assert_eq!(
            check_claims(&with("aud", json!(["x", "y"])), &i, NOW),
            Err(AuthError::WrongAudience)
        );
        assert_eq!(
            check_claims(&with("aud", json!([])), &i, NOW),
            Err(AuthError::WrongAudience)
        );
        assert_eq!(
            check_claims(&with("aud", json!("nope")), &i, NOW),
            Err(AuthError::WrongAudience)
        );
        assert_eq!(
            check_claims(&with("aud", json!(["api", 7])), &i, NOW),
            Err(AuthError::MissingClaim)
        );
    }

    #[test]
    fn wrong_issuer_is_rejected() {
        assert_eq!(
            check_claims(&with("iss", json!("https://evil.example/")), &issuer(), NOW),
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
        let parse = |s: &str| serde_json::from_str::<StrictClaims>(s).map(|c| c.0);
        assert!(parse(r#"{"sub":"a","sub":"b"}"#).is_err());
        assert!(parse(r#"[1,2]"#).is_err());
        assert!(parse(r#""text""#).is_err());
        assert_eq!(parse(r#"{"sub":"a","n":{"x":1}}"#).unwrap().len(), 2);
    }

    #[test]
    fn duplicate_header_members_are_refused() {
        assert!(serde_json::from_str::<JoseHeader<'_>>(r#"{"alg":"none","alg":"RS256"}"#).is_err());
        assert!(serde_json::from_str::<JoseHeader<'_>>(r#"{"alg":"RS256","kid":"a"}"#).is_ok());
    }

    #[test]
    fn access_token_type_follows_rfc9068() {
        assert!(is_access_token_type(Some("at+jwt")));
        assert!(is_access_token_type(Some("application/AT+JWT")));
        assert!(!is_access_token_type(Some("JWT")));
        assert!(!is_access_token_type(None));
    }
}
