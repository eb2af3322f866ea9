//! Replicas sharing one real Redis as their DPoP replay store.

use jwt_authz::testkit::*;
use serde_json::json;

/// The health of one named service.
async fn health_of(authz: &Authz, service: &str) -> i32 {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    HealthClient::new(authz.channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status)
        .unwrap_or(-1)
}

/// Waits (at most 5 s) until the replay store's health entry is `status`.
async fn wait_health(authz: &Authz, status: i32, failure: &str) {
    let started = std::time::Instant::now();
    while health_of(authz, "jwt_authz.dpop_replay_store").await != status {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{failure}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Two replicas sharing one real Redis: a proof used on one is refused on the other; with
/// Redis down, DPoP requests fail closed (503) while bearer tokens still pass, the outage
/// shows in metrics and health, and the service recovers by itself.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_share_the_redis_replay_store_and_fail_closed_without_it() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let mut redis = RedisServer::start();
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let text = format!(
        "issuers:\n  - {{issuer: \"{}\", audiences: [\"{AUDIENCE}\"], jwks_uri: \"{}\"}}\ndpop:\n  replay_store: {}\n  replay_store_timeout: 200ms\n",
        idp.issuer(),
        idp.jwks_uri(),
        redis.url()
    );
    let path = TempFile::new("replicas.yaml", text);
    let flags = ["--config", path.to_str().unwrap()];
    let (one, two) = (Authz::start(&flags).await, Authz::start(&flags).await);
    one.wait_serving().await;
    two.wait_serving().await;

    let client = proof_key("ec-256");
    let mut c = claims(&idp.issuer());
    c["cnf"] = json!({"jkt": client.thumbprint()});
    let token = mint(&key("rsa-1"), &c);
    let dpop = format!("DPoP {token}");
    let proof = client.proof("GET", URL, Some(&token));
    assert_allowed(&one.check(with_proofs(&dpop, &[&proof])).await);
    assert_denied(
        &two.check(with_proofs(&dpop, &[&proof])).await,
        401,
        "invalid_dpop_proof",
    );
    let serving = ServingStatus::Serving as i32;
    let not_serving = ServingStatus::NotServing as i32;
    wait_health(&two, serving, "health never showed the store reachable").await;

    redis.stop();
    let fresh = client.proof("GET", URL, Some(&token));
    let down = two.check(with_proofs(&dpop, &[&fresh])).await;
    let headers = assert_denied(&down, 503, "replay_store_unavailable");
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    let plain = mint(&key("rsa-1"), &claims(&idp.issuer()));
    assert_allowed(&two.check_token(&plain).await);
    let (_, metrics) = scrape(&two, "/metrics").await;
    assert!(
        metrics.contains("jwt_authz_dpop_replay_store_up{store=\"redis\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("result=\"unavailable\"} 1"), "{metrics}");
    wait_health(&two, not_serving, "health never showed the outage").await;

    redis.restart();
    let started = std::time::Instant::now();
    loop {
        let fresh = client.proof("GET", URL, Some(&token));
        let response = two.check(with_proofs(&dpop, &[&fresh])).await;
        if allows(&response) {
            break;
        }
        // Unavailable while Redis starts; once it answers, a proof issued in a second
        // before the restart was seen is refused: the restart lost the proofs it held.
        let code = match decision(&response) {
            Decision::Deny { code, .. } => code,
            allow => panic!("{allow:?}"),
        };
        assert!(
            code == "replay_store_unavailable" || code == "invalid_dpop_proof",
            "{code}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the replay store did not come back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    wait_health(&two, serving, "health never recovered").await;
    one.stop().await.unwrap();
    two.stop().await.unwrap();
    let _ = std::fs::remove_file(path);
}
