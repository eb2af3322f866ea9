//! Revocations shared by replicas through a real Redis: written by `jwt-authz revoke` (the
//! real binary) or a Security Event Token, applied by every replica within `max_lag`, and
//! refused with 503 while a replica cannot vouch it holds every revocation.

use std::process::Command;
use std::time::{Duration, Instant};

use jwt_authz::testkit::*;
use jwt_authz::wire::proto::CheckResponse;
use serde_json::{Value, json};

/// A configuration for `idp`'s tokens with revocations kept in `redis`.
fn config_text(idp: &Idp, redis: &RedisServer, extra: &str) -> String {
    format!(
        "issuers:\n  - {{issuer: \"{}\", audiences: [\"{AUDIENCE}\"], jwks_uri: \"{}\"}}\n\
         revocation:\n  store: {}\n  timeout: 200ms\n  max_lag: 1s\n  max_token_lifetime: 1h\n{extra}",
        idp.issuer(),
        idp.jwks_uri(),
        redis.url()
    )
}

/// Runs `jwt-authz revoke` with `args`; its exit code and output.
fn revoke(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_jwt-authz"))
        .arg("revoke")
        .args(args)
        .output()
        .expect("run jwt-authz revoke");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn token(idp: &Idp, edit: impl FnOnce(&mut Value)) -> String {
    let mut c = claims(&idp.issuer());
    c["iat"] = json!(now() - 2);
    edit(&mut c);
    mint(&key("rsa-1"), &c)
}

fn is_revoked(response: &CheckResponse) -> bool {
    matches!(decision(response), Decision::Deny { code, body, .. }
        if code == "invalid_token" && body["description"] == "The token has been revoked.")
}

/// Waits (at most `limit`) until `authz` refuses `token` as revoked; how long it took.
async fn until_revoked(authz: &Authz, token: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if is_revoked(&authz.check_token(token).await) {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "not revoked within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two replicas sharing Redis: each kind of revocation from the command line reaches both
/// within a second, cached verifications included; tokens issued after the cut-off pass;
/// `--list` shows what is in force; bad commands are refused with a clear message.
#[tokio::test(flavor = "multi_thread")]
async fn command_line_revocations_reach_every_replica_within_a_second() {
    let redis = RedisServer::start();
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let config = TempFile::new("revocation.yaml", config_text(&idp, &redis, ""));
    let flags = ["--config", config.as_str()];
    let (one, two) = (Authz::start(&flags).await, Authz::start(&flags).await);
    one.wait_serving().await;
    two.wait_serving().await;

    // The flag, the claim it covers, the value.
    let cases = [
        ("--sub", "sub", "alice"),
        ("--jti", "jti", "jti-1"),
        ("--sid", "sid", "sid-1"),
        ("--client-id", "azp", "spa"),
        ("--email", "email", "a@example.com"),
    ];
    let bystander = token(&idp, |c| c["sub"] = json!("bystander"));
    let mut slowest = Duration::ZERO;
    for (flag, claim, value) in cases {
        let revoked = token(&idp, |c| c[claim] = json!(value));
        for authz in [&one, &two] {
            // Twice: the second answer is a verified-token cache hit.
            assert_allowed(&authz.check_token(&revoked).await);
            assert_allowed(&authz.check_token(&revoked).await);
        }
        let issuer = idp.issuer();
        let (code, out, err) = revoke(&[
            "--config",
            config.as_str(),
            flag,
            value,
            "--issuer",
            &issuer,
        ]);
        assert_eq!(code, 0, "{flag}: {out}{err}");
        let started = Instant::now();
        let one_at = until_revoked(&one, &revoked, Duration::from_secs(1)).await;
        let two_at = until_revoked(&two, &revoked, Duration::from_secs(1)).await;
        slowest = slowest.max(one_at).max(two_at).max(started.elapsed());
        assert_allowed(&one.check_token(&bystander).await);
    }
    assert!(slowest <= Duration::from_secs(1), "{slowest:?}");

    // Issued after the cut-off: allowed again.
    let later = token(&idp, |c| {
        c["sub"] = json!("alice");
        c["iat"] = json!(now() + 1);
    });
    assert_allowed(&two.check_token(&later).await);

    let (code, listed, err) = revoke(&["--config", config.as_str(), "--list"]);
    assert_eq!(code, 0, "{err}");
    let entries: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["jti", "sub", "sid", "client_id", "email"],
        "{listed}"
    );
    assert!(entries.iter().all(|e| e["issuer"] == idp.issuer().as_str()));

    // Refused: an issuer the configuration does not trust, nothing to revoke, a control
    // character, a memory store.
    let (code, _, err) = revoke(&[
        "--config",
        config.as_str(),
        "--sub",
        "x",
        "--issuer",
        "https://evil.example/",
    ]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("not an issuer the configuration trusts"),
        "{err}"
    );
    let (code, _, err) = revoke(&["--config", config.as_str(), "--issuer", &idp.issuer()]);
    assert_eq!(code, 64, "{err}");
    let (code, _, err) = revoke(&[
        "--config",
        config.as_str(),
        "--sub",
        "a\u{7}b",
        "--issuer",
        &idp.issuer(),
    ]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("control characters"), "{err}");
    let memory = TempFile::new(
        "memory.yaml",
        format!(
            "issuers:\n  - {{issuer: \"{}\", audiences: [\"{AUDIENCE}\"], jwks_uri: \"{}\"}}\nrevocation:\n  store: memory\n",
            idp.issuer(),
            idp.jwks_uri()
        ),
    );
    let (code, _, err) = revoke(&[
        "--config",
        memory.as_str(),
        "--sub",
        "x",
        "--issuer",
        &idp.issuer(),
    ]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("memory"), "{err}");

    let (_, metrics) = scrape(&one, "/metrics").await;
    assert!(metrics.contains("jwt_authz_revocations 5"), "{metrics}");
    // Each arrived as a published message that chained to the replica's digest (the same
    // SHA-1 chain the write script computes), not through a full read.
    assert!(
        metrics.contains("jwt_authz_revocations_applied_total 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("jwt_authz_revocation_store_current{store=\"redis://127.0.0.1:"),
        "{metrics}"
    );
    eprintln!("slowest propagation to a replica: {slowest:?}");
}

/// Tokens the store could not keep a revocation for are refused while revocations are
/// checked: no `iat`, or a lifetime longer than `max_token_lifetime`.
#[tokio::test(flavor = "multi_thread")]
async fn tokens_a_revocation_could_outlive_are_refused() {
    let redis = RedisServer::start();
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let config = TempFile::new("lifetime.yaml", config_text(&idp, &redis, ""));
    let authz = Authz::start(&["--config", config.as_str()]).await;
    authz.wait_serving().await;
    let no_iat = token(&idp, |c| {
        c.as_object_mut().unwrap().remove("iat");
    });
    assert_denied(&authz.check_token(&no_iat).await, 401, "invalid_claims");
    let long = token(&idp, |c| c["exp"] = json!(now() + 2 * 3600));
    assert_denied(&authz.check_token(&long).await, 401, "invalid_claims");
    assert_allowed(&authz.check_token(&token(&idp, |_| {})).await);
}

/// Without Redis a replica cannot vouch for its revocations: every token is refused with
/// 503 `revocation_unavailable` (readiness says so too) within `max_lag`, and the replica
/// recovers by itself; a durable Redis keeps the revocations across its restart.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_refuse_tokens_while_they_cannot_vouch_for_revocations() {
    let mut redis = RedisServer::durable();
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let config = TempFile::new("outage.yaml", config_text(&idp, &redis, ""));
    let authz = Authz::start(&["--config", config.as_str()]).await;
    authz.wait_serving().await;
    let revoked = token(&idp, |c| c["sub"] = json!("mallory"));
    let fine = token(&idp, |_| {});
    let (code, _, err) = revoke(&[
        "--config",
        config.as_str(),
        "--sub",
        "mallory",
        "--issuer",
        &idp.issuer(),
    ]);
    assert_eq!(code, 0, "{err}");
    until_revoked(&authz, &revoked, Duration::from_secs(1)).await;
    assert_allowed(&authz.check_token(&fine).await);

    redis.stop();
    let started = Instant::now();
    loop {
        let response = authz.check_token(&fine).await;
        if matches!(decision(&response), Decision::Deny { ref code, .. } if code == "revocation_unavailable")
        {
            assert_denied(&response, 503, "revocation_unavailable");
            break;
        }
        assert_allowed(&response);
        assert!(
            started.elapsed() < Duration::from_millis(1600),
            "still allowing without Redis"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_ready(&authz, 503).await;
    let (_, metrics) = scrape(&authz, "/metrics").await;
    assert!(
        metrics.contains("jwt_authz_revocation_store_current{store=\"redis://127.0.0.1:"),
        "{metrics}"
    );
    assert!(
        metrics.contains("} 0\n") && metrics.contains("code=\"revocation_unavailable\"}"),
        "{metrics}"
    );
    // Revoking while Redis is down fails loudly.
    let (code, _, err) = revoke(&[
        "--config",
        config.as_str(),
        "--sub",
        "x",
        "--issuer",
        &idp.issuer(),
    ]);
    assert_ne!(code, 0, "{err}");

    redis.restart();
    let started = Instant::now();
    while !matches!(
        decision(&authz.check_token(&fine).await),
        Decision::Allow { .. }
    ) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "did not recover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        is_revoked(&authz.check_token(&revoked).await),
        "the revocation survived the restart"
    );
    wait_ready(&authz, 200).await;
}

/// Waits (at most 1 s: readiness follows the store every 200 ms) for `/readyz` to answer
/// `status`.
async fn wait_ready(authz: &Authz, status: u16) {
    let started = Instant::now();
    while scrape(authz, "/readyz").await.0 != status {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "/readyz is not {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A published message is applied only when it chains to what the replica holds and
/// Redis then holds the same: one injected on the channel (by a client allowed to
/// `PUBLISH`, or replayed) is not applied, the replica reads Redis again and keeps
/// following, and real revocations still arrive. A store at `max_entries` refuses more,
/// and says so.
#[tokio::test(flavor = "multi_thread")]
async fn published_messages_must_chain_to_what_redis_holds() {
    let redis = RedisServer::start();
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let config = TempFile::new(
        "chain.yaml",
        config_text(&idp, &redis, "  max_entries: 2\n"),
    );
    let authz = Authz::start(&["--config", config.as_str()]).await;
    authz.wait_serving().await;
    let issuer = idp.issuer();
    let first = token(&idp, |c| c["sub"] = json!("first"));
    let victim = token(&idp, |c| c["sub"] = json!("victim"));
    let (code, _, err) = revoke(&[
        "--config",
        config.as_str(),
        "--sub",
        "first",
        "--issuer",
        &issuer,
    ]);
    assert_eq!(code, 0, "{err}");
    until_revoked(&authz, &first, Duration::from_secs(1)).await;

    // The next sequence number, a digest that does not chain, an entry Redis never had.
    let forged = format!(
        "PUBLISH jwt-authz:revocations \"2\\nforged\\n[\\\"sub\\\",\\\"{issuer}\\\",\\\"victim\\\"]\\n0 9999999999999\""
    );
    assert_eq!(redis.command(&forged), ":1", "one subscriber got it");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_allowed(&authz.check_token(&victim).await);
    // Still current and following: the next real revocation arrives.
    let (code, _, err) = revoke(&[
        "--config",
        config.as_str(),
        "--sub",
        "victim",
        "--issuer",
        &issuer,
    ]);
    assert_eq!(code, 0, "{err}");
    until_revoked(&authz, &victim, Duration::from_secs(1)).await;

    // max_entries (2) reached: refused, exit 69, nothing written.
    let (code, _, err) = revoke(&[
        "--config",
        config.as_str(),
        "--sub",
        "third",
        "--issuer",
        &issuer,
    ]);
    assert_eq!(code, 69, "{err}");
    assert!(err.contains("maximum of 2 entries"), "{err}");
    let (_, listed, _) = revoke(&["--config", config.as_str(), "--list"]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
}

/// While revocations are checked, the claims they key on must be strings, and emails
/// match whatever their case.
#[tokio::test(flavor = "multi_thread")]
async fn keyed_claims_read_one_way() {
    let redis = RedisServer::start();
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let config = TempFile::new("keyed.yaml", config_text(&idp, &redis, ""));
    let authz = Authz::start(&["--config", config.as_str()]).await;
    authz.wait_serving().await;
    for claim in ["sub", "jti", "sid", "client_id", "azp", "email"] {
        let numeric = token(&idp, |c| c[claim] = json!(42));
        assert_denied(&authz.check_token(&numeric).await, 401, "invalid_claims");
    }
    let mixed = token(&idp, |c| c["email"] = json!("Dave@Example.com"));
    assert_allowed(&authz.check_token(&mixed).await);
    let (code, _, err) = revoke(&[
        "--config",
        config.as_str(),
        "--email",
        "dave@EXAMPLE.com",
        "--issuer",
        &idp.issuer(),
    ]);
    assert_eq!(code, 0, "{err}");
    until_revoked(&authz, &mixed, Duration::from_secs(1)).await;
}
