//! An OpenID Shared Signals receiver: Security Event Tokens (RFC 8417) pushed over HTTP
//! (RFC 8935) by configured transmitters become revocations.
//!
//! A push is authorised by the exact `Authorization` value configured for a transmitter
//! (compared in constant time), then its SET is verified as strictly as an access token:
//! `typ: secevent+jwt`, an allowed asymmetric `alg`, no `crit`, a signature by a key of
//! the transmitter's JWKS, `iss` that transmitter, `aud` its configured audience, `iat`
//! neither in the future nor older than `max_age`, a `jti` not received before (within
//! `max_age`), an `exp` (if any) not past, and an `events` object.
//!
//! Events: CAEP `session-revoked` and `credential-change`, RISC `account-disabled`,
//! `account-purged`, `sessions-revoked` and `tokens-revoked`, and the SSF `verification`
//! event (accepted, nothing revoked). Each names its subject (RFC 9493) in the SET's
//! `sub_id` or the event's `subject`: `iss_sub` revokes the subject's tokens; `email`
//! the tokens with that `email` claim; `opaque` the subject `sub` of that id;
//! `jwt_id` one token (`jti`); a `complex` subject its `session` (an `opaque` id: the
//! tokens of that `sid`), else its `user`. The cut-off is the later of the SET's `iat` and
//! the event's `event_timestamp`, never later than now. An event of another type is
//! acknowledged and counted as ignored; a known event whose subject cannot be mapped is
//! refused (400 `invalid_request`), so the transmitter learns nothing was revoked.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::claims::{self, Claims};
use crate::clock::Clock;
use crate::config::{SsfConfig, TransmitterConfig};
use crate::jwks::{JwksCache, JwksSettings, JwksSource};
use crate::revocation::{Kind, Revocation, RevocationStore};
use crate::wire::httpd::{BodyError, HttpResponse};

/// The largest SET read.
pub const MAX_SET_BYTES: usize = 64 * 1024;

const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";
const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";

/// The events counted, by their short names; `other` for every other type.
const EVENTS: [&str; 8] = [
    "session-revoked",
    "credential-change",
    "account-disabled",
    "account-purged",
    "sessions-revoked",
    "tokens-revoked",
    "verification",
    "other",
];

/// How a SET ended.
const RESULTS: [&str; 6] = [
    "applied",
    "ignored",
    "unmapped",
    "invalid",
    "unauthorized",
    "unavailable",
];

/// SETs received, by event and result.
#[derive(Debug, Default)]
pub struct SsfStats {
    counts: [[AtomicU64; RESULTS.len()]; EVENTS.len()],
}

impl SsfStats {
    fn count(&self, event: &str, result: &str) {
        let e = EVENTS
            .iter()
            .position(|x| *x == event)
            .unwrap_or(EVENTS.len() - 1);
        if let Some(r) = RESULTS.iter().position(|x| *x == result) {
            self.counts[e][r].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus lines.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP jwt_authz_ssf_events_total Security Event Tokens received, by event and result (a refused SET counts under event other).\n# TYPE jwt_authz_ssf_events_total counter"
        );
        for (e, event) in EVENTS.iter().enumerate() {
            for (r, result) in RESULTS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "jwt_authz_ssf_events_total{{event=\"{event}\",result=\"{result}\"}} {}",
                    self.counts[e][r].load(Ordering::Relaxed)
                );
            }
        }
    }
}

/// A refusal, as RFC 8935 §2.3 words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub err: &'static str,
    pub description: &'static str,
}

fn refuse(err: &'static str, description: &'static str) -> Refusal {
    let status = match err {
        "authentication_failed" => StatusCode::UNAUTHORIZED,
        "access_denied" => StatusCode::FORBIDDEN,
        "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    Refusal {
        status,
        err,
        description,
    }
}

struct Transmitter {
    config: TransmitterConfig,
    jwks: OnceCell<Arc<JwksCache>>,
}

/// The receiver: transmitters, the store events revoke into, and the `jti`s seen.
pub struct Receiver {
    transmitters: Vec<Transmitter>,
    store: Arc<RevocationStore>,
    jwks_settings: JwksSettings,
    max_age: Duration,
    clock: Clock,
    seen: Mutex<HashMap<(String, String), u64>>,
    pub stats: Arc<SsfStats>,
    path: String,
}

impl Receiver {
    pub fn new(
        config: &SsfConfig,
        store: Arc<RevocationStore>,
        jwks_settings: JwksSettings,
        clock: Clock,
    ) -> Arc<Receiver> {
        Arc::new(Receiver {
            transmitters: config
                .transmitters
                .iter()
                .map(|t| Transmitter {
                    config: t.clone(),
                    jwks: OnceCell::new(),
                })
                .collect(),
            store,
            jwks_settings,
            max_age: config.max_age,
            clock,
            seen: Mutex::new(HashMap::new()),
            stats: Arc::new(SsfStats::default()),
            path: config.path.clone(),
        })
    }

    /// Answers one HTTP request to the push listener.
    pub async fn handle(
        &self,
        parts: &http::request::Parts,
        body: Result<Bytes, BodyError>,
    ) -> HttpResponse {
        if parts.uri.path() != self.path || parts.uri.query().is_some() {
            return plain(StatusCode::NOT_FOUND, "not found");
        }
        if parts.method != http::Method::POST {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "POST only");
        }
        match self.receive(parts, body).await {
            Ok(()) => plain(StatusCode::ACCEPTED, ""),
            Err(refusal) => {
                // Pushes nobody authorised are not worth a warning each: anyone can send one.
                if refusal.status == StatusCode::UNAUTHORIZED {
                    tracing::debug!(
                        err = refusal.err,
                        reason = refusal.description,
                        "security event push refused"
                    );
                } else {
                    tracing::warn!(
                        err = refusal.err,
                        reason = refusal.description,
                        "security event token refused"
                    );
                }
                let body =
                    serde_json::json!({"err": refusal.err, "description": refusal.description})
                        .to_string();
                let mut response = http::Response::new(Full::new(Bytes::from(body)));
                *response.status_mut() = refusal.status;
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                if refusal.status == StatusCode::UNAUTHORIZED {
                    response.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        http::HeaderValue::from_static("Bearer realm=\"ssf\""),
                    );
                }
                response
            }
        }
    }

    async fn receive(
        &self,
        parts: &http::request::Parts,
        body: Result<Bytes, BodyError>,
    ) -> Result<(), Refusal> {
        let counted = |result: &'static str| {
            move |refusal: Refusal| {
                self.stats.count("other", result);
                refusal
            }
        };
        let transmitter = self.authorised(parts).map_err(counted("unauthorized"))?;
        let set = read_request(parts, body).map_err(counted("invalid"))?;
        let claims = self.verify(transmitter, &set).await.map_err(|r| {
            let result = if r.err == "unavailable" {
                "unavailable"
            } else {
                "invalid"
            };
            counted(result)(r)
        })?;
        let applied = self.apply(transmitter, &claims).await;
        if applied.as_ref().is_err_and(|r| r.err == "unavailable") {
            self.release(&transmitter.config.issuer, &claims);
        }
        applied
    }

    /// The transmitter whose configured `Authorization` value the push carries.
    fn authorised(&self, parts: &http::request::Parts) -> Result<&Transmitter, Refusal> {
        let mut values = parts.headers.get_all(http::header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(refuse(
                "authentication_failed",
                "one Authorization header is required",
            ));
        };
        self.transmitters
            .iter()
            .find(|t| t.config.authorization.matches(value.as_bytes()))
            .ok_or(refuse(
                "authentication_failed",
                "the Authorization header authorises no transmitter",
            ))
    }

    async fn keys(&self, transmitter: &Transmitter) -> Result<Arc<JwksCache>, Refusal> {
        let unavailable = refuse("unavailable", "the transmitter's keys are not available");
        let cache = transmitter
            .jwks
            .get_or_try_init(|| async {
                let uri = match &transmitter.config.jwks_uri {
                    Some(uri) => uri.clone(),
                    None => self.discover(&transmitter.config).await.map_err(|why| {
                        tracing::warn!(reason = %why, "ssf: transmitter configuration not read");
                        unavailable.clone()
                    })?,
                };
                let cache = JwksCache::new(
                    &transmitter.config.issuer,
                    &transmitter.config.issuer_url,
                    &JwksSource::Uri(uri),
                    &self.jwks_settings,
                )
                .map_err(|_| unavailable.clone())?;
                // Refreshed like an issuer's keys, so a key the transmitter withdraws
                // stops being trusted.
                tokio::spawn(Arc::clone(&cache).run_refresher());
                Ok::<_, Refusal>(cache)
            })
            .await?;
        if cache.current().is_none()
            && let Err(e) = cache.refresh().await
        {
            tracing::warn!(error = %e, "ssf: transmitter keys not loaded");
            return Err(unavailable);
        }
        Ok(Arc::clone(cache))
    }

    /// `jwks_uri` of the transmitter's `/.well-known/ssf-configuration`.
    async fn discover(&self, t: &TransmitterConfig) -> Result<url::Url, String> {
        let client = reqwest::Client::builder()
            .timeout(self.jwks_settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        crate::fetch_url::discovered_url(
            &client,
            (&t.issuer, &t.issuer_url),
            "ssf-configuration",
            "jwks_uri",
            self.jwks_settings.max_bytes,
            self.jwks_settings.insecure_allow_http,
        )
        .await
    }

    /// Verifies `set` as `transmitter`'s: header, key, signature, then claims.
    async fn verify(&self, transmitter: &Transmitter, set: &str) -> Result<Claims, Refusal> {
        let malformed = || {
            refuse(
                "invalid_request",
                "the SET is not a compact JWS with a JSON header and payload",
            )
        };
        let (header_b64, payload_b64, signature_b64) =
            claims::compact_segments(set).ok_or_else(malformed)?;
        let decode = |s: &str| {
            if s.is_empty() {
                return Err(malformed());
            }
            URL_SAFE_NO_PAD.decode(s).map_err(|_| malformed())
        };
        let header = claims::parse_object(&decode(header_b64)?).ok_or_else(malformed)?;
        let payload = decode(payload_b64)?;
        let signature = decode(signature_b64)?;
        let text = |name: &str| match header.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(malformed()),
        };
        let typ = text("typ")?;
        if !typ.is_some_and(|t| {
            let t = t.strip_prefix("application/").unwrap_or(t);
            t.eq_ignore_ascii_case("secevent+jwt")
        }) {
            return Err(refuse(
                "invalid_request",
                "the SET's typ is not secevent+jwt",
            ));
        }
        if header.contains_key("crit") {
            return Err(refuse(
                "invalid_request",
                "the SET names a critical header parameter",
            ));
        }
        let alg = text("alg")?
            .and_then(crate::alg::asymmetric_algorithm)
            .filter(|alg| transmitter.config.algorithms.contains(alg))
            .ok_or(refuse(
                "invalid_key",
                "the SET's alg is not one the transmitter may use",
            ))?;
        let kid = text("kid")?;
        let claims = claims::parse_claims(&payload).map_err(|_| malformed())?;
        // The issuer is checked before any key is fetched: a push authorised for one
        // transmitter cannot make the receiver fetch another's keys.
        if claims.get("iss").and_then(Value::as_str) != Some(transmitter.config.issuer.as_str()) {
            return Err(refuse(
                "invalid_issuer",
                "the SET's iss is not the transmitter the push is authorised for",
            ));
        }
        let cache = self.keys(transmitter).await?;
        let keys = cache.lookup(kid, alg).await.map_err(|_| {
            refuse(
                "invalid_key",
                "no key of the transmitter matches the SET's kid and alg",
            )
        })?;
        let key = keys.select(kid, alg).ok_or(refuse(
            "invalid_key",
            "no key of the transmitter matches the SET's kid and alg",
        ))?;
        let signed = &set.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        if !key.verify(alg, signed, &signature) {
            return Err(refuse("invalid_key", "the SET's signature does not verify"));
        }
        let audience = &transmitter.config.audience;
        let aud_ok = match claims.get("aud") {
            Some(Value::String(aud)) => aud == audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(refuse(
                "invalid_audience",
                "the SET's aud is not this receiver",
            ));
        }
        let now_ms = self.clock.now_millis();
        let iat_ms = claims
            .get("iat")
            .and_then(claims::numeric_date)
            .ok_or(refuse("invalid_request", "the SET has no iat"))?
            .saturating_mul(1000);
        const SKEW_MS: u64 = 60_000;
        if iat_ms > now_ms + SKEW_MS {
            return Err(refuse("invalid_request", "the SET's iat is in the future"));
        }
        let max_age_ms = u64::try_from(self.max_age.as_millis()).unwrap_or(u64::MAX);
        if iat_ms.saturating_add(max_age_ms) < now_ms {
            return Err(refuse(
                "invalid_request",
                "the SET is older than this receiver accepts",
            ));
        }
        if let Some(exp) = claims.get("exp") {
            let exp_ms = claims::numeric_date(exp)
                .ok_or(refuse(
                    "invalid_request",
                    "the SET's exp is not a NumericDate",
                ))?
                .saturating_mul(1000);
            if exp_ms + SKEW_MS <= now_ms {
                return Err(refuse("invalid_request", "the SET has expired"));
            }
        }
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .filter(|j| !j.is_empty())
            .ok_or(refuse("invalid_request", "the SET has no jti"))?;
        if !matches!(claims.get("events"), Some(Value::Object(events)) if !events.is_empty()) {
            return Err(refuse("invalid_request", "the SET has no events object"));
        }
        self.reserve(
            &transmitter.config.issuer,
            jti,
            now_ms + max_age_ms + SKEW_MS,
            now_ms,
        )?;
        Ok(claims)
    }

    /// Records the SET's `jti`; refused when it was received before. A SET that is then
    /// not applied gives its `jti` back ([`Receiver::release`]), so the transmitter's retry
    /// is taken.
    fn reserve(&self, iss: &str, jti: &str, until_ms: u64, now_ms: u64) -> Result<(), Refusal> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= 100_000 {
            seen.retain(|_, until| *until > now_ms);
        }
        let key = (iss.to_owned(), jti.to_owned());
        if seen.get(&key).is_some_and(|until| *until > now_ms) {
            return Err(refuse(
                "invalid_request",
                "the SET's jti was received before",
            ));
        }
        seen.insert(key, until_ms);
        Ok(())
    }

    fn release(&self, iss: &str, claims: &Claims) {
        if let Some(jti) = claims.get("jti").and_then(Value::as_str) {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            seen.remove(&(iss.to_owned(), jti.to_owned()));
        }
    }

    /// Turns each event into revocations, all mapped before any is stored.
    async fn apply(&self, transmitter: &Transmitter, claims: &Claims) -> Result<(), Refusal> {
        let now_ms = self.clock.now_millis();
        let iat_ms = claims
            .get("iat")
            .and_then(claims::numeric_date)
            .unwrap_or(0)
            * 1000;
        let Some(Value::Object(events)) = claims.get("events") else {
            return Err(refuse("invalid_request", "the SET has no events object"));
        };
        let mut planned: Vec<(&'static str, Vec<Revocation>)> = Vec::new();
        for (event_type, event) in events {
            let short = short_name(event_type);
            if short == "verification" {
                planned.push((short, Vec::new()));
                continue;
            }
            if short == "other" || !is_revoking(short, event) {
                self.stats.count(short, "ignored");
                continue;
            }
            let subject = event
                .get("subject")
                .or_else(|| claims.get("sub_id"))
                .ok_or_else(|| {
                    self.stats.count(short, "unmapped");
                    refuse("invalid_request", "the event names no subject")
                })?;
            let stamp_ms = match event.get("event_timestamp") {
                None => 0,
                Some(stamp) => claims::numeric_date(stamp)
                    .map(|s| s.saturating_mul(1000))
                    .filter(|&ms| ms <= iat_ms.saturating_add(60_000))
                    .ok_or_else(|| {
                        self.stats.count(short, "invalid");
                        refuse(
                            "invalid_request",
                            "the event's event_timestamp is not a NumericDate at or before the SET's iat",
                        )
                    })?,
            };
            let cutoff_ms = iat_ms.max(stamp_ms).min(now_ms);
            let revocations = self
                .revocations_for(transmitter, short, subject, cutoff_ms)
                .ok_or_else(|| {
                    self.stats.count(short, "unmapped");
                    refuse(
                        "invalid_request",
                        "the event's subject format cannot be mapped to tokens",
                    )
                })?;
            planned.push((short, revocations));
        }
        for (short, revocations) in planned {
            for r in revocations {
                if let Err(e) = self.store.revoke(r, now_ms).await {
                    tracing::warn!(error = %e, "ssf: revocation not stored");
                    self.stats.count(short, "unavailable");
                    return Err(refuse("unavailable", "the revocation store is unavailable"));
                }
            }
            self.stats.count(short, "applied");
        }
        Ok(())
    }

    /// The revocations `subject` (RFC 9493) stands for.
    fn revocations_for(
        &self,
        t: &Transmitter,
        event: &str,
        subject: &Value,
        cutoff_ms: u64,
    ) -> Option<Vec<Revocation>> {
        let member = |name: &str| {
            subject
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let every_issuer = |kind: Kind, value: &str| {
            t.config
                .token_issuers
                .iter()
                .map(|issuer| self.revocation(kind, issuer, value, cutoff_ms))
                .collect::<Vec<_>>()
        };
        let own_issuer = |iss: &str| t.config.token_issuers.iter().any(|i| i == iss);
        match member("format") {
            Some("iss_sub") => {
                let iss = member("iss")?;
                if !own_issuer(iss) {
                    return None;
                }
                Some(vec![self.revocation(
                    Kind::Sub,
                    iss,
                    member("sub")?,
                    cutoff_ms,
                )])
            }
            Some("email") => Some(every_issuer(Kind::Email, member("email")?)),
            Some("opaque") => Some(every_issuer(Kind::Sub, member("id")?)),
            Some("jwt_id") => {
                let iss = member("iss")?;
                own_issuer(iss).then_some(())?;
                Some(vec![self.revocation(
                    Kind::Jti,
                    iss,
                    member("jti")?,
                    cutoff_ms,
                )])
            }
            Some("complex") | None => {
                if let Some(session) = subject.get("session")
                    && event != "account-disabled"
                    && event != "account-purged"
                {
                    let id = session
                        .get("id")
                        .or_else(|| session.get("sub"))
                        .and_then(Value::as_str);
                    if session.get("format").and_then(Value::as_str) == Some("opaque")
                        && let Some(id) = id.filter(|s| !s.is_empty())
                    {
                        return Some(every_issuer(Kind::Sid, id));
                    }
                    return None;
                }
                let user = subject.get("user")?;
                self.revocations_for(t, event, user, cutoff_ms)
            }
            Some(_) => None,
        }
    }

    fn revocation(&self, kind: Kind, issuer: &str, value: &str, cutoff_ms: u64) -> Revocation {
        Revocation {
            kind,
            issuer: issuer.to_owned(),
            value: value.to_owned(),
            cutoff_ms,
            expires_ms: self.store.cutoff_expiry(cutoff_ms),
        }
    }
}

/// The short name of an event type this receiver acts on; `other` for the rest.
fn short_name(event_type: &str) -> &'static str {
    if event_type == VERIFICATION {
        return "verification";
    }
    let name = event_type
        .strip_prefix(CAEP)
        .filter(|n| matches!(*n, "session-revoked" | "credential-change"))
        .or_else(|| {
            event_type.strip_prefix(RISC).filter(|n| {
                matches!(
                    *n,
                    "account-disabled" | "account-purged" | "sessions-revoked" | "tokens-revoked"
                )
            })
        });
    name.and_then(|n| EVENTS.iter().find(|e| **e == n).copied())
        .unwrap_or("other")
}

/// Whether `event` revokes: every one does, except a `credential-change` that only
/// creates a credential.
fn is_revoking(short: &str, event: &Value) -> bool {
    short != "credential-change"
        || event.get("change_type").and_then(Value::as_str) != Some("create")
}

/// The SET of a push: `Content-Type: application/secevent+jwt` and a body of visible
/// ASCII (a compact JWS).
fn read_request(
    parts: &http::request::Parts,
    body: Result<Bytes, BodyError>,
) -> Result<String, Refusal> {
    let mut types = parts.headers.get_all(http::header::CONTENT_TYPE).iter();
    let content_type = match (types.next(), types.next()) {
        (Some(value), None) => value.to_str().ok(),
        _ => None,
    };
    if !content_type.is_some_and(|t| t.eq_ignore_ascii_case("application/secevent+jwt")) {
        return Err(refuse(
            "invalid_request",
            "the Content-Type is not application/secevent+jwt",
        ));
    }
    let body = body.map_err(|e| match e {
        BodyError::TooLarge => refuse("invalid_request", "the SET is too large"),
        BodyError::Incomplete => refuse("invalid_request", "the SET did not arrive whole"),
    })?;
    let text = std::str::from_utf8(&body)
        .ok()
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or(refuse("invalid_request", "the body is not a compact JWS"))?;
    Ok(text.to_owned())
}

fn plain(status: StatusCode, text: &'static str) -> HttpResponse {
    let mut response = http::Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_named_exactly() {
        assert_eq!(
            short_name(&format!("{CAEP}session-revoked")),
            "session-revoked"
        );
        assert_eq!(
            short_name(&format!("{RISC}account-disabled")),
            "account-disabled"
        );
        assert_eq!(short_name(VERIFICATION), "verification");
        assert_eq!(short_name(&format!("{CAEP}account-disabled")), "other");
        assert_eq!(short_name(&format!("{RISC}session-revoked")), "other");
        assert_eq!(short_name(&format!("{CAEP}Session-Revoked")), "other");
        assert_eq!(short_name("session-revoked"), "other");
    }

    #[test]
    fn a_credential_created_revokes_nothing() {
        assert!(!is_revoking(
            "credential-change",
            &serde_json::json!({"change_type": "create"})
        ));
        assert!(is_revoking(
            "credential-change",
            &serde_json::json!({"change_type": "revoke"})
        ));
        assert!(is_revoking("account-disabled", &serde_json::json!({})));
    }
}
