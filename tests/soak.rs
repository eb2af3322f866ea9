//! Soak: the real `jwt-authz` binary under many concurrent gRPC clients on loopback, with
//! a mixed pool of requests whose outcome is known in advance (valid, bad signature,
//! expired, missing scope, unknown `kid`, no header).
//!
//! Asserts zero wrong decisions, zero transport errors, and memory that stops growing: the
//! server's resident set (VmRSS) at the end stays within 1.5 × its size after warm-up plus
//! 8 MiB. The bound leaves room for allocator arenas and the token cache filling up, but
//! not for a leak of one allocation per request.
//!
//! Runs ~10 s by default (CI); `SOAK_SECONDS=60 cargo test --test soak -- --nocapture` is
//! the long run.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use jwt_authz::testkit::*;
use jwt_authz::wire::proto::{AuthorizationClient, CheckRequest};
use serde_json::json;
use tonic::transport::Channel;

const CLIENTS: usize = 32;
const DEFAULT_SECONDS: u64 = 10;

/// The server process; stopped by its own PID when dropped (SIGTERM, then SIGKILL).
struct Server {
    child: Child,
    log: std::path::PathBuf,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in KiB, from /proc/<pid>/status.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("server process is alive");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGTERM, then waits up to 10 s for a clean exit.
    fn stop(mut self) -> std::process::ExitStatus {
        terminate(self.pid());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "server did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn terminate(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -TERM {pid}");
}

fn spawn_server(idp: &Idp, listen: std::net::SocketAddr) -> Server {
    let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("soak-{}.log", std::process::id()));
    let stderr = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jwt-authz"));
    for (key, _) in std::env::vars() {
        if key.starts_with("JWT_AUTHZ_") {
            cmd.env_remove(key);
        }
    }
    let child = cmd
        .args([
            "serve",
            "--listen",
            &listen.to_string(),
            "--admin-listen",
            "off",
        ])
        .args(["--issuer", &idp.issuer(), "--audience", AUDIENCE])
        .args(["--jwks-uri", &idp.jwks_uri(), "--log-level", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("the jwt-authz binary starts");
    Server { child, log }
}

/// Connects to the server once it listens (bounded polling), then waits for SERVING.
async fn connect(server: &mut Server, addr: std::net::SocketAddr) -> Channel {
    let started = Instant::now();
    let channel = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!("server exited with {status}:\n{}", server.log_tail());
        }
        match Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        {
            Ok(channel) => break channel,
            Err(_) if started.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot connect to {addr}: {e}\n{}", server.log_tail()),
        }
    };
    wait_serving(&channel).await;
    channel
}

/// What a request must get.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Allow,
    Deny(i32, &'static str),
}

/// The mixed pool: distinct valid tokens (so the token cache fills), and every kind of
/// refusal.
fn pool(issuer: &str) -> Vec<(CheckRequest, Expect)> {
    let rsa1 = key("rsa-1");
    let rsa2 = key("rsa-2");
    let mut pool = Vec::new();
    for i in 0..64 {
        let mut c = claims(issuer);
        c["sub"] = json!(format!("user-{i}"));
        let auth = format!("Bearer {}", mint(&rsa1, &c));
        pool.push((request(Some(&auth), Some("read:messages")), Expect::Allow));
    }
    let c = claims(issuer);
    let bad_signature = mint_with(&rsa2, Algorithm::RS256, Some("rsa-1"), &c);
    let mut expired = c.clone();
    expired["exp"] = json!(now() - 3600);
    let expired = mint(&rsa1, &expired);
    let unknown_kid = mint_with(&rsa2, Algorithm::RS256, Some("rsa-9"), &c);
    let valid = mint(&rsa1, &c);
    let bearer = |t: &str| format!("Bearer {t}");
    for _ in 0..8 {
        pool.push((
            request(Some(&bearer(&bad_signature)), None),
            Expect::Deny(401, "invalid_token"),
        ));
        pool.push((
            request(Some(&bearer(&expired)), None),
            Expect::Deny(401, "token_expired"),
        ));
        pool.push((
            request(Some(&bearer(&valid)), Some("read:messages admin:all")),
            Expect::Deny(403, "insufficient_scope"),
        ));
        pool.push((
            request(Some(&bearer(&unknown_kid)), None),
            Expect::Deny(401, "invalid_header"),
        ));
        pool.push((
            request(None, None),
            Expect::Deny(401, "authorization_header_missing"),
        ));
    }
    pool
}

fn outcome(response: &jwt_authz::wire::proto::CheckResponse) -> Option<Expect> {
    use jwt_authz::wire::proto::HttpResponse;
    let code = response.status.as_ref()?.code;
    match (code, response.http_response.as_ref()?) {
        (0, HttpResponse::OkResponse(_)) => Some(Expect::Allow),
        (_, HttpResponse::DeniedResponse(d) | HttpResponse::ErrorResponse(d)) => {
            let body: serde_json::Value = serde_json::from_str(&d.body).ok()?;
            let code = match body["code"].as_str()? {
                "invalid_token" => "invalid_token",
                "token_expired" => "token_expired",
                "insufficient_scope" => "insufficient_scope",
                "invalid_header" => "invalid_header",
                "authorization_header_missing" => "authorization_header_missing",
                _ => "other",
            };
            Some(Expect::Deny(d.status.as_ref()?.code, code))
        }
        _ => None,
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    wrong: AtomicU64,
    errors: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_mixed_traffic_has_no_wrong_decisions_and_bounded_memory() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SECONDS);
    let duration = Duration::from_secs(seconds);
    let warm_up = duration / 4;

    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let addr = unused_addr();
    let mut server = spawn_server(&idp, addr);
    let first = connect(&mut server, addr).await;
    let rss_start = server.rss_kib();

    let pool = Arc::new(pool(&idp.issuer()));
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let deadline = started + duration;
    let mut clients = Vec::new();
    for n in 0..CLIENTS {
        // One connection per client.
        let channel = if n == 0 {
            first.clone()
        } else {
            Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .expect("client connects")
        };
        let (pool, counters) = (Arc::clone(&pool), Arc::clone(&counters));
        clients.push(tokio::spawn(async move {
            let mut client = AuthorizationClient::new(channel);
            let mut i = n * 7;
            let mut first_wrong = None;
            while Instant::now() < deadline {
                let (request, expect) = &pool[i % pool.len()];
                i += 1;
                counters.requests.fetch_add(1, Ordering::Relaxed);
                match client.check(request.clone()).await {
                    Ok(response) => {
                        let got = outcome(response.get_ref());
                        if got.as_ref() != Some(expect) {
                            counters.wrong.fetch_add(1, Ordering::Relaxed);
                            first_wrong.get_or_insert(format!("expected {expect:?}, got {got:?}"));
                        }
                    }
                    Err(status) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        first_wrong.get_or_insert(format!("RPC error: {status}"));
                    }
                }
            }
            first_wrong
        }));
    }

    tokio::time::sleep_until((started + warm_up).into()).await;
    let rss_warm = server.rss_kib();
    let mut rss_max = rss_warm;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss_max = rss_max.max(server.rss_kib());
    }
    let mut problems = Vec::new();
    for client in clients {
        if let Some(problem) = client.await.unwrap() {
            problems.push(problem);
        }
    }
    let rss_end = server.rss_kib();
    let elapsed = started.elapsed().as_secs_f64();

    let requests = counters.requests.load(Ordering::Relaxed);
    let wrong = counters.wrong.load(Ordering::Relaxed);
    let errors = counters.errors.load(Ordering::Relaxed);
    println!(
        "soak: {CLIENTS} clients, {elapsed:.1} s, {requests} requests ({:.0}/s), {wrong} wrong decisions, {errors} transport errors",
        requests as f64 / elapsed
    );
    println!(
        "soak: server RSS start {rss_start} KiB, after warm-up {rss_warm} KiB, max {rss_max} KiB, end {rss_end} KiB"
    );

    assert_eq!(wrong, 0, "wrong decisions: {problems:?}");
    assert_eq!(errors, 0, "transport errors: {problems:?}");
    assert!(
        requests >= 1_000,
        "only {requests} requests in {elapsed:.1} s"
    );
    let bound = rss_warm * 3 / 2 + 8 * 1024;
    assert!(
        rss_end <= bound,
        "RSS grew from {rss_warm} KiB after warm-up to {rss_end} KiB (bound {bound} KiB)"
    );
    // The JWKS was fetched at start and at most once per cooldown for the unknown kid.
    let max_fetches = 1 + seconds.div_ceil(5) as usize + 1;
    assert!(
        idp.jwks_hits() <= max_fetches,
        "{} JWKS fetches in {seconds} s",
        idp.jwks_hits()
    );

    let status = server.stop();
    assert!(status.success(), "server exit status {status}");
}
