//! How long uses are remembered: the widest proof window adopted, and the age limit of
//! proofs issued before each widening.

use std::sync::{Arc, Mutex};

use super::ProofWindow;

/// The proof windows of every configuration adopted since the store was built (and, with
/// Redis, announced by any replica sharing it).
#[derive(Default)]
pub(crate) struct Windows {
    /// The widest: entries are kept for its ttl, so a reload that narrows the window and
    /// one that widens it again never shorten how long a use is remembered.
    pub(super) widest: Option<ProofWindow>,
    /// For each widening, the age limit of proofs issued before it: those may have been
    /// recorded with the narrower ttl.
    pub(super) widenings: Vec<Widening>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Widening {
    pub(super) issued_before_ms: u64,
    pub(super) max_age_ms: u64,
}

impl Windows {
    /// Takes `window` in: the widest grows; a window wider than every one before makes
    /// proofs issued before `now_ms` (plus the skew) keep the old limit.
    pub(crate) fn adopt(&mut self, window: ProofWindow, now_ms: u64) {
        let Some(widest) = self.widest else {
            self.widest = Some(window);
            return;
        };
        if window.max_age_ms > widest.max_age_ms {
            self.widen(
                now_ms.saturating_add(widest.skew_ms.max(window.skew_ms)),
                widest.max_age_ms,
            );
        }
        self.widest = Some(ProofWindow {
            max_age_ms: widest.max_age_ms.max(window.max_age_ms),
            skew_ms: widest.skew_ms.max(window.skew_ms),
        });
    }

    /// Proofs issued before `issued_before_ms` are accepted up to `max_age_ms` old.
    pub(crate) fn widen(&mut self, issued_before_ms: u64, max_age_ms: u64) {
        let widening = Widening {
            issued_before_ms,
            max_age_ms,
        };
        if !self.widenings.contains(&widening) {
            self.widenings.push(widening);
        }
    }

    /// The widest window adopted, if any.
    pub(crate) fn widest(&self) -> Option<ProofWindow> {
        self.widest
    }
}

/// The proof windows a [`ReplayStore`] and its Redis backend share: the backend merges in
/// what other replicas announced in the marker key.
pub(crate) type SharedWindows = Arc<Mutex<Windows>>;
