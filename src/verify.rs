//! Token verification: header checks, key selection, signature, then claims.
//!
//! The signature is checked with the key aws-lc parsed when the JWKS loaded
//! ([`crate::jwks::VerifyingKey::verify`]). The claim checks are written out here rather
//! than left to `jsonwebtoken::decode` (which re-parses the key on every call), so that each
//! failure maps to exactly one [`AuthError`] and the payload is parsed once.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use url::Url;

use crate::binding::dpop::DpopMode;
use crate::claims::{self, Claims};
use crate::clock::Clock;
use crate::error::AuthError;
use crate::introspection::{IntrospectionConfig, Introspector};
use crate::jwks::{JwksCache, JwksError, JwksSettings, JwksSource, KeySet};
use crate::token_source::AccessToken;
use crate::trace::TokenCheck;

/// One trusted token issuer: what its tokens must say and where its keys come from.
/// Built by the configuration; read by verification and the JWKS cache.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// Exact `iss` value.
    pub issuer: String,
    /// The issuer parsed as a URL, the base for discovery.
    pub issuer_url: Url,
    /// Accepted audiences; never empty.
    pub audiences: Vec<String>,
    pub jwks: JwksSource,
    /// Allowed `alg` values; never empty, never `none` or HMAC.
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    /// Require RFC 9068 `typ: at+jwt`.
    pub require_access_token_type: bool,
    /// Whether the issuer's tokens may, or must, be DPoP-bound.
    pub dpop: DpopMode,
    /// RFC 7662 introspection of this issuer's opaque tokens (and of its JWTs, if so set).
    pub introspection: Option<IntrospectionConfig>,
}

impl IssuerConfig {
    /// The JWKS cache for this issuer's keys.
    pub fn jwks_cache(&self, settings: &JwksSettings) -> Result<Arc<JwksCache>, JwksError> {
        JwksCache::new(&self.issuer, &self.issuer_url, &self.jwks, settings)
    }

    /// A JWKS cache that holds `keys` for good and never fetches (benchmarks, fuzzing).
    pub fn fixed_jwks_cache(
        &self,
        settings: &JwksSettings,
        keys: KeySet,
    ) -> Result<Arc<JwksCache>, JwksError> {
        JwksCache::with_fixed_keys(&self.issuer, &self.issuer_url, settings, keys)
    }

    /// The introspection client of this issuer, when it introspects.
    pub fn introspector(&self, allow_http: bool) -> Result<Option<Arc<Introspector>>, String> {
        self.introspection
            .as_ref()
            .map(|x| Introspector::new(&self.issuer, &self.issuer_url, x, allow_http))
            .transpose()
    }

    fn leeway_millis(&self) -> u64 {
        u64::try_from(self.leeway.as_millis()).unwrap_or(u64::MAX)
    }
}

/// What a successful verification yields: the claims, and the facts a cached
/// verification is re-checked with, read once here so nothing re-parses them.
#[derive(Debug)]
pub struct Verified {
    pub claims: Claims,
    /// `kid` of the key that verified the token, if the token named one.
    pub kid: Option<String>,
    pub alg: Algorithm,
    /// [`crate::jwks::VerifyingKey::fingerprint`] of the key that verified the token.
    pub key_fingerprint: u64,
    /// `exp`, in Unix seconds.
    pub exp: u64,
    /// `nbf`, in Unix seconds, when the token has one.
    pub nbf: Option<u64>,
    /// The issuer's clock leeway in milliseconds.
    pub leeway_ms: u64,
    /// Where the payload segment sits in the token.
    pub payload: Range<usize>,
    /// The token's `aud` values. Verification does not judge them: the route does, against
    /// its own audiences or the issuer's ([`Verifier::audiences`], [`accept_audience`]).
    pub audiences: Vec<String>,
}

/// Whether a token expiring at `exp` (Unix seconds) is still valid at `now_ms` (Unix
/// milliseconds), `leeway_ms` of clock skew tolerated.
pub fn before_expiry(exp: u64, leeway_ms: u64, now_ms: u64) -> bool {
    exp.saturating_mul(1000).saturating_add(leeway_ms) > now_ms
}

/// Whether a token not valid before `nbf` (Unix seconds) is valid at `now_ms`.
pub fn after_not_before(nbf: Option<u64>, leeway_ms: u64, now_ms: u64) -> bool {
    nbf.is_none_or(|nbf| nbf.saturating_mul(1000) <= now_ms.saturating_add(leeway_ms))
}

/// One trusted issuer with its keys, and its introspection client when it introspects.
pub struct Issuer {
    pub config: IssuerConfig,
    pub jwks: Arc<JwksCache>,
    pub introspector: Option<Arc<Introspector>>,
}

/// Verifies tokens from a fixed set of issuers.
pub struct Verifier {
    /// Keyed by the exact `iss` string.
    issuers: HashMap<String, Issuer>,
    clock: Clock,
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
        let mut members = claims::parse_object(json).ok_or(AuthError::Malformed)?;
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
    /// The last check verification began: the one that failed, when one did.
    pub reached: TokenCheck,
}

impl Verifier {
    /// A verifier reading the system clock.
    pub fn new(issuers: Vec<Issuer>) -> Self {
        Self::with_clock(issuers, Clock::system())
    }

    /// A verifier that compares `exp` and `nbf` with `clock`.
    pub fn with_clock(issuers: Vec<Issuer>, clock: Clock) -> Self {
        Verifier {
            issuers: issuers
                .into_iter()
                .map(|i| (i.config.issuer.clone(), i))
                .collect(),
            clock,
        }
    }

    /// The audiences `iss` accepts, when it is a configured issuer.
    pub fn audiences(&self, iss: &str) -> Option<&[String]> {
        self.issuers.get(iss).map(|i| i.config.audiences.as_slice())
    }

    /// The clock verification reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Every issuer's settings.
    pub fn issuer_configs(&self) -> impl Iterator<Item = &IssuerConfig> {
        self.issuers.values().map(|i| &i.config)
    }

    /// The issuer named `iss`, with its keys.
    pub fn issuer(&self, iss: &str) -> Option<&Issuer> {
        self.issuers.get(iss)
    }

    /// Every issuer's JWKS cache.
    pub fn caches(&self) -> impl Iterator<Item = &Arc<JwksCache>> {
        self.issuers.values().map(|i| &i.jwks)
    }

    /// Every issuer's introspection client.
    pub fn introspectors(&self) -> impl Iterator<Item = &Arc<Introspector>> {
        self.issuers
            .values()
            .filter_map(|i| i.introspector.as_ref())
    }

    /// The issuer tokens that are not a JWS belong to: the one whose introspection takes
    /// opaque tokens (the configuration allows at most one).
    pub fn opaque_issuer(&self) -> Option<&Issuer> {
        self.issuers.values().find(|i| {
            i.introspector
                .as_ref()
                .is_some_and(|x| x.config().opaque_tokens)
        })
    }

    /// Judges an active introspection answer of `issuer` as a JWT's claims are judged:
    /// `iss` (absent means the answering issuer), `exp` required, `nbf`, `aud` a string
    /// or an array of strings.
    pub fn check_introspected(
        &self,
        issuer: &Issuer,
        claims: &Claims,
        facts: &mut TokenFacts,
    ) -> Result<Verified, AuthError> {
        let mut claims = claims.clone();
        claims.remove("active");
        // An access token only: a refresh token the server also answers for is not one.
        let kind = |name: &str| {
            claims
                .get(name)
                .map(|v| v.as_str().map(str::to_ascii_lowercase))
        };
        let token_type = kind("token_type");
        let access_token = match &token_type {
            None => true,
            Some(Some(t)) => t == "bearer" || t == "dpop",
            Some(None) => false,
        };
        if !access_token {
            return Err(AuthError::WrongTokenType);
        }
        if kind("typ").is_some_and(|t| t.as_deref() != Some("bearer")) {
            return Err(AuthError::WrongTokenType);
        }
        // A DPoP token type must come with the key it is bound to.
        if token_type == Some(Some("dpop".to_owned()))
            && claims.get("cnf").and_then(|c| c.get("jkt")).is_none()
        {
            return Err(AuthError::UnsupportedConfirmation);
        }
        match claims.get("iss") {
            None => {
                claims.insert("iss".into(), Value::String(issuer.config.issuer.clone()));
            }
            Some(Value::String(iss)) if *iss == issuer.config.issuer => {}
            Some(_) => return Err(AuthError::WrongIssuer),
        }
        facts.iss = Some(issuer.config.issuer.clone());
        let (dates, audiences) = check_registered_claims(
            &claims,
            &issuer.config,
            self.clock.now_millis(),
            &mut facts.reached,
        )?;
        let audiences = audiences.into_iter().map(str::to_owned).collect();
        Ok(Verified {
            audiences,
            claims,
            kid: None,
            alg: Algorithm::RS256,
            key_fingerprint: 0,
            exp: dates.exp,
            nbf: dates.nbf,
            leeway_ms: issuer.config.leeway_millis(),
            payload: 0..0,
        })
    }

    /// Verifies `token`: header, key, signature, `exp`, `nbf`, `iss`, and the shape of
    /// `aud` (which audiences are accepted is a route decision). `facts` is filled with the
    /// unverified `kid` and `iss` as soon as they are known, for the decision log.
    pub async fn verify(
        &self,
        token: AccessToken<'_>,
        facts: &mut TokenFacts,
    ) -> Result<Verified, AuthError> {
        let token = token.as_str();
        facts.reached = TokenCheck::Format;
        let Some((header_b64, payload_b64, signature_b64)) = claims::compact_segments(token) else {
            return Err(AuthError::Malformed);
        };
        let header_json = decode_segment(header_b64)?;
        let header = JoseHeader::parse(&header_json)?;
        facts.kid = header.kid.clone();
        facts.reached = TokenCheck::Algorithm;
        let alg = asymmetric_algorithm(&header.alg)?;
        facts.reached = TokenCheck::Critical;
        if header.crit {
            // RFC 7515 §4.1.11: an unknown critical extension makes the token invalid, and
            // this service implements none.
            return Err(AuthError::UnsupportedCritical);
        }
        facts.reached = TokenCheck::Payload;
        let payload_json = decode_segment(payload_b64)?;
        // RFC 7515 §5.2 decodes every segment before validating anything: a signature
        // that is not base64url makes the token malformed, whatever the keys hold, and
        // costs no key lookup or fetch.
        let signature = decode_segment(signature_b64)?;
        let claims = claims::parse_claims(&payload_json).map_err(|e| match e {
            claims::ObjectError::Malformed => AuthError::Malformed,
            // Well-formed JSON whose numbers (a 400-digit `exp`) no claim check can read.
            claims::ObjectError::NumberOutOfRange => AuthError::MissingClaim,
        })?;

        // The unverified `iss` only chooses which keys to try; it is compared exactly with
        // the configured issuers before anything is fetched.
        let iss = claims.get("iss").and_then(Value::as_str);
        facts.iss = iss.map(str::to_owned);
        facts.reached = TokenCheck::Issuer;
        let issuer = iss
            .and_then(|iss| self.issuers.get(iss))
            .ok_or(AuthError::WrongIssuer)?;
        // invariant: allowed algorithms come from config, never from the token header.
        facts.reached = TokenCheck::AllowedAlgorithm;
        if !issuer.config.algorithms.contains(&alg) {
            return Err(AuthError::DisallowedAlgorithm);
        }
        facts.reached = TokenCheck::TokenType;
        if issuer.config.require_access_token_type && !is_access_token_type(header.typ.as_deref()) {
            return Err(AuthError::WrongTokenType);
        }

        facts.reached = TokenCheck::Key;
        let kid = header.kid.as_deref();
        let keys = issuer.jwks.lookup(kid, alg).await?;
        let key = keys.select(kid, alg).ok_or(AuthError::UnknownKey)?;
        let signed = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        facts.reached = TokenCheck::Signature;
        if !key.verify(alg, signed, &signature) {
            return Err(AuthError::BadSignature);
        }

        let (dates, audiences) = check_registered_claims(
            &claims,
            &issuer.config,
            self.clock.now_millis(),
            &mut facts.reached,
        )?;
        let audiences = audiences.into_iter().map(str::to_owned).collect();
        let payload_start = header_b64.len() + 1;
        Ok(Verified {
            audiences,
            claims,
            kid: facts.kid.clone(),
            alg,
            key_fingerprint: key.fingerprint,
            exp: dates.exp,
            nbf: dates.nbf,
            leeway_ms: issuer.config.leeway_millis(),
            payload: payload_start..payload_start + payload_b64.len(),
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
    crate::alg::asymmetric_algorithm(name).ok_or(AuthError::DisallowedAlgorithm)
}

/// RFC 9068 §2.1: `at+jwt`, optionally with the `application/` prefix, case-insensitive.
fn is_access_token_type(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| {
        let t = t.strip_prefix("application/").unwrap_or(t);
        t.eq_ignore_ascii_case("at+jwt")
    })
}

/// What a token's registered claims say, once checked: its validity window (Unix
/// seconds) and its audiences.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dates {
    pub exp: u64,
    pub nbf: Option<u64>,
}

/// Checks `exp`, `nbf`, `iss` and `aud` against the issuer's configuration at `now_ms`
/// (Unix milliseconds), and returns the dates it read: the registered-claim checks of
/// [`Verifier::verify`] alone, for their tests.
#[cfg(test)]
fn check_claims(claims: &Claims, issuer: &IssuerConfig, now_ms: u64) -> Result<Dates, AuthError> {
    let (dates, audiences) =
        check_registered_claims(claims, issuer, now_ms, &mut TokenCheck::default())?;
    accept_audience(audiences.iter().copied(), &issuer.audiences)?;
    Ok(dates)
}

/// Checks `exp`, `nbf` and `iss`, and that `aud` is a string or an array of strings;
/// returns the dates and the audiences. Which audiences are accepted is the route's
/// choice ([`accept_audience`]).
fn check_registered_claims<'c>(
    claims: &'c Claims,
    issuer: &IssuerConfig,
    now_ms: u64,
    reached: &mut TokenCheck,
) -> Result<(Dates, Vec<&'c str>), AuthError> {
    let leeway_ms = issuer.leeway_millis();
    *reached = TokenCheck::Expiry;
    let exp = claims
        .get("exp")
        .and_then(claims::numeric_date)
        .ok_or(AuthError::MissingClaim)?;
    if !before_expiry(exp, leeway_ms, now_ms) {
        return Err(AuthError::Expired);
    }
    *reached = TokenCheck::NotBefore;
    let nbf = match claims.get("nbf") {
        None => None,
        Some(nbf) => Some(claims::numeric_date(nbf).ok_or(AuthError::MissingClaim)?),
    };
    if !after_not_before(nbf, leeway_ms, now_ms) {
        return Err(AuthError::NotYetValid);
    }
    // The issuer was chosen by this very `iss` in `verify`; the tests pass claims of
    // their own.
    if claims.get("iss").and_then(Value::as_str) != Some(issuer.issuer.as_str()) {
        return Err(AuthError::WrongIssuer);
    }
    *reached = TokenCheck::AudienceClaim;
    let audiences = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(auds)) => auds
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<&str>>>()
            .ok_or(AuthError::MissingClaim)?,
        _ => return Err(AuthError::MissingClaim),
    };
    Ok((Dates { exp, nbf }, audiences))
}

/// Passes when one of the token's `audiences` is `accepted`.
pub fn accept_audience<'a>(
    mut audiences: impl Iterator<Item = &'a str>,
    accepted: &[String],
) -> Result<(), AuthError> {
    if audiences.any(|aud| accepted.iter().any(|a| a == aud)) {
        Ok(())
    } else {
        Err(AuthError::WrongAudience)
    }
}

#[cfg(test)]
mod tests;
