//! The Redis replay store: one `SET key 1 NX PX ttl` per proof, atomic across every replica
//! that shares the server, over one multiplexed connection.
//!
//! The connection is re-established by the store itself rather than by the client
//! library's `ConnectionManager`, which reconnects only when a connection drops: a server
//! that stops answering with the socket still open (a frozen host, a network path gone
//! dark) would time out forever, and its retries hide a refused password behind a
//! timeout. Here any failed command drops the connection; the next operation connects
//! again, at most once per [`RECONNECT_DELAY`], and operations in between fail at once
//! instead of each waiting out the timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, RedisError, Value};
use arc_swap::ArcSwapOption;
use url::Url;

use super::ReplayError;
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
}

/// Why an operation failed, for the log line that opens an outage.
enum Failure {
    Redis(RedisError),
    Timeout(Duration),
    /// Within [`RECONNECT_DELAY`] of the last failure: not tried.
    Waiting,
    Unexpected(&'static str),
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
        }
    }
}

impl RedisStore {
    pub(super) fn new(url: &str, timeout: Duration, key_prefix: &str) -> Result<Self, String> {
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
        })))
    }

    pub(super) fn describe(&self) -> &str {
        &self.0.description
    }

    pub(super) async fn first_use(&self, key: &[u8; 32], ttl_ms: u64) -> Result<bool, ReplayError> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.key_name(key))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms);
        let result = match self.query(&cmd).await {
            Ok(Value::Okay) => Ok(true),
            Ok(Value::Nil) => Ok(false),
            // Not a reply SET NX gives: whatever answered is not a Redis to trust.
            Ok(_) => Err(Failure::Unexpected("unexpected reply to SET NX")),
            Err(failure) => Err(failure),
        };
        self.record(result)
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
    /// timeout. A failure drops the connection it used, so the next operation starts a
    /// fresh one.
    async fn query(&self, cmd: &::redis::Cmd) -> Result<Value, Failure> {
        let limit = self.0.timeout;
        let mut used = None;
        let attempt = async {
            let connection = self.connection().await?;
            let mut handle = (*connection).clone();
            used = Some(connection);
            // An error reply is an `Err` here too.
            cmd.query_async::<Value>(&mut handle)
                .await
                .map_err(Failure::Redis)
        };
        let result = match tokio::time::timeout(limit, attempt).await {
            Ok(result) => result,
            Err(_elapsed) => Err(Failure::Timeout(limit)),
        };
        if result.is_err()
            && let Some(failed) = used
        {
            self.drop_connection(&failed);
        }
        result
    }

    /// The current connection, or a new one: one attempt at a time, none within
    /// [`RECONNECT_DELAY`] of a failure.
    async fn connection(&self) -> Result<Arc<MultiplexedConnection>, Failure> {
        if let Some(connection) = self.0.connection.load_full() {
            return Ok(connection);
        }
        if self.waiting() {
            return Err(Failure::Waiting);
        }
        let _connecting = self.0.connecting.lock().await;
        // Whoever held the lock before may have connected, or failed.
        if let Some(connection) = self.0.connection.load_full() {
            return Ok(connection);
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
        let connection = self
            .0
            .client
            .get_multiplexed_async_connection_with_config(&self.0.config)
            .await
            .map_err(Failure::Redis)?;
        attempt.succeeded = true;
        let connection = Arc::new(connection);
        self.0.connection.store(Some(connection.clone()));
        Ok(connection)
    }

    /// Forgets `failed`, unless another operation already replaced it, and delays the
    /// next attempt: a server that fails every command is not reconnected to for each.
    fn drop_connection(&self, failed: &Arc<MultiplexedConnection>) {
        let previous = self.0.connection.compare_and_swap(failed, None);
        if previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, failed)) {
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
        let store = RedisStore::new("redis://127.0.0.1/", Duration::from_secs(1), "dpop:").unwrap();
        let mut key = [0u8; 32];
        key[0] = 0xab;
        key[31] = 0x0f;
        let name = store.key_name(&key);
        assert_eq!(name.len(), 5 + 64);
        assert!(name.starts_with("dpop:ab00"), "{name}");
        assert!(name.ends_with("000f"), "{name}");
    }
}
