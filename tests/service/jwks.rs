//! The JWKS cache against a real HTTP identity provider on loopback: discovery, rotation,
//! outages, a flood of unknown `kid`s, health and the 503 before the first load.

use std::time::Duration;

use jwt_authz::testkit::*;
use serde_json::json;
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test(flavor = "multi_thread")]
async fn rotated_key_is_picked_up_by_one_refetch() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(&idp, &["--jwks-cooldown", "100ms"]).await;
    let c = claims(&idp.issuer());
    assert_allowed(&authz.check_token(&mint(&key("rsa-1"), &c)).await);
    let before = idp.jwks_hits();

    // Overlap: the IdP publishes the new key next to the old one.
    idp.update(|s| s.keys.push(key("rsa-2").jwk));
    tokio::time::sleep(Duration::from_millis(150)).await; // let the cooldown pass
    assert_allowed(&authz.check_token(&mint(&key("rsa-2"), &c)).await);
    assert_eq!(
        idp.jwks_hits(),
        before + 1,
        "exactly one refetch for the new kid"
    );
    assert_allowed(&authz.check_token(&mint(&key("rsa-1"), &c)).await);

    // The old key is removed; after the next fetch its tokens fail.
    idp.update(|s| s.keys = vec![key("rsa-2").jwk]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let unknown = mint_with(
        &key("rsa-2"),
        jsonwebtoken::Algorithm::RS256,
        Some("rsa-3"),
        &c,
    );
    assert_denied(&authz.check_token(&unknown).await, 401, "invalid_header");
    assert_denied(
        &authz.check_token(&mint(&key("rsa-1"), &c)).await,
        401,
        "invalid_header",
    );
    assert_allowed(&authz.check_token(&mint(&key("rsa-2"), &c)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_keys_keep_serving_while_the_idp_is_down() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(
        &idp,
        &["--jwks-cooldown", "50ms", "--jwks-refresh", "100ms"],
    )
    .await;
    idp.update(|s| s.status = 500);
    let c = claims(&idp.issuer());
    let token = mint(&key("rsa-1"), &c);
    // Several refreshes fail meanwhile.
    let hits = idp.jwks_hits();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(idp.jwks_hits() > hits, "refreshes were attempted");
    assert_allowed(&authz.check_token(&token).await);
    assert_eq!(authz.health().await, ServingStatus::Serving);
    // An unknown kid during the outage is refused, not allowed.
    let other = mint(&key("rsa-2"), &c);
    assert_denied(&authz.check_token(&other).await, 401, "invalid_header");
}

#[tokio::test(flavor = "multi_thread")]
async fn random_kid_flood_is_rate_limited_and_valid_tokens_pass() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(&idp, &["--jwks-cooldown", "2s"]).await;
    let c = claims(&idp.issuer());
    let valid = mint(&key("rsa-1"), &c);
    let before = idp.jwks_hits();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let token = mint_with(
            &key("rsa-1"),
            jsonwebtoken::Algorithm::RS256,
            Some(&format!("random-{i}")),
            &c,
        );
        let client = authz.client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .clone()
                .check(request(Some(&format!("Bearer {token}")), None))
                .await
                .unwrap()
                .into_inner()
        }));
    }
    // Legitimate traffic keeps passing during the flood.
    for _ in 0..20 {
        assert_allowed(&authz.check_token(&valid).await);
    }
    for task in tasks {
        assert_denied(&task.await.unwrap(), 401, "invalid_header");
    }
    let fetched = idp.jwks_hits() - before;
    assert!(
        fetched <= 1,
        "300 unknown kids within one cooldown caused {fetched} fetches"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_unknown_kid_requests_share_one_fetch() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(&idp, &["--jwks-cooldown", "50ms"]).await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    idp.update(|s| {
        s.keys.push(key("rsa-2").jwk);
        s.delay = Duration::from_millis(300);
    });
    let c = claims(&idp.issuer());
    let token = mint(&key("rsa-2"), &c);
    let before = idp.jwks_hits();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let client = authz.client.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            client
                .clone()
                .check(request(Some(&format!("Bearer {token}")), None))
                .await
                .unwrap()
                .into_inner()
        }));
    }
    for task in tasks {
        assert_allowed(&task.await.unwrap());
    }
    assert_eq!(idp.jwks_hits() - before, 1, "single-flight refetch");
}

#[tokio::test(flavor = "multi_thread")]
async fn idp_down_at_start_gives_503_then_recovers() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    idp.update(|s| s.status = 503);
    let issuer = idp.issuer();
    let jwks = idp.jwks_uri();
    let authz = Authz::start_trusting(&issuer, &jwks, &["--jwks-cooldown", "100ms"]).await;
    assert_eq!(authz.health().await, ServingStatus::NotServing);
    let token = mint(&key("rsa-1"), &claims(&issuer));
    let response = authz.check_token(&token).await;
    let headers = assert_denied(&response, 503, "jwks_unavailable");
    assert_eq!(headers["retry-after"], "1");
    let Decision::Deny { error, .. } = decision(&response) else {
        panic!()
    };
    assert!(
        error,
        "sent as error_response so Envoy treats it as an error"
    );
    // Missing header is still answered precisely while keys are unavailable.
    assert_denied(
        &authz.check(request(None, None)).await,
        401,
        "authorization_header_missing",
    );

    idp.update(|s| s.status = 200);
    authz.wait_serving().await;
    assert_allowed(&authz.check_token(&token).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_finds_the_jwks_uri() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    idp.update(|s| s.discovery = true);
    let issuer = idp.issuer();
    let authz = Authz::start(&["--issuer", &issuer, "--audience", AUDIENCE]).await;
    authz.wait_serving().await;
    assert_eq!(idp.hits("/.well-known/openid-configuration"), 1);
    assert_eq!(idp.hits("/jwks.json"), 1);
    assert_allowed(
        &authz
            .check_token(&mint(&key("rsa-1"), &claims(&issuer)))
            .await,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_discovery_auth0_location_is_used() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let issuer = idp.issuer();
    let authz = Authz::start(&["--issuer", &issuer, "--audience", AUDIENCE]).await;
    authz.wait_serving().await;
    assert_eq!(idp.hits("/.well-known/openid-configuration"), 1);
    assert_eq!(idp.hits("/.well-known/jwks.json"), 1);
    assert_allowed(
        &authz
            .check_token(&mint(&key("rsa-1"), &claims(&issuer)))
            .await,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_naming_another_issuer_is_refused() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    idp.update(|s| {
        s.discovery = true;
        s.discovery_issuer = Some("https://evil.example/".into());
    });
    let issuer = idp.issuer();
    let authz = Authz::start(&["--issuer", &issuer, "--audience", AUDIENCE]).await;
    let token = mint(&key("rsa-1"), &claims(&issuer));
    // Give the first load time to fail, then check nothing was loaded.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        idp.jwks_hits(),
        0,
        "keys must not be fetched from a mismatched discovery"
    );
    assert_eq!(authz.health().await, ServingStatus::NotServing);
    assert_denied(&authz.check_token(&token).await, 503, "jwks_unavailable");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_or_broken_jwks_never_replaces_good_keys() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(
        &idp,
        &[
            "--jwks-refresh",
            "100ms",
            "--jwks-cooldown",
            "50ms",
            "--jwks-max-bytes",
            "65536",
        ],
    )
    .await;
    let token = mint(&key("rsa-1"), &claims(&idp.issuer()));
    for body in [
        vec![b' '; 200_000],
        b"{\"keys\": []}".to_vec(),
        b"<html>".to_vec(),
    ] {
        idp.update(|s| s.jwks_body = Some(body));
        let hits = idp.jwks_hits();
        wait_until(Duration::from_secs(10), "JWKS fetches", || {
            idp.jwks_hits() >= hits + 2
        })
        .await;
        assert_allowed(&authz.check_token(&token).await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_idp_times_out_and_cached_keys_still_serve() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(
        &idp,
        &["--jwks-timeout", "200ms", "--jwks-cooldown", "50ms"],
    )
    .await;
    idp.update(|s| {
        s.delay = Duration::from_secs(5);
        s.keys.push(key("rsa-2").jwk);
    });
    tokio::time::sleep(Duration::from_millis(60)).await;
    let c = claims(&idp.issuer());
    // An unknown kid waits for at most the fetch timeout, then is refused.
    let started = std::time::Instant::now();
    assert_denied(
        &authz.check_token(&mint(&key("rsa-2"), &c)).await,
        401,
        "invalid_header",
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by the fetch timeout"
    );
    assert_allowed(&authz.check_token(&mint(&key("rsa-1"), &c)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_finishes_in_flight_checks() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(&idp, &["--jwks-cooldown", "50ms"]).await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    // An in-flight check that waits on a slow refetch.
    idp.update(|s| {
        s.keys.push(key("rsa-2").jwk);
        s.delay = Duration::from_millis(500);
    });
    let token = mint(&key("rsa-2"), &claims(&idp.issuer()));
    let client = authz.client.clone();
    let in_flight = tokio::spawn(async move {
        client
            .clone()
            .check(request(Some(&format!("Bearer {token}")), None))
            .await
    });
    wait_until(Duration::from_secs(10), "JWKS fetches", || {
        idp.jwks_hits() >= 2
    })
    .await;
    let stopped = tokio::spawn(authz.stop());
    let response = in_flight
        .await
        .unwrap()
        .expect("in-flight check completes during drain");
    assert_allowed(&response.into_inner());
    stopped.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_tokens_never_fetch() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(&idp, &["--jwks-cooldown", "10ms"]).await;
    let before = idp.jwks_hits();
    let c = claims("https://unknown-issuer.example/");
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(15)).await;
        let token = mint_with(
            &key("rsa-1"),
            jsonwebtoken::Algorithm::RS256,
            Some(&format!("k{i}")),
            &c,
        );
        assert_denied(&authz.check_token(&token).await, 401, "invalid_claims");
        let none = forge(
            &json!({"alg": "none", "kid": format!("k{i}")}),
            &claims(&idp.issuer()),
            b"",
        );
        assert_denied(&authz.check_token(&none).await, 401, "invalid_header");
    }
    assert_eq!(idp.jwks_hits(), before, "unknown issuer or alg: no fetch");
}
