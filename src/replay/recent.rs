//! The proofs this replica recorded lately, kept beside a shared store (Redis): a use the
//! shared store lost (a flush, a restart without persistence) is still known here, so a
//! replay to this replica right after the loss is refused whatever its `iat`.
//!
//! A safety net, not the store: bounded, and when full it forgets its oldest entries
//! (the ones least likely to be replayed across a loss just seen).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

pub(super) struct Recent {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Keys in the order recorded, with their expiry: a key is recorded once (at its first
    /// use), and ttls never shrink, so this is expiry order too.
    order: VecDeque<(u64, [u8; 32])>,
    expiry: HashMap<[u8; 32], u64>,
}

impl Recent {
    pub(super) fn new(capacity: usize) -> Recent {
        Recent {
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
        }
    }

    /// Whether `key` was recorded here and has not expired at `now_ms`.
    pub(super) fn seen(&self, key: &[u8; 32], now_ms: u64) -> bool {
        self.lock().expiry.get(key).is_some_and(|&e| e > now_ms)
    }

    /// Records `key` until `expiry_ms`.
    pub(super) fn insert(&self, key: [u8; 32], expiry_ms: u64, now_ms: u64) {
        let mut state = self.lock();
        while let Some(&(expiry, oldest)) = state.order.front() {
            if expiry > now_ms && state.order.len() < self.capacity {
                break;
            }
            state.order.pop_front();
            if state.expiry.get(&oldest) == Some(&expiry) {
                state.expiry.remove(&oldest);
            }
        }
        state.order.push_back((expiry_ms, key));
        state.expiry.insert(key, expiry_ms);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the map consistent, so a poisoned lock holds valid data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_seen_until_it_expires_and_the_oldest_go_when_full() {
        let recent = Recent::new(2);
        recent.insert([1; 32], 100, 0);
        assert!(recent.seen(&[1; 32], 99));
        assert!(!recent.seen(&[1; 32], 100));
        recent.insert([2; 32], 200, 10);
        recent.insert([3; 32], 300, 20);
        assert!(!recent.seen(&[1; 32], 30), "the oldest went to make room");
        assert!(recent.seen(&[2; 32], 30) && recent.seen(&[3; 32], 30));
        assert!(!recent.seen(&[4; 32], 30));
    }
}
