//! Issue 19, the differential test: real servers read every request the service let
//! through, and none of them may resolve it to a route whose rule the credentials sent do
//! not satisfy.
//!
//! Five upstreams (tests/upstreams: Werkzeug's router, Starlette's, Express with
//! `method-override`, PHP's built-in server with a Symfony-style router, and nginx) answer
//! every request with the route their own router resolved and the method the application
//! acts on. A generated corpus of requests (dot segments padded and disguised, overlong and
//! fullwidth UTF-8, encoded separators and parameters, case, trailing dots, method
//! overrides in every spelling, preflights) is sent without a token or with a token that
//! grants no scope, against the rules of [`CONFIG`]. The property: whenever a server
//! resolves a request to a protected route the credentials do not satisfy, the service
//! denied that request. It is checked
//!
//! - with the service alone, over gRPC as Istio calls it (the raw path and every header)
//!   and over the HTTP endpoint, each allowed request then sent as it was to every server;
//! - through the shipped `envoy/envoy.yaml`, `envoy/envoy-http-service.yaml` and
//!   `nginx/nginx.conf`, each in front of every server.
//!
//! The corpus is generated from a fixed seed (`DIFFERENTIAL_SEED`), `DIFFERENTIAL_CASES`
//! requests for the service alone and an eighth of them per proxy and server;
//! `DIFFERENTIAL_CASES=20000` is the longer run on demand.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jwt_authz::testkit::*;
use jwt_authz::wire::proto::CheckRequest;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::envoy::{Envoy, TempDir};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The service's rules, the demo's `default_action: authenticated` included: a request no
/// rule matches needs only a valid token, so a near-miss spelling of a protected path
/// would pass with any token were it not refused.
const CONFIG: &str = r#"
default_action: authenticated
cors_preflight: allow
routes:
  - name: public
    path_prefix: /api/public
    allow_anonymous: true
  - name: private-scoped
    path_prefix: /api/private-scoped
    scopes: { all_of: [read:messages] }
  - name: items-delete
    methods: [DELETE]
    path: /api/items/{id}
    scopes: { all_of: [delete:items] }
  - name: admin
    path_prefix: /admin
    scopes: { all_of: [admin] }
  - name: internal
    path_prefix: /internal
    deny: true
"#;

/// Cases for the service alone in CI; each proxy and server gets an eighth.
const DEFAULT_CASES: usize = 1600;
const DEFAULT_SEED: u64 = 0x5eed_0019;

/// A child process stopped by its own PID.
pub(super) struct Proc(pub(super) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One real upstream server.
struct Server {
    name: &'static str,
    port: u16,
    _proc: Proc,
    _dir: TempDir,
}

fn python() -> PathBuf {
    tool("UPSTREAM_PYTHON", "venv/bin/python")
}

fn program(var: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.is_file(),
        "{} not found (set ${var} or run scripts/install-test-tools.sh)",
        path.display()
    );
    path
}

fn which(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("`{name}` not on PATH (run scripts/install-test-tools.sh)"))
}

/// Starts every upstream on a free port and waits (bounded) until each accepts.
async fn start_servers() -> Vec<Server> {
    let upstreams = Path::new(ROOT).join("tests/upstreams");
    let mut servers = Vec::new();
    let only = std::env::var("DIFFERENTIAL_SERVERS").unwrap_or_default();
    for name in ["werkzeug", "starlette", "express", "php", "nginx"] {
        if !only.is_empty() && !only.split(',').any(|n| n == name) {
            continue;
        }
        let port = free_port();
        let dir = TempDir::new(&format!("upstream-{name}"));
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut command = match name {
            "werkzeug" | "starlette" => {
                let mut c = Command::new(python());
                c.arg(upstreams.join(format!("{name}_app.py")))
                    .arg(port.to_string());
                c
            }
            "express" => {
                let mut c = Command::new(which("node"));
                c.arg(upstreams.join("express/app.js"))
                    .arg(port.to_string());
                c
            }
            "php" => {
                let mut c = Command::new(which("php"));
                c.arg("-S")
                    .arg(format!("127.0.0.1:{port}"))
                    .arg(upstreams.join("php_router.php"));
                c
            }
            _ => {
                let conf = std::fs::read_to_string(upstreams.join("nginx-upstream.conf"))
                    .unwrap()
                    .replace("__PORT__", &port.to_string());
                let path = dir.path().join("nginx.conf");
                std::fs::write(&path, conf).unwrap();
                let mut c = Command::new(program("NGINX", "/usr/sbin/nginx"));
                c.arg("-p")
                    .arg(dir.path())
                    .arg("-c")
                    .arg(&path)
                    .arg("-e")
                    .arg(dir.path().join("error.log"))
                    .args(["-g", "daemon off; master_process off;"]);
                c
            }
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start the {name} upstream: {e}"));
        let server = Server {
            name,
            port,
            _proc: Proc(child),
            _dir: dir,
        };
        wait_accepting(port, name, &server._dir).await;
        servers.push(server);
    }
    servers
}

pub(super) async fn wait_accepting(port: u16, what: &str, dir: &TempDir) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not listen within 30s: {}",
            std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One generated request.
#[derive(Debug, Clone)]
struct Case {
    method: String,
    /// The request target, as sent.
    target: String,
    headers: Vec<(String, String)>,
    /// A valid token granting no scope is sent.
    token: bool,
    /// A CORS preflight (`Origin` and `Access-Control-Request-Method`, no override).
    preflight: bool,
}

/// A small deterministic generator (xorshift64*): the corpus is the same on every run of
/// a seed, with no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Where a spelling starts from: a public prefix to climb out of, or nothing.
const STARTS: &[&str] = &[
    "/api/public/",
    "/api/public/x/",
    "/",
    "/api/",
    "/static/",
    "",
];

/// Spellings of `..` and `.` as one segment, padded and disguised.
const DOTS: &[&str] = &[
    "..",
    ".",
    "...",
    "%2e%2e",
    "%2E%2e",
    ".%2e",
    "%2e.",
    "%2e",
    "..%20",
    "%20..",
    "..%20%20",
    "..%09",
    "..%0a",
    "..%0d",
    "..%0b",
    "..%0c",
    "..%00",
    "..%c2%a0",
    "..%c2%85",
    "..%e3%80%80",
    "..%e2%80%83",
    "..%e2%80%8b",
    "%ef%bc%8e%ef%bc%8e",
    "%ef%bc%8e",
    "%c0%ae%c0%ae",
    "%e0%80%ae%e0%80%ae",
    "%c0%2e%c0%2e",
    "%e2%80%a4%e2%80%a4",
    "..%c0%af",
    "..%3b",
    "..%3Bx=1",
    "..;",
    "..;x=1",
    ".;",
    "..+",
    "+..",
    "..%2b",
    "%252e%252e",
    "%25%32%65%25%32%65",
    "%u002e%u002e",
    "..%5c",
    "..\\",
    "..%2f",
    ". .",
    "..%ff",
    "..%",
];

/// Separators after a dot segment.
const SEPARATORS: &[&str] = &["/", "//", "%2f", "%2F", "%5c", "\\", "%252f", "/./", ";/"];

/// Protected targets and their near misses.
const TARGETS: &[&str] = &[
    "api/private-scoped",
    "api/private",
    "admin",
    "internal",
    "api/items/5",
    "private-scoped",
    "items/5",
];

/// What may follow a target: near-miss spellings some server reads as the target.
const SUFFIXES: &[&str] = &[
    "::$INDEX_ALLOCATION",
    "%3a%24i30",
    "#&_method=DELETE",
    "%40",
    "%3a",
    "%2c",
    "",
    "",
    "",
    "/",
    "/x",
    "%20",
    "%09",
    "%0a",
    "%00",
    "%c2%a0",
    "%e3%80%80",
    ".",
    "..",
    "./x",
    ";x=1",
    "%3b",
    "%3bx=1",
    ";",
    "%2f",
    "/.",
    "/..",
    "+",
    "%2b",
    "~",
    "%7e",
    "%ef%bc%8e",
    "%e2%80%8b",
    ".json",
    "/%2e%2e",
    "#x",
    "?x=1",
    "::$DATA",
    "%23",
];

/// Rewrites a target's letters as a server that decodes or folds might read them.
fn disguise(rng: &mut Rng, target: &str) -> String {
    match rng.next() % 8 {
        0 => target.to_ascii_uppercase(),
        1 => {
            let mut out = String::new();
            for (i, c) in target.chars().enumerate() {
                if i % 3 == 0 && c.is_ascii_lowercase() {
                    out.push(c.to_ascii_uppercase());
                } else {
                    out.push(c);
                }
            }
            out
        }
        2 => target.replacen('a', "%61", 1).replacen('i', "%69", 1),
        3 => target.replacen('a', "%ef%bd%81", 1),
        4 => target.replacen('i', "%c4%b1", 1),
        5 => target.replacen('/', "//", 1),
        6 => target.replacen('-', "%2d", 1),
        _ => target.to_owned(),
    }
}

const OVERRIDE_HEADERS: &[&str] = &[
    "X-HTTP-Method-Override",
    "x-http-method-override",
    "X-HTTP-Method",
    "X-Method-Override",
    // PHP reads it as HTTP_X_HTTP_METHOD_OVERRIDE.
    "X.HTTP.Method.Override",
];
const OVERRIDE_VALUES: &[&str] = &[
    "DELETE",
    "delete",
    "DELETE, POST",
    "POST,DELETE",
    "PUT",
    "Delete",
];
const OVERRIDE_QUERIES: &[&str] = &[
    "_method%00=DELETE",
    "_method[]=DELETE",
    "x=1;_method=DELETE",
    "_method=DELETE",
    "_method=delete",
    ".method=DELETE",
    "%5Fmethod=DELETE",
    "_method=PUT",
    "x=1&_method=DELETE",
];
const METHODS: &[&str] = &[
    "GET", "GET", "POST", "POST", "DELETE", "PUT", "HEAD", "OPTIONS", "PATCH",
];
const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "text/plain",
];

fn corpus(seed: u64, count: usize) -> Vec<Case> {
    let mut rng = Rng(seed | 1);
    let mut cases = Vec::with_capacity(count);
    while cases.len() < count {
        let plain = rng.pick(TARGETS);
        let target = disguise(&mut rng, plain);
        let mut path = String::new();
        match rng.next() % 4 {
            // Climb out of a prefix with one or two dot segments.
            0 | 1 => {
                path.push_str(rng.pick(STARTS));
                for _ in 0..=(rng.next() % 2) {
                    path.push_str(rng.pick(DOTS));
                    path.push_str(rng.pick(SEPARATORS));
                }
                path.push_str(&target);
            }
            // The target itself, with a near-miss suffix.
            _ => {
                path.push('/');
                path.push_str(&target);
            }
        }
        path.push_str(rng.pick(SUFFIXES));
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let mut method = rng.pick(METHODS).to_owned();
        let mut headers = Vec::new();
        let mut preflight = false;
        if rng.chance(25) {
            let count = 1 + rng.next() % 2;
            for _ in 0..count {
                headers.push((
                    rng.pick(OVERRIDE_HEADERS).to_owned(),
                    rng.pick(OVERRIDE_VALUES).to_owned(),
                ));
            }
        }
        if rng.chance(15) {
            path.push(if path.contains('?') { '&' } else { '?' });
            path.push_str(rng.pick(OVERRIDE_QUERIES));
        }
        if method == "POST" || rng.chance(10) {
            if rng.chance(80) {
                headers.push(("Content-Type".into(), rng.pick(CONTENT_TYPES).to_owned()));
            }
        } else if rng.chance(10) && headers.is_empty() {
            method = "OPTIONS".into();
            preflight = true;
            headers.push(("Origin".into(), "http://localhost:3000".into()));
            headers.push((
                "Access-Control-Request-Method".into(),
                rng.pick(&["GET", "DELETE", "POST"]).to_owned(),
            ));
        }
        let token = !preflight && rng.chance(60);
        // Requests no HTTP/1.1 parser takes apart the same way (a raw space or line break in
        // the target) are not what this test is about: every proxy refuses them.
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            continue;
        }
        cases.push(Case {
            method,
            target: path,
            headers,
            token,
            preflight,
        });
    }
    cases
}

/// Whether a server resolving `case` to `route`, acting as `method`, reached something the
/// case's credentials do not open. `None` when the route needs nothing.
fn violation(case: &Case, route: &str, method: &str) -> bool {
    let preflight = case.preflight && method == "OPTIONS";
    match route {
        "public" | "other" => false,
        "internal" => true,
        "private-scoped" | "admin" => !preflight,
        "private" => !(case.token || preflight),
        "items" if method == "DELETE" => true,
        "items" => !(case.token || preflight),
        other => panic!("unknown route {other}"),
    }
}

/// What came back from one raw HTTP/1.1 request.
#[derive(Debug)]
pub(super) struct Answer {
    pub status: u16,
    pub body: String,
    took: Duration,
}

impl Answer {
    /// The route and method an upstream reports, when the request reached one.
    fn reached(&self) -> Option<(String, String, String)> {
        let start = self.body.find("{\"route\"")?;
        let end = self.body.rfind('}')?;
        let value: Value = serde_json::from_str(self.body.get(start..=end)?).ok()?;
        Some((
            value["route"].as_str()?.to_owned(),
            value["method"].as_str()?.to_ascii_uppercase(),
            value["server"].as_str()?.to_owned(),
        ))
    }
}

/// Sends `case` (with `prefix` before its target and `token` when it carries one) over a
/// fresh connection, bytes as given.
async fn send(port: u16, case: &Case, prefix: &str, token: &str) -> Answer {
    let mut headers = case.headers.clone();
    if case.token {
        headers.push(("Authorization".into(), format!("Bearer {token}")));
    }
    exchange(
        port,
        &case.method,
        &format!("{prefix}{}", case.target),
        &headers,
    )
    .await
}

/// One raw HTTP/1.1 request to `port` over a fresh connection, bytes as given (`Host:
/// api.example.com` unless `headers` has a host, an empty body where the method has one,
/// `Connection: close`), and
/// the answer. Reads until the body's `content-length` is complete, or to the end: a proxy
/// may hold the connection open a while after its answer (Envoy's delayed close).
pub(super) async fn exchange(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(String, String)],
) -> Answer {
    let mut request = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        request.push_str("Host: api.example.com\r\n");
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    if matches!(method, "POST" | "PUT" | "PATCH") {
        request.push_str("Content-Length: 0\r\n");
    }
    request.push_str("Connection: close\r\n\r\n");
    let started = std::time::Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut chunk = [0u8; 4096];
        while !complete(&bytes, method == "HEAD") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "no answer within 20s on port {port} to {method} {target} {headers:?}"
    );
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Answer {
        status,
        body,
        took: started.elapsed(),
    }
}

/// Whether `bytes` hold a whole answer with a `content-length` body (or, to a `HEAD`,
/// a whole head).
fn complete(bytes: &[u8], head_only: bool) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    if head_only {
        return true;
    }
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .is_some_and(|length| body.len() >= length)
}

/// The Check Istio's sidecar sends for `case`: the raw path and every header (repeated
/// ones joined with `,`), no context extensions.
fn check_request(case: &Case, token: &str) -> CheckRequest {
    let mut headers = case.headers.clone();
    if case.token {
        headers.push(("authorization".into(), format!("Bearer {token}")));
    }
    istio_check(&case.method, &case.target, &headers)
}

/// The Check Istio's sidecar sends: the raw path, every header (repeated ones joined with
/// `,`) and the pseudo-headers, no context extensions.
pub(super) fn istio_check(
    method: &str,
    target: &str,
    headers: &[(String, String)],
) -> CheckRequest {
    let mut request = request(None, None);
    let http = http_mut(&mut request);
    http.method = method.to_owned();
    http.path = target.to_owned();
    http.headers.clear();
    let pseudo = [
        (":path".to_owned(), target.to_owned()),
        (":method".to_owned(), method.to_owned()),
        (":authority".to_owned(), "api.example.com".to_owned()),
    ];
    for (k, v) in headers.iter().chain(&pseudo) {
        http.headers
            .entry(k.to_ascii_lowercase())
            .and_modify(|joined: &mut String| {
                joined.push(',');
                joined.push_str(v);
            })
            .or_insert_with(|| v.clone());
    }
    request
}

/// The service on `rules` (its configuration after the identity provider's issuer,
/// written in `dir`), that provider, and a token granting no scope.
pub(super) struct Service {
    pub idp: Idp,
    pub authz: Authz,
    pub plain: String,
}

pub(super) async fn start_service(dir: &TempDir, rules: &str) -> Service {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let path = dir.path().join("config.yaml");
    let text = format!(
        "issuers:\n  - issuer: {}\n    audiences: [\"{AUDIENCE}\"]\n    jwks_uri: {}\n{rules}",
        idp.issuer(),
        idp.jwks_uri()
    );
    std::fs::write(&path, text).unwrap();
    let authz = Authz::start(&["--config", path.to_str().unwrap()]).await;
    authz.wait_serving().await;
    let mut c = claims(&idp.issuer());
    c["scope"] = json!("openid");
    let plain = mint(&key("rsa-1"), &c);
    Service { idp, authz, plain }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cases() -> Vec<Case> {
    let count = env_number("DIFFERENTIAL_CASES", DEFAULT_CASES as u64) as usize;
    corpus(env_number("DIFFERENTIAL_SEED", DEFAULT_SEED), count)
}

/// Tallies one run: what reached which server, and every violation with its request.
#[derive(Default)]
struct Tally {
    sent: usize,
    reached: usize,
    violations: Vec<String>,
    statuses: std::collections::BTreeMap<u16, usize>,
    slowest: Duration,
}

impl Tally {
    fn record(&mut self, via: &str, case: &Case, answer: &Answer) {
        self.sent += 1;
        *self.statuses.entry(answer.status).or_default() += 1;
        self.slowest = self.slowest.max(answer.took);
        if let Some((route, method, server)) = answer.reached() {
            self.reached += 1;
            if violation(case, &route, &method) {
                self.violations.push(format!(
                    "{via} -> {server}: {} {} {:?} token={} resolved {route} as {method}",
                    case.method, case.target, case.headers, case.token
                ));
            }
        }
    }

    fn assert_clean(&self, what: &str) {
        eprintln!(
            "{what}: {} requests, {} reached an upstream, {} violations; statuses {:?}, slowest {:?}",
            self.sent,
            self.reached,
            self.violations.len(),
            self.statuses,
            self.slowest
        );
        assert!(
            self.violations.is_empty(),
            "{what}: {} requests reached a protected route unchecked:\n{}",
            self.violations.len(),
            self.violations[..self.violations.len().min(40)].join("\n")
        );
    }
}

/// The service alone: gRPC (Istio's shape) and the HTTP endpoint decide each case, and
/// every server reads every case. No case a server resolves to a protected route the
/// credentials do not open is allowed by either; and the corpus has teeth: without the
/// service, many cases reach such routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue_19_no_server_reaches_a_protected_route_the_service_did_not_decide() {
    let dir = TempDir::new("differential");
    let Service {
        idp: _idp,
        authz,
        plain: token,
    } = start_service(&dir, CONFIG).await;
    let servers = start_servers().await;
    let cases = cases();

    let mut grpc = Tally::default();
    let mut http = Tally::default();
    let mut unprotected = 0usize;
    let (mut grpc_allowed, mut http_allowed) = (0usize, 0usize);
    for case in &cases {
        let grpc_allows = allows(&authz.check(check_request(case, &token)).await);
        let http_answer = send(authz.http.port(), case, "/ext-authz", &token).await;
        let http_allows = http_answer.status == 200;
        grpc_allowed += usize::from(grpc_allows);
        http_allowed += usize::from(http_allows);
        let mut tasks = tokio::task::JoinSet::new();
        for server in &servers {
            let (port, case, token) = (server.port, case.clone(), token.clone());
            tasks.spawn(async move { send(port, &case, "", &token).await });
        }
        let mut hit = false;
        while let Some(answer) = tasks.join_next().await {
            let answer = answer.unwrap();
            if let Some((route, method, _)) = answer.reached() {
                hit |= violation(case, &route, &method);
            }
            if grpc_allows {
                grpc.record("grpc", case, &answer);
            }
            if http_allows {
                http.record("http endpoint", case, &answer);
            }
        }
        unprotected += usize::from(hit);
    }
    eprintln!(
        "{} cases: {unprotected} reach a protected route on some server without the service; \
         gRPC allowed {grpc_allowed}, the HTTP endpoint {http_allowed}",
        cases.len()
    );
    // The corpus is an attack: a good share of it reaches protected routes on its own.
    assert!(
        unprotected * 20 >= cases.len(),
        "only {unprotected} of {} cases reach a protected route unchecked",
        cases.len()
    );
    // And the service is not refusing everything: plain requests still pass.
    assert!(
        grpc_allowed * 25 >= cases.len(),
        "gRPC allowed only {grpc_allowed}"
    );
    grpc.assert_clean("gRPC Check (Istio's shape)");
    http.assert_clean("HTTP endpoint");
    authz.stop().await.unwrap();
}

/// nginx running the shipped `nginx/nginx.conf` with `upstream` behind it.
pub(super) fn start_nginx(dir: &TempDir, port: u16, authz_http: u16, upstream: u16) -> Proc {
    let conf = std::fs::read_to_string(Path::new(ROOT).join("nginx/nginx.conf"))
        .unwrap()
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:9193", &format!("127.0.0.1:{authz_http}"))
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{upstream}"));
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(program("NGINX", "/usr/sbin/nginx"))
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(dir.path().join("server.log"))
        .args(["-g", "daemon off; master_process off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    Proc(child)
}

/// The shipped `envoy/envoy-http-service.yaml` in front of `upstream`.
async fn start_envoy_http(authz_http: u16, upstream: u16) -> Envoy {
    let (listener, admin) = (free_port(), free_port());
    let text = std::fs::read_to_string(Path::new(ROOT).join("envoy/envoy-http-service.yaml"))
        .unwrap()
        .replace("port_value: 8080 ", &format!("port_value: {listener} "))
        .replace("port_value: 9901 ", &format!("port_value: {admin} "))
        .replace("port_value: 9193 ", &format!("port_value: {authz_http} "))
        .replace("127.0.0.1:9193", &format!("127.0.0.1:{authz_http}"))
        .replace("port_value: 8000 ", &format!("port_value: {upstream} "));
    Envoy::run(
        &text,
        listener,
        admin,
        TempDir::new("differential-envoy-http"),
    )
    .await
}

/// Through the shipped proxies: Envoy with gRPC, Envoy with `http_service` and nginx with
/// `auth_request`, each in front of every server, run the same property on a share of the
/// corpus.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue_19_shipped_proxies_let_no_protected_route_be_reached_unchecked() {
    let dir = TempDir::new("differential-proxies");
    let Service {
        idp: _idp,
        authz,
        plain: token,
    } = start_service(&dir, CONFIG).await;
    let servers = start_servers().await;
    let all = cases();
    let share: Vec<Case> = all.iter().step_by(8).cloned().collect();

    for server in &servers {
        let grpc_envoy = Envoy::start(authz.addr.port(), server.port).await;
        let http_envoy = start_envoy_http(authz.http.port(), server.port).await;
        let nginx_dir = TempDir::new("differential-nginx");
        let nginx_port = free_port();
        let _nginx = start_nginx(&nginx_dir, nginx_port, authz.http.port(), server.port);
        wait_accepting(nginx_port, "nginx", &nginx_dir).await;
        for (via, port) in [
            ("envoy/envoy.yaml", grpc_envoy.listener),
            ("envoy/envoy-http-service.yaml", http_envoy.listener),
            ("nginx/nginx.conf", nginx_port),
        ] {
            // Sixteen requests in flight: a proxy holds a refused connection open a while
            // (Envoy's delayed close), and one at a time would wait for each.
            let mut tally = Tally::default();
            for chunk in share.chunks(16) {
                let mut tasks = tokio::task::JoinSet::new();
                for case in chunk {
                    let (case, token) = (case.clone(), token.clone());
                    tasks.spawn(async move {
                        let answer = send(port, &case, "", &token).await;
                        (case, answer)
                    });
                }
                while let Some(done) = tasks.join_next().await {
                    let (case, answer) = done.unwrap();
                    tally.record(via, &case, &answer);
                }
            }
            tally.assert_clean(&format!("{via} in front of {}", server.name));
            assert!(tally.reached > 0, "{via}: nothing reached {}", server.name);
        }
    }
    authz.stop().await.unwrap();
}
