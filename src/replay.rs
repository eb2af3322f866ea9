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
//! A leaf module: it imports only the URL redaction of [`crate::fetch_url`] and the wall
//! clock of [`crate::clock`].

mod holders;
mod memory;
mod recent;
mod redis;
mod windows;

pub(crate) use windows::{SharedWindows, Windows};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use self::holders::Holders;
use self::memory::MemoryStore;

/// A Redis client for `url` (redis:// or rediss://), and its description for logs, which
/// never holds the password: the one reading of a Redis URL, for the revocation store too.
pub(crate) fn parse_redis_url(url: &str) -> Result<(::redis::Client, String), String> {
    redis::parse_url(url)
}
use self::recent::Recent;
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
    holders: Holders,
    /// Unix ms since which the backend is known to hold every proof recorded: the
    /// memory store's first configuration, or the start of the Redis data set
    /// ([`redis`]). Only grows.
    complete_since_ms: Arc<AtomicU64>,
    windows: SharedWindows,
    /// With Redis, the proofs this replica recorded lately: a use Redis lost is still
    /// known here.
    recent: Option<Recent>,
}

/// How long after `iat` a configuration accepts a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofWindow {
    /// The oldest `iat` accepted, as an age: `max_age` + clock skew.
    pub max_age_ms: u64,
    /// How far `iat` may lie ahead of the clock.
    pub skew_ms: u64,
}

impl ProofWindow {
    /// How long a use must be remembered: from a use as early as `iat - skew` to the end
    /// of the window at `iat + max_age` (a proof is accepted at that millisecond too, and
    /// an entry is gone at its expiry: one more).
    pub fn ttl_ms(self) -> u64 {
        self.max_age_ms
            .saturating_add(self.skew_ms)
            .saturating_add(1)
    }
}

/// One proof to record: its replay key, the key holder it counts against, its `iat`.
#[derive(Debug, Clone, Copy)]
pub struct ProofUse {
    pub key: [u8; 32],
    /// A hash of the proof key's thumbprint.
    pub holder: [u8; 32],
    pub iat_ms: u64,
}

/// What the store says of a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Not seen before: now recorded.
    First,
    /// Seen before within its window.
    Replay,
    /// Issued when the store may not have recorded its earlier uses (before the store
    /// was known complete, or before a reload widened the window): refused, with why.
    Unproven(&'static str),
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
    /// The proof's key holds its quota of unexpired proofs: one holder cannot fill the
    /// store for every other.
    #[error("replay quota of the proof key reached")]
    HolderFull,
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
    /// Proofs refused because their key held its quota ([`ReplayError::HolderFull`]).
    pub holder_full: u64,
    /// Proofs refused as [`Use::Unproven`].
    pub unproven: u64,
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
    holder_full: AtomicU64,
    unproven: AtomicU64,
}

/// Quota of one proof key until [`ReplayStore::with_holder_quota`] sets one: 10,000
/// unexpired proofs (about 150 requests a second from one key over a 65 s window).
pub const DEFAULT_MAX_PER_HOLDER: usize = 10_000;

/// How many proof keys a Redis store tracks quotas for at once.
const REDIS_MAX_HOLDERS: usize = 1_000_000;

/// How many of its latest uses a replica keeps beside Redis (about 9 MiB when full).
const RECENT_CAPACITY: usize = 100_000;

impl ReplayStore {
    /// In-process, bounded to `max_entries` unexpired keys. Only proofs presented to this
    /// replica are seen: behind a load balancer with several replicas, use Redis.
    pub fn memory(max_entries: usize) -> ReplayStore {
        ReplayStore::with(
            Backend::Memory(MemoryStore::new(max_entries)),
            Arc::new(AtomicU64::new(0)),
            SharedWindows::default(),
            max_entries,
        )
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
        let since = Arc::new(AtomicU64::new(0));
        let windows = SharedWindows::default();
        let store = RedisStore::new(
            url,
            timeout,
            key_prefix,
            Arc::clone(&since),
            Arc::clone(&windows),
        )?;
        Ok(ReplayStore::with(
            Backend::Redis(store),
            since,
            windows,
            REDIS_MAX_HOLDERS,
        ))
    }

    fn with(
        backend: Backend,
        complete_since_ms: Arc<AtomicU64>,
        windows: SharedWindows,
        max_holders: usize,
    ) -> ReplayStore {
        let recent = matches!(backend, Backend::Redis(_)).then(|| Recent::new(RECENT_CAPACITY));
        ReplayStore {
            inner: Arc::new(Inner {
                backend,
                counters: Counters::default(),
                holders: Holders::new(DEFAULT_MAX_PER_HOLDER, max_holders),
                recent,
                complete_since_ms,
                windows,
            }),
        }
    }

    /// This store with at most `max` unexpired proofs per proof key.
    pub fn with_holder_quota(self, max: usize) -> ReplayStore {
        let inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| panic!("the holder quota is set before the store is shared"));
        let max_holders = inner.holders.max_holders();
        ReplayStore {
            inner: Arc::new(Inner {
                holders: Holders::new(max, max_holders),
                ..inner
            }),
        }
    }

    /// Adopts the proof window of a configuration (at start, and at every reload) at
    /// `now_ms`. The memory store is known complete from its first configuration on. A
    /// window wider than any before applies to new proofs at once; proofs issued before
    /// the widening (clock skew included) keep the widest earlier limit, since their uses
    /// were remembered only that long.
    pub fn adopt(&self, window: ProofWindow, now_ms: u64) {
        let mut windows = self.windows();
        if windows.widest.is_none() && matches!(self.inner.backend, Backend::Memory(_)) {
            self.inner
                .complete_since_ms
                .fetch_max(now_ms, Ordering::Relaxed);
        }
        windows.adopt(window, now_ms);
    }

    /// Records `proof` as used at `now_ms`, for the widest window adopted: a first use,
    /// a replay, or a proof the store cannot vouch for ([`Use::Unproven`]). Its holder's
    /// quota is checked first, and counts only first uses.
    pub async fn record(&self, proof: &ProofUse, now_ms: u64) -> Result<Use, ReplayError> {
        let counters = &self.inner.counters;
        if let Some(why) = self.unproven(proof.iat_ms, now_ms) {
            counters.unproven.fetch_add(1, Ordering::Relaxed);
            return Ok(Use::Unproven(why));
        }
        if let Some(recent) = &self.inner.recent
            && recent.seen(&proof.key, now_ms)
        {
            // Used here before, whatever Redis says now.
            counters.operations.fetch_add(1, Ordering::Relaxed);
            counters.replays.fetch_add(1, Ordering::Relaxed);
            return Ok(Use::Replay);
        }
        let ttl_ms = self.windows().widest.map_or(1, ProofWindow::ttl_ms);
        let expiry_ms = now_ms.saturating_add(ttl_ms);
        if !self.inner.holders.reserve(&proof.holder, expiry_ms, now_ms) {
            counters.holder_full.fetch_add(1, Ordering::Relaxed);
            return Err(ReplayError::HolderFull);
        }
        let outcome = match self
            .first_use(&proof.key, Duration::from_millis(ttl_ms), now_ms)
            .await
        {
            // The backend may have learnt of a loss while answering (a flushed database).
            Ok(first) => match self.unproven(proof.iat_ms, now_ms) {
                Some(why) => {
                    counters.unproven.fetch_add(1, Ordering::Relaxed);
                    Ok(Use::Unproven(why))
                }
                None if first => Ok(Use::First),
                None => Ok(Use::Replay),
            },
            Err(e) => Err(e),
        };
        if outcome == Ok(Use::First) {
            if let Some(recent) = &self.inner.recent {
                recent.insert(proof.key, expiry_ms, now_ms);
            }
        } else {
            self.inner.holders.release(&proof.holder, expiry_ms);
        }
        outcome
    }

    /// Why a proof issued at `iat_ms` cannot be vouched for at `now_ms`, if it cannot.
    fn unproven(&self, iat_ms: u64, now_ms: u64) -> Option<&'static str> {
        // `iat` has whole seconds: a proof issued in the second the store became
        // complete counts as issued after it.
        let since = self.inner.complete_since_ms.load(Ordering::Relaxed) / 1000 * 1000;
        if iat_ms < since {
            return Some("the proof was issued before the replay store was known complete");
        }
        let mut windows = self.windows();
        let widest = windows.widest.map_or(0, |w| w.max_age_ms);
        // A widening no proof issued before it could still pass is forgotten.
        windows
            .widenings
            .retain(|w| now_ms.saturating_sub(w.issued_before_ms) <= widest);
        let age = now_ms.saturating_sub(iat_ms);
        windows
            .widenings
            .iter()
            .any(|w| iat_ms < w.issued_before_ms && age > w.max_age_ms)
            .then_some("iat is older than the window in force when the proof could first be used")
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, Windows> {
        self.inner
            .windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
            Err(ReplayError::HolderFull) => Some(&counters.holder_full),
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
            holder_full: counters.holder_full.load(Ordering::Relaxed),
            unproven: counters.unproven.load(Ordering::Relaxed),
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
mod tests;
