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
    let c = claims(&idp.issuer());
    let valid = mint(&key("rsa-1"), &c);
    // Minted before the service starts: the flood must fit in the cooldown that the
    // start-up load arms, on a loaded machine too.
    let tokens: Vec<String> = (0..300)
        .map(|i| {
            let kid = format!("random-{i}");
            mint_with(
                &key("rsa-1"),
                jsonwebtoken::Algorithm::RS256,
                Some(&kid),
                &c,
            )
        })
        .collect();
    let authz = Authz::start_for(&idp, &["--jwks-cooldown", "5s"]).await;
    let before = idp.jwks_hits();
    let mut tasks = Vec::new();
    for token in tokens {
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

/// Checks `token` as Envoy would, giving up after `deadline` (tonic's request timeout,
/// sent as `grpc-timeout`): `None` when the deadline cancelled the call.
async fn check_with_deadline(
    client: &jwt_authz::wire::proto::AuthorizationClient<tonic::transport::Channel>,
    token: &str,
    deadline: Duration,
) -> Option<jwt_authz::wire::proto::CheckResponse> {
    let mut request = tonic::Request::new(request(Some(&format!("Bearer {token}")), None));
    request.set_timeout(deadline);
    match client.clone().check(request).await {
        Ok(response) => Some(response.into_inner()),
        Err(status) if status.code() == tonic::Code::Cancelled => None,
        Err(status) if status.code() == tonic::Code::DeadlineExceeded => None,
        Err(status) => panic!("Check RPC failed: {status}"),
    }
}

/// Regression test for issue 11: behind an identity provider slower than Envoy's deadline,
/// a rotated key is learned by one fetch that outlives the Checks that triggered it.
#[tokio::test(flavor = "multi_thread")]
async fn issue_11_rotated_key_behind_a_slow_idp_is_learned_by_one_detached_fetch() {
    const LATENCY: Duration = Duration::from_millis(1500);
    const DEADLINE: Duration = Duration::from_millis(500);
    const COOLDOWN: Duration = Duration::from_secs(2);
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(&idp, &["--jwks-cooldown", "2s", "--jwks-timeout", "5s"]).await;
    let c = claims(&idp.issuer());
    let before = idp.jwks_hits();
    idp.update(|s| {
        s.keys.push(key("rsa-2").jwk);
        s.delay = LATENCY;
    });
    let rotated = mint(&key("rsa-2"), &c);
    let started = std::time::Instant::now();
    // A flood of the new key's tokens, each Check cancelled at Envoy's 0.5 s deadline,
    // until one is accepted.
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..16 {
        let (client, token, accepted) = (authz.client.clone(), rotated.clone(), accepted.clone());
        workers.push(tokio::spawn(async move {
            let mut tries = 0u32;
            while !accepted.load(std::sync::atomic::Ordering::SeqCst)
                && started.elapsed() < Duration::from_secs(15)
            {
                tries += 1;
                if let Some(response) = check_with_deadline(&client, &token, DEADLINE).await {
                    if allows(&response) {
                        accepted.store(true, std::sync::atomic::Ordering::SeqCst);
                        return (tries, Some(started.elapsed()));
                    }
                    assert_denied(&response, 401, "invalid_header");
                }
            }
            (tries, None)
        }));
    }
    let mut tries = 0;
    let mut first = None::<Duration>;
    for worker in workers {
        let (n, at) = worker.await.unwrap();
        tries += n;
        first = match (first, at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    let rotation = first.expect("the rotated key was never accepted");
    let fetches = idp.jwks_hits() - before;
    eprintln!(
        "slow IdP: rotated key accepted after {rotation:?}, {tries} Checks, {fetches} JWKS fetch(es)"
    );
    assert!(
        rotation <= COOLDOWN + LATENCY + Duration::from_secs(1),
        "rotated key accepted only after {rotation:?}"
    );
    assert_eq!(fetches, 1, "one fetch learns the new key");
    // The fetch was counted although every Check that waited for it was cancelled.
    let metrics = reqwest::get(format!("http://{}/metrics", authz.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = format!(
        "jwt_authz_jwks_fetches_total{{issuer=\"{}\",result=\"success\"}} 2",
        idp.issuer()
    );
    assert!(metrics.contains(&line), "{line} missing from:\n{metrics}");
}

/// Under a flood of unknown `kid`s that never get a key, behind a slow identity provider,
/// the provider sees one fetch per cooldown: never two within one, and no cooldown
/// without one while the flood lasts.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_kid_flood_behind_a_slow_idp_fetches_once_per_cooldown() {
    const COOLDOWN: Duration = Duration::from_secs(2);
    const FLOOD: Duration = Duration::from_millis(6500);
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(&idp, &["--jwks-cooldown", "2s", "--jwks-timeout", "5s"]).await;
    // Let the start-up load's cooldown pass, so the flood's first Check fetches.
    tokio::time::sleep(COOLDOWN).await;
    idp.update(|s| s.delay = Duration::from_millis(1500));
    let c = claims(&idp.issuer());
    let tokens: Vec<String> = (0..16)
        .map(|w| {
            let kid = format!("flood-{w}");
            mint_with(
                &key("rsa-1"),
                jsonwebtoken::Algorithm::RS256,
                Some(&kid),
                &c,
            )
        })
        .collect();
    let before = idp.jwks_hits();
    let started = std::time::Instant::now();
    let mut workers = Vec::new();
    for token in tokens {
        let client = authz.client.clone();
        workers.push(tokio::spawn(async move {
            let mut i = 0;
            while started.elapsed() < FLOOD {
                i += 1;
                if let Some(response) =
                    check_with_deadline(&client, &token, Duration::from_millis(500)).await
                {
                    assert_denied(&response, 401, "invalid_header");
                }
            }
            i
        }));
    }
    let mut checks = 0;
    for worker in workers {
        checks += worker.await.unwrap();
    }
    let times: Vec<_> = idp.jwks_hit_times().into_iter().skip(before).collect();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!(
        "unknown-kid flood: {checks} Checks over {FLOOD:?}, {} JWKS fetches, gaps {gaps:?}",
        times.len()
    );
    // Fetch starts at 0, 2, 4 and 6 s of the flood. The service starts them at least a
    // cooldown apart; the identity provider sees them arrive with the client's connect
    // jitter on a loaded machine, hence the slack.
    const JITTER: Duration = Duration::from_millis(400);
    assert_eq!(times.len(), 4, "one fetch per cooldown: {gaps:?}");
    for gap in &gaps {
        assert!(
            *gap >= COOLDOWN - JITTER,
            "two fetches within one cooldown: {gaps:?}"
        );
        assert!(
            *gap < COOLDOWN + JITTER,
            "a cooldown passed without a fetch: {gaps:?}"
        );
    }
    assert!(times[0] - started < JITTER);
}

#[tokio::test(flavor = "multi_thread")]
async fn discovered_jwks_uri_obeys_the_configured_scheme_rule() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    // 0.0.0.0 is not loopback by the rule, though the kernel would route it to this host:
    // a configured `http://0.0.0.0/...` is refused, and so must a discovered one be.
    let side_door = format!("http://0.0.0.0:{}/jwks.json", idp.addr.port());
    assert!(
        jwt_authz::fetch_url::parse_fetch_url(&side_door, false).is_err(),
        "configured, the URL is refused"
    );
    idp.update(|s| {
        s.discovery = true;
        s.discovery_jwks_uri = Some(side_door);
    });
    let issuer = idp.issuer();
    let authz = Authz::start(&["--issuer", &issuer, "--audience", AUDIENCE]).await;
    wait_until(Duration::from_secs(10), "discovery", || {
        idp.hits("/.well-known/openid-configuration") >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        idp.hits("/jwks.json"),
        0,
        "the discovered http URL was fetched"
    );
    assert_eq!(authz.health().await, ServingStatus::NotServing);
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_targets_obey_the_configured_scheme_rule() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let port = idp.addr.port();
    idp.update(|s| s.redirect_to = Some(format!("http://0.0.0.0:{port}/jwks.json")));
    let redirect = format!("http://127.0.0.1:{port}/redirect");
    let authz = Authz::start_trusting(&idp.issuer(), &redirect, &["--jwks-cooldown", "50ms"]).await;
    wait_until(Duration::from_secs(10), "the redirect", || {
        idp.hits("/redirect") >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        idp.hits("/jwks.json"),
        0,
        "the redirect to http was followed"
    );
    assert_eq!(authz.health().await, ServingStatus::NotServing);

    // A redirect that obeys the rule (loopback) is followed.
    idp.update(|s| s.redirect_to = Some(format!("http://127.0.0.1:{port}/jwks.json")));
    authz.wait_serving().await;
    assert!(idp.hits("/jwks.json") >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn metric_labels_never_show_userinfo_or_query() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let port = idp.addr.port();
    let issuer = format!("http://admin:hunter2@127.0.0.1:{port}/?tenant=s3cret");
    let jwks = format!("http://user:hunter2@127.0.0.1:{port}/jwks.json?api_key=s3cret");
    let authz = Authz::start_trusting(&issuer, &jwks, &[]).await;
    authz.wait_serving().await;
    let metrics = reqwest::get(format!("http://{}/metrics", authz.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !metrics.contains("hunter2") && !metrics.contains("s3cret"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("issuer=\"http://127.0.0.1:{port}/\"")),
        "{metrics}"
    );
    assert_allowed(
        &authz
            .check_token(&mint(&key("rsa-1"), &claims(&issuer)))
            .await,
    );
}
