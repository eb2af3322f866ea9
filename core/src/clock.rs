//! The one wall clock: what `exp`, `nbf`, cached verifications and "last success"
//! timestamps are compared with.
//!
//! It can be replaced by a manual clock, so that expiry and cache tests move time forward
//! instead of sleeping. Cooldowns and timeouts use the monotonic `Instant`/tokio timers, not
//! this clock: a wall clock that steps must not shorten a rate limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, from the system or set by hand.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// `None`: the system clock. `Some`: a manual clock holding milliseconds.
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock that stands at `unix_secs` until [`Clock::advance`] or [`Clock::set`]
    /// moves it. Clones share the same time.
    pub fn manual(unix_secs: u64) -> Clock {
        Clock {
            manual: Some(Arc::new(AtomicU64::new(unix_secs.saturating_mul(1000)))),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_millis(&self) -> u64 {
        match &self.manual {
            Some(ms) => ms.load(Ordering::Relaxed),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// Whole seconds since the Unix epoch.
    pub fn now_secs(&self) -> u64 {
        self.now_millis() / 1000
    }

    /// Moves a manual clock forward; the system clock ignores it.
    pub fn advance(&self, by: Duration) {
        if let Some(ms) = &self.manual {
            let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
            ms.fetch_add(by, Ordering::Relaxed);
        }
    }

    /// Sets a manual clock to `unix_secs`; the system clock ignores it.
    pub fn set(&self, unix_secs: u64) {
        if let Some(ms) = &self.manual {
            ms.store(unix_secs.saturating_mul(1000), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = Clock::manual(1_800_000_000);
        let other = clock.clone();
        assert_eq!(clock.now_secs(), 1_800_000_000);
        other.advance(Duration::from_millis(1500));
        assert_eq!(clock.now_millis(), 1_800_000_001_500);
        clock.set(5);
        assert_eq!(other.now_secs(), 5);
    }

    #[test]
    fn system_clock_is_past_2020() {
        assert!(Clock::system().now_secs() > 1_577_836_800);
    }
}
