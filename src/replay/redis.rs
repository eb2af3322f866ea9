//! The Redis replay store: one `SET key 1 NX PX ttl` per proof, atomic across every replica
//! that shares the server, over one multiplexed connection.
//!
//! The connection is re-established by the store itself rather than by the client
//! library's `ConnectionManager`, which reconnects only when a connection drops: a server
//! that stops answering with the socket still open (a frozen host, a network path gone
//! dark) would time out forever, and its retries hide a refused password behind a
//! timeout. Here any failed command drops the connection. A command that failed because
//! the connection broke (a restarted server) is sent once more on a new connection, so
//! only the operations in flight when Redis went away are refused; after a failed
//! connection attempt, operations fail at once for [`RECONNECT_DELAY`] instead of each
//! waiting out the timeout.
//!
//! **Completeness.** Every new connection reads the server's `run_id`, eviction policy and
//! persistence, and a marker key (`<prefix>complete`, holding the run id and the time
//! since which the data set is known complete) that every replica shares:
//! - a server that may evict keys (`maxmemory` set with a policy other than
//!   `noeviction`) is refused: an evicted key is a forgotten proof;
//! - no marker (a new server, a flushed database, a restart without persistence): the
//!   data set is complete from now on;
//! - a marker of another run (a restart): the data set is trusted across it only when
//!   every write was on disk before it was acknowledged (`appendonly yes` with
//!   `appendfsync always`), else complete from now on.
//!
//! Every operation also reads the marker, so a flush between two connections is seen at
//! the next proof. The time is shared through the replay store, which refuses proofs
//! issued before it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, RedisError, Value};
use arc_swap::ArcSwapOption;
use url::Url;

use super::{ProofWindow, ReplayError, SharedWindows, Windows};
use crate::fetch_url::Redacted;

/// After a failure, how long before the next connection attempt: it bounds the attempts
/// to an unreachable server, and how long after Redis is back a store may still refuse.
const RECONNECT_DELAY: Duration = Duration::from_millis(250);

/// [`Shared::state`] values.
const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Cheap to clone, so a background probe can own one.
#[derive(Clone)]
pub(super) struct RedisStore(Arc<Shared>);

struct Shared {
    client: Client,
    config: AsyncConnectionConfig,
    timeout: Duration,
    key_prefix: String,
    description: String,
    /// The connection in use; `None` before the first operation and after a failure.
    connection: ArcSwapOption<MultiplexedConnection>,
    /// Held while connecting, so one attempt serves every waiting operation.
    connecting: tokio::sync::Mutex<()>,
    /// No connection attempt before this, in ms since `started`.
    retry_at_ms: AtomicU64,
    /// `UNKNOWN` until the first operation, then whether the last one reached Redis.
    state: AtomicU8,
    /// Monotonic reference for the rate limits: a wall clock that steps must not
    /// shorten them.
    started: Instant,
    /// When the last background probe started, in ms since `started` (0: never).
    last_probe_ms: AtomicU64,
    probing: AtomicBool,
    /// The marker key's name, and the value last written or adopted.
    marker_key: String,
    marker: std::sync::Mutex<Option<Marker>>,
    /// Unix ms since which the data set is known complete, shared with the store.
    complete_since_ms: Arc<AtomicU64>,
    /// The proof windows, shared with the store: merged with the marker's.
    windows: SharedWindows,
}

/// The marker key's value, which every replica reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Marker {
    /// The server run it was written under.
    run_id: String,
    /// Since when (Unix ms) that run's data set is known complete.
    since_ms: u64,
    /// Whether that run had every write on disk before acknowledging it.
    durable: bool,
    /// The widest proof window any replica announced: every replica records uses for it.
    window: Option<ProofWindow>,
    /// The last widening: proofs issued before `widened_at_ms` keep `previous_max_age_ms`.
    widened_at_ms: u64,
    previous_max_age_ms: u64,
}

impl Marker {
    /// `run_id since durable max_age skew widened_at previous_max_age`.
    fn parse(text: &str) -> Option<Marker> {
        let mut fields = text.split(' ');
        let run_id = fields.next().filter(|r| !r.is_empty())?.to_owned();
        let mut number = || fields.next()?.parse::<u64>().ok();
        let since_ms = number()?;
        let durable = number()? == 1;
        let (max_age_ms, skew_ms) = (number()?, number()?);
        let (widened_at_ms, previous_max_age_ms) = (number()?, number()?);
        Some(Marker {
            run_id,
            since_ms,
            durable,
            window: (max_age_ms > 0).then_some(ProofWindow {
                max_age_ms,
                skew_ms,
            }),
            widened_at_ms,
            previous_max_age_ms,
        })
    }

    fn text(&self) -> String {
        let window = self.window.unwrap_or(ProofWindow {
            max_age_ms: 0,
            skew_ms: 0,
        });
        format!(
            "{} {} {} {} {} {} {}",
            self.run_id,
            self.since_ms,
            u8::from(self.durable),
            window.max_age_ms,
            window.skew_ms,
            self.widened_at_ms,
            self.previous_max_age_ms
        )
    }
}

/// Why an operation failed, for the log line that opens an outage.
enum Failure {
    Redis(RedisError),
    Timeout(Duration),
    /// Within [`RECONNECT_DELAY`] of the last failure: not tried.
    Waiting,
    Unexpected(&'static str),
    /// The server answers but cannot be trusted to remember proofs.
    Unfit(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The library's errors name the failure (refused, WRONGPASS, READONLY), never
            // the URL or its password.
            Failure::Redis(error) => error.fmt(f),
            Failure::Timeout(limit) => write!(f, "no answer within {limit:?}"),
            Failure::Waiting => f.write_str("waiting to reconnect"),
            Failure::Unexpected(what) => f.write_str(what),
            Failure::Unfit(why) => f.write_str(why),
        }
    }
}

impl RedisStore {
    pub(super) fn new(
        url: &str,
        timeout: Duration,
        key_prefix: &str,
        complete_since_ms: Arc<AtomicU64>,
        windows: SharedWindows,
    ) -> Result<Self, String> {
        let (client, description) = parse_url(url)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        Ok(RedisStore(Arc::new(Shared {
            client,
            config,
            timeout,
            key_prefix: key_prefix.to_owned(),
            description,
            connection: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
            retry_at_ms: AtomicU64::new(0),
            state: AtomicU8::new(UNKNOWN),
            started: Instant::now(),
            last_probe_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            marker_key: format!("{key_prefix}complete"),
            marker: std::sync::Mutex::new(None),
            complete_since_ms,
            windows,
        })))
    }

    pub(super) fn describe(&self) -> &str {
        &self.0.description
    }

    pub(super) async fn first_use(&self, key: &[u8; 32], ttl_ms: u64) -> Result<bool, ReplayError> {
        let name = self.key_name(key);
        let mut pipe = ::redis::pipe();
        pipe.cmd("SET")
            .arg(&name)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .cmd("GET")
            .arg(&self.0.marker_key);
        let result = match self.query_pipeline(&pipe).await {
            Ok(replies) => match replies.as_slice() {
                [set, marker] => match set {
                    Value::Okay | Value::Nil => self
                        .check_marker(marker)
                        .await
                        .map(|()| matches!(set, Value::Okay)),
                    // Not a reply SET NX gives: whatever answered is not a Redis to trust.
                    _ => Err(Failure::Unexpected("unexpected reply to SET NX")),
                },
                _ => Err(Failure::Unexpected("unexpected reply to a pipeline")),
            },
            Err(failure) => Err(failure),
        };
        let result = match result {
            // Another replica announced a wider window meanwhile: this use is remembered
            // for it too.
            Ok(true) => match self.ttl_ms().filter(|wider| *wider > ttl_ms) {
                Some(wider) => {
                    let mut extend = ::redis::cmd("PEXPIRE");
                    extend.arg(&name).arg(wider);
                    self.query(&extend).await.map(|_| true)
                }
                None => Ok(true),
            },
            other => other,
        };
        self.record(result)
    }

    /// The ttl of the widest window known.
    fn ttl_ms(&self) -> Option<u64> {
        self.windows().widest().map(ProofWindow::ttl_ms)
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, Windows> {
        self.0
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Compares the marker an operation read with the one adopted. Gone, or with another
    /// time, the data set may have lost proofs: it is complete only from now on. Another
    /// window: merged.
    async fn check_marker(&self, marker: &Value) -> Result<(), Failure> {
        let found = match marker {
            Value::BulkString(bytes) => std::str::from_utf8(bytes).ok().and_then(Marker::parse),
            _ => None,
        };
        let adopted = self.marker();
        let Some(found) = found else {
            // Gone (a flush, the key deleted): this replica declares the loss.
            tracing::warn!(
                store = %self.0.description,
                "replay store lost its proofs (flushed, or its marker deleted): proofs issued before now are refused"
            );
            let lost = Marker {
                since_ms: unix_ms(),
                ..adopted.unwrap_or_default()
            };
            let (merged, _) = self.merge_windows(lost);
            return self.write_marker(merged, None).await;
        };
        let same_data_set = adopted
            .as_ref()
            .is_some_and(|a| a.run_id == found.run_id && a.since_ms == found.since_ms);
        if !same_data_set {
            // Another replica declared a loss (or saw a new run) and wrote its time by
            // its clock, which may be behind this one: here the data set is complete no
            // earlier than now. The marker is kept as written, so the news is not
            // declared again by every replica in turn.
            tracing::warn!(
                store = %self.0.description,
                "replay store lost its proofs (seen by another replica): proofs issued before now are refused"
            );
            self.0
                .complete_since_ms
                .fetch_max(unix_ms(), Ordering::Relaxed);
        }
        if adopted.as_ref() == Some(&found) && !self.wider_here(&found) {
            return Ok(());
        }
        // A window announced by another replica, or one to announce here.
        let (merged, announce) = self.merge_windows(found.clone());
        if !announce {
            self.adopt(merged);
            return Ok(());
        }
        self.write_marker(merged, Some(found)).await
    }

    /// Whether this replica's window is wider than the one `marker` announces (a reload
    /// widened it, or it started before this replica had one).
    fn wider_here(&self, marker: &Marker) -> bool {
        let shared = marker.window.map_or(0, |w| w.max_age_ms);
        self.windows()
            .widest()
            .is_some_and(|local| local.max_age_ms > shared)
    }

    /// Merges the marker's windows with this replica's: the widest is everyone's, and a
    /// widening announced anywhere applies everywhere. Returns the marker to keep, and
    /// whether this replica's window is wider and must be announced.
    fn merge_windows(&self, mut marker: Marker) -> (Marker, bool) {
        let mut windows = self.windows();
        if marker.widened_at_ms > 0 {
            let skew = marker.window.map_or(0, |w| w.skew_ms);
            windows.widen(
                marker.widened_at_ms.saturating_add(skew),
                marker.previous_max_age_ms,
            );
        }
        // A widening counts from when it may be seen: the marker is written after this,
        // within the timeout.
        let now = unix_ms().saturating_add(millis(self.0.timeout));
        match (marker.window, windows.widest()) {
            (Some(shared), Some(local)) if local.max_age_ms > shared.max_age_ms => {
                // Wider here: announced, and proofs issued before now keep the old limit.
                windows.widen(
                    now.saturating_add(shared.skew_ms.max(local.skew_ms)),
                    shared.max_age_ms,
                );
                // One widening fits in the marker: one still in force folds into this
                // one with the smaller limit (stricter for proofs issued between them).
                let earlier_in_force = marker.widened_at_ms > 0
                    && now.saturating_sub(marker.widened_at_ms) <= local.max_age_ms;
                marker.previous_max_age_ms = if earlier_in_force {
                    marker.previous_max_age_ms.min(shared.max_age_ms)
                } else {
                    shared.max_age_ms
                };
                marker.widened_at_ms = now;
                marker.window = Some(ProofWindow {
                    max_age_ms: local.max_age_ms,
                    skew_ms: local.skew_ms.max(shared.skew_ms),
                });
                (marker, true)
            }
            (Some(shared), _) => {
                windows.adopt(shared, now);
                (marker, false)
            }
            (None, local) => {
                // A marker without a window: this replica's, once it has one.
                let changed = local.is_some();
                marker.window = local;
                (marker, changed)
            }
        }
    }

    /// Reads what the server is before the first command on a new connection: refuses
    /// one that may evict keys, and works out since when its data set is complete.
    async fn inspect(&self, connection: &mut MultiplexedConnection) -> Result<(), Failure> {
        let info: String = ::redis::cmd("INFO")
            .query_async(connection)
            .await
            .map_err(Failure::Redis)?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let run_id = field("run_id")
            .filter(|r| !r.is_empty() && !r.contains(' '))
            .ok_or(Failure::Unexpected("INFO has no run_id"))?
            .to_owned();
        // Absent fields are not taken for the safe values: such a server is not one to
        // trust with proofs.
        let (Some(maxmemory), Some(policy)) = (field("maxmemory"), field("maxmemory_policy"))
        else {
            return Err(Failure::Unfit(
                "INFO names no maxmemory or maxmemory_policy: whether keys can be evicted is not known"
                    .into(),
            ));
        };
        if maxmemory != "0" && policy != "noeviction" {
            return Err(Failure::Unfit(format!(
                "maxmemory-policy {policy} can evict proofs before they expire: set maxmemory-policy noeviction (or maxmemory 0)"
            )));
        }
        let aof = field("aof_enabled") == Some("1");
        // A replica promoted to primary (a failover) has a second replication offset: the
        // writes its old primary had not yet sent are lost, whatever its disk.
        let promoted = field("second_repl_offset") != Some("-1");
        // CONFIG may be renamed away on managed servers: then durability is not known.
        let fsync: Option<Vec<String>> = ::redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendfsync")
            .query_async(connection)
            .await
            .ok();
        // And no fsync skipped while a background save or log rewrite runs.
        let rewrite: Option<Vec<String>> = ::redis::cmd("CONFIG")
            .arg("GET")
            .arg("no-appendfsync-on-rewrite")
            .query_async(connection)
            .await
            .ok();
        let setting = |reply: Option<Vec<String>>, want: &str| {
            reply.is_some_and(|v| v.get(1).is_some_and(|value| value == want))
        };
        let durable = aof && setting(fsync, "always") && setting(rewrite, "no");
        let found: Option<String> = ::redis::cmd("GET")
            .arg(&self.0.marker_key)
            .query_async(connection)
            .await
            .map_err(Failure::Redis)?;
        let found = found.as_deref().and_then(Marker::parse);
        let marker = match found.clone() {
            Some(found) if found.run_id == run_id => Marker { durable, ..found },
            // A restart, trusted only when the run that wrote the marker and this one
            // both had every write on disk, and this is no promoted replica.
            Some(found) if found.durable && durable && !promoted => {
                tracing::info!(store = %self.0.description, "replay store restarted with every write on disk: its proofs are kept");
                Marker {
                    run_id,
                    durable,
                    ..found
                }
            }
            found => {
                if found.is_some() {
                    tracing::warn!(
                        store = %self.0.description,
                        "replay store restarted or failed over without every write on disk (appendonly yes, appendfsync always): proofs issued before now are refused"
                    );
                } else if self.marker().is_some() {
                    tracing::warn!(
                        store = %self.0.description,
                        "replay store lost its proofs (restarted without persistence, or flushed): proofs issued before now are refused"
                    );
                }
                let since_ms = unix_ms().max(found.as_ref().map_or(0, |f| f.since_ms));
                Marker {
                    run_id,
                    since_ms,
                    durable,
                    ..found.unwrap_or_default()
                }
            }
        };
        let (marker, _) = self.merge_windows(marker);
        if found.as_ref() != Some(&marker) {
            let _: () = ::redis::cmd("SET")
                .arg(&self.0.marker_key)
                .arg(marker.text())
                .query_async(connection)
                .await
                .map_err(Failure::Redis)?;
        }
        self.adopt(marker);
        Ok(())
    }

    /// Writes `marker` over `base`, the value it was worked out from. When another
    /// replica wrote in between (`SET ... GET` returns what was there), its value is
    /// merged in (the later time, the wider window) and written again: both only grow,
    /// so no replica's news is lost to another's write.
    async fn write_marker(&self, marker: Marker, base: Option<Marker>) -> Result<(), Failure> {
        let (mut next, mut base) = (marker, base);
        for _ in 0..4 {
            let mut cmd = ::redis::cmd("SET");
            cmd.arg(&self.0.marker_key).arg(next.text()).arg("GET");
            let previous = match self.query(&cmd).await? {
                Value::BulkString(bytes) => {
                    std::str::from_utf8(&bytes).ok().and_then(Marker::parse)
                }
                Value::Nil => None,
                _ => return Err(Failure::Unexpected("unexpected reply to SET GET")),
            };
            if previous == base || previous.as_ref() == Some(&next) {
                break;
            }
            let Some(theirs) = previous else { break };
            next.since_ms = next.since_ms.max(theirs.since_ms);
            let (merged, _) = self.merge_windows(Marker {
                since_ms: next.since_ms,
                ..theirs.clone()
            });
            next.window = merged.window;
            next.widened_at_ms = merged.widened_at_ms;
            next.previous_max_age_ms = merged.previous_max_age_ms;
            base = Some(theirs);
        }
        self.adopt(next);
        Ok(())
    }

    fn marker(&self) -> Option<Marker> {
        self.0
            .marker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn adopt(&self, marker: Marker) {
        self.0
            .complete_since_ms
            .fetch_max(marker.since_ms, Ordering::Relaxed);
        *self
            .0
            .marker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(marker);
    }

    pub(super) fn reachable(&self) -> bool {
        let up = self.0.state.load(Ordering::Relaxed) == UP;
        if !up {
            self.start_probe();
        }
        up
    }

    fn key_name(&self, key: &[u8; 32]) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut name = String::with_capacity(self.0.key_prefix.len() + 64);
        name.push_str(&self.0.key_prefix);
        for byte in key {
            name.push(char::from(HEX[usize::from(byte >> 4)]));
            name.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        name
    }

    /// Sends `cmd`, the wait for a connection and the reply bounded together by the
    /// timeout.
    async fn query(&self, cmd: &::redis::Cmd) -> Result<Value, Failure> {
        self.send(Request::Command(cmd)).await
    }

    /// Sends `pipe`: its replies, in order.
    async fn query_pipeline(&self, pipe: &::redis::Pipeline) -> Result<Vec<Value>, Failure> {
        match self.send(Request::Pipeline(pipe)).await? {
            Value::Array(replies) => Ok(replies),
            _ => Err(Failure::Unexpected("unexpected reply to a pipeline")),
        }
    }

    /// Sends `request` within the timeout. A failure drops the connection it used. When
    /// an established connection turns out broken (the server restarted), the request is
    /// sent once more on a new one: the operation is refused only if that fails too.
    async fn send(&self, request: Request<'_>) -> Result<Value, Failure> {
        let limit = self.0.timeout;
        let attempt = async {
            let mut retried = false;
            loop {
                let (connection, fresh) = self.connection().await?;
                let mut handle = (*connection).clone();
                // An error reply is an `Err` here too.
                let result = match request {
                    Request::Command(cmd) => cmd.query_async::<Value>(&mut handle).await,
                    Request::Pipeline(pipe) => pipe
                        .query_async::<Vec<Value>>(&mut handle)
                        .await
                        .map(Value::Array),
                };
                match result {
                    Ok(value) => return Ok(value),
                    Err(error) => {
                        let broken = error.is_io_error()
                            || error.is_connection_dropped()
                            || error.is_connection_refusal();
                        self.forget_connection(&connection, !broken);
                        if broken && !fresh && !retried {
                            retried = true;
                            continue;
                        }
                        return Err(Failure::Redis(error));
                    }
                }
            }
        };
        match tokio::time::timeout(limit, attempt).await {
            Ok(result) => result,
            Err(_elapsed) => {
                // The connection in use, if any, is not trusted after a timeout.
                if let Some(connection) = self.0.connection.load_full() {
                    self.forget_connection(&connection, true);
                }
                Err(Failure::Timeout(limit))
            }
        }
    }

    /// The current connection, or a new one (then `true`): one attempt at a time, none
    /// within [`RECONNECT_DELAY`] of a failed attempt. A new connection is inspected
    /// before use.
    async fn connection(&self) -> Result<(Arc<MultiplexedConnection>, bool), Failure> {
        if let Some(connection) = self.0.connection.load_full() {
            return Ok((connection, false));
        }
        if self.waiting() {
            return Err(Failure::Waiting);
        }
        let _connecting = self.0.connecting.lock().await;
        // Whoever held the lock before may have connected, or failed.
        if let Some(connection) = self.0.connection.load_full() {
            return Ok((connection, false));
        }
        if self.waiting() {
            return Err(Failure::Waiting);
        }
        // Until it succeeds, an attempt delays the next one, even when the timeout cuts
        // it short (the future is then dropped midway).
        let mut attempt = Attempt {
            store: self,
            succeeded: false,
        };
        let mut connection = self
            .0
            .client
            .get_multiplexed_async_connection_with_config(&self.0.config)
            .await
            .map_err(Failure::Redis)?;
        self.inspect(&mut connection).await?;
        attempt.succeeded = true;
        let connection = Arc::new(connection);
        self.0.connection.store(Some(connection.clone()));
        Ok((connection, true))
    }

    /// Forgets `failed`, unless another operation already replaced it; with `delay`, the
    /// next attempt waits: a server that fails every command is not reconnected to for
    /// each. A connection that broke is replaced at once.
    fn forget_connection(&self, failed: &Arc<MultiplexedConnection>, delay: bool) {
        let previous = self.0.connection.compare_and_swap(failed, None);
        if delay && previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, failed)) {
            self.delay_reconnect();
        }
    }

    fn delay_reconnect(&self) {
        let at = self.elapsed_ms().saturating_add(millis(RECONNECT_DELAY));
        self.0.retry_at_ms.store(at, Ordering::Relaxed);
    }

    fn waiting(&self) -> bool {
        self.elapsed_ms() < self.0.retry_at_ms.load(Ordering::Relaxed)
    }

    /// Marks the store up or down, logging once per outage: at the first failure after a
    /// success (or at start), and at the recovery.
    fn record<T>(&self, result: Result<T, Failure>) -> Result<T, ReplayError> {
        match result {
            Ok(value) => {
                if self.0.state.swap(UP, Ordering::Relaxed) == DOWN {
                    tracing::info!(store = %self.0.description, "replay store reachable again");
                }
                Ok(value)
            }
            Err(failure) => {
                if self.0.state.swap(DOWN, Ordering::Relaxed) != DOWN {
                    tracing::warn!(
                        store = %self.0.description,
                        error = %failure,
                        "replay store unreachable"
                    );
                }
                Err(ReplayError::Unavailable)
            }
        }
    }

    /// Starts a `PING` in the background, at most one at a time and one per timeout, and
    /// only where there is a runtime to run it.
    fn start_probe(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let now = self.elapsed_ms().max(1);
        let last = self.0.last_probe_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < millis(self.0.timeout) {
            return;
        }
        if self
            .0
            .probing
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        self.0.last_probe_ms.store(now, Ordering::Relaxed);
        let store = self.clone();
        runtime.spawn(async move {
            let result = store.query(&::redis::cmd("PING")).await;
            let _ = store.record(result);
            store.0.probing.store(false, Ordering::Release);
        });
    }

    fn elapsed_ms(&self) -> u64 {
        millis(self.0.started.elapsed())
    }
}

/// What [`RedisStore::send`] sends.
#[derive(Clone, Copy)]
enum Request<'a> {
    Command(&'a ::redis::Cmd),
    Pipeline(&'a ::redis::Pipeline),
}

/// The wall clock, in Unix ms: the time written in the marker, which other replicas
/// compare with `iat`.
fn unix_ms() -> u64 {
    crate::clock::Clock::system().now_millis()
}

/// A connection attempt in flight: on drop, unless it succeeded, the next attempt waits
/// [`RECONNECT_DELAY`].
struct Attempt<'a> {
    store: &'a RedisStore,
    succeeded: bool,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.succeeded {
            self.store.delay_reconnect();
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The client for `text`, and its description for logs: scheme, host, port and database,
/// never the userinfo. The text itself is never echoed: it may hold a password.
fn parse_url(text: &str) -> Result<(Client, String), String> {
    let url = Url::parse(text).map_err(|e| format!("redis url: not a URL ({e})"))?;
    let shown = Redacted(&url);
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err(format!(
            "redis url `{shown}`: scheme must be redis or rediss"
        ));
    }
    if url.fragment().is_some() {
        // The library reads `#insecure` as "skip certificate checks": not accepted.
        return Err(format!(
            "redis url `{shown}`: a fragment (such as #insecure) is not accepted"
        ));
    }
    let client = Client::open(url.as_str()).map_err(|e| describe_open_error(&shown, &e))?;
    let host = url.host_str().unwrap_or_default();
    let port = url.port().unwrap_or(6379);
    let db = client.get_connection_info().redis_settings().db();
    Ok((client, format!("{}://{host}:{port}/{db}", url.scheme())))
}

fn describe_open_error(shown: &Redacted<'_>, error: &RedisError) -> String {
    // The library's URL errors are fixed sentences ("Invalid database number"), never
    // the URL.
    format!("redis url `{shown}`: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_names_host_port_and_database_only() {
        let (_, shown) = parse_url("redis://user:hunter2@redis.internal/3").unwrap();
        assert_eq!(shown, "redis://redis.internal:6379/3");
        let (_, shown) = parse_url("rediss://:hunter2@10.0.0.1:6380").unwrap();
        assert_eq!(shown, "rediss://10.0.0.1:6380/0");
    }

    #[test]
    fn bad_urls_are_refused_without_their_password() {
        for (url, why) in [
            (
                "http://user:hunter2@redis.internal/",
                "scheme must be redis or rediss",
            ),
            ("redis//user:hunter2@redis.internal", "not a URL"),
            ("rediss://user:hunter2@redis.internal/#insecure", "fragment"),
            ("redis://user:hunter2@redis.internal/zero", "database"),
            ("redis://user:hunter2@0.0.0.0/", "wildcard"),
        ] {
            let err = parse_url(url).err().unwrap();
            assert!(err.contains(why), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn keys_are_the_prefix_and_lowercase_hex() {
        let store = RedisStore::new(
            "redis://127.0.0.1/",
            Duration::from_secs(1),
            "dpop:",
            Arc::default(),
            SharedWindows::default(),
        )
        .unwrap();
        let mut key = [0u8; 32];
        key[0] = 0xab;
        key[31] = 0x0f;
        let name = store.key_name(&key);
        assert_eq!(name.len(), 5 + 64);
        assert!(name.starts_with("dpop:ab00"), "{name}");
        assert!(name.ends_with("000f"), "{name}");
    }
}
