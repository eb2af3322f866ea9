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
//!
//! The file is read off the Check path: on a thread of its own, under [`READ_TIMEOUT`], and
//! only when it is a regular file ([`crate::config::source`]); a read that hangs (a hung
//! network filesystem) is waited on by no Check and no health probe, and no second read
//! starts while it hangs. A file changed in place is applied only once it has read the
//! same for `config_settle`, so a writer that rewrites it in place, pausing midway, is not
//! applied half-written; another file put at the path (a rename, a ConfigMap's symlink
//! swap, written whole before it appears) waits a quarter of it, and at least two polls.
//! SIGHUP applies the file as it is at once. Every version or read refused is logged and
//! counted once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::config::source::FileId;
use crate::introspection::Introspector;
use crate::jwks::{JwksCache, JwksError, JwksSource};
use crate::metrics::Metrics;
use crate::service::{AuthzService, CheckSettings};
use crate::verify::{Issuer, IssuerConfig, Verifier};

/// The Check service of the current configuration. Clones share it.
#[derive(Clone)]
pub struct LiveAuthz {
    current: Arc<ArcSwap<AuthzService>>,
    /// Counts the swaps, for whoever follows the configuration ([`LiveAuthz::subscribe`]).
    swaps: Arc<watch::Sender<u64>>,
}

impl LiveAuthz {
    pub fn new(service: AuthzService) -> LiveAuthz {
        LiveAuthz {
            current: Arc::new(ArcSwap::from_pointee(service)),
            swaps: Arc::new(watch::Sender::new(0)),
        }
    }

    /// The service of the current configuration.
    pub fn current(&self) -> Arc<AuthzService> {
        self.current.load_full()
    }

    /// Tells of each configuration swapped in.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.swaps.subscribe()
    }

    fn replace(&self, service: AuthzService) {
        self.current.store(Arc::new(service));
        self.swaps.send_modify(|swaps| *swaps += 1);
    }
}

/// One issuer's key cache and the task that keeps it fresh, and its introspection client
/// (whose answer cache a reload keeps while the issuer's introspection settings stay).
struct Keys {
    cache: Arc<JwksCache>,
    refresher: JoinHandle<()>,
    introspector: Option<Arc<Introspector>>,
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

/// An issuer whose key cache could not be made (its JWKS or discovery URL).
#[derive(Debug, thiserror::Error)]
#[error("issuer {issuer}: {error}")]
pub struct KeysError {
    /// The issuer, redacted.
    issuer: String,
    error: String,
}

/// The key caches of the configured issuers, by `iss`.
pub struct IssuerKeys {
    keys: HashMap<String, (IssuerConfig, Keys)>,
}

impl IssuerKeys {
    /// Caches for `config`'s issuers, reusing those of `previous` whose issuer, URL and
    /// key source are unchanged; new caches start their refresher.
    pub fn build(
        config: &Config,
        previous: &mut Option<IssuerKeys>,
    ) -> Result<IssuerKeys, KeysError> {
        // The new caches first: when one cannot be made, the running ones are untouched.
        let mut made = HashMap::new();
        for issuer in &config.settings.issuers {
            let kept = previous
                .as_ref()
                .and_then(|p| p.keys.get(&issuer.issuer))
                .is_some_and(|(old, _)| same_key_source(old, issuer));
            if !kept {
                let cache =
                    issuer
                        .jwks_cache(&config.startup.jwks)
                        .map_err(|error: JwksError| KeysError {
                            issuer: crate::fetch_url::redact_str(&issuer.issuer).to_string(),
                            error: error.to_string(),
                        })?;
                made.insert(issuer.issuer.clone(), cache);
            }
        }
        let mut introspectors = HashMap::new();
        for issuer in &config.settings.issuers {
            let Some(introspection) = &issuer.introspection else {
                continue;
            };
            let kept = previous
                .as_ref()
                .and_then(|p| p.keys.get(&issuer.issuer))
                .and_then(|(old, keys)| {
                    (old.introspection.as_ref() == Some(introspection)
                        && old.issuer_url == issuer.issuer_url)
                        .then(|| keys.introspector.clone())
                        .flatten()
                });
            let introspector = match kept {
                Some(kept) => kept,
                None => match issuer.introspector(config.startup.jwks.insecure_allow_http) {
                    Ok(Some(made)) => made,
                    Ok(None) => continue,
                    Err(error) => {
                        return Err(KeysError {
                            issuer: crate::fetch_url::redact_str(&issuer.issuer).to_string(),
                            error,
                        });
                    }
                },
            };
            introspectors.insert(issuer.issuer.clone(), introspector);
        }
        let mut previous = previous.take();
        let mut keys = HashMap::new();
        for issuer in &config.settings.issuers {
            let introspector = introspectors.remove(&issuer.issuer);
            let entry = match made.remove(&issuer.issuer) {
                Some(cache) => {
                    let refresher = tokio::spawn(Arc::clone(&cache).run_refresher());
                    Keys {
                        cache,
                        refresher,
                        introspector,
                    }
                }
                // Kept: checked above. (An `iss` listed twice was taken the first time.)
                None => match previous
                    .as_mut()
                    .and_then(|p| p.keys.remove(&issuer.issuer))
                {
                    Some((_, mut kept)) => {
                        kept.introspector = introspector;
                        kept
                    }
                    None => continue,
                },
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
                introspector: keys.introspector.clone(),
            })
            .collect();
        Verifier::with_clock(issuers, config.clock.clone())
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
    /// The identity of the file `seen` was read from.
    seen_id: Option<FileId>,
    /// A changed content and when it was first read: applied once it has read the same
    /// for `config_settle` (or at the next poll, when another file replaced the old).
    pending: Option<(Vec<u8>, Instant)>,
    /// The last read failure, logged and counted once until the file reads again.
    read_error: Option<String>,
    /// Set while a read runs on its thread.
    reading: Arc<AtomicBool>,
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
        let (seen, seen_id) = path
            .as_ref()
            .and_then(|p| crate::config::source::read_version(p).ok())
            .unzip();
        metrics.record_reload(true, running.clock.now_secs());
        let hangup = hangup_signal();
        Reloader {
            path,
            running,
            keys: Some(keys),
            live,
            metrics,
            seen,
            seen_id,
            pending: None,
            read_error: None,
            reading: Arc::new(AtomicBool::new(false)),
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
        let poll = self.running.startup.config_poll;
        let mut ticker = tokio::time::interval(poll.unwrap_or(Duration::from_secs(3600)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick(), if poll.is_some() => {
                    if let Some((bytes, id)) = self.read(&path, "file changed").await {
                        self.poll(bytes, id);
                    }
                }
                Some(()) = next(&mut hangup) => {
                    if let Some((bytes, id)) = self.read(&path, "SIGHUP").await {
                        self.pending = None;
                        self.seen = Some(bytes.clone());
                        self.seen_id = Some(id);
                        self.reload(&bytes, "SIGHUP");
                    }
                }
            }
        }
    }

    /// A polled content: applied once it has read the same for `config_settle` (a quarter
    /// of it from another file than the one applied last), over two polls at least.
    fn poll(&mut self, bytes: Vec<u8>, id: FileId) {
        if self.seen.as_ref() == Some(&bytes) {
            self.pending = None;
            self.seen_id = Some(id);
            return;
        }
        // Another file put at the path was most likely written whole first (a rename, a
        // ConfigMap swap): a quarter of the interval. The same file changed in place: all
        // of it.
        let settle = match &self.seen_id {
            Some(seen) if id.replaced(seen) => self.running.startup.config_settle / 4,
            _ => self.running.startup.config_settle,
        };
        let settled = match &self.pending {
            Some((pending, since)) if *pending == bytes => since.elapsed() >= settle,
            _ => {
                self.pending = Some((bytes.clone(), Instant::now()));
                self.running.startup.config_settle.is_zero()
            }
        };
        if settled {
            self.pending = None;
            self.seen = Some(bytes.clone());
            self.seen_id = Some(id);
            self.reload(&bytes, "file changed");
        }
    }

    /// The file's content, read on a thread of its own within [`READ_TIMEOUT`]; `None`
    /// when it cannot be read (logged and counted once per failure).
    async fn read(&mut self, path: &Path, why: &str) -> Option<(Vec<u8>, FileId)> {
        let result = read_off_path(path, &self.reading).await;
        match result {
            Ok(bytes) => {
                if self.read_error.take().is_some() {
                    tracing::info!(trigger = why, "configuration file readable again");
                }
                Some(bytes)
            }
            Err(error) => {
                if self.read_error.as_ref() != Some(&error) {
                    tracing::warn!(trigger = why, "configuration reload refused: {error}");
                    self.metrics
                        .record_reload(false, self.running.clock.now_secs());
                    self.read_error = Some(error);
                }
                // A version seen before the failure must settle again.
                self.pending = None;
                None
            }
        }
    }

    /// Loads `bytes`, the file's content, with the original flags and environment over
    /// it; swaps it in when it is valid.
    pub fn reload(&mut self, bytes: &[u8], why: &str) {
        let now = self.running.clock.now_secs();
        let config = match Config::load_bytes(&self.running.origin, bytes) {
            Ok(config) => config,
            Err(errors) => {
                for line in &errors.0 {
                    tracing::warn!(trigger = why, "configuration reload refused: {line}");
                }
                self.metrics.record_reload(false, now);
                return;
            }
        };
        for setting in self.running.startup.changes(&config.startup) {
            tracing::warn!(
                setting,
                "configuration reload: this setting changes only on restart; keeping the running value"
            );
        }
        // Only the settings a reload may change are taken from the file: the running
        // start-up settings stay, whatever the file now says.
        let config = Config {
            startup: self.running.startup.clone(),
            settings: config.settings,
            clock: self.running.clock.clone(),
            origin: self.running.origin.clone(),
        };
        let keys = match IssuerKeys::build(&config, &mut self.keys) {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!(trigger = why, "configuration reload refused: {e}");
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
            issuers = config.settings.issuers.len(),
            rules = config.settings.policy.rules().len(),
            "configuration reloaded"
        );
        self.running = config;
        self.metrics.record_reload(true, now);
    }
}

/// How long a read of the configuration file may take.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads `path` on a thread of its own, so that a read that blocks (a hung network
/// filesystem) holds no runtime worker; gives up after [`READ_TIMEOUT`]. While a read
/// still hangs (`reading` set), no other starts.
async fn read_off_path(
    path: &Path,
    reading: &Arc<AtomicBool>,
) -> Result<(Vec<u8>, FileId), String> {
    if reading.swap(true, Ordering::AcqRel) {
        return Err(format!(
            "the last read of {} has not finished (a hung filesystem?)",
            path.display()
        ));
    }
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let (owned, flag) = (path.to_owned(), Arc::clone(reading));
    let spawned = std::thread::Builder::new()
        .name("config-read".into())
        .spawn(move || {
            let result = crate::config::source::read_version(&owned);
            flag.store(false, Ordering::Release);
            let _ = sender.send(result);
        });
    if let Err(e) = spawned {
        reading.store(false, Ordering::Release);
        return Err(format!("cannot start a thread to read the file: {e}"));
    }
    match tokio::time::timeout(READ_TIMEOUT, receiver).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(format!(
            "the read of {} ended without an answer",
            path.display()
        )),
        Err(_) => Err(format!(
            "reading {} took more than {READ_TIMEOUT:?}",
            path.display()
        )),
    }
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
