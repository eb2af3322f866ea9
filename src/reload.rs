//! Live configuration: the Check service behind an atomic swap, and the task that re-reads
//! the configuration file on SIGHUP and whenever its content changes.
//!
//! A valid file is swapped in whole: a Check in flight finishes on the configuration it
//! started with, the next one sees the new. Issuers that stay (same `iss`, URL and key
//! source) keep their key cache, and their tokens' cache entries stay valid unless a
//! setting they were built from changed; issuers added start loading keys (their tokens
//! get 503 `jwks_unavailable` until loaded); issuers removed are dropped. An invalid file
//! changes nothing: each problem is logged as `check-config` prints it, and metrics count
//! the failure. The content is polled rather than watched, which also sees the symlink swap
//! Kubernetes does when a mounted ConfigMap changes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};

use crate::config::Config;
use crate::jwks::{JwksCache, JwksSource};
use crate::metrics::Metrics;
use crate::proto::{Authorization, CheckRequest, CheckResponse};
use crate::service::{AuthzService, CheckSettings};
use crate::verify::{Issuer, IssuerConfig, Verifier};

/// The Check service of the current configuration. Clones share it.
#[derive(Clone)]
pub struct LiveAuthz {
    current: Arc<ArcSwap<AuthzService>>,
}

impl LiveAuthz {
    pub fn new(service: AuthzService) -> LiveAuthz {
        LiveAuthz {
            current: Arc::new(ArcSwap::from_pointee(service)),
        }
    }

    /// The service of the current configuration.
    pub fn current(&self) -> Arc<AuthzService> {
        self.current.load_full()
    }

    fn replace(&self, service: AuthzService) {
        self.current.store(Arc::new(service));
    }
}

#[tonic::async_trait]
impl Authorization for LiveAuthz {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        // invariant: the whole Check runs on one configuration, loaded once here.
        let service = self.current();
        service.check(request).await
    }
}

/// One issuer's key cache and the task that keeps it fresh.
struct Keys {
    cache: Arc<JwksCache>,
    refresher: JoinHandle<()>,
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

/// The key caches of the configured issuers, by `iss`.
pub struct IssuerKeys {
    keys: HashMap<String, (IssuerConfig, Keys)>,
}

impl IssuerKeys {
    /// Caches for `config`'s issuers, reusing those of `previous` whose issuer, URL and
    /// key source are unchanged; new caches start their refresher.
    pub fn build(config: &Config, mut previous: Option<IssuerKeys>) -> anyhow::Result<IssuerKeys> {
        let mut keys = HashMap::new();
        for issuer in &config.issuers {
            let kept = previous
                .as_mut()
                .and_then(|p| p.keys.remove(&issuer.issuer))
                .filter(|(old, _)| same_key_source(old, issuer));
            let entry = match kept {
                Some((_, kept)) => kept,
                None => {
                    let cache = issuer.jwks_cache(&config.jwks).with_context(|| {
                        format!("issuer {}", crate::fetch_url::redact_str(&issuer.issuer))
                    })?;
                    let refresher = tokio::spawn(Arc::clone(&cache).run_refresher());
                    Keys { cache, refresher }
                }
            };
            keys.insert(issuer.issuer.clone(), (issuer.clone(), entry));
        }
        // Whatever is left in `previous` is dropped here, which stops its refreshers.
        Ok(IssuerKeys { keys })
    }

    /// A verifier over these issuers.
    pub fn verifier(&self, config: &Config) -> Verifier {
        let issuers = self
            .keys
            .values()
            .map(|(issuer, keys)| Issuer {
                config: issuer.clone(),
                jwks: Arc::clone(&keys.cache),
            })
            .collect();
        Verifier::with_clock(issuers, config.clock.clone())
    }

    /// Every cache, for readiness.
    pub fn caches(&self) -> Vec<Arc<JwksCache>> {
        self.keys
            .values()
            .map(|(_, k)| Arc::clone(&k.cache))
            .collect()
    }
}

fn same_key_source(a: &IssuerConfig, b: &IssuerConfig) -> bool {
    a.issuer == b.issuer
        && a.issuer_url == b.issuer_url
        && match (&a.jwks, &b.jwks) {
            (JwksSource::Uri(x), JwksSource::Uri(y)) => x == y,
            (JwksSource::Discover, JwksSource::Discover) => true,
            _ => false,
        }
}

/// Re-reads the configuration file and swaps a valid one in.
pub struct Reloader {
    /// `None` when the configuration came from flags alone: nothing to reload.
    path: Option<PathBuf>,
    running: Config,
    keys: Option<IssuerKeys>,
    live: LiveAuthz,
    metrics: Arc<Metrics>,
    /// The content last loaded or refused, so a poll acts on changes only.
    seen: Option<Vec<u8>>,
    /// Installed when the reloader is built, before the server accepts: a SIGHUP that
    /// arrives early is then a reload, not the signal's default action (termination).
    hangup: Hangup,
}

impl Reloader {
    /// A reloader for `running`, loaded from the file `running.origin.config` (if any),
    /// owning the key caches of its issuers.
    pub fn new(running: Config, keys: IssuerKeys, live: LiveAuthz) -> Reloader {
        let path = running.origin.config.clone();
        let metrics = live.current().metrics();
        let seen = path.as_ref().and_then(|p| std::fs::read(p).ok());
        metrics.record_reload(true, running.clock.now_secs());
        let hangup = hangup_signal();
        Reloader {
            path,
            running,
            keys: Some(keys),
            live,
            metrics,
            seen,
            hangup,
        }
    }

    /// Reloads on SIGHUP and, every `config_poll`, when the file's content changed. Runs
    /// until the task is aborted; stopping it drops the key caches' refreshers.
    pub async fn run(mut self) {
        let Some(path) = self.path.clone() else {
            // Nothing to reload; keep the key caches (and their refreshers) alive.
            return std::future::pending().await;
        };
        let mut hangup = self.hangup.take();
        let poll = self.running.config_poll;
        let mut ticker = tokio::time::interval(poll.unwrap_or(Duration::from_secs(3600)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick(), if poll.is_some() => {
                    let text = std::fs::read(&path).ok();
                    if text != self.seen {
                        self.seen = text;
                        self.reload("file changed");
                    }
                }
                Some(()) = next(&mut hangup) => {
                    self.seen = std::fs::read(&path).ok();
                    self.reload("SIGHUP");
                }
            }
        }
    }

    /// Loads the file with the original flags and environment over it; swaps it in when it
    /// is valid.
    pub fn reload(&mut self, why: &str) {
        let now = self.running.clock.now_secs();
        let mut config = match Config::load(&self.running.origin) {
            Ok(config) => config,
            Err(errors) => {
                for line in &errors.0 {
                    tracing::warn!(trigger = why, "configuration reload refused: {line}");
                }
                self.metrics.record_reload(false, now);
                return;
            }
        };
        config.clock = self.running.clock.clone();
        for setting in restart_only_changes(&self.running, &config) {
            tracing::warn!(
                setting,
                "configuration reload: this setting changes only on restart; keeping the running value"
            );
        }
        let config = keep_restart_only(&self.running, config);
        let keys = match IssuerKeys::build(&config, self.keys.take()) {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!(trigger = why, "configuration reload refused: {e:#}");
                self.metrics.record_reload(false, now);
                return;
            }
        };
        let service = AuthzService::with_shared(
            Arc::new(keys.verifier(&config)),
            CheckSettings::from_config(&config),
            self.live.current().shared(),
        );
        self.live.replace(service);
        self.keys = Some(keys);
        tracing::info!(
            trigger = why,
            issuers = config.issuers.len(),
            rules = config.policy.rules().len(),
            "configuration reloaded"
        );
        self.running = config;
        self.metrics.record_reload(true, now);
    }
}

/// Settings bound at start-up (listeners, logging, the token cache's size, polling) that
/// differ between `running` and `new`.
fn restart_only_changes(running: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if running.listen != new.listen {
        changed.push("listen");
    }
    if running.admin_listen != new.admin_listen {
        changed.push("admin_listen");
    }
    if running.log_level != new.log_level {
        changed.push("log.level");
    }
    if running.log_format != new.log_format {
        changed.push("log.format");
    }
    if running.log_deny_rate != new.log_deny_rate {
        changed.push("log.deny_rate");
    }
    if running.token_cache != new.token_cache {
        changed.push("token_cache");
    }
    if running.config_poll != new.config_poll {
        changed.push("config_poll");
    }
    if format!("{:?}", running.jwks) != format!("{:?}", new.jwks) {
        changed.push("jwks");
    }
    if running.replay_store != new.replay_store {
        changed.push("dpop.replay_store");
    }
    changed
}

/// `new`, with the running values of the settings that change only on restart.
fn keep_restart_only(running: &Config, mut new: Config) -> Config {
    new.listen = running.listen;
    new.admin_listen = running.admin_listen;
    new.log_level.clone_from(&running.log_level);
    new.log_format = running.log_format;
    new.log_deny_rate = running.log_deny_rate;
    new.token_cache = running.token_cache;
    new.config_poll = running.config_poll;
    new.jwks = running.jwks.clone();
    new.replay_store = running.replay_store.clone();
    new
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot listen for SIGHUP, reloads follow file changes only: {e}");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {
    None
}

/// The next SIGHUP; pending for ever without a handler.
#[cfg(unix)]
async fn next(hangup: &mut Hangup) -> Option<()> {
    match hangup {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next(_: &mut Hangup) -> Option<()> {
    std::future::pending().await
}
