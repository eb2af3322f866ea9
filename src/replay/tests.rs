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
            holder_full: 0,
            unproven: 0,
            entries: 1,
        }
    );
    assert!(store.reachable());
    assert_eq!(store.describe(), "memory (max 1 entries)");
}

fn proof(n: u8, holder: u8, iat_ms: u64) -> ProofUse {
    ProofUse {
        key: [n; 32],
        holder: [holder; 32],
        iat_ms,
    }
}

const NARROW: ProofWindow = ProofWindow {
    max_age_ms: 3_000,
    skew_ms: 1_000,
};
const WIDE: ProofWindow = ProofWindow {
    max_age_ms: 121_000,
    skew_ms: 1_000,
};

#[tokio::test]
async fn a_new_memory_store_refuses_proofs_issued_in_an_earlier_second() {
    let store = ReplayStore::memory(10);
    store.adopt(NARROW, 1_000_500);
    assert_eq!(
        store.record(&proof(1, 1, 999_000), 1_000_600).await,
        Ok(Use::Unproven(
            "the proof was issued before the replay store was known complete"
        ))
    );
    // The same second: `iat` cannot say it came earlier.
    assert_eq!(
        store.record(&proof(2, 1, 1_000_000), 1_000_600).await,
        Ok(Use::First)
    );
    assert_eq!(
        store.record(&proof(2, 1, 1_000_000), 1_000_700).await,
        Ok(Use::Replay)
    );
    assert_eq!(store.stats().unproven, 1);
}

#[tokio::test]
async fn a_widened_window_keeps_the_old_limit_for_proofs_issued_before_it() {
    let store = ReplayStore::memory(10);
    store.adopt(NARROW, 0);
    // Used at 1 s under the narrow window: remembered for 4 s.
    assert_eq!(
        store.record(&proof(1, 1, 1_000), 1_000).await,
        Ok(Use::First)
    );
    store.adopt(WIDE, 2_000);
    // At 6.5 s the entry is gone; the proof is 5.5 s old, over the old limit of 3 s.
    assert!(matches!(
        store.record(&proof(1, 1, 1_000), 6_500).await,
        Ok(Use::Unproven(_))
    ));
    // Issued after the widening (and its skew): the new window applies.
    assert_eq!(
        store.record(&proof(2, 1, 3_000), 9_000).await,
        Ok(Use::First)
    );
    // A proof issued before the widening but within the old limit is still checked
    // against the store.
    assert_eq!(
        store.record(&proof(3, 1, 2_000), 4_000).await,
        Ok(Use::First)
    );
    assert_eq!(
        store.record(&proof(3, 1, 2_000), 4_500).await,
        Ok(Use::Replay)
    );
}

#[tokio::test]
async fn narrowing_never_shortens_how_long_a_use_is_remembered() {
    let store = ReplayStore::memory(10);
    store.adopt(WIDE, 0);
    store.adopt(NARROW, 1_000);
    assert_eq!(
        store.record(&proof(1, 1, 2_000), 2_000).await,
        Ok(Use::First)
    );
    // Widened again: no new limit, since every use was remembered for the widest.
    store.adopt(WIDE, 3_000);
    assert_eq!(
        store.record(&proof(1, 1, 2_000), 100_000).await,
        Ok(Use::Replay)
    );
}

#[tokio::test]
async fn one_holder_is_refused_at_its_quota_and_only_first_uses_count() {
    let store = ReplayStore::memory(100).with_holder_quota(2);
    store.adopt(NARROW, 0);
    assert_eq!(store.record(&proof(1, 7, 0), 0).await, Ok(Use::First));
    assert_eq!(store.record(&proof(1, 7, 0), 0).await, Ok(Use::Replay));
    assert_eq!(store.record(&proof(2, 7, 0), 0).await, Ok(Use::First));
    assert_eq!(
        store.record(&proof(3, 7, 0), 0).await,
        Err(ReplayError::HolderFull)
    );
    assert_eq!(store.record(&proof(4, 8, 0), 0).await, Ok(Use::First));
    // Once its proofs expire (4 s), the holder has room again.
    assert_eq!(
        store.record(&proof(5, 7, 3_000), 4_001).await,
        Ok(Use::First)
    );
    assert_eq!(store.stats().holder_full, 1);
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
