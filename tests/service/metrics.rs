//! The admin port (Prometheus `/metrics`, `/healthz`, `/readyz`) scraped over real HTTP,
//! and the verified-token cache seen through it: hits, expiry and key removal.

use std::time::Duration;

use jwt_authz::testkit::*;
use serde_json::json;

/// The value of one sample line, e.g. `jwt_authz_token_cache_hits_total`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_with_decisions_and_cache_hits() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(&idp, &[]).await;
    let (status, before) = scrape(&authz, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(
            &before,
            "jwt_authz_decisions_total{decision=\"allow\",code=\"ok\"}"
        ),
        0.0
    );
    let issuer = idp.issuer();
    assert_eq!(
        sample(
            &before,
            &format!("jwt_authz_jwks_keys{{issuer=\"{issuer}\"}}")
        ),
        1.0
    );
    assert_eq!(
        sample(
            &before,
            &format!("jwt_authz_jwks_up{{issuer=\"{issuer}\"}}")
        ),
        1.0
    );
    assert_eq!(
        sample(
            &before,
            &format!("jwt_authz_jwks_fetches_total{{issuer=\"{issuer}\",result=\"success\"}}")
        ),
        1.0
    );
    assert!(
        sample(
            &before,
            &format!("jwt_authz_jwks_last_success_age_seconds{{issuer=\"{issuer}\"}}")
        ) < 60.0
    );

    let token = mint(&key("rsa-1"), &claims(&issuer));
    for _ in 0..3 {
        assert_allowed(&authz.check_token(&token).await);
    }
    assert_denied(
        &authz.check(request(None, None)).await,
        401,
        "authorization_header_missing",
    );
    assert_denied(&authz.check_token("a.b.c").await, 401, "invalid_header");

    let (_, after) = scrape(&authz, "/metrics").await;
    assert_eq!(
        sample(
            &after,
            "jwt_authz_decisions_total{decision=\"allow\",code=\"ok\"}"
        ),
        3.0
    );
    assert_eq!(
        sample(
            &after,
            "jwt_authz_decisions_total{decision=\"deny\",code=\"authorization_header_missing\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "jwt_authz_decisions_total{decision=\"deny\",code=\"invalid_header\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&after, "jwt_authz_check_duration_seconds_count"),
        5.0
    );
    assert_eq!(
        sample(
            &after,
            "jwt_authz_check_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        5.0
    );
    // The first check verified and filled the cache; the next two were hits.
    assert_eq!(sample(&after, "jwt_authz_token_cache_hits_total"), 2.0);
    assert_eq!(sample(&after, "jwt_authz_token_cache_entries"), 1.0);
    assert!(after.contains("# TYPE jwt_authz_check_duration_seconds histogram"));
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_follow_key_loading_and_outages_show_in_metrics() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    idp.update(|s| s.status = 500);
    let (issuer, jwks) = (idp.issuer(), idp.jwks_uri());
    let authz = Authz::start_trusting(
        &issuer,
        &jwks,
        &["--jwks-cooldown", "100ms", "--jwks-refresh", "200ms"],
    )
    .await;
    assert_eq!(scrape(&authz, "/healthz").await.0, 200);
    assert_eq!(scrape(&authz, "/readyz").await.0, 503);
    let (_, text) = scrape(&authz, "/metrics").await;
    assert_eq!(
        sample(&text, &format!("jwt_authz_jwks_up{{issuer=\"{issuer}\"}}")),
        0.0
    );

    idp.update(|s| s.status = 200);
    authz.wait_serving().await;
    assert_eq!(scrape(&authz, "/readyz").await.0, 200);

    // Down again later: still ready (cached keys serve), and the outage is visible.
    idp.update(|s| s.status = 500);
    let errors_before = {
        let (_, t) = scrape(&authz, "/metrics").await;
        sample(
            &t,
            &format!("jwt_authz_jwks_fetches_total{{issuer=\"{issuer}\",result=\"error\"}}"),
        )
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, text) = scrape(&authz, "/metrics").await;
    assert_eq!(
        sample(&text, &format!("jwt_authz_jwks_up{{issuer=\"{issuer}\"}}")),
        0.0
    );
    assert!(
        sample(
            &text,
            &format!("jwt_authz_jwks_fetches_total{{issuer=\"{issuer}\",result=\"error\"}}")
        ) > errors_before
    );
    assert_eq!(scrape(&authz, "/readyz").await.0, 200);
    assert_eq!(scrape(&authz, "/nope").await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_token_still_expires() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(&idp, &["--leeway", "0s"]).await;
    let mut c = claims(&idp.issuer());
    c["exp"] = json!(now() + 2);
    let token = mint(&key("rsa-1"), &c);
    assert_allowed(&authz.check_token(&token).await);
    assert_allowed(&authz.check_token(&token).await); // a cache hit
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_denied(&authz.check_token(&token).await, 401, "token_expired");
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_token_lapses_when_its_key_leaves_the_jwks() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(&idp, &["--jwks-refresh", "100ms"]).await;
    let c = claims(&idp.issuer());
    let old = mint(&key("rsa-1"), &c);
    assert_allowed(&authz.check_token(&old).await);
    assert_allowed(&authz.check_token(&old).await);
    idp.update(|s| s.keys = vec![key("rsa-2").jwk]);
    let hits = idp.jwks_hits();
    wait_until(Duration::from_secs(10), "JWKS fetches", || {
        idp.jwks_hits() >= hits + 2
    })
    .await;
    assert_denied(&authz.check_token(&old).await, 401, "invalid_header");
    assert_allowed(&authz.check_token(&mint(&key("rsa-2"), &c)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_token_is_rechecked_against_each_route() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(&idp, &[]).await;
    let auth = format!("Bearer {}", mint(&key("rsa-1"), &claims(&idp.issuer())));
    assert_allowed(
        &authz
            .check(request(Some(&auth), Some("read:messages")))
            .await,
    );
    assert_denied(
        &authz.check(request(Some(&auth), Some("admin"))).await,
        403,
        "insufficient_scope",
    );
    assert_allowed(&authz.check(request(Some(&auth), None)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_cache_can_be_turned_off() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(&idp, &["--token-cache", "false"]).await;
    let token = mint(&key("rsa-1"), &claims(&idp.issuer()));
    assert_allowed(&authz.check_token(&token).await);
    assert_allowed(&authz.check_token(&token).await);
    let (_, text) = scrape(&authz, "/metrics").await;
    assert!(!text.contains("jwt_authz_token_cache_hits_total"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn token_cache_size_is_capped() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(&idp, &["--token-cache-max-entries", "32"]).await;
    for i in 0..200 {
        let mut c = claims(&idp.issuer());
        c["jti"] = json!(i);
        assert_allowed(&authz.check_token(&mint(&key("rsa-1"), &c)).await);
    }
    let (_, text) = scrape(&authz, "/metrics").await;
    let entries = sample(&text, "jwt_authz_token_cache_entries");
    assert!(entries <= 32.0 && entries > 0.0, "{entries}");
}

/// Issue 20: tokens forwarded whole (`forward_payload_header`) fill the cache by bytes, not
/// by count: with 7.4 KB tokens the cache holds what its byte budget allows, the gauge
/// says so, and every token is still allowed (evicted ones are verified afresh).
#[tokio::test]
async fn the_token_cache_stays_within_its_byte_budget() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let path = TempFile::new(
        "cache-bytes.yaml",
        format!(
            "issuers:\n  - {{issuer: \"{}\", audiences: [\"{AUDIENCE}\"], jwks_uri: \"{}\"}}\ntoken_cache:\n  max_bytes: 256KiB\nupstream:\n  forward_payload_header: x-jwt-payload\n",
            idp.issuer(),
            idp.jwks_uri()
        ),
    );
    let authz = Authz::start(&["--config", path.to_str().unwrap()]).await;
    authz.wait_serving().await;
    let budget = 256.0 * 1024.0;
    for i in 0..200 {
        let mut c = claims(&idp.issuer());
        c["jti"] = json!(format!("t{i}"));
        c["groups"] = json!("g".repeat(5_300));
        let token = mint(&key("rsa-1"), &c);
        assert!(token.len() > 7_300, "{}", token.len());
        let allowed = assert_allowed(&authz.check_token(&token).await);
        assert!(allowed["x-jwt-payload"].len() > 7_000);
    }
    let (_, text) = scrape(&authz, "/metrics").await;
    let (bytes, entries) = (
        sample(&text, "jwt_authz_token_cache_bytes"),
        sample(&text, "jwt_authz_token_cache_entries"),
    );
    eprintln!(
        "200 tokens of 7.4 KB: {entries} cached, {bytes} bytes, {} per entry",
        bytes / entries
    );
    assert!(bytes <= budget, "{bytes} bytes cached");
    assert!(bytes >= budget / 2.0, "only {bytes} bytes cached");
    assert!(entries < 40.0, "{entries} entries");
    assert!(bytes / entries > 7_000.0, "{} per entry", bytes / entries);
    let _ = std::fs::remove_file(path);
    authz.stop().await.unwrap();
}
