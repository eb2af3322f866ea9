//! How many unexpired proofs each key holder has recorded, so one holder cannot fill the
//! store: a holder at its quota is refused before the store is full for everyone.
//!
//! Counted in this process, whatever the backend: with Redis shared by several replicas,
//! one holder can hold its quota on each.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

/// Per holder (the hash of a proof key's thumbprint), the expiries of its recorded proofs,
/// oldest first: proofs are recorded with a ttl that never shrinks, so expiries arrive in
/// order.
pub(super) struct Holders {
    max_per_holder: usize,
    max_holders: usize,
    state: Mutex<State>,
}

struct State {
    expiries: HashMap<[u8; 32], VecDeque<u64>>,
    /// When the whole map is next swept of expired proofs and holders left with none.
    next_sweep_ms: u64,
}

/// How often the map is swept whole, at most: holders that went quiet are dropped within
/// this, whatever the map's size.
const SWEEP_INTERVAL_MS: u64 = 10_000;

impl Holders {
    pub(super) fn new(max_per_holder: usize, max_holders: usize) -> Holders {
        Holders {
            max_per_holder: max_per_holder.max(1),
            max_holders: max_holders.max(1),
            state: Mutex::new(State {
                expiries: HashMap::new(),
                next_sweep_ms: 0,
            }),
        }
    }

    pub(super) fn max_holders(&self) -> usize {
        self.max_holders
    }

    /// Takes one of `holder`'s places until `expiry_ms`, if it has one left at `now_ms`:
    /// the check and the count are one step, so concurrent proofs of one holder cannot
    /// pass the quota together. A place taken for a proof that turns out not to be a first
    /// use is given back ([`Holders::release`]).
    pub(super) fn reserve(&self, holder: &[u8; 32], expiry_ms: u64, now_ms: u64) -> bool {
        let mut state = self.lock();
        if now_ms >= state.next_sweep_ms {
            state.sweep(now_ms);
        }
        if let Some(expiries) = state.expiries.get_mut(holder) {
            drop_expired(expiries, now_ms);
            if expiries.len() >= self.max_per_holder {
                return false;
            }
            expiries.push_back(expiry_ms);
            return true;
        }
        if state.expiries.len() >= self.max_holders {
            state.sweep(now_ms);
            if state.expiries.len() >= self.max_holders {
                return false;
            }
        }
        state
            .expiries
            .entry(*holder)
            .or_default()
            .push_back(expiry_ms);
        true
    }

    /// Gives back a place [`Holders::reserve`] took until `expiry_ms`.
    pub(super) fn release(&self, holder: &[u8; 32], expiry_ms: u64) {
        let mut state = self.lock();
        if let Some(expiries) = state.expiries.get_mut(holder)
            && let Some(i) = expiries.iter().rposition(|&e| e == expiry_ms)
        {
            expiries.remove(i);
        }
    }

    /// Holders tracked, for tests.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().expiries.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the map consistent, so a poisoned lock holds valid data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// Drops expired proofs, holders left with none, and spare room.
    fn sweep(&mut self, now_ms: u64) {
        self.expiries.retain(|_, expiries| {
            drop_expired(expiries, now_ms);
            if expiries.capacity() > 2 * expiries.len() + 8 {
                expiries.shrink_to_fit();
            }
            !expiries.is_empty()
        });
        if self.expiries.capacity() > 2 * self.expiries.len() + 64 {
            self.expiries.shrink_to_fit();
        }
        self.next_sweep_ms = now_ms.saturating_add(SWEEP_INTERVAL_MS);
    }
}

fn drop_expired(expiries: &mut VecDeque<u64>, now_ms: u64) {
    while expiries.front().is_some_and(|&e| e <= now_ms) {
        expiries.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_is_refused_at_its_quota_until_its_proofs_expire() {
        let holders = Holders::new(2, 10);
        let (a, b) = ([1; 32], [2; 32]);
        assert!(holders.reserve(&a, 100, 0));
        assert!(holders.reserve(&a, 200, 0));
        assert!(!holders.reserve(&a, 250, 50));
        assert!(
            holders.reserve(&b, 250, 50),
            "another holder is not affected"
        );
        assert!(holders.reserve(&a, 300, 100), "one of a's proofs expired");
    }

    #[test]
    fn a_place_given_back_is_free_again() {
        let holders = Holders::new(1, 10);
        assert!(holders.reserve(&[1; 32], 100, 0));
        holders.release(&[1; 32], 100);
        assert!(holders.reserve(&[1; 32], 100, 0));
    }

    #[test]
    fn the_number_of_holders_is_bounded_and_quiet_ones_are_dropped() {
        let holders = Holders::new(5, 2);
        assert!(holders.reserve(&[1; 32], 100, 0));
        assert!(holders.reserve(&[2; 32], 300, 0));
        assert!(!holders.reserve(&[3; 32], 400, 50));
        assert!(
            holders.reserve(&[3; 32], 400, 100),
            "holder 1 expired and was swept"
        );
        // Whatever the map's size, holders with nothing unexpired go at the next sweep.
        assert!(holders.reserve(&[4; 32], 20_000, 19_000));
        assert_eq!(holders.len(), 1);
    }
}
