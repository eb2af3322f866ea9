//! The DPoP proof replay store (RFC 9449 §11.1): remembers which proofs were seen, so a
//! proof presented a second time within its validity window is refused.
//!
//! Keys arrive already hashed (the caller hashes the key thumbprint and the `jti`), so the
//! store never holds a raw proof value. Two backends sit behind one type: an in-process
//! map bounded in size ([`ReplayStore::memory`]), enough for one replica, and Redis
//! ([`ReplayStore::redis`]), shared by every replica so a proof replayed against another
//! instance is refused too.
//!
//! Every failure is closed: a full memory store refuses new proofs rather than forget an
//! unexpired one, and an unreachable Redis is an error, never a "first use".
//!
//! A leaf module: it imports only the URL redaction of [`crate::fetch_url`].

mod memory;
mod redis;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use self::memory::MemoryStore;
use self::redis::RedisStore;

/// Where seen proofs are remembered. Cheap to clone: clones share the same entries and
/// counters.
#[derive(Clone)]
pub struct ReplayStore {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    counters: Counters,
}

enum Backend {
    Memory(MemoryStore),
    Redis(RedisStore),
}

/// Why a proof's first use could not be decided. The caller must refuse the proof: an
/// undecided proof may be a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// Redis did not answer within the timeout, refused the connection or the command.
    #[error("replay store unavailable")]
    Unavailable,
    /// The memory store holds its maximum of unexpired entries. None is evicted early,
    /// since that would let its proof be replayed.
    #[error("replay store full")]
    Full,
}

/// Counters for metrics, read with [`ReplayStore::stats`]. The counts are totals since
/// the store was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayStats {
    /// The backend: `"memory"` or `"redis"`.
    pub kind: &'static str,
    /// Calls to [`ReplayStore::first_use`], whatever their outcome.
    pub operations: u64,
    /// Proofs found already seen (`Ok(false)`).
    pub replays: u64,
    /// Calls that failed with [`ReplayError::Unavailable`].
    pub unavailable: u64,
    /// Calls that failed with [`ReplayError::Full`].
    pub full: u64,
    /// Entries held by the memory store, expired ones not yet purged included; always 0
    /// for Redis, which expires keys itself.
    pub entries: u64,
}

#[derive(Default)]
struct Counters {
    operations: AtomicU64,
    replays: AtomicU64,
    unavailable: AtomicU64,
    full: AtomicU64,
}

impl ReplayStore {
    /// In-process, bounded to `max_entries` unexpired keys. Only proofs presented to this
    /// replica are seen: behind a load balancer with several replicas, use Redis.
    pub fn memory(max_entries: usize) -> ReplayStore {
        ReplayStore::with(Backend::Memory(MemoryStore::new(max_entries)))
    }

    /// Redis at `url` (`redis://` or `rediss://`, with an optional `user:password@` and
    /// `/db`), keys named `key_prefix` + the key in lowercase hex. Nothing connects here:
    /// the first operation does, and the connection is re-established by itself after an
    /// outage, so Redis being down at start is not an error (operations fail with
    /// [`ReplayError::Unavailable`] meanwhile). `timeout` bounds every operation, the
    /// connection included.
    ///
    /// Errors name what is wrong with the URL, shown redacted (no password).
    pub fn redis(url: &str, timeout: Duration, key_prefix: &str) -> Result<ReplayStore, String> {
        let store = RedisStore::new(url, timeout, key_prefix)?;
        Ok(ReplayStore::with(Backend::Redis(store)))
    }

    fn with(backend: Backend) -> ReplayStore {
        ReplayStore {
            inner: Arc::new(Inner {
                backend,
                counters: Counters::default(),
            }),
        }
    }

    /// Records `key` as seen for `ttl` (at least 1 ms). `Ok(true)` when it had not been
    /// seen within its ttl (first use), `Ok(false)` on a replay. A replay does not extend
    /// the first use's expiry.
    ///
    /// `now_ms` is Unix milliseconds from the service's clock; the memory store expires
    /// entries by it, while Redis expires keys by its own clock (`SET key 1 NX PX ttl`,
    /// atomic across replicas).
    pub async fn first_use(
        &self,
        key: &[u8; 32],
        ttl: Duration,
        now_ms: u64,
    ) -> Result<bool, ReplayError> {
        let ttl_ms = ttl_millis(ttl);
        let result = match &self.inner.backend {
            Backend::Memory(store) => store.first_use(key, ttl_ms, now_ms),
            Backend::Redis(store) => store.first_use(key, ttl_ms).await,
        };
        let counters = &self.inner.counters;
        counters.operations.fetch_add(1, Ordering::Relaxed);
        let counter = match result {
            Ok(true) => None,
            Ok(false) => Some(&counters.replays),
            Err(ReplayError::Unavailable) => Some(&counters.unavailable),
            Err(ReplayError::Full) => Some(&counters.full),
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Whether the last operation or probe reached the store; the memory store always
    /// does. Redis reads `false` until a first operation succeeds. While it reads `false`,
    /// a call also starts a `PING` in the background (at most one per timeout, and only
    /// inside a Tokio runtime), so a health check sees Redis come back even when no proof
    /// arrives.
    pub fn reachable(&self) -> bool {
        match &self.inner.backend {
            Backend::Memory(_) => true,
            Backend::Redis(store) => store.reachable(),
        }
    }

    /// The counters since the store was built, and the memory store's current size.
    pub fn stats(&self) -> ReplayStats {
        let counters = &self.inner.counters;
        let (kind, entries) = match &self.inner.backend {
            Backend::Memory(store) => ("memory", store.len() as u64),
            Backend::Redis(_) => ("redis", 0),
        };
        ReplayStats {
            kind,
            operations: counters.operations.load(Ordering::Relaxed),
            replays: counters.replays.load(Ordering::Relaxed),
            unavailable: counters.unavailable.load(Ordering::Relaxed),
            full: counters.full.load(Ordering::Relaxed),
            entries,
        }
    }

    /// What the store is, for logs: `memory (max 100000 entries)` or
    /// `redis://redis.internal:6379/0` (never the password).
    pub fn describe(&self) -> String {
        match &self.inner.backend {
            Backend::Memory(store) => format!("memory (max {} entries)", store.max_entries()),
            Backend::Redis(store) => store.describe().to_owned(),
        }
    }
}

impl std::fmt::Debug for ReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ReplayStore")
            .field(&self.describe())
            .finish()
    }
}

/// `ttl` in whole milliseconds, at least 1: Redis refuses `PX 0`, and a zero ttl would
/// make every proof a first use.
fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stats_count_every_outcome() {
        let store = ReplayStore::memory(1);
        let ttl = Duration::from_secs(60);
        assert_eq!(store.first_use(&[1; 32], ttl, 0).await, Ok(true));
        assert_eq!(store.first_use(&[1; 32], ttl, 1).await, Ok(false));
        assert_eq!(
            store.first_use(&[2; 32], ttl, 2).await,
            Err(ReplayError::Full)
        );
        let stats = store.clone().stats();
        assert_eq!(
            stats,
            ReplayStats {
                kind: "memory",
                operations: 3,
                replays: 1,
                unavailable: 0,
                full: 1,
                entries: 1,
            }
        );
        assert!(store.reachable());
        assert_eq!(store.describe(), "memory (max 1 entries)");
    }

    #[tokio::test]
    async fn a_zero_ttl_still_catches_an_immediate_replay() {
        let store = ReplayStore::memory(10);
        assert_eq!(store.first_use(&[1; 32], Duration::ZERO, 7).await, Ok(true));
        assert_eq!(
            store.first_use(&[1; 32], Duration::ZERO, 7).await,
            Ok(false)
        );
        assert_eq!(store.first_use(&[1; 32], Duration::ZERO, 8).await, Ok(true));
    }

    #[tokio::test]
    async fn redis_that_refuses_connections_is_unavailable_not_a_first_use() {
        // Nothing listens there: building succeeds, operations fail closed.
        let addr = crate::testkit::unused_addr();
        let url = format!("redis://user:hunter2@{addr}/0");
        let store = ReplayStore::redis(&url, Duration::from_millis(300), "dpop:").unwrap();
        assert!(!store.reachable());
        let started = std::time::Instant::now();
        let result = store.first_use(&[1; 32], Duration::from_secs(60), 0).await;
        assert_eq!(result, Err(ReplayError::Unavailable));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(!store.reachable());
        let stats = store.stats();
        assert_eq!(
            (stats.kind, stats.operations, stats.unavailable),
            ("redis", 1, 1)
        );
        assert_eq!(store.describe(), format!("redis://{addr}/0"));
        assert!(!format!("{store:?}").contains("hunter2"));
    }
}
