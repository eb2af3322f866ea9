//! Opaque access tokens, judged by their issuer's RFC 7662 introspection endpoint.
//!
//! One [`Introspector`] per issuer that introspects. It authenticates as the configured
//! client (`client_secret_basic` or `client_secret_post`, the secret never logged and never
//! in a URL), asks at most `max_concurrent` questions at once, each within `timeout`, and
//! asks once per token however many requests carry it at the same time (the others wait
//! for that answer). Answers are cached, keyed by the SHA-256 of the endpoint, the client
//! and the token: an active one until the earlier of its `exp` and `cache_max`, an
//! inactive one for `negative_cache`, a failure never.
//!
//! An answer is read strictly: a 200 with one JSON object without repeated members, of at
//! most [`MAX_ANSWER_BYTES`], whose `active` is a boolean. Anything else is a failure
//! ([`AuthError::IntrospectionUnavailable`], 503), never an allow and never "inactive".

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{OnceCell, Semaphore};
use url::Url;

use crate::claims::{self, Claims};
use crate::error::AuthError;

/// The largest introspection answer read.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The largest discovery document read for `introspection_endpoint`.
const MAX_DISCOVERY_BYTES: usize = 1024 * 1024;

/// The most answers one issuer's cache holds.
const MAX_CACHED: usize = 100_000;

/// How the service authenticates to the introspection endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded client id and secret.
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: String) -> Secret {
        Secret(secret)
    }

    /// Whether `presented` is the secret, compared in constant time.
    pub fn matches(&self, presented: &[u8]) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(self.0.as_bytes(), presented).is_ok()
    }

    /// The secret itself, to send (never to log).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One issuer's introspection settings (`issuers[].introspection`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionConfig {
    /// The endpoint; `None`: the discovery document's `introspection_endpoint`.
    pub endpoint: Option<Url>,
    pub client_id: String,
    pub client_secret: Secret,
    pub client_auth: ClientAuth,
    pub timeout: Duration,
    /// The longest an active answer is cached.
    pub cache_max: Duration,
    /// How long an inactive answer is cached.
    pub negative_cache: Duration,
    pub max_concurrent: usize,
    /// Whether tokens that are not a JWS go to this issuer (at most one issuer does).
    pub opaque_tokens: bool,
    /// Whether this issuer's JWTs are introspected too, after they verify: a token
    /// revoked at the authorization server stops working within `cache_max`.
    pub jwts: bool,
}

/// What the endpoint said about a token.
#[derive(Debug, Clone)]
enum Answer {
    Active(Arc<Claims>),
    Inactive,
}

struct Cached {
    answer: Answer,
    until_ms: u64,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct IntrospectionStats {
    pub active: AtomicU64,
    pub inactive: AtomicU64,
    pub failed: AtomicU64,
    pub cache_hits: AtomicU64,
}

type Key = [u8; 32];

/// One question to the endpoint, which every request carrying the token awaits.
type Asked = Arc<OnceCell<Result<Answer, AuthError>>>;

/// One issuer's introspection client and answer cache.
pub struct Introspector {
    issuer: String,
    issuer_url: Url,
    config: IntrospectionConfig,
    allow_http: bool,
    client: reqwest::Client,
    endpoint: OnceCell<Url>,
    permits: Semaphore,
    cache: Mutex<HashMap<Key, Cached>>,
    in_flight: Mutex<HashMap<Key, Asked>>,
    pub stats: IntrospectionStats,
}

impl Introspector {
    pub fn new(
        issuer: &str,
        issuer_url: &Url,
        config: &IntrospectionConfig,
        allow_http: bool,
    ) -> Result<Arc<Introspector>, String> {
        // No redirects: the request carries the client's credentials and the token.
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("jwt-authz/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the introspection client: {e}"))?;
        Ok(Arc::new(Introspector {
            issuer: issuer.to_owned(),
            issuer_url: issuer_url.clone(),
            config: config.clone(),
            allow_http,
            client,
            endpoint: OnceCell::new(),
            permits: Semaphore::new(config.max_concurrent),
            cache: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            stats: IntrospectionStats::default(),
        }))
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn config(&self) -> &IntrospectionConfig {
        &self.config
    }

    /// Answers cached.
    pub fn cached(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The token's introspection answer's members when it is active.
    pub async fn introspect(&self, token: &str, now_ms: u64) -> Result<Arc<Claims>, AuthError> {
        let key = self.key(token);
        if let Some(answer) = self.cached_answer(&key, now_ms) {
            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            return answer;
        }
        let cell = {
            let mut in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(in_flight.entry(key).or_default())
        };
        // However this request ends (answered, or dropped while it waits), its question
        // leaves the map unless another replaced it: a cancelled request leaves nothing.
        let asking = Asking {
            introspector: self,
            key,
            cell: &cell,
        };
        let answer = cell.get_or_init(|| self.ask(token)).await.clone();
        if asking.finish()
            && let Ok(answer) = &answer
        {
            self.remember(key, answer.clone(), now_ms);
        }
        match answer? {
            Answer::Active(claims) => Ok(claims),
            Answer::Inactive => Err(AuthError::Inactive),
        }
    }

    fn key(&self, token: &str) -> Key {
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let endpoint = self
            .config
            .endpoint
            .as_ref()
            .map_or(self.issuer.as_str(), Url::as_str);
        for part in [endpoint, &self.config.client_id, token] {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part.as_bytes());
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(context.finish().as_ref());
        key
    }

    fn cached_answer(&self, key: &Key, now_ms: u64) -> Option<Result<Arc<Claims>, AuthError>> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let cached = cache.get(key).filter(|c| c.until_ms > now_ms)?;
        Some(match &cached.answer {
            Answer::Active(claims) => Ok(Arc::clone(claims)),
            Answer::Inactive => Err(AuthError::Inactive),
        })
    }

    fn remember(&self, key: Key, answer: Answer, now_ms: u64) {
        let until_ms = match &answer {
            Answer::Active(claims) => {
                let exp_ms = claims
                    .get("exp")
                    .and_then(claims::numeric_date)
                    .map_or(0, |exp| exp.saturating_mul(1000));
                exp_ms.min(now_ms.saturating_add(millis(self.config.cache_max)))
            }
            Answer::Inactive => now_ms.saturating_add(millis(self.config.negative_cache)),
        };
        if until_ms <= now_ms {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, c| c.until_ms > now_ms);
            if cache.len() >= MAX_CACHED {
                // Still full of live answers: forget an arbitrary tenth.
                let drop: Vec<Key> = cache.keys().take(MAX_CACHED / 10).copied().collect();
                for k in drop {
                    cache.remove(&k);
                }
            }
        }
        cache.insert(key, Cached { answer, until_ms });
    }

    /// One call to the endpoint, within the bound on calls at once and the timeout.
    async fn ask(&self, token: &str) -> Result<Answer, AuthError> {
        let span = crate::otel::ClientSpan::start("introspection", || {
            vec![opentelemetry::KeyValue::new(
                "jwt_authz.issuer",
                crate::fetch_url::redact_str(&self.issuer),
            )]
        });
        let asked = tokio::time::timeout(self.config.timeout, async {
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| AuthError::IntrospectionUnavailable("closed"))?;
            self.post(token).await
        })
        .await
        .unwrap_or(Err(AuthError::IntrospectionUnavailable(
            "no answer in time",
        )));
        let counter = match &asked {
            Ok(Answer::Active(_)) => &self.stats.active,
            Ok(Answer::Inactive) => &self.stats.inactive,
            Err(_) => &self.stats.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let failed = asked.as_ref().err();
        span.end(failed.map(|e| e as &dyn std::fmt::Display), || {
            let result = match &asked {
                Ok(Answer::Active(_)) => "active",
                Ok(Answer::Inactive) => "inactive",
                Err(_) => "failed",
            };
            vec![opentelemetry::KeyValue::new("jwt_authz.result", result)]
        });
        if let Err(AuthError::IntrospectionUnavailable(why)) = &asked {
            tracing::warn!(issuer = %crate::fetch_url::redact_str(&self.issuer), reason = why, "introspection failed");
        }
        asked
    }

    async fn post(&self, token: &str) -> Result<Answer, AuthError> {
        let endpoint = self
            .endpoint
            .get_or_try_init(|| self.endpoint_url())
            .await
            .map_err(|_| AuthError::IntrospectionUnavailable("no introspection endpoint"))?;
        let mut form: Vec<(&str, &str)> =
            vec![("token", token), ("token_type_hint", "access_token")];
        let mut request = self.client.post(endpoint.clone());
        match self.config.client_auth {
            ClientAuth::Basic => {
                // RFC 6749 §2.3.1: both are form-urlencoded before they are joined.
                let user = form_encode(&self.config.client_id);
                let password = form_encode(&self.config.client_secret.0);
                request = request.basic_auth(user, Some(password));
            }
            ClientAuth::Post => {
                form.push(("client_id", &self.config.client_id));
                form.push(("client_secret", &self.config.client_secret.0));
            }
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut response = request
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|_| {
                AuthError::IntrospectionUnavailable("the endpoint could not be reached")
            })?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(AuthError::IntrospectionUnavailable(
                "the endpoint answered a status other than 200",
            ));
        }
        let mut answer = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| AuthError::IntrospectionUnavailable("the answer was cut short"))?
        {
            if answer.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(AuthError::IntrospectionUnavailable(
                    "the answer is too large",
                ));
            }
            answer.extend_from_slice(&chunk);
        }
        read_answer(&answer)
    }

    /// The configured endpoint, or the discovery document's.
    async fn endpoint_url(&self) -> Result<Url, String> {
        if let Some(url) = &self.config.endpoint {
            return Ok(url.clone());
        }
        crate::fetch_url::discovered_url(
            &self.client,
            (&self.issuer, &self.issuer_url),
            "openid-configuration",
            "introspection_endpoint",
            MAX_DISCOVERY_BYTES,
            self.allow_http,
        )
        .await
    }
}

/// One request's share in a question to the endpoint.
struct Asking<'a> {
    introspector: &'a Introspector,
    key: Key,
    cell: &'a Asked,
}

impl Asking<'_> {
    /// Takes the question out of the map; whether this request was the one that did.
    fn finish(self) -> bool {
        let taken = self.take();
        std::mem::forget(self);
        taken
    }

    fn take(&self) -> bool {
        let mut in_flight = self
            .introspector
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if in_flight
            .get(&self.key)
            .is_some_and(|c| Arc::ptr_eq(c, self.cell))
        {
            in_flight.remove(&self.key);
            true
        } else {
            false
        }
    }
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        self.take();
    }
}

/// Reads an introspection answer: one JSON object without repeated members, `active` a
/// boolean.
fn read_answer(body: &[u8]) -> Result<Answer, AuthError> {
    let members = claims::parse_claims(body)
        .map_err(|_| AuthError::IntrospectionUnavailable("the answer is not one JSON object"))?;
    match members.get("active") {
        Some(Value::Bool(true)) => Ok(Answer::Active(Arc::new(members))),
        Some(Value::Bool(false)) => Ok(Answer::Inactive),
        _ => Err(AuthError::IntrospectionUnavailable(
            "the answer's active member is not a boolean",
        )),
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_strictly() {
        assert!(matches!(
            read_answer(br#"{"active":true,"sub":"u"}"#),
            Ok(Answer::Active(_))
        ));
        assert!(matches!(
            read_answer(br#"{"active":false}"#),
            Ok(Answer::Inactive)
        ));
        for bad in [
            &br#"{"active":"true"}"#[..],
            br#"{"active":1}"#,
            br#"{"sub":"u"}"#,
            br#"{"active":true,"active":false}"#,
            br#"[{"active":true}]"#,
            b"not json",
            b"",
        ] {
            assert!(
                matches!(
                    read_answer(bad),
                    Err(AuthError::IntrospectionUnavailable(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn secrets_never_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2".into())), "<redacted>");
    }

    #[test]
    fn form_encoding_of_credentials() {
        assert_eq!(form_encode("a b:c/é"), "a+b%3Ac%2F%C3%A9");
    }
}
