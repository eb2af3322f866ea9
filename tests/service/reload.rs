//! Live configuration over the real gRPC API: the file rewritten under a closed-loop load
//! (valid and invalid versions alternately), issuers added and removed, and the symlink
//! swap Kubernetes does for a mounted ConfigMap.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jwt_authz::testkit::*;
use jwt_authz::wire::proto::CheckRequest;
use serde_json::json;

/// A fresh directory for one test's files.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jwt-authz-reload-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Replaces `path` atomically, as editors and Kubernetes do: a reader sees the old or the
/// new content, never half of one.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn issuer_entry(idp: &Idp) -> String {
    format!(
        "  - {{issuer: \"{}\", audiences: [\"{AUDIENCE}\"], jwks_uri: \"{}\"}}\n",
        idp.issuer(),
        idp.jwks_uri()
    )
}

fn token(idp: &Idp, scope: &str) -> String {
    let mut c = claims(&idp.issuer());
    c["scope"] = json!(scope);
    mint(&key("rsa-1"), &c)
}

fn at(path: &str, token: Option<&str>) -> CheckRequest {
    let bearer = token.map(|t| format!("Bearer {t}"));
    request_at(path, bearer.as_deref())
}

async fn metric(authz: &Authz, line_prefix: &str) -> u64 {
    let (_, text) = scrape(authz, "/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_prefix} in\n{text}"))
}

/// Polls until `done` holds for a Check of `request`, returning how long it took.
async fn until(
    authz: &Authz,
    request: &CheckRequest,
    limit: Duration,
    done: fn(&Decision) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if done(&decision(&authz.check(request.clone()).await)) {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "not in effect after {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn allowed(d: &Decision) -> bool {
    matches!(d, Decision::Allow { .. })
}

fn scope_denied(d: &Decision) -> bool {
    matches!(d, Decision::Deny { code, .. } if code == "insufficient_scope")
}

#[tokio::test(flavor = "multi_thread")]
async fn rewrites_under_load_swap_valid_versions_and_change_nothing_on_invalid_ones() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let dir = temp_dir("load");
    let path = dir.join("config.yaml");
    let version = |scope: &str| {
        format!(
            "config_poll: 100ms\nissuers:\n{}routes:\n  - {{name: versioned, path_prefix: /api/v, scopes: {{all_of: [{scope}]}}}}\n  - {{name: never, path_prefix: /never, deny: true}}\n  - {{name: any, path_prefix: /api/any}}\n",
            issuer_entry(&idp)
        )
    };
    replace(&path, &version("even"));
    let authz = Arc::new(Authz::start(&["--config", path.to_str().unwrap()]).await);
    authz.wait_serving().await;
    let (even, odd, both) = (
        token(&idp, "even"),
        token(&idp, "odd"),
        token(&idp, "even odd"),
    );

    // The closed loop: requests whose answer is the same under every version.
    let stop = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicU64::new(0));
    let wrong = Arc::new(AtomicU64::new(0));
    let rpc_errors = Arc::new(AtomicU64::new(0));
    let worst_us = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (authz, stop, checks, wrong, rpc_errors, worst_us) = (
            Arc::clone(&authz),
            Arc::clone(&stop),
            Arc::clone(&checks),
            Arc::clone(&wrong),
            Arc::clone(&rpc_errors),
            Arc::clone(&worst_us),
        );
        let cases = [
            (at("/api/v/x", Some(&both)), Some(200)),
            (at("/never", Some(&both)), Some(403)),
            (at("/api/any", None), Some(401)),
            (at("/unlisted", Some(&both)), Some(403)),
        ];
        workers.push(tokio::spawn(async move {
            let mut client = authz.client.clone();
            while !stop.load(Ordering::Relaxed) {
                for (request, expected) in &cases {
                    let started = Instant::now();
                    let result = client.check(request.clone()).await;
                    let us = started.elapsed().as_micros() as u64;
                    worst_us.fetch_max(us, Ordering::Relaxed);
                    checks.fetch_add(1, Ordering::Relaxed);
                    let Ok(response) = result else {
                        rpc_errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let status = match decision(&response.into_inner()) {
                        Decision::Allow { .. } => 200,
                        Decision::Deny { http, .. } => http,
                    };
                    if Some(status) != *expected {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }

    let invalid = [
        "issuers: [\n",
        "routes:\n  - path: no-slash\n",
        "issuers:\n  - {issuer: \"https://x.example/\", audiences: []}\n",
        "unknown_key: 1\n",
    ];
    let mut required = "even";
    let mut slowest = Duration::ZERO;
    let mut failures = 0;
    for round in 0..20 {
        if round % 2 == 0 {
            // Invalid: refused, counted, and the running version keeps deciding.
            replace(
                &path,
                &format!(
                    "{}{}",
                    version(required),
                    invalid[(round / 2) % invalid.len()]
                ),
            );
            failures += 1;
            let limit = Instant::now() + Duration::from_secs(2);
            while metric(
                &authz,
                "jwt_authz_config_reloads_total{result=\"failure\"} ",
            )
            .await
                < failures
            {
                assert!(
                    Instant::now() < limit,
                    "invalid version {round} not refused"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let (holder, other) = if required == "even" {
                (&even, &odd)
            } else {
                (&odd, &even)
            };
            assert!(allowed(&decision(
                &authz.check(at("/api/v", Some(holder))).await
            )));
            assert!(scope_denied(&decision(
                &authz.check(at("/api/v", Some(other))).await
            )));
        } else {
            // Valid: the required scope flips, in effect within 1 s.
            required = if required == "even" { "odd" } else { "even" };
            replace(&path, &version(required));
            let holder = if required == "even" { &even } else { &odd };
            let took = until(
                &authz,
                &at("/api/v", Some(holder)),
                Duration::from_secs(1),
                allowed,
            )
            .await;
            slowest = slowest.max(took);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let (checks, wrong, rpc_errors) = (
        checks.load(Ordering::Relaxed),
        wrong.load(Ordering::Relaxed),
        rpc_errors.load(Ordering::Relaxed),
    );
    eprintln!(
        "reload under load: {checks} checks, {rpc_errors} RPC errors, {wrong} wrong decisions, worst latency {} us, slowest valid version in effect after {slowest:?}",
        worst_us.load(Ordering::Relaxed)
    );
    assert!(checks > 100, "{checks}");
    assert_eq!((rpc_errors, wrong), (0, 0));
    assert_eq!(
        metric(
            &authz,
            "jwt_authz_config_reloads_total{result=\"failure\"} "
        )
        .await,
        10
    );
    // Ten valid rewrites plus the start-up load.
    assert_eq!(
        metric(
            &authz,
            "jwt_authz_config_reloads_total{result=\"success\"} "
        )
        .await,
        11
    );
    assert!(
        metric(
            &authz,
            "jwt_authz_config_last_reload_success_timestamp_seconds "
        )
        .await
            >= now() - 60
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn issuers_come_and_go_live_and_unchanged_ones_keep_keys_and_cache_entries() {
    let a = Idp::start(vec![key("rsa-1").jwk]).await;
    let b = Idp::start(vec![key("rsa-1").jwk]).await;
    b.update(|s| s.delay = Duration::from_millis(700));
    let dir = temp_dir("issuers");
    let path = dir.join("config.yaml");
    let only_a = format!("config_poll: 100ms\nissuers:\n{}", issuer_entry(&a));
    replace(&path, &only_a);
    let authz = Authz::start(&["--config", path.to_str().unwrap()]).await;
    authz.wait_serving().await;
    let (from_a, from_b) = (token(&a, "openid"), token(&b, "openid"));
    assert!(allowed(&decision(
        &authz.check(at("/x", Some(&from_a))).await
    )));
    let d = decision(&authz.check(at("/x", Some(&from_b))).await);
    assert!(
        matches!(&d, Decision::Deny { code, .. } if code == "invalid_claims"),
        "{d:?}"
    );
    let a_fetches = a.jwks_hits();
    let hits_before = metric(&authz, "jwt_authz_token_cache_hits_total ").await;

    // B added: its tokens wait for its keys (503), then pass; A is untouched.
    replace(&path, &format!("{only_a}{}", issuer_entry(&b)));
    let start = Instant::now();
    let mut saw_unavailable = false;
    loop {
        match decision(&authz.check(at("/x", Some(&from_b))).await) {
            Decision::Allow { .. } => break,
            Decision::Deny { code, .. } if code == "jwks_unavailable" => saw_unavailable = true,
            Decision::Deny { code, .. } => assert_eq!(code, "invalid_claims", "before the reload"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "issuer B never loaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        saw_unavailable,
        "B's tokens must get 503 while its keys load"
    );
    assert!(allowed(&decision(
        &authz.check(at("/x", Some(&from_a))).await
    )));
    assert_eq!(a.jwks_hits(), a_fetches, "A's keys are kept, not refetched");
    let hits_after = metric(&authz, "jwt_authz_token_cache_hits_total ").await;
    assert!(
        hits_after > hits_before,
        "A's cache entry survives the reload"
    );

    // B removed: its tokens are from an unknown issuer again.
    replace(&path, &only_a);
    until(
        &authz,
        &at("/x", Some(&from_b)),
        Duration::from_secs(1),
        |d| matches!(d, Decision::Deny { code, .. } if code == "invalid_claims"),
    )
    .await;
    assert!(allowed(&decision(
        &authz.check(at("/x", Some(&from_a))).await
    )));
    let _ = std::fs::remove_dir_all(dir);
}

/// Kubernetes mounts a ConfigMap as `config.yaml -> ..data/config.yaml`, `..data ->
/// ..<timestamp>/`, and updates it by swapping the `..data` link.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_configmap_symlink_swap_is_seen() {
    use std::os::unix::fs::symlink;
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let dir = temp_dir("configmap");
    let version = |deny: bool| {
        format!(
            "config_poll: 100ms\nissuers:\n{}routes:\n  - {{path_prefix: /api, deny: {deny}}}\n",
            issuer_entry(&idp)
        )
    };
    let write_version = |name: &str, deny: bool| {
        let versioned = dir.join(name);
        std::fs::create_dir_all(&versioned).unwrap();
        std::fs::write(versioned.join("config.yaml"), version(deny)).unwrap();
    };
    write_version("..v1", false);
    symlink("..v1", dir.join("..data")).unwrap();
    symlink("..data/config.yaml", dir.join("config.yaml")).unwrap();
    let authz = Authz::start(&["--config", dir.join("config.yaml").to_str().unwrap()]).await;
    authz.wait_serving().await;
    let t = token(&idp, "openid");
    assert!(allowed(&decision(
        &authz.check(at("/api/x", Some(&t))).await
    )));

    write_version("..v2", true);
    symlink("..v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    until(
        &authz,
        &at("/api/x", Some(&t)),
        Duration::from_secs(1),
        |d| matches!(d, Decision::Deny { code, .. } if code == "access_denied"),
    )
    .await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Issue 20's in-place writer: the file is truncated and rewritten in place, pausing
/// after a prefix that is itself a valid configuration (the `/api/admin` rule without its
/// `scopes:` line). The prefix is never applied: a token without the scope is refused on
/// `/api/admin` throughout, and the whole new version is applied once it settled.
#[tokio::test(flavor = "multi_thread")]
async fn issue_20_an_in_place_writer_pausing_midway_is_never_applied_half_written() {
    use std::io::Write;
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let dir = temp_dir("in-place");
    let path = dir.join("config.yaml");
    let head = format!(
        "config_poll: 50ms\nissuers:\n{}routes:\n",
        issuer_entry(&idp)
    );
    let v1 = format!(
        "{head}  - path_prefix: /api/admin\n    scopes: {{all_of: [admin]}}\n  - {{path_prefix: /api}}\n"
    );
    let (prefix, rest) = (
        format!("{head}  - path_prefix: /api/admin\n"),
        "    scopes: {all_of: [admin]}\n  - {path_prefix: /api/new, deny: true}\n  - {path_prefix: /api}\n",
    );
    std::fs::write(&path, &v1).unwrap();
    let authz = Authz::start(&["--config", path.to_str().unwrap()]).await;
    authz.wait_serving().await;
    let reader = token(&idp, "read");
    assert!(scope_denied(&decision(
        &authz.check(at("/api/admin", Some(&reader))).await
    )));
    let loaded = metric(
        &authz,
        "jwt_authz_config_reloads_total{result=\"success\"} ",
    )
    .await;

    // The writer, on a thread: truncate, the prefix, a pause, the rest.
    let writer_path = path.clone();
    let writer = std::thread::spawn(move || {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&writer_path)
            .unwrap();
        file.write_all(prefix.as_bytes()).unwrap();
        file.flush().unwrap();
        std::thread::sleep(Duration::from_millis(1_300));
        file.write_all(rest.as_bytes()).unwrap();
        file.flush().unwrap();
    });
    let started = Instant::now();
    let mut applied = None;
    while started.elapsed() < Duration::from_secs(6) {
        let admin = decision(&authz.check(at("/api/admin", Some(&reader))).await);
        assert!(
            scope_denied(&admin),
            "a half-written version was applied after {:?}: {admin:?}",
            started.elapsed()
        );
        let new = decision(&authz.check(at("/api/new", Some(&reader))).await);
        if applied.is_none()
            && matches!(&new, Decision::Deny { code, .. } if code == "access_denied")
        {
            applied = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writer.join().unwrap();
    let applied = applied.expect("the whole new version was never applied");
    // Written in full at 1.3 s, then unchanged for the settle interval (2 s).
    assert!(applied >= Duration::from_millis(3_300), "{applied:?}");
    assert_eq!(
        metric(
            &authz,
            "jwt_authz_config_reloads_total{result=\"success\"} "
        )
        .await,
        loaded + 1,
        "only the whole version was loaded"
    );
    assert_eq!(
        metric(
            &authz,
            "jwt_authz_config_reloads_total{result=\"failure\"} "
        )
        .await,
        0
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A FIFO put at the configuration path (nothing ever writes it): no Check and no health
/// probe waits on it, the refusal is logged and counted once, and a regular file put back
/// is applied.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn issue_20_a_fifo_at_the_config_path_never_stalls_checks_or_health() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let dir = temp_dir("fifo");
    let path = dir.join("config.yaml");
    let version = |deny: bool| {
        format!(
            "config_poll: 50ms\nissuers:\n{}routes:\n  - {{path_prefix: /api, deny: {deny}}}\n",
            issuer_entry(&idp)
        )
    };
    replace(&path, &version(false));
    let authz = Authz::start(&["--config", path.to_str().unwrap()]).await;
    authz.wait_serving().await;
    let t = token(&idp, "read");

    let fifo = dir.join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    std::fs::rename(&fifo, &path).unwrap();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(2) {
        let t0 = Instant::now();
        assert!(allowed(&decision(
            &authz.check(at("/api/x", Some(&t))).await
        )));
        assert_eq!(authz.health().await, ServingStatus::Serving);
        slowest = slowest.max(t0.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        slowest < Duration::from_millis(500),
        "a Check waited {slowest:?}"
    );
    assert_eq!(
        metric(
            &authz,
            "jwt_authz_config_reloads_total{result=\"failure\"} "
        )
        .await,
        1,
        "refused once, not at every poll"
    );

    replace(&path, &version(true));
    until(
        &authz,
        &at("/api/x", Some(&t)),
        Duration::from_secs(2),
        |d| matches!(d, Decision::Deny { code, .. } if code == "access_denied"),
    )
    .await;
    let _ = std::fs::remove_dir_all(dir);
}

/// One readiness: a reload that adds an issuer whose keys cannot load yet makes gRPC
/// health and `/readyz` both say "not ready", and both "ready" once the keys load.
#[tokio::test(flavor = "multi_thread")]
async fn health_and_readyz_follow_the_reloaded_issuers_together() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let first = Idp::start(vec![key("rsa-1").jwk]).await;
    let added = Idp::start(vec![key("rsa-1").jwk]).await;
    added.update(|s| s.status = 503);
    let dir = temp_dir("readiness");
    let path = dir.join("config.yaml");
    let version = |idps: &[&Idp]| {
        let issuers: String = idps.iter().map(|i| issuer_entry(i)).collect();
        format!(
            "config_poll: 50ms\nconfig_settle: 100ms\njwks: {{cooldown: 100ms}}\nissuers:\n{issuers}"
        )
    };
    replace(&path, &version(&[&first]));
    let authz = Authz::start(&["--config", path.to_str().unwrap()]).await;
    authz.wait_serving().await;
    assert_eq!(scrape(&authz, "/readyz").await.0, 200);

    let both = |want_ready: bool| {
        let authz = &authz;
        async move {
            let started = Instant::now();
            loop {
                let health = authz.health().await;
                let readyz = scrape(authz, "/readyz").await.0;
                let want = if want_ready {
                    (ServingStatus::Serving, 200)
                } else {
                    (ServingStatus::NotServing, 503)
                };
                if (health, readyz) == want {
                    return;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "health {health:?}, /readyz {readyz}: not both {want:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    replace(&path, &version(&[&first, &added]));
    both(false).await;
    added.update(|s| s.status = 200);
    both(true).await;
    // Removing the issuer again keeps the service ready.
    replace(&path, &version(&[&first]));
    tokio::time::sleep(Duration::from_millis(400)).await;
    both(true).await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The HTTP authorization endpoint decides on the configuration in force, as the gRPC
/// Check does: a reload that denies a route denies it on both wires.
#[tokio::test(flavor = "multi_thread")]
async fn the_http_endpoint_decides_on_the_reloaded_configuration() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let dir = temp_dir("http-reload");
    let path = dir.join("config.yaml");
    let version = |deny: bool| {
        format!(
            "config_poll: 50ms\nconfig_settle: 100ms\nissuers:\n{}routes:\n  - {{path_prefix: /api, deny: {deny}}}\n",
            issuer_entry(&idp)
        )
    };
    replace(&path, &version(false));
    let authz = Authz::start(&["--config", path.to_str().unwrap()]).await;
    authz.wait_serving().await;
    let t = token(&idp, "read");
    let http = reqwest::Client::new();
    let ask = || {
        http.get(format!("http://{}/", authz.http))
            .header("x-original-uri", "/api/x")
            .header("x-original-method", "GET")
            .header("x-forwarded-host", "api.example.com")
            .header("x-forwarded-proto", "https")
            .header("authorization", format!("Bearer {t}"))
            .send()
    };
    assert_eq!(ask().await.unwrap().status(), 200);
    replace(&path, &version(true));
    until(
        &authz,
        &at("/api/x", Some(&t)),
        Duration::from_secs(5),
        |d| !allowed(d),
    )
    .await;
    assert_eq!(ask().await.unwrap().status(), 403);
    let _ = std::fs::remove_dir_all(dir);
}
