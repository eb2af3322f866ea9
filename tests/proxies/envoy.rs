//! End-to-end through a real Envoy 1.40 running the shipped `envoy/envoy.yaml` (ports
//! swapped only), the real service, a loopback JWKS and an upstream that records and
//! echoes every request it receives. A missing `envoy` binary fails these tests.
//! [`Envoy::run`] runs any other bootstrap the same way (the mTLS tests use it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jwt_authz::demo::envoy::ENVOY_FLAGS;
use jwt_authz::demo::{EnvoyPorts, bootstrap_with_ports};
use jwt_authz::testkit::*;
use serde_json::{Value, json};

const SHIPPED: &str = include_str!("../../envoy/envoy.yaml");

/// A running Envoy process, stopped by its own PID on drop.
pub struct Envoy {
    child: Child,
    pub listener: u16,
    admin: u16,
    dir: TempDir,
}

/// A scratch directory under the system's temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new, empty directory named after `tag`, this process and a free port.
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "jwt-authz-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A shipped Envoy bootstrap with each `(shipped, port)` swapped and its listeners bound to
/// loopback. Panics unless `port_value: <shipped> ` appears exactly once per port, so a
/// changed file fails here rather than running on the wrong ports.
pub fn with_ports(text: &str, ports: &[(u16, u16)]) -> String {
    let mut out = text.replace("address: 0.0.0.0,", "address: 127.0.0.1,");
    for (from, to) in ports {
        let needle = format!("port_value: {from} ");
        let count = out.matches(&needle).count();
        assert_eq!(count, 1, "envoy bootstrap: `{needle}` {count} times");
        out = out.replace(&needle, &format!("port_value: {to} "));
    }
    out
}

impl Envoy {
    /// The shipped `envoy/envoy.yaml` on free ports, checking with the service on
    /// `authz_port` and forwarding to `upstream_port`; returns once Envoy's gRPC health
    /// check saw the service SERVING.
    pub async fn start(authz_port: u16, upstream_port: u16) -> Envoy {
        Envoy::start_with_collector(authz_port, upstream_port, free_port()).await
    }

    /// [`Envoy::start`], sending Envoy's spans to the OTLP collector on `collector_port`.
    pub async fn start_with_collector(
        authz_port: u16,
        upstream_port: u16,
        collector_port: u16,
    ) -> Envoy {
        let ports = EnvoyPorts {
            listener: free_port(),
            admin: free_port(),
            authz: authz_port,
            upstream: upstream_port,
            collector: collector_port,
        };
        let bootstrap = bootstrap_with_ports(SHIPPED, ports).unwrap();
        let envoy = Envoy::run(&bootstrap, ports.listener, ports.admin, TempDir::new("e2e")).await;
        envoy.wait_authz_healthy().await;
        envoy
    }

    /// Runs Envoy on `bootstrap`, whose listener is on `listener` and admin on `admin`
    /// (both loopback). The bootstrap and Envoy's log are written to `dir`, which lives as
    /// long as Envoy, so files the bootstrap names can be put there too. Returns once Envoy
    /// is ready (bounded wait): the admin `/ready` says LIVE and the listener accepts
    /// connections. Envoy exiting first fails with its log.
    pub async fn run(bootstrap: &str, listener: u16, admin: u16, dir: TempDir) -> Envoy {
        let config = dir.path().join("envoy.yaml");
        std::fs::write(&config, bootstrap).unwrap();
        let log = std::fs::File::create(dir.path().join("envoy.log")).unwrap();
        let child = Command::new(tool("ENVOY", "venv/bin/envoy"))
            .arg("-c")
            .arg(&config)
            .args(ENVOY_FLAGS)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start envoy");
        let mut envoy = Envoy {
            child,
            listener,
            admin,
            dir,
        };
        envoy.wait_ready().await;
        envoy
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.listener)
    }

    /// Waits (bounded) until the admin `/ready` answers 200 (server state LIVE: listeners
    /// and clusters initialised) and the listener accepts a TCP connection.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        let ready = format!("http://127.0.0.1:{}/ready", self.admin);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "envoy exited ({status}) before it was ready: {}",
                    self.log()
                );
            }
            let live = match client.get(&ready).send().await {
                Ok(response) => response.status() == 200,
                Err(_) => false,
            };
            if live
                && tokio::net::TcpStream::connect(("127.0.0.1", self.listener))
                    .await
                    .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "envoy was not ready within 30s: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (bounded) until Envoy's admin reports the jwt_authz host healthy by its gRPC
    /// health check, i.e. the service said SERVING.
    pub async fn wait_authz_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        loop {
            let clusters = client
                .get(format!("http://127.0.0.1:{}/clusters", self.admin))
                .send()
                .await;
            if let Ok(response) = clusters {
                let text = response.text().await.unwrap_or_default();
                if text
                    .lines()
                    .any(|l| l.starts_with("jwt_authz::") && l.ends_with("::health_flags::healthy"))
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "envoy did not see jwt-authz healthy within 30s: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    pub async fn stat(&self, name: &str) -> u64 {
        let text = reqwest::get(format!(
            "http://127.0.0.1:{}/stats?filter={name}",
            self.admin
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The identity provider, the service, Envoy and the recording upstream, all on loopback.
pub struct Stack {
    pub idp: Idp,
    pub authz: Option<Authz>,
    pub envoy: Envoy,
    pub upstream: RecordingUpstream,
    pub http: reqwest::Client,
}

/// A stack whose service trusts the identity provider, started with `extra` flags.
pub async fn stack(extra: &[&str]) -> Stack {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(&idp, extra).await;
    Stack::around(idp, authz).await
}

/// A stack whose service runs the configuration file that `config` writes for the
/// identity provider's issuer and JWKS URI.
pub async fn stack_with_config(config: impl Fn(&Idp) -> String) -> Stack {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let path = TempFile::new("e2e-config.yaml", config(&idp));
    let authz = Authz::start(&["--config", path.to_str().unwrap()]).await;
    let _ = std::fs::remove_file(&path);
    authz.wait_serving().await;
    Stack::around(idp, authz).await
}

impl Stack {
    async fn around(idp: Idp, authz: Authz) -> Stack {
        let upstream = RecordingUpstream::start().await;
        let envoy = Envoy::start(authz.addr.port(), upstream.addr.port()).await;
        Stack {
            idp,
            authz: Some(authz),
            envoy,
            upstream,
            http: reqwest::Client::new(),
        }
    }

    pub async fn get(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        self.send("GET", path, headers).await
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), self.envoy.url(path));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body, headers)
    }

    pub fn token(&self, scope: &str) -> String {
        let mut c = claims(&self.idp.issuer());
        c["scope"] = json!(scope);
        format!("Bearer {}", mint(&key("rsa-1"), &c))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_enforces_tokens_scopes_and_claim_headers() {
    let s = stack(&[]).await;

    // Public route: no check at all, and a forged identity header is dropped.
    let (status, body, _) = s.get("/api/public", &[("x-jwt-sub", "forged")]).await;
    assert_eq!(status, 200);
    assert_eq!(body["headers"].get("x-jwt-sub"), None);

    // Private route without a token: 401 with the JSON body and a challenge.
    let (status, body, headers) = s.get("/api/private", &[]).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"code": "authorization_header_missing", "description": "Authorization header is expected"})
    );
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"jwt-authz\"");
    assert_eq!(headers["content-type"], "application/json");

    // Wrong audience.
    let mut c = claims(&s.idp.issuer());
    c["aud"] = json!("https://someone-else.example.com");
    let bad_aud = format!("Bearer {}", mint(&key("rsa-1"), &c));
    let (status, body, headers) = s.get("/api/private", &[("authorization", &bad_aud)]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_claims"))
    );
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );

    // Scoped route: 403 without the scope, 200 with it.
    let plain = s.token("openid");
    let (status, body, headers) = s
        .get("/api/private-scoped", &[("authorization", &plain)])
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"read:messages\"")
    );
    let scoped = s.token("read:messages");
    let (status, body, _) = s
        .get(
            "/api/private-scoped",
            &[("authorization", &scoped), ("x-jwt-sub", "admin")],
        )
        .await;
    assert_eq!(status, 200);
    // The upstream sees the verified subject, never the forged one.
    assert_eq!(body["headers"]["x-jwt-sub"], "auth0|user-1");

    // Catch-all route: any valid token.
    let (status, _, _) = s.get("/anything/else", &[("authorization", &plain)]).await;
    assert_eq!(status, 200);
    assert!(s.envoy.stat("http.ingress.ext_authz.denied").await >= 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_fails_closed_when_the_service_stops() {
    let mut s = stack(&[]).await;
    let token = s.token("read:messages");
    let (status, _, _) = s.get("/api/private", &[("authorization", &token)]).await;
    assert_eq!(status, 200);
    s.authz.take().unwrap().stop().await.unwrap();
    for _ in 0..5 {
        let (status, _, _) = s.get("/api/private", &[("authorization", &token)]).await;
        assert_ne!(status, 200, "a request passed while the service was down");
        assert!(status == 503 || status == 403, "unexpected status {status}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_with_config_file_rules_and_no_context_extensions() {
    // The Istio shape: Envoy's catch-all route sends no context extensions, so the
    // service's own rules decide.
    let s = stack_with_config(|idp| {
        format!(
            r#"
issuers:
  - issuer: {issuer}
    audiences: ["{AUDIENCE}"]
    jwks_uri: {jwks}
routes:
  - path_prefix: /open
    allow_anonymous: true
  - name: read-message
    methods: [GET]
    path: /messages/{{id}}
    scopes: {{ all_of: [read:messages] }}
  - methods: [DELETE]
    path: /messages/{{id}}
    scopes: {{ any_of: [admin, delete:messages] }}
  - path_prefix: /internal
    deny: true
upstream:
  claims_to_headers:
    - {{claim: sub, header: x-jwt-sub}}
    - {{claim: scope, header: x-jwt-scope}}
    - {{claim: org.id, header: x-jwt-org}}
    - {{claim: roles, header: x-jwt-roles}}
  array_separator: ","
  forward_payload_header: x-jwt-payload
  strip_authorization: true
"#,
            issuer = idp.issuer(),
            jwks = idp.jwks_uri(),
        )
    })
    .await;

    let (status, body, _) = s
        .get(
            "/open/docs",
            &[("x-jwt-sub", "forged"), ("x-jwt-payload", "forged")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["headers"].get("x-jwt-sub"),
        None,
        "anonymous routes strip identity headers"
    );
    assert_eq!(body["headers"].get("x-jwt-payload"), None);

    let mut c = claims(&s.idp.issuer());
    c["scope"] = json!("read:messages");
    c["org"] = json!({"id": "acme"});
    c["roles"] = json!(["reader", "writer"]);
    let reader = format!("Bearer {}", mint(&key("rsa-1"), &c));
    let (status, body, _) = s.get("/messages/42", &[("authorization", &reader)]).await;
    assert_eq!(status, 200);
    let h = &body["headers"];
    assert_eq!(h["x-jwt-sub"], "auth0|user-1");
    assert_eq!(h["x-jwt-scope"], "read:messages");
    assert_eq!(h["x-jwt-org"], "acme");
    assert_eq!(h["x-jwt-roles"], "reader,writer");
    assert_eq!(
        h.get("authorization"),
        None,
        "authorization stripped before the upstream"
    );
    let payload = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        h["x-jwt-payload"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&payload).unwrap()["sub"],
        "auth0|user-1"
    );

    let (status, body, _) = s
        .send("DELETE", "/messages/42", &[("authorization", &reader)])
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    let (status, body, _) = s
        .get("/internal/metrics", &[("authorization", &reader)])
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("access_denied"))
    );
    let (status, body, _) = s.get("/messages/42", &[]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("authorization_header_missing"))
    );
    let (status, _, _) = s
        .get("/open/../internal/x", &[("authorization", &reader)])
        .await;
    assert_ne!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_throughput_during_the_tests() {
    let s = stack(&[]).await;
    let token = s.token("read:messages");
    let total = 2000;
    let concurrency = 16;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let http = s.http.clone();
        let url = s.envoy.url("/api/private-scoped");
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..total / concurrency {
                let r = http
                    .get(&url)
                    .header("authorization", &token)
                    .send()
                    .await
                    .unwrap();
                if r.status() == 200 {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    let elapsed = started.elapsed();
    assert_eq!(ok, total, "every authorized request must pass");
    eprintln!(
        "through envoy (debug build, test client): {total} requests in {:.2}s = {:.0} req/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
}
