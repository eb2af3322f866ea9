//! The in-process replay store: a map of seen keys to their expiry, bounded in size, with
//! expired entries purged in expiry order on each insert.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Mutex, PoisonError};

use super::ReplayError;

/// Capacity reserved up front: enough for a quiet service without allocating the whole
/// bound of a large one at start.
const INITIAL_CAPACITY: usize = 1024;

pub(super) struct MemoryStore {
    max_entries: usize,
    seen: Mutex<Seen>,
}

/// Seen keys. Every map entry has exactly one heap entry with the same expiry: a key is
/// inserted only when absent, and removed only when its heap entry is popped. So the heap
/// orders the map by expiry whatever the ttls, and purging pops from its top.
struct Seen {
    expiry: HashMap<[u8; 32], u64>,
    queue: BinaryHeap<Reverse<(u64, [u8; 32])>>,
}

impl MemoryStore {
    pub(super) fn new(max_entries: usize) -> MemoryStore {
        let capacity = max_entries.min(INITIAL_CAPACITY);
        MemoryStore {
            max_entries,
            seen: Mutex::new(Seen {
                expiry: HashMap::with_capacity(capacity),
                queue: BinaryHeap::with_capacity(capacity),
            }),
        }
    }

    pub(super) fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Entries held, expired ones not yet purged included.
    pub(super) fn len(&self) -> usize {
        self.lock().expiry.len()
    }

    /// An entry expires at `now_ms + ttl_ms` and is seen until then (exclusive). One lock,
    /// and no allocation beyond the new entry's share of the map and heap.
    pub(super) fn first_use(
        &self,
        key: &[u8; 32],
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<bool, ReplayError> {
        let mut seen = self.lock();
        seen.purge(now_ms);
        if seen.expiry.contains_key(key) {
            return Ok(false);
        }
        // invariant: an unexpired entry is never evicted to make room, since its proof
        // could then be replayed; a full store refuses new proofs instead.
        if seen.expiry.len() >= self.max_entries {
            return Err(ReplayError::Full);
        }
        let expiry = now_ms.saturating_add(ttl_ms);
        seen.expiry.insert(*key, expiry);
        seen.queue.push(Reverse((expiry, *key)));
        Ok(true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        // The map is consistent between statements (no code in the critical section
        // panics midway through an update), so a poisoned lock still holds valid data.
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Seen {
    /// Drops every entry whose expiry is at or before `now_ms`. A clock that steps back
    /// only keeps entries longer.
    fn purge(&mut self, now_ms: u64) {
        while let Some(Reverse((expiry, key))) = self.queue.peek() {
            if *expiry > now_ms {
                break;
            }
            self.expiry.remove(key);
            self.queue.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn a_new_key_is_a_first_use_and_the_same_key_a_replay() {
        let store = MemoryStore::new(10);
        assert_eq!(store.first_use(&key(1), 1000, 5000), Ok(true));
        assert_eq!(store.first_use(&key(1), 1000, 5000), Ok(false));
        assert_eq!(store.first_use(&key(1), 1000, 5999), Ok(false));
        assert_eq!(store.first_use(&key(2), 1000, 5999), Ok(true));
    }

    #[test]
    fn a_key_is_new_again_once_its_ttl_has_passed() {
        let store = MemoryStore::new(10);
        assert_eq!(store.first_use(&key(1), 1000, 5000), Ok(true));
        assert_eq!(store.first_use(&key(1), 1000, 5999), Ok(false));
        assert_eq!(store.first_use(&key(1), 1000, 6000), Ok(true));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_replay_does_not_extend_the_expiry() {
        let store = MemoryStore::new(10);
        assert_eq!(store.first_use(&key(1), 1000, 5000), Ok(true));
        assert_eq!(store.first_use(&key(1), 1000, 5900), Ok(false));
        assert_eq!(store.first_use(&key(1), 1000, 6000), Ok(true));
    }

    #[test]
    fn a_full_store_refuses_new_keys_but_still_spots_replays() {
        let store = MemoryStore::new(2);
        assert_eq!(store.first_use(&key(1), 1000, 0), Ok(true));
        assert_eq!(store.first_use(&key(2), 1000, 0), Ok(true));
        assert_eq!(store.first_use(&key(3), 1000, 999), Err(ReplayError::Full));
        assert_eq!(store.first_use(&key(1), 1000, 999), Ok(false));
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn expired_entries_make_room() {
        let store = MemoryStore::new(2);
        assert_eq!(store.first_use(&key(1), 1000, 0), Ok(true));
        assert_eq!(store.first_use(&key(2), 2000, 0), Ok(true));
        assert_eq!(store.first_use(&key(3), 1000, 500), Err(ReplayError::Full));
        assert_eq!(store.first_use(&key(3), 1000, 1000), Ok(true));
        assert_eq!(store.first_use(&key(2), 1000, 1000), Ok(false));
    }

    #[test]
    fn a_short_ttl_behind_a_long_one_is_purged_in_expiry_order() {
        // Insertion order is not expiry order here: the long-lived first entry must not
        // hold back the purge of the short-lived ones after it.
        let store = MemoryStore::new(3);
        assert_eq!(store.first_use(&key(1), 60_000, 0), Ok(true));
        assert_eq!(store.first_use(&key(2), 100, 0), Ok(true));
        assert_eq!(store.first_use(&key(3), 100, 0), Ok(true));
        assert_eq!(store.first_use(&key(4), 100, 50), Err(ReplayError::Full));
        assert_eq!(store.first_use(&key(4), 100, 100), Ok(true));
        assert_eq!(store.first_use(&key(5), 100, 100), Ok(true));
        assert_eq!(store.len(), 3);
        assert_eq!(store.first_use(&key(1), 60_000, 100), Ok(false));
    }

    #[test]
    fn a_clock_stepping_back_keeps_entries_longer() {
        let store = MemoryStore::new(10);
        assert_eq!(store.first_use(&key(1), 1000, 10_000), Ok(true));
        assert_eq!(store.first_use(&key(1), 1000, 2_000), Ok(false));
        assert_eq!(store.first_use(&key(1), 1000, 11_000), Ok(true));
    }

    #[test]
    fn a_zero_bound_refuses_every_key() {
        let store = MemoryStore::new(0);
        assert_eq!(store.first_use(&key(1), 1000, 0), Err(ReplayError::Full));
    }
}
