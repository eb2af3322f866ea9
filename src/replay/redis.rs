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
mod marker;

use marker::Marker;

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
        use opentelemetry::KeyValue;
        let span = crate::otel::ClientSpan::start("redis SET", || {
            vec![
                KeyValue::new("db.system.name", "redis"),
                KeyValue::new("db.operation.name", "SET"),
                KeyValue::new("jwt_authz.store", "dpop_replay"),
            ]
        });
        let result = self.first_use_once(key, ttl_ms).await;
        let failed = result.as_ref().err();
        span.end(failed.map(|e| e as &dyn std::fmt::Display), || {
            let seen = match &result {
                Ok(true) => "first_use",
                Ok(false) => "replay",
                Err(_) => "failed",
            };
            vec![KeyValue::new("jwt_authz.result", seen)]
        });
        result
    }

    async fn first_use_once(&self, key: &[u8; 32], ttl_ms: u64) -> Result<bool, ReplayError> {
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
        self.send(Operation::Command(cmd)).await
    }

    /// Sends `pipe`: its replies, in order.
    async fn query_pipeline(&self, pipe: &::redis::Pipeline) -> Result<Vec<Value>, Failure> {
        match self.send(Operation::Pipeline(pipe)).await? {
            Value::Array(replies) => Ok(replies),
            _ => Err(Failure::Unexpected("unexpected reply to a pipeline")),
        }
    }

    /// Sends `operation` within the timeout. A failure drops the connection it used. When
    /// an established connection turns out broken (the server restarted), the operation is
    /// sent once more on a new one: the operation is refused only if that fails too.
    async fn send(&self, operation: Operation<'_>) -> Result<Value, Failure> {
        let limit = self.0.timeout;
        let attempt = async {
            let mut retried = false;
            loop {
                let (connection, fresh) = self.connection().await?;
                let mut handle = (*connection).clone();
                // An error reply is an `Err` here too.
                let result = match operation {
                    Operation::Command(cmd) => cmd.query_async::<Value>(&mut handle).await,
                    Operation::Pipeline(pipe) => pipe
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
enum Operation<'a> {
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
pub(super) fn parse_url(text: &str) -> Result<(Client, String), String> {
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
mod tests;
