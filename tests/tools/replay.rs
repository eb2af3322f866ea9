//! The Redis replay store against a real `redis-server` on loopback: replicas sharing it,
//! expiry, outages (stopped, frozen, down at start) and recovery without a restart, and a
//! password that never shows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jwt_authz::replay::{ReplayError, ReplayStore};
use jwt_authz::testkit::*;

const TIMEOUT: Duration = Duration::from_millis(300);
const TTL: Duration = Duration::from_secs(60);

/// How long a store may take to use Redis again once it is back.
const RECOVERY_LIMIT: Duration = Duration::from_secs(10);

fn store(server: &RedisServer) -> ReplayStore {
    ReplayStore::redis(&server.url(), TIMEOUT, "dpop:").unwrap()
}

/// A key not used before in this process (each test has a server of its own).
fn fresh_key() -> [u8; 32] {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    key
}

/// Fails unless `first_use` fails with `Unavailable`, and within a few timeouts.
async fn assert_unavailable(store: &ReplayStore) {
    let started = Instant::now();
    let result = store.first_use(&fresh_key(), TTL, 0).await;
    let elapsed = started.elapsed();
    assert_eq!(result, Err(ReplayError::Unavailable));
    assert!(elapsed < 3 * TIMEOUT, "took {elapsed:?}");
    assert!(!store.reachable());
}

/// Polls `first_use` with new keys until one succeeds, within [`RECOVERY_LIMIT`].
async fn wait_recovered(store: &ReplayStore) {
    let started = Instant::now();
    loop {
        match store.first_use(&fresh_key(), TTL, 0).await {
            Ok(first) => {
                assert!(first, "a new key is a first use");
                break;
            }
            Err(e) => assert_eq!(e, ReplayError::Unavailable),
        }
        assert!(
            started.elapsed() < RECOVERY_LIMIT,
            "no recovery within {RECOVERY_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(store.reachable());
}

#[tokio::test]
async fn a_proof_first_used_on_one_replica_is_a_replay_on_another() {
    let server = RedisServer::start();
    let (a, b) = (store(&server), store(&server));
    let key = fresh_key();
    assert_eq!(a.first_use(&key, TTL, 0).await, Ok(true));
    assert_eq!(b.first_use(&key, TTL, 0).await, Ok(false));
    assert_eq!(a.first_use(&key, TTL, 0).await, Ok(false));
    assert!(a.reachable() && b.reachable());
    assert_eq!((b.stats().operations, b.stats().replays), (1, 1));

    // Another prefix is another namespace.
    let other = ReplayStore::redis(&server.url(), TIMEOUT, "other:").unwrap();
    assert_eq!(other.first_use(&key, TTL, 0).await, Ok(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uses_of_one_proof_on_two_replicas_admit_exactly_one() {
    let server = RedisServer::start();
    let replicas = [store(&server), store(&server)];
    let key = fresh_key();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let replica = replicas[i % 2].clone();
            tokio::spawn(async move { replica.first_use(&key, TTL, 0).await })
        })
        .collect();
    let mut first_uses = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() {
            first_uses += 1;
        }
    }
    assert_eq!(first_uses, 1);
}

#[tokio::test]
async fn a_key_is_new_again_after_its_ttl() {
    let server = RedisServer::start();
    let store = store(&server);
    let key = fresh_key();
    let ttl = Duration::from_secs(1);
    let first = Instant::now();
    assert_eq!(store.first_use(&key, ttl, 0).await, Ok(true));
    assert_eq!(store.first_use(&key, ttl, 0).await, Ok(false));
    // Redis expires by its own clock: the `now_ms` passed in does not matter.
    assert_eq!(store.first_use(&key, ttl, u64::MAX).await, Ok(false));
    loop {
        let seen = first.elapsed();
        if store.first_use(&key, ttl, 0).await == Ok(true) {
            assert!(seen >= Duration::from_millis(900), "expired after {seen:?}");
            break;
        }
        assert!(seen < Duration::from_secs(5), "not expired after {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_stopped_redis_fails_within_the_timeout_and_is_used_again_once_back() {
    let mut server = RedisServer::start();
    let store = store(&server);
    assert_eq!(store.first_use(&fresh_key(), TTL, 0).await, Ok(true));
    assert!(store.reachable());

    server.stop();
    for _ in 0..3 {
        assert_unavailable(&store).await;
    }
    assert_eq!(store.stats().unavailable, 3);

    server.restart();
    wait_recovered(&store).await;
}

#[tokio::test]
async fn a_frozen_redis_fails_within_the_timeout_and_is_used_again_once_thawed() {
    let server = RedisServer::start();
    let store = store(&server);
    assert_eq!(store.first_use(&fresh_key(), TTL, 0).await, Ok(true));

    // The connection stays open and nothing answers: only the timeout ends the wait.
    server.pause();
    for _ in 0..3 {
        assert_unavailable(&store).await;
    }
    server.resume();
    wait_recovered(&store).await;
}

#[tokio::test]
async fn redis_down_at_start_is_not_an_error_and_is_used_once_up() {
    let mut server = RedisServer::start();
    server.stop();
    let store = store(&server);
    assert!(!store.reachable());
    assert_unavailable(&store).await;

    server.restart();
    wait_recovered(&store).await;
}

#[tokio::test]
async fn reachability_recovers_without_traffic() {
    let mut server = RedisServer::start();
    let store = store(&server);
    assert_eq!(store.first_use(&fresh_key(), TTL, 0).await, Ok(true));
    server.stop();
    assert_unavailable(&store).await;

    server.restart();
    // No proof arrives: reading `reachable` probes Redis in the background.
    wait_until(RECOVERY_LIMIT, "reachable again", || store.reachable()).await;
    assert_eq!(store.stats().operations, 2);
}

#[tokio::test]
async fn rediss_never_falls_back_to_plain_text() {
    // A plain server where TLS is asked for: the handshake fails, nothing is sent in clear.
    let server = RedisServer::start();
    let url = format!("rediss://127.0.0.1:{}/0", server.port());
    let store = ReplayStore::redis(&url, TIMEOUT, "dpop:").unwrap();
    assert_eq!(store.describe(), url);
    assert_unavailable(&store).await;
}

// One thread: the store's tasks run where the capturing subscriber is the default.
#[tokio::test(flavor = "current_thread")]
async fn the_password_never_shows_in_descriptions_errors_or_logs() {
    const PASSWORD: &str = "s3cret-hunter2";
    let (captured, _guard) = capture(tracing::Level::DEBUG);

    let server = RedisServer::with_password(PASSWORD);
    let good = store(&server);
    assert_eq!(good.first_use(&fresh_key(), TTL, 0).await, Ok(true));
    let shown = format!("redis://127.0.0.1:{}/0", server.port());
    assert_eq!(good.describe(), shown);

    let wrong = format!("redis://:not-{PASSWORD}@127.0.0.1:{}/0", server.port());
    let bad = ReplayStore::redis(&wrong, TIMEOUT, "dpop:").unwrap();
    assert_unavailable(&bad).await;
    assert_eq!(bad.describe(), shown);
    assert!(!format!("{bad:?}").contains(PASSWORD));

    let err = ReplayStore::redis(
        &format!("redis://:{PASSWORD}@127.0.0.1:{}/nodb", server.port()),
        TIMEOUT,
        "dpop:",
    )
    .unwrap_err();
    assert!(!err.contains(PASSWORD), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{}", server.port())),
        "{err}"
    );

    let logs = captured.text();
    assert!(logs.contains("replay store unreachable"), "{logs}");
    // The refusal is named, not hidden behind a timeout.
    assert!(logs.to_lowercase().contains("authentication"), "{logs}");
    assert!(!logs.contains(PASSWORD), "{logs}");
}

/// Issue 20's reconnect blip: Redis restarts between two operations (none in flight).
/// The next operation finds its connection broken, connects again within the same call,
/// and succeeds: no operation is refused for an outage it did not overlap. A stalled
/// multiplexed connection is replaced the same way for every concurrent caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_between_operations_refuses_none() {
    for mut server in [RedisServer::start(), RedisServer::durable()] {
        let store = store(&server);
        let key = fresh_key();
        assert_eq!(store.first_use(&key, TTL, 0).await, Ok(true));
        server.restart();
        let results: Vec<_> = futures_join(&store, 8).await;
        assert!(
            results.iter().all(|r| *r == Ok(true)),
            "refused after the restart: {results:?}"
        );
        assert_eq!(store.stats().unavailable, 0);
        assert!(store.reachable());
    }
}

/// `n` concurrent first uses of fresh keys.
async fn futures_join(store: &ReplayStore, n: usize) -> Vec<Result<bool, ReplayError>> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let store = store.clone();
        tasks.spawn(async move { store.first_use(&fresh_key(), TTL, 0).await });
    }
    let mut results = Vec::new();
    while let Some(result) = tasks.join_next().await {
        results.push(result.unwrap());
    }
    results
}
