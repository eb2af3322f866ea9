//! The per-issuer JWKS cache: download (reqwest), OpenID discovery, background refresh,
//! and rate-limited refetch on an unknown `kid`.
//!
//! The parsed [`KeySet`] sits behind an `ArcSwapOption`: a Check loads it without taking a
//! lock, and a refresh replaces it whole. Fetches take an async mutex, so at most one runs.
//!
//! The refetch for an unknown `kid` runs as a task of its own, never inside the Check that
//! asked for it: requests that find an unknown `kid` while it runs wait for its result,
//! each with its own deadline, and none starts another within the cooldown of the last
//! fetch. A caller that gives up (Envoy's timeout cancels the Check) drops only its wait;
//! the fetch goes on, is counted and logged, and its keys serve the next request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use tokio::sync::{Mutex, watch};
use url::Url;

use super::{JwksSettings, JwksSource, KeySet, KeySetError};
use crate::error::AuthError;
use crate::fetch_url::{Redacted, check_scheme, redact_str};

/// Why a JWKS could not be fetched. Startup and log use only: names the URL, redacted
/// (no userinfo, no query), and the cause.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("GET {}: {reason}", Redacted(url))]
    Http { url: Url, reason: String },
    #[error("GET {}: HTTP status {status}", Redacted(url))]
    Status { url: Url, status: u16 },
    #[error("GET {}: body is larger than {max} bytes", Redacted(url))]
    TooLarge { url: Url, max: usize },
    #[error("discovery {}: {reason}", Redacted(url))]
    Discovery { url: Url, reason: String },
    #[error("JWKS {}: {source}", Redacted(url))]
    KeySet { url: Url, source: KeySetError },
}

/// A successful lookup: the key set in which the token's key was found.
pub type KeyLookup = Arc<KeySet>;

struct FetchState {
    /// JWKS URL found through discovery, kept until a fetch from it fails.
    discovered: Option<Url>,
}

/// The unknown-`kid` refetch: at most one in flight, none started within the cooldown.
#[derive(Default)]
struct Refetch {
    /// Completes (`true`) when the refetch in flight ends; `None` while none runs.
    inflight: Option<watch::Receiver<bool>>,
    /// When the last fetch of any kind started: the cooldown runs from there. Set by the
    /// fetch itself, so a request that gave up never spends it.
    last_started: Option<Instant>,
}

/// Counters for health and metrics.
#[derive(Debug, Default)]
pub struct JwksStats {
    pub fetch_ok: AtomicU64,
    pub fetch_error: AtomicU64,
    /// When the last fetch succeeded; `None` before the first. Monotonic, so an age
    /// computed from it never goes negative when the wall clock steps.
    pub last_success: std::sync::Mutex<Option<Instant>>,
}

impl JwksStats {
    /// Time since the last successful fetch, `None` before the first.
    pub fn last_success_age(&self) -> Option<Duration> {
        self.last_success
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map(|t| t.elapsed())
    }
}

/// Keys of one issuer, kept fresh in the background.
pub struct JwksCache {
    issuer: String,
    /// The issuer redacted (no userinfo, no query): what logs and metric labels show.
    label: String,
    issuer_url: Url,
    source: JwksSource,
    settings: JwksSettings,
    client: reqwest::Client,
    keys: ArcSwapOption<KeySet>,
    /// Bumped after every successful load; lets waiters see that a fetch happened.
    generation: AtomicU64,
    fetch: Mutex<FetchState>,
    refetch: std::sync::Mutex<Refetch>,
    failing: AtomicBool,
    ready: watch::Sender<bool>,
    /// Keys given at construction and never fetched (benchmarks, fuzzing, embedding).
    fixed: bool,
    pub stats: JwksStats,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

impl JwksCache {
    /// The cache of `issuer`'s keys, found at `source` (discovery is relative to
    /// `issuer_url`). Nothing is fetched until [`JwksCache::refresh`] or the refresher runs.
    pub fn new(
        issuer: &str,
        issuer_url: &Url,
        source: &JwksSource,
        settings: &JwksSettings,
    ) -> Result<Arc<Self>, JwksError> {
        let allow_http = settings.insecure_allow_http;
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                // At most 3 hops, never from https down to plain http, and each target
                // obeys the scheme rule of configured URLs.
                let downgrade = attempt.url().scheme() != "https"
                    && attempt.previous().iter().any(|u| u.scheme() == "https");
                if downgrade {
                    attempt.error("redirect from https to http refused")
                } else if let Err(reason) = check_scheme(attempt.url(), allow_http) {
                    attempt.error(format!("redirect refused: {reason}"))
                } else if attempt.previous().len() > 3 {
                    attempt.error("too many redirects")
                } else {
                    attempt.follow()
                }
            }))
            .user_agent(concat!("jwt-authz/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| JwksError::Http {
                url: issuer_url.clone(),
                reason: format!("cannot build HTTP client: {e}"),
            })?;
        Ok(Arc::new(JwksCache {
            issuer: issuer.to_owned(),
            label: redact_str(issuer),
            issuer_url: issuer_url.clone(),
            source: source.clone(),
            settings: settings.clone(),
            client,
            keys: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            fetch: Mutex::new(FetchState { discovered: None }),
            refetch: std::sync::Mutex::default(),
            failing: AtomicBool::new(false),
            ready: watch::channel(false).0,
            fixed: false,
            stats: JwksStats::default(),
        }))
    }

    /// A cache holding `keys` for good: it is ready at once and never fetches, not even
    /// for an unknown `kid`. For benchmarks, fuzzing and embedding without a network.
    pub fn with_fixed_keys(
        issuer: &str,
        issuer_url: &Url,
        settings: &JwksSettings,
        keys: KeySet,
    ) -> Result<Arc<Self>, JwksError> {
        let source = JwksSource::Discover;
        let mut cache = Arc::into_inner(Self::new(issuer, issuer_url, &source, settings)?)
            .expect("invariant: the Arc was just created and is not shared");
        cache.fixed = true;
        cache.keys = ArcSwapOption::from_pointee(keys);
        cache.ready = watch::channel(true).0;
        Ok(Arc::new(cache))
    }

    /// The issuer this cache serves.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The issuer as logs and metric labels show it: redacted when it is a URL with
    /// userinfo or a query.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The current key set, `None` until the first successful load.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.load_full()
    }

    /// Whether the last fetch failed (an identity-provider outage in progress).
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Becomes `true` once keys are loaded, and stays so.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// Finds the key set holding a key for `kid` and `alg`, refetching once (rate-limited,
    /// single-flight, in a task of its own) when the `kid` is unknown. A token without
    /// `kid` never triggers a fetch: it would let every request reach the identity provider.
    ///
    /// Cancel-safe: dropping the returned future (a Check past its deadline) stops only
    /// this caller's wait, never the fetch.
    pub async fn lookup(
        self: &Arc<Self>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<KeyLookup, AuthError> {
        let seen = self.generation.load(Ordering::Acquire);
        let Some(set) = self.current() else {
            return Err(AuthError::JwksUnavailable);
        };
        if set.select(kid, alg).is_some() {
            return Ok(set);
        }
        let Some(kid) = kid.filter(|_| !self.fixed) else {
            return Err(AuthError::UnknownKey);
        };
        if set.contains_kid(kid) {
            // The kid is known but its key does not fit `alg`: a refetch would not help.
            return Err(AuthError::UnknownKey);
        }
        if let Some(mut done) = self.start_refetch(seen) {
            // Bounded on its own too: discovery and the JWKS are two fetches of at most
            // `timeout` each.
            let bound = self.settings.timeout.saturating_mul(2);
            let _ = tokio::time::timeout(bound, done.wait_for(|finished| *finished)).await;
        }
        match self.current() {
            Some(set) if set.select(Some(kid), alg).is_some() => Ok(set),
            _ => Err(AuthError::UnknownKey),
        }
    }

    /// Joins the refetch in flight, or starts one unless keys changed since the caller
    /// looked (generation `seen`) or the cooldown runs. `None`: nothing to wait for.
    fn start_refetch(self: &Arc<Self>, seen: u64) -> Option<watch::Receiver<bool>> {
        let mut refetch = lock(&self.refetch);
        if let Some(done) = &refetch.inflight {
            return Some(done.clone());
        }
        if self.generation.load(Ordering::Acquire) != seen {
            return None; // a fetch completed since this request looked: its keys decide
        }
        if refetch
            .last_started
            .is_some_and(|t| t.elapsed() < self.settings.cooldown)
        {
            return None;
        }
        let (finished, done) = watch::channel(false);
        refetch.inflight = Some(done.clone());
        let cache = Arc::clone(self);
        // The fetch belongs to this task, not to any Check: no caller can cancel it.
        // Its span is a child of the Check that started it.
        tokio::spawn(crate::otel::in_current_context(async move {
            cache.refetch_unknown_kid(seen).await;
            lock(&cache.refetch).inflight = None;
            finished.send_replace(true);
        }));
        Some(done)
    }

    async fn refetch_unknown_kid(&self, seen_generation: u64) {
        let mut state = self.fetch.lock().await;
        if self.generation.load(Ordering::Acquire) != seen_generation {
            return; // a refresh loaded keys while this one waited for the lock
        }
        if lock(&self.refetch)
            .last_started
            .is_some_and(|t| t.elapsed() < self.settings.cooldown)
        {
            return; // a refresh started within the cooldown
        }
        let started = Instant::now();
        let result = self.fetch_locked(&mut state).await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match result {
            Ok(keys) => {
                tracing::info!(issuer = %self.label, keys, elapsed_ms, "JWKS refetched for an unknown kid");
            }
            // `fetch_locked` has logged the failure, once per outage.
            Err(_) => {
                tracing::debug!(issuer = %self.label, elapsed_ms, "JWKS refetch for an unknown kid failed");
            }
        }
    }

    /// Fetches and installs the key set now, whatever the cooldown.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let mut state = self.fetch.lock().await;
        self.fetch_locked(&mut state).await
    }

    async fn fetch_locked(&self, state: &mut FetchState) -> Result<usize, JwksError> {
        lock(&self.refetch).last_started = Some(Instant::now());
        let span = crate::otel::ClientSpan::start("jwks.fetch", || {
            vec![opentelemetry::KeyValue::new(
                "jwt_authz.issuer",
                self.label.to_string(),
            )]
        });
        let downloaded = self.download(state).await;
        let failed = downloaded.as_ref().err();
        span.end(
            failed.map(|e| e as &dyn std::fmt::Display),
            || match &downloaded {
                Ok((set, _)) => vec![opentelemetry::KeyValue::new(
                    "jwt_authz.keys",
                    set.len() as i64,
                )],
                Err(_) => Vec::new(),
            },
        );
        match downloaded {
            Ok((set, skipped)) => {
                for reason in skipped {
                    tracing::warn!(issuer = %self.label, "JWKS key skipped: {reason}");
                }
                let count = set.len();
                self.keys.store(Some(set));
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.stats.fetch_ok.fetch_add(1, Ordering::Relaxed);
                *self
                    .stats
                    .last_success
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
                self.ready.send_if_modified(|r| !std::mem::replace(r, true));
                if self.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!(issuer = %self.label, keys = count, "JWKS fetch recovered");
                } else {
                    tracing::debug!(issuer = %self.label, keys = count, "JWKS loaded");
                }
                Ok(count)
            }
            Err(e) => {
                self.stats.fetch_error.fetch_add(1, Ordering::Relaxed);
                state.discovered = None;
                // Logged once per outage, not once per attempt or per request.
                if !self.failing.swap(true, Ordering::AcqRel) {
                    let cached = self.current().map_or(0, |s| s.len());
                    tracing::warn!(issuer = %self.label, cached_keys = cached, "JWKS fetch failed: {e}");
                } else {
                    tracing::debug!(issuer = %self.label, "JWKS fetch still failing: {e}");
                }
                Err(e)
            }
        }
    }

    /// Keeps the keys fresh: retries the first load with backoff, then refetches every
    /// `refresh` interval. A failed refresh keeps the cached keys and is retried sooner.
    pub async fn run_refresher(self: Arc<Self>) {
        if self.fixed {
            return;
        }
        let mut failures: u32 = 0;
        loop {
            match self.refresh().await {
                Ok(_) => {
                    failures = 0;
                    tokio::time::sleep(self.settings.refresh).await;
                }
                Err(_) => {
                    failures = failures.saturating_add(1);
                    tokio::time::sleep(self.retry_delay(failures)).await;
                }
            }
        }
    }

    fn retry_delay(&self, failures: u32) -> Duration {
        let backoff = self
            .settings
            .cooldown
            .saturating_mul(1 << failures.saturating_sub(1).min(6));
        backoff.min(self.settings.refresh)
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

mod fetch;

pub(crate) use fetch::well_known;

#[cfg(test)]
mod tests;
