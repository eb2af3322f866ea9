//! The marker key: since when the Redis data set holds every use, and the widest window
//! any replica has announced; read on each connection and with each proof, merged and
//! written back when this replica knows more.

use super::*;

/// The marker key's value, which every replica reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Marker {
    /// The server run it was written under.
    run_id: String,
    /// Since when (Unix ms) that run's data set is known complete.
    since_ms: u64,
    /// Whether that run had every write on disk before acknowledging it.
    durable: bool,
    /// The widest proof window any replica announced: every replica records uses for it.
    window: Option<ProofWindow>,
    /// The last widening: proofs issued before `widened_at_ms` keep `previous_max_age_ms`.
    widened_at_ms: u64,
    previous_max_age_ms: u64,
}

impl Marker {
    /// `run_id since durable max_age skew widened_at previous_max_age`.
    fn parse(text: &str) -> Option<Marker> {
        let mut fields = text.split(' ');
        let run_id = fields.next().filter(|r| !r.is_empty())?.to_owned();
        let mut number = || fields.next()?.parse::<u64>().ok();
        let since_ms = number()?;
        let durable = number()? == 1;
        let (max_age_ms, skew_ms) = (number()?, number()?);
        let (widened_at_ms, previous_max_age_ms) = (number()?, number()?);
        Some(Marker {
            run_id,
            since_ms,
            durable,
            window: (max_age_ms > 0).then_some(ProofWindow {
                max_age_ms,
                skew_ms,
            }),
            widened_at_ms,
            previous_max_age_ms,
        })
    }

    fn text(&self) -> String {
        let window = self.window.unwrap_or(ProofWindow {
            max_age_ms: 0,
            skew_ms: 0,
        });
        format!(
            "{} {} {} {} {} {} {}",
            self.run_id,
            self.since_ms,
            u8::from(self.durable),
            window.max_age_ms,
            window.skew_ms,
            self.widened_at_ms,
            self.previous_max_age_ms
        )
    }
}

impl RedisStore {
    /// Compares the marker an operation read with the one adopted. Gone, or with another
    /// time, the data set may have lost proofs: it is complete only from now on. Another
    /// window: merged.
    pub(super) async fn check_marker(&self, marker: &Value) -> Result<(), Failure> {
        let found = match marker {
            Value::BulkString(bytes) => std::str::from_utf8(bytes).ok().and_then(Marker::parse),
            _ => None,
        };
        let adopted = self.marker();
        let Some(found) = found else {
            // Gone (a flush, the key deleted): this replica declares the loss.
            tracing::warn!(
                store = %self.0.description,
                "replay store lost its proofs (flushed, or its marker deleted): proofs issued before now are refused"
            );
            let lost = Marker {
                since_ms: unix_ms(),
                ..adopted.unwrap_or_default()
            };
            let (merged, _) = self.merge_windows(lost);
            return self.write_marker(merged, None).await;
        };
        let same_data_set = adopted
            .as_ref()
            .is_some_and(|a| a.run_id == found.run_id && a.since_ms == found.since_ms);
        if !same_data_set {
            // Another replica declared a loss (or saw a new run) and wrote its time by
            // its clock, which may be behind this one: here the data set is complete no
            // earlier than now. The marker is kept as written, so the news is not
            // declared again by every replica in turn.
            tracing::warn!(
                store = %self.0.description,
                "replay store lost its proofs (seen by another replica): proofs issued before now are refused"
            );
            self.0
                .complete_since_ms
                .fetch_max(unix_ms(), Ordering::Relaxed);
        }
        if adopted.as_ref() == Some(&found) && !self.wider_here(&found) {
            return Ok(());
        }
        // A window announced by another replica, or one to announce here.
        let (merged, announce) = self.merge_windows(found.clone());
        if !announce {
            self.adopt(merged);
            return Ok(());
        }
        self.write_marker(merged, Some(found)).await
    }

    /// Whether this replica's window is wider than the one `marker` announces (a reload
    /// widened it, or it started before this replica had one).
    pub(super) fn wider_here(&self, marker: &Marker) -> bool {
        let shared = marker.window.map_or(0, |w| w.max_age_ms);
        self.windows()
            .widest()
            .is_some_and(|local| local.max_age_ms > shared)
    }

    /// Merges the marker's windows with this replica's: the widest is everyone's, and a
    /// widening announced anywhere applies everywhere. Returns the marker to keep, and
    /// whether this replica's window is wider and must be announced.
    pub(super) fn merge_windows(&self, mut marker: Marker) -> (Marker, bool) {
        let mut windows = self.windows();
        if marker.widened_at_ms > 0 {
            let skew = marker.window.map_or(0, |w| w.skew_ms);
            windows.widen(
                marker.widened_at_ms.saturating_add(skew),
                marker.previous_max_age_ms,
            );
        }
        // A widening counts from when it may be seen: the marker is written after this,
        // within the timeout.
        let now = unix_ms().saturating_add(millis(self.0.timeout));
        match (marker.window, windows.widest()) {
            (Some(shared), Some(local)) if local.max_age_ms > shared.max_age_ms => {
                // Wider here: announced, and proofs issued before now keep the old limit.
                windows.widen(
                    now.saturating_add(shared.skew_ms.max(local.skew_ms)),
                    shared.max_age_ms,
                );
                // One widening fits in the marker: one still in force folds into this
                // one with the smaller limit (stricter for proofs issued between them).
                let earlier_in_force = marker.widened_at_ms > 0
                    && now.saturating_sub(marker.widened_at_ms) <= local.max_age_ms;
                marker.previous_max_age_ms = if earlier_in_force {
                    marker.previous_max_age_ms.min(shared.max_age_ms)
                } else {
                    shared.max_age_ms
                };
                marker.widened_at_ms = now;
                marker.window = Some(ProofWindow {
                    max_age_ms: local.max_age_ms,
                    skew_ms: local.skew_ms.max(shared.skew_ms),
                });
                (marker, true)
            }
            (Some(shared), _) => {
                windows.adopt(shared, now);
                (marker, false)
            }
            (None, local) => {
                // A marker without a window: this replica's, once it has one.
                let changed = local.is_some();
                marker.window = local;
                (marker, changed)
            }
        }
    }

    /// Reads what the server is before the first command on a new connection: refuses
    /// one that may evict keys, and works out since when its data set is complete.
    pub(super) async fn inspect(
        &self,
        connection: &mut MultiplexedConnection,
    ) -> Result<(), Failure> {
        let info: String = ::redis::cmd("INFO")
            .query_async(connection)
            .await
            .map_err(Failure::Redis)?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let run_id = field("run_id")
            .filter(|r| !r.is_empty() && !r.contains(' '))
            .ok_or(Failure::Unexpected("INFO has no run_id"))?
            .to_owned();
        // Absent fields are not taken for the safe values: such a server is not one to
        // trust with proofs.
        let (Some(maxmemory), Some(policy)) = (field("maxmemory"), field("maxmemory_policy"))
        else {
            return Err(Failure::Unfit(
                "INFO names no maxmemory or maxmemory_policy: whether keys can be evicted is not known"
                    .into(),
            ));
        };
        if maxmemory != "0" && policy != "noeviction" {
            return Err(Failure::Unfit(format!(
                "maxmemory-policy {policy} can evict proofs before they expire: set maxmemory-policy noeviction (or maxmemory 0)"
            )));
        }
        let aof = field("aof_enabled") == Some("1");
        // A replica promoted to primary (a failover) has a second replication offset: the
        // writes its old primary had not yet sent are lost, whatever its disk.
        let promoted = field("second_repl_offset") != Some("-1");
        // CONFIG may be renamed away on managed servers: then durability is not known.
        let fsync: Option<Vec<String>> = ::redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendfsync")
            .query_async(connection)
            .await
            .ok();
        // And no fsync skipped while a background save or log rewrite runs.
        let rewrite: Option<Vec<String>> = ::redis::cmd("CONFIG")
            .arg("GET")
            .arg("no-appendfsync-on-rewrite")
            .query_async(connection)
            .await
            .ok();
        let setting = |reply: Option<Vec<String>>, want: &str| {
            reply.is_some_and(|v| v.get(1).is_some_and(|value| value == want))
        };
        let durable = aof && setting(fsync, "always") && setting(rewrite, "no");
        let found: Option<String> = ::redis::cmd("GET")
            .arg(&self.0.marker_key)
            .query_async(connection)
            .await
            .map_err(Failure::Redis)?;
        let found = found.as_deref().and_then(Marker::parse);
        let marker = match found.clone() {
            Some(found) if found.run_id == run_id => Marker { durable, ..found },
            // A restart, trusted only when the run that wrote the marker and this one
            // both had every write on disk, and this is no promoted replica.
            Some(found) if found.durable && durable && !promoted => {
                tracing::info!(store = %self.0.description, "replay store restarted with every write on disk: its proofs are kept");
                Marker {
                    run_id,
                    durable,
                    ..found
                }
            }
            found => {
                if found.is_some() {
                    tracing::warn!(
                        store = %self.0.description,
                        "replay store restarted or failed over without every write on disk (appendonly yes, appendfsync always): proofs issued before now are refused"
                    );
                } else if self.marker().is_some() {
                    tracing::warn!(
                        store = %self.0.description,
                        "replay store lost its proofs (restarted without persistence, or flushed): proofs issued before now are refused"
                    );
                }
                let since_ms = unix_ms().max(found.as_ref().map_or(0, |f| f.since_ms));
                Marker {
                    run_id,
                    since_ms,
                    durable,
                    ..found.unwrap_or_default()
                }
            }
        };
        let (marker, _) = self.merge_windows(marker);
        if found.as_ref() != Some(&marker) {
            let _: () = ::redis::cmd("SET")
                .arg(&self.0.marker_key)
                .arg(marker.text())
                .query_async(connection)
                .await
                .map_err(Failure::Redis)?;
        }
        self.adopt(marker);
        Ok(())
    }

    /// Writes `marker` over `base`, the value it was worked out from. When another
    /// replica wrote in between (`SET ... GET` returns what was there), its value is
    /// merged in (the later time, the wider window) and written again: both only grow,
    /// so no replica's news is lost to another's write.
    pub(super) async fn write_marker(
        &self,
        marker: Marker,
        base: Option<Marker>,
    ) -> Result<(), Failure> {
        let (mut next, mut base) = (marker, base);
        for _ in 0..4 {
            let mut cmd = ::redis::cmd("SET");
            cmd.arg(&self.0.marker_key).arg(next.text()).arg("GET");
            let previous = match self.query(&cmd).await? {
                Value::BulkString(bytes) => {
                    std::str::from_utf8(&bytes).ok().and_then(Marker::parse)
                }
                Value::Nil => None,
                _ => return Err(Failure::Unexpected("unexpected reply to SET GET")),
            };
            if previous == base || previous.as_ref() == Some(&next) {
                break;
            }
            let Some(theirs) = previous else { break };
            next.since_ms = next.since_ms.max(theirs.since_ms);
            let (merged, _) = self.merge_windows(Marker {
                since_ms: next.since_ms,
                ..theirs.clone()
            });
            next.window = merged.window;
            next.widened_at_ms = merged.widened_at_ms;
            next.previous_max_age_ms = merged.previous_max_age_ms;
            base = Some(theirs);
        }
        self.adopt(next);
        Ok(())
    }

    pub(super) fn marker(&self) -> Option<Marker> {
        self.0
            .marker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(super) fn adopt(&self, marker: Marker) {
        self.0
            .complete_since_ms
            .fetch_max(marker.since_ms, Ordering::Relaxed);
        *self
            .0
            .marker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(marker);
    }
}
