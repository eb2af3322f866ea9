//! Proofs that cannot be replayed, over the real gRPC API and the HTTP endpoint: `htu` is
//! compared with the origin read by one grammar; a used proof stays used across reloads
//! that widen the window and across Redis restarts and flushes; only allowed requests
//! spend replay-store space, and one proof key cannot fill it for everyone.

use std::time::{Duration, Instant};

use jwt_authz::testkit::*;
use jwt_authz::wire::proto::CheckRequest;
use serde_json::{Value, json};

/// The service on a configuration file it can reload, trusting one issuer.
struct Service {
    idp: Idp,
    authz: Authz,
    path: TempFile,
}

impl Service {
    async fn start(extra: &str) -> Service {
        let idp = Idp::start(vec![key("rsa-1").jwk]).await;
        let path = TempFile::new("proofs.yaml", Service::text(&idp, extra));
        let authz = Authz::start(&["--config", path.to_str().unwrap()]).await;
        authz.wait_serving().await;
        Service { idp, authz, path }
    }

    fn text(idp: &Idp, extra: &str) -> String {
        format!(
            "config_poll: 50ms\nissuers:\n  - {{issuer: \"{}\", audiences: [\"{AUDIENCE}\"], jwks_uri: \"{}\"}}\nroutes:\n  - {{path_prefix: /api/admin, scopes: {{all_of: [admin]}}}}\n  - {{path_prefix: /api}}\n{extra}",
            idp.issuer(),
            idp.jwks_uri()
        )
    }

    /// Replaces the file atomically with `extra` and waits until the reload is counted.
    async fn reload(&self, extra: &str) {
        let before = reloads(&self.authz).await;
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, Service::text(&self.idp, extra)).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
        let started = Instant::now();
        while reloads(&self.authz).await == before {
            assert!(started.elapsed() < Duration::from_secs(5), "no reload");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A token bound to `client`, with `scope` and `aud`.
    fn token(&self, client: &ProofKey, scope: &str, aud: &str) -> String {
        let mut c = claims(&self.idp.issuer());
        c["cnf"] = json!({"jkt": client.thumbprint()});
        c["scope"] = json!(scope);
        c["aud"] = json!(aud);
        mint(&key("rsa-1"), &c)
    }
}

impl Service {
    async fn stop(self) {
        self.authz.stop().await.unwrap();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn reloads(authz: &Authz) -> u64 {
    let (_, text) = scrape(authz, "/metrics").await;
    sample(&text, "jwt_authz_config_reloads_total{result=\"success\"}")
}

/// The value of one sample line (0 when absent).
fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.parse().unwrap())
}

/// `GET path` on `host` over http, with a DPoP token and proof, as Envoy sends it.
fn dpop_request(host: &str, path: &str, token: &str, proof: &str) -> CheckRequest {
    let mut request = request(Some(&format!("DPoP {token}")), None);
    let http = http_mut(&mut request);
    http.host = host.into();
    http.path = path.into();
    http.headers.insert(":authority".into(), host.into());
    http.headers.insert(":path".into(), path.into());
    http.headers.insert("dpop".into(), proof.into());
    request
}

/// What the test kit's DPoP requests address.
const PRIVATE: &str = "http://api.example.com/api/private";

/// `GET /api/private` on `api.example.com` with a DPoP token and proof, to `authz`.
async fn on(authz: &Authz, token: &str, proof: &str) -> jwt_authz::wire::proto::CheckResponse {
    authz
        .check(dpop_request(
            "api.example.com",
            "/api/private",
            token,
            proof,
        ))
        .await
}

/// The replay store's refusals by reason (`unproven`, `key_quota`) or its operations by
/// result (`replay`, `first_use`), as the admin port reports them.
async fn refused(authz: &Authz, reason: &str) -> u64 {
    let (_, text) = scrape(authz, "/metrics").await;
    text.lines()
        .filter(|l| {
            l.starts_with("jwt_authz_dpop_replay_store_refused_total{")
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .chain(text.lines().filter(|l| {
            l.starts_with("jwt_authz_dpop_replay_store_operations_total{")
                && l.contains(&format!("result=\"{reason}\""))
        }))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// The hosts of the issue and relatives, each with the URL a parser of `scheme://host`
/// + path would read (the proof names that URL), and the path asked for.
const HOSTILE: [(&str, &str, &str); 8] = [
    (
        "api.example.com/api/private#",
        "/api/admin",
        "http://api.example.com/api/private",
    ),
    ("api.example.com?", "/api/admin", "http://api.example.com/"),
    ("api.example.com#", "/api/admin", "http://api.example.com/"),
    (
        "api.example.com?x=1",
        "/api/admin",
        "http://api.example.com/",
    ),
    (
        "x@other.example.com",
        "/api/private",
        "http://other.example.com/api/private",
    ),
    (
        "api.example.com:80/",
        "/api/private",
        "http://api.example.com/api/private",
    ),
    (
        "api.example.com:99999",
        "/api/private",
        "http://api.example.com:34463/api/private",
    ),
    ("0x7f.1", "/api/private", "http://127.0.0.1/api/private"),
];

#[tokio::test(flavor = "multi_thread")]
async fn issue_20_hosts_outside_the_grammar_fail_dpop_over_grpc_and_the_http_endpoint() {
    let s = Service::start("").await;
    let client = proof_key("ec-256");
    // Even a token with the admin scope: the refusal is the host's, not the route's.
    let token = s.token(&client, "admin", AUDIENCE);
    let proof = client.proof("GET", "http://api.example.com/api/admin", Some(&token));
    assert_allowed(
        &s.authz
            .check(dpop_request(
                "api.example.com",
                "/api/admin",
                &token,
                &proof,
            ))
            .await,
    );
    let http = reqwest::Client::new();
    let endpoint = format!("http://{}/", s.authz.http);
    for (host, path, htu) in HOSTILE {
        let proof = client.proof("GET", htu, Some(&token));
        let response = s
            .authz
            .check(dpop_request(host, path, &token, &proof))
            .await;
        assert_denied(&response, 401, "invalid_dpop_proof");
        let proof = client.proof("GET", htu, Some(&token));
        let answer = http
            .get(&endpoint)
            .header("x-original-uri", path)
            .header("x-original-method", "GET")
            .header("x-forwarded-host", host)
            .header("x-forwarded-proto", "http")
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401, "{host}");
        let body: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
        assert_eq!(body["code"], "invalid_dpop_proof", "{host}: {body}");
    }
    // A bearer request with such a host is refused too, as an ambiguous request.
    let bearer = mint(&key("rsa-1"), &claims(&s.idp.issuer()));
    let mut request = request(Some(&format!("Bearer {bearer}")), None);
    http_mut(&mut request).host = "api.example.com?".into();
    assert_denied(&s.authz.check(request).await, 403, "access_denied");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_20_a_used_proof_stays_used_when_a_reload_widens_the_window() {
    let s = Service::start("dpop:\n  max_age: 2s\n  clock_skew: 1s\n").await;
    let client = proof_key("ec-256");
    let token = s.token(&client, "", AUDIENCE);
    let proof = client.proof("GET", PRIVATE, Some(&token));
    let used_at = Instant::now();
    assert_allowed(&on(&s.authz, &token, &proof).await);
    s.reload("dpop:\n  max_age: 120s\n  clock_skew: 1s\n").await;
    // Past the old window and its remembered use (2 s + 2 x 1 s), well inside the new.
    let wait = Duration::from_millis(5_500).saturating_sub(used_at.elapsed());
    tokio::time::sleep(wait).await;
    let replayed = on(&s.authz, &token, &proof).await;
    assert_denied(&replayed, 401, "invalid_dpop_proof");
    assert_eq!(
        refused(&s.authz, "unproven").await,
        1,
        "refused as unproven"
    );
    // A proof issued under the new window gets all of it, and is remembered as long.
    let fresh = client.proof("GET", PRIVATE, Some(&token));
    assert_allowed(&on(&s.authz, &token, &fresh).await);
    // Narrowing and widening again never shortens how long a use is remembered.
    s.reload("dpop:\n  max_age: 2s\n  clock_skew: 1s\n").await;
    s.reload("dpop:\n  max_age: 120s\n  clock_skew: 1s\n").await;
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    assert_denied(
        &on(&s.authz, &token, &fresh).await,
        401,
        "invalid_dpop_proof",
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_20_refused_requests_spend_no_replay_store_space_and_one_key_cannot_fill_it() {
    let s = Service::start("dpop:\n  replay_max_entries: 300\n  replay_max_per_key: 20\n").await;
    let attacker = proof_key("ec-256");
    let (no_scope, wrong_aud) = (
        s.token(&attacker, "read", AUDIENCE),
        s.token(&attacker, "admin", "https://other.example.com"),
    );
    let admin = "http://api.example.com/api/admin";
    // The issue's flood: proofs whose tokens then fail on scope or audience.
    for i in 0..300 {
        let token = if i % 2 == 0 { &no_scope } else { &wrong_aud };
        let proof = attacker.proof("GET", admin, Some(token));
        let response = s
            .authz
            .check(dpop_request("api.example.com", "/api/admin", token, &proof))
            .await;
        let expected = if i % 2 == 0 {
            (403, "insufficient_scope")
        } else {
            (401, "invalid_claims")
        };
        assert_denied(&response, expected.0, expected.1);
    }
    // The same over the HTTP endpoint.
    let http = reqwest::Client::new();
    for _ in 0..20 {
        let proof = attacker.proof("GET", admin, Some(&no_scope));
        let answer = http
            .get(format!("http://{}/", s.authz.http))
            .header("x-original-uri", "/api/admin")
            .header("x-original-method", "GET")
            .header("x-forwarded-host", "api.example.com")
            .header("x-forwarded-proto", "http")
            .header("authorization", format!("DPoP {no_scope}"))
            .header("dpop", proof)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 403);
    }
    let (_, metrics) = scrape(&s.authz, "/metrics").await;
    assert_eq!(
        sample(
            &metrics,
            "jwt_authz_dpop_replay_store_entries{store=\"memory\"}"
        ),
        0,
        "refused requests were recorded"
    );

    // One key, allowed: it holds at most its quota, then only it is refused.
    let holder = s.token(&attacker, "read", AUDIENCE);
    for _ in 0..20 {
        let proof = attacker.proof("GET", PRIVATE, Some(&holder));
        assert_allowed(&on(&s.authz, &holder, &proof).await);
    }
    let proof = attacker.proof("GET", PRIVATE, Some(&holder));
    let over = on(&s.authz, &holder, &proof).await;
    assert_denied(&over, 401, "invalid_dpop_proof");
    let other = proof_key("ed-1");
    let token = s.token(&other, "read", AUDIENCE);
    let proof = other.proof("GET", PRIVATE, Some(&token));
    assert_allowed(&on(&s.authz, &token, &proof).await);
    let (_, metrics) = scrape(&s.authz, "/metrics").await;
    assert_eq!(
        sample(
            &metrics,
            "jwt_authz_dpop_replay_store_entries{store=\"memory\"}"
        ),
        21
    );
    assert_eq!(
        sample(
            &metrics,
            "jwt_authz_dpop_replay_store_refused_total{store=\"memory\",reason=\"key_quota\"}"
        ),
        1
    );
    s.stop().await;
}

/// Waits until the wall clock is in a later whole second than `since`: `iat` has whole
/// seconds, so a proof and a loss in the same second cannot be told apart.
async fn next_second() {
    let now = now();
    while jwt_authz::testkit::now() == now {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A service using `redis` as its replay store, and a client with a bound token.
async fn on_redis(redis: &RedisServer) -> (Service, ProofKey, String) {
    let s = Service::start(&format!(
        "dpop:\n  replay_store: {}\n  replay_store_timeout: 500ms\n",
        redis.url()
    ))
    .await;
    let client = proof_key("ec-256");
    let token = s.token(&client, "read", AUDIENCE);
    (s, client, token)
}

/// Another replica on `s`'s configuration, connected to the store (it allowed one fresh
/// proof): it did not see the proofs `s` recorded, so after a loss only the store's
/// completeness can refuse their replays there.
async fn other_replica(s: &Service, client: &ProofKey, token: &str) -> Authz {
    let other = Authz::start(&["--config", s.path.to_str().unwrap()]).await;
    other.wait_serving().await;
    let proof = client.proof("GET", PRIVATE, Some(token));
    assert_allowed(&on(&other, token, &proof).await);
    other
}

// One thread: the server's tasks log where the capturing subscriber is the default.
#[tokio::test(flavor = "current_thread")]
async fn issue_20_a_redis_restart_without_persistence_refuses_proofs_issued_before_it() {
    let mut redis = RedisServer::start();
    let (s, client, token) = on_redis(&redis).await;
    let other = other_replica(&s, &client, &token).await;
    let proof = client.proof("GET", PRIVATE, Some(&token));
    assert_allowed(&on(&s.authz, &token, &proof).await);
    next_second().await;
    let (logs, _guard) = capture(tracing::Level::INFO);
    redis.restart();
    assert_eq!(
        redis.command("DBSIZE"),
        ":0",
        "the restart forgot every key"
    );
    // The replay: Redis no longer holds its jti, the service still refuses it, on the
    // replica that saw the use (which remembers it) and on the other.
    assert_denied(
        &on(&s.authz, &token, &proof).await,
        401,
        "invalid_dpop_proof",
    );
    let replayed = on(&other, &token, &proof).await;
    assert_denied(&replayed, 401, "invalid_dpop_proof");
    assert_eq!(refused(&other, "unproven").await, 1, "refused as unproven");
    assert!(
        logs.text()
            .contains("replay store lost its proofs (restarted without persistence"),
        "{}",
        logs.text()
    );
    // A proof issued after the loss was seen passes, and is a replay the second time.
    next_second().await;
    let fresh = client.proof("GET", PRIVATE, Some(&token));
    assert_allowed(&on(&s.authz, &token, &fresh).await);
    assert_denied(
        &on(&s.authz, &token, &fresh).await,
        401,
        "invalid_dpop_proof",
    );
    assert_denied(&on(&other, &token, &fresh).await, 401, "invalid_dpop_proof");
    other.stop().await.unwrap();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_20_a_redis_restart_with_every_write_on_disk_keeps_proofs_and_refuses_nothing_new() {
    let mut redis = RedisServer::durable();
    let (s, client, token) = on_redis(&redis).await;
    let proof = client.proof("GET", PRIVATE, Some(&token));
    assert_allowed(&on(&s.authz, &token, &proof).await);
    next_second().await;
    redis.restart();
    // The first request after the restart: the broken connection is replaced within the
    // request, so it is neither a 503 nor a proof refused for the restart.
    let fresh = client.proof("GET", PRIVATE, Some(&token));
    assert_allowed(&on(&s.authz, &token, &fresh).await);
    let replayed = on(&s.authz, &token, &proof).await;
    assert_denied(&replayed, 401, "invalid_dpop_proof");
    assert_eq!(refused(&s.authz, "replay").await, 1, "found in the store");
    assert_eq!(refused(&s.authz, "unavailable").await, 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_20_a_flushed_redis_refuses_proofs_issued_before_the_flush() {
    let redis = RedisServer::durable();
    let (s, client, token) = on_redis(&redis).await;
    let other = other_replica(&s, &client, &token).await;
    let proof = client.proof("GET", PRIVATE, Some(&token));
    assert_allowed(&on(&s.authz, &token, &proof).await);
    next_second().await;
    assert_eq!(redis.command("FLUSHALL"), "+OK");
    assert_denied(
        &on(&s.authz, &token, &proof).await,
        401,
        "invalid_dpop_proof",
    );
    let replayed = on(&other, &token, &proof).await;
    assert_denied(&replayed, 401, "invalid_dpop_proof");
    assert_eq!(refused(&other, "unproven").await, 1, "refused as unproven");
    other.stop().await.unwrap();
    // Another replica that connects later learns the same from the marker.
    let second = Authz::start(&["--config", s.path.to_str().unwrap()]).await;
    second.wait_serving().await;
    let again = on(&second, &token, &proof).await;
    assert_denied(&again, 401, "invalid_dpop_proof");
    assert_eq!(refused(&second, "unproven").await, 1, "refused as unproven");
    next_second().await;
    let fresh = client.proof("GET", PRIVATE, Some(&token));
    assert_allowed(&on(&s.authz, &token, &fresh).await);
    second.stop().await.unwrap();
    s.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn issue_20_a_redis_that_may_evict_proofs_is_refused() {
    let redis =
        RedisServer::with_args(&["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"]);
    let (logs, _guard) = capture(tracing::Level::INFO);
    let (s, client, token) = on_redis(&redis).await;
    let proof = client.proof("GET", PRIVATE, Some(&token));
    assert_denied(
        &on(&s.authz, &token, &proof).await,
        503,
        "replay_store_unavailable",
    );
    assert!(
        logs.text()
            .contains("maxmemory-policy allkeys-lru can evict proofs"),
        "{}",
        logs.text()
    );
    // Fixed live, it is used at once (after the reconnection delay).
    assert_eq!(
        redis.command("CONFIG SET maxmemory-policy noeviction"),
        "+OK"
    );
    let started = Instant::now();
    loop {
        let proof = client.proof("GET", PRIVATE, Some(&token));
        let response = on(&s.authz, &token, &proof).await;
        if allows(&response) {
            break;
        }
        assert_denied(&response, 503, "replay_store_unavailable");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never used again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
}

/// Issue 20 across replicas: during a rollout that widens `dpop.max_age`, one replica
/// still records uses with the narrow window while another accepts the wide one. The wide
/// replica announces its window in the shared marker: proofs issued before that keep the
/// narrow limit everywhere (on replicas started later too), and uses recorded by the
/// narrow replica from then on are kept for the wide window.
#[tokio::test(flavor = "multi_thread")]
async fn issue_20_a_rollout_that_widens_the_window_lets_no_proof_be_replayed_on_another_replica() {
    let redis = RedisServer::durable();
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let replica = |tag: &str, max_age: &str| {
        let path = std::env::temp_dir().join(format!(
            "jwt-authz-rollout-{}-{}-{tag}.yaml",
            std::process::id(),
            idp.addr.port()
        ));
        let extra = format!(
            "dpop:\n  max_age: {max_age}\n  clock_skew: 1s\n  replay_store: {}\n",
            redis.url()
        );
        std::fs::write(&path, Service::text(&idp, &extra)).unwrap();
        path
    };
    let (narrow_path, wide_path) = (replica("narrow", "2s"), replica("wide", "120s"));
    let client = proof_key("ec-256");
    let mut c = claims(&idp.issuer());
    c["cnf"] = json!({"jkt": client.thumbprint()});
    let token = mint(&key("rsa-1"), &c);
    // The narrow replica runs alone first (the marker has its window), as before a
    // rollout.
    let narrow = Authz::start(&["--config", narrow_path.to_str().unwrap()]).await;
    narrow.wait_serving().await;

    // Used on the narrow replica (remembered there for 2 s + 2 x 1 s), replayed on the
    // wide one once Redis forgot it.
    let early = client.proof("GET", PRIVATE, Some(&token));
    assert_allowed(&on(&narrow, &token, &early).await);
    let used = Instant::now();
    let wide = Authz::start(&["--config", wide_path.to_str().unwrap()]).await;
    wide.wait_serving().await;
    // A proof on the wide replica announces its window.
    let announce = client.proof("GET", PRIVATE, Some(&token));
    assert_allowed(&on(&wide, &token, &announce).await);
    // The narrow replica learns it with its next proof, and keeps that use as long (a
    // proof issued within the skew and the store timeout of the announcement, in whole
    // seconds, would keep the old limit).
    tokio::time::sleep(Duration::from_millis(2_700)).await;
    let late = client.proof("GET", PRIVATE, Some(&token));
    assert_allowed(&on(&narrow, &token, &late).await);
    let late_used = Instant::now();
    tokio::time::sleep(Duration::from_millis(4_500).saturating_sub(late_used.elapsed())).await;
    assert!(used.elapsed() > Duration::from_millis(4_500));
    assert_denied(&on(&wide, &token, &early).await, 401, "invalid_dpop_proof");
    assert_eq!(
        refused(&wide, "unproven").await,
        1,
        "refused for its old limit"
    );
    assert_denied(&on(&wide, &token, &late).await, 401, "invalid_dpop_proof");
    assert_eq!(refused(&wide, "replay").await, 1, "still in Redis");
    // A wide replica started after the announcement knows the old limit too.
    let third = Authz::start(&["--config", wide_path.to_str().unwrap()]).await;
    third.wait_serving().await;
    assert_denied(&on(&third, &token, &early).await, 401, "invalid_dpop_proof");
    assert_eq!(refused(&third, "unproven").await, 1);
    for authz in [narrow, wide, third] {
        authz.stop().await.unwrap();
    }
    let _ = std::fs::remove_file(narrow_path);
    let _ = std::fs::remove_file(wide_path);
}

/// A restart of a Redis that writes its log to disk only once a second (`appendfsync
/// everysec`) may have lost the last second's proofs: not trusted.
#[tokio::test(flavor = "multi_thread")]
async fn issue_20_a_redis_restart_with_everysec_persistence_is_not_trusted() {
    let mut redis = RedisServer::with_args(&["--appendonly", "yes", "--appendfsync", "everysec"]);
    let (s, client, token) = on_redis(&redis).await;
    let other = other_replica(&s, &client, &token).await;
    let proof = client.proof("GET", PRIVATE, Some(&token));
    assert_allowed(&on(&s.authz, &token, &proof).await);
    next_second().await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    redis.restart();
    assert_denied(&on(&other, &token, &proof).await, 401, "invalid_dpop_proof");
    assert_eq!(refused(&other, "unproven").await, 1, "refused as unproven");
    other.stop().await.unwrap();
    s.stop().await;
}

/// After a flush, the replica that sees it first declares the loss in the marker; the
/// others adopt it without writing their own time over it, so the marker settles and
/// fresh proofs pass on every replica.
#[tokio::test(flavor = "multi_thread")]
async fn issue_20_replicas_agree_on_a_flush_and_the_marker_settles() {
    let redis = RedisServer::durable();
    let (s, client, token) = on_redis(&redis).await;
    let second = Authz::start(&["--config", s.path.to_str().unwrap()]).await;
    second.wait_serving().await;
    for authz in [&s.authz, &second] {
        let proof = client.proof("GET", PRIVATE, Some(&token));
        assert_allowed(&on(authz, &token, &proof).await);
    }
    next_second().await;
    assert_eq!(redis.command("FLUSHALL"), "+OK");
    for _ in 0..3 {
        for authz in [&s.authz, &second] {
            let proof = client.proof("GET", PRIVATE, Some(&token));
            let _ = on(authz, &token, &proof).await;
        }
    }
    let marker = redis.command("GET jwt-authz:dpop:complete");
    next_second().await;
    for _ in 0..3 {
        for authz in [&s.authz, &second] {
            let proof = client.proof("GET", PRIVATE, Some(&token));
            assert_allowed(&on(authz, &token, &proof).await);
        }
    }
    assert_eq!(
        redis.command("GET jwt-authz:dpop:complete"),
        marker,
        "the marker settled"
    );
    second.stop().await.unwrap();
    s.stop().await;
}

/// A proof used, then Redis restarted without persistence (or flushed) within the same
/// second, then the proof replayed to the same replica: `iat` cannot tell it from a fresh
/// proof, but the replica remembers its own recent uses.
#[tokio::test(flavor = "multi_thread")]
async fn issue_20_a_replay_right_after_a_redis_loss_is_refused_by_the_replica_that_saw_the_use() {
    let mut redis = RedisServer::start();
    let (s, client, token) = on_redis(&redis).await;
    for round in 0..3 {
        let proof = client.proof("GET", PRIVATE, Some(&token));
        assert_allowed(&on(&s.authz, &token, &proof).await);
        if round % 2 == 0 {
            redis.restart();
        } else {
            assert_eq!(redis.command("FLUSHALL"), "+OK");
        }
        assert_eq!(redis.command("DBSIZE"), ":0");
        let replayed = on(&s.authz, &token, &proof).await;
        assert_denied(&replayed, 401, "invalid_dpop_proof");
    }
    s.stop().await;
}
