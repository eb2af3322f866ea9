//! How many denial lines get logged: at most `rate` per JSON code per second, the first of
//! each code always, and a periodic summary of what was left out, so that a flood of bad
//! requests costs a few atomic operations per Check instead of a formatted log line.
//!
//! Metrics never go through here: they count every decision exactly.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::Code;

/// How often the summary of suppressed denials is logged, when there is one.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// The per-code limit on denial log lines.
pub struct DenyLog {
    /// Lines per code per second; 0 logs every denial.
    rate: u32,
    epoch: Instant,
    codes: [CodeWindow; Code::ALL.len()],
}

#[derive(Default)]
struct CodeWindow {
    /// The second (since `epoch`) that `logged` counts.
    second: AtomicU64,
    /// Lines logged in that second.
    logged: AtomicU32,
    /// Denials not logged since the last summary.
    suppressed: AtomicU64,
}

impl DenyLog {
    /// At most `rate` lines per code per second; `rate` 0 logs every denial.
    pub fn new(rate: u32) -> DenyLog {
        DenyLog {
            rate,
            epoch: Instant::now(),
            codes: Default::default(),
        }
    }

    /// Whether a denial with `code` is logged now. When it is not, it is counted for the
    /// next summary.
    pub fn admit(&self, code: Code) -> bool {
        if self.rate == 0 {
            return true;
        }
        let window = &self.codes[code.index()];
        let now = self.epoch.elapsed().as_secs();
        let second = window.second.load(Ordering::Relaxed);
        // One caller wins the move to a new second and resets the count; a race loses at
        // most a few lines either way, never the first of a second.
        if now != second
            && window
                .second
                .compare_exchange(second, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            window.logged.store(0, Ordering::Relaxed);
        }
        if window.logged.fetch_add(1, Ordering::Relaxed) < self.rate {
            true
        } else {
            window.suppressed.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// The denials suppressed since the last call, per code (codes with none left out),
    /// and resets them.
    fn take_suppressed(&self) -> Vec<(Code, u64)> {
        Code::ALL
            .into_iter()
            .zip(&self.codes)
            .map(|(code, w)| (code, w.suppressed.swap(0, Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Logs one summary line of the suppressed denials, if any.
    pub fn log_summary(&self) {
        let suppressed = self.take_suppressed();
        if suppressed.is_empty() {
            return;
        }
        let total: u64 = suppressed.iter().map(|(_, n)| n).sum();
        let by_code = suppressed
            .iter()
            .map(|(code, n)| format!("{}={n}", code.as_str()))
            .collect::<Vec<_>>()
            .join(" ");
        tracing::info!(
            suppressed = total,
            by_code = %by_code,
            rate = self.rate,
            "denials not logged (log.deny_rate); metrics count them all"
        );
    }

    /// Logs a summary every [`SUMMARY_INTERVAL`], forever: spawn it, abort it on shutdown.
    pub async fn run_summaries(self: std::sync::Arc<Self>) {
        if self.rate == 0 {
            return;
        }
        let mut tick = tokio::time::interval(SUMMARY_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate
        loop {
            tick.tick().await;
            self.log_summary();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_of_each_code_is_logged_then_the_rate_holds() {
        let log = DenyLog::new(3);
        assert!(log.admit(Code::InvalidHeader));
        assert!(log.admit(Code::AuthorizationHeaderMissing));
        assert!(log.admit(Code::InvalidHeader));
        assert!(log.admit(Code::InvalidHeader));
        for _ in 0..100 {
            assert!(!log.admit(Code::InvalidHeader));
        }
        // Another code has its own budget.
        assert!(log.admit(Code::TokenExpired));
        assert_eq!(log.take_suppressed(), [(Code::InvalidHeader, 100)]);
        assert_eq!(log.take_suppressed(), []);
    }

    #[test]
    fn rate_zero_logs_every_denial() {
        let log = DenyLog::new(0);
        assert!((0..1000).all(|_| log.admit(Code::InvalidHeader)));
        assert_eq!(log.take_suppressed(), []);
    }

    #[test]
    fn a_new_second_gives_a_new_budget() {
        let mut log = DenyLog::new(1);
        assert!(log.admit(Code::InvalidToken));
        assert!(!log.admit(Code::InvalidToken));
        // As if a second had passed.
        log.epoch -= Duration::from_secs(1);
        assert!(log.admit(Code::InvalidToken));
        assert!(!log.admit(Code::InvalidToken));
        assert_eq!(log.take_suppressed(), [(Code::InvalidToken, 2)]);
    }
}
