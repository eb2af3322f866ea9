//! Shared harness for the integration tests: a real HTTP identity provider on loopback
//! (JWKS and OpenID discovery, with faults the test controls), token minting with the keys
//! in `tests/fixtures/`, and the real jwt-authz gRPC server driven through a tonic client.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Parser;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use jwt_authz::config::{Cli, Command, Config};
use jwt_authz::proto::envoy::config::core::v3::{HeaderMap, HeaderValue};
use jwt_authz::proto::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use jwt_authz::proto::{
    AttributeContext, AuthorizationClient, CheckRequest, CheckResponse, HttpResponse,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

pub const AUDIENCE: &str = "https://api.example.com";

// ---------------------------------------------------------------- identity provider

/// What the test identity provider answers.
#[derive(Clone)]
pub struct IdpState {
    /// The `keys` array served as the JWKS.
    pub keys: Vec<Value>,
    /// Status for every request; 200 serves the documents.
    pub status: u16,
    /// Delay before answering.
    pub delay: Duration,
    /// Serve `/.well-known/openid-configuration` (else 404).
    pub discovery: bool,
    /// `issuer` written in the discovery document, when not the real one.
    pub discovery_issuer: Option<String>,
    /// Raw body served instead of the JWKS.
    pub jwks_body: Option<Vec<u8>>,
}

/// A real HTTP/1.1 server on 127.0.0.1 that serves a JWKS and counts requests per path.
pub struct Idp {
    pub addr: SocketAddr,
    state: Arc<Mutex<IdpState>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    task: JoinHandle<()>,
}

impl Idp {
    pub async fn start(keys: Vec<Value>) -> Idp {
        Idp::serve(TcpListener::bind("127.0.0.1:0").await.unwrap(), keys)
    }

    /// Serves the documents on `listener`.
    fn serve(listener: TcpListener, keys: Vec<Value>) -> Idp {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(IdpState {
            keys,
            status: 200,
            delay: Duration::ZERO,
            discovery: false,
            discovery_issuer: None,
            jwks_body: None,
        }));
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let (s, h) = (Arc::clone(&state), Arc::clone(&hits));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (s, h) = (Arc::clone(&s), Arc::clone(&h));
                tokio::spawn(serve_one(stream, addr, s, h));
            }
        });
        Idp {
            addr,
            state,
            hits,
            task,
        }
    }

    /// The issuer URL, with a trailing slash as Auth0 writes it.
    pub fn issuer(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn jwks_uri(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    pub fn update(&self, f: impl FnOnce(&mut IdpState)) {
        f(&mut self.state.lock().unwrap());
    }

    /// Requests received for `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Requests received for any JWKS path.
    pub fn jwks_hits(&self) -> usize {
        self.hits("/jwks.json") + self.hits("/.well-known/jwks.json")
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_one(
    mut stream: tokio::net::TcpStream,
    addr: SocketAddr,
    state: Arc<Mutex<IdpState>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let snapshot = state.lock().unwrap().clone();
    if !snapshot.delay.is_zero() {
        tokio::time::sleep(snapshot.delay).await;
    }
    let issuer = format!("http://{addr}/");
    let (status, body) = if snapshot.status != 200 {
        (snapshot.status, b"{\"error\":\"unavailable\"}".to_vec())
    } else {
        match path.as_str() {
            "/jwks.json" | "/.well-known/jwks.json" => (
                200,
                snapshot.jwks_body.unwrap_or_else(|| {
                    serde_json::to_vec(&json!({ "keys": snapshot.keys })).unwrap()
                }),
            ),
            "/.well-known/openid-configuration" if snapshot.discovery => (
                200,
                serde_json::to_vec(&json!({
                    "issuer": snapshot.discovery_issuer.unwrap_or(issuer),
                    "jwks_uri": format!("http://{addr}/jwks.json"),
                }))
                .unwrap(),
            ),
            _ => (404, b"{}".to_vec()),
        }
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}

// ---------------------------------------------------------------- keys and tokens

/// A signing key from `tests/fixtures/` with its public JWK.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// Loads a fixture key by its kid: `rsa-1`, `rsa-2` (RSA), `ec-256`, `ec-384`, `ed-1`.
pub fn key(kid: &str) -> TestKey {
    let (file, alg) = match kid {
        "rsa-1" => ("rsa1.pem", Algorithm::RS256),
        "rsa-2" => ("rsa2.pem", Algorithm::RS256),
        "ec-256" => ("ec256.pem", Algorithm::ES256),
        "ec-384" => ("ec384.pem", Algorithm::ES384),
        "ed-1" => ("ed25519.pem", Algorithm::EdDSA),
        other => panic!("no fixture key {other}"),
    };
    let pem = std::fs::read(format!("{FIXTURES}/{file}")).unwrap();
    let encoding = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        _ => EncodingKey::from_ec_pem(&pem),
    }
    .unwrap();
    let jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/jwks.json")).unwrap())
            .unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap()
        .clone();
    TestKey {
        kid: kid.into(),
        alg,
        encoding,
        jwk,
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims of a valid token for `issuer`, expiring in five minutes.
pub fn claims(issuer: &str) -> Value {
    json!({
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": "auth0|user-1",
        "exp": now() + 300,
        "iat": now(),
        "scope": "openid read:messages",
    })
}

/// Signs `claims` with `key` (its own kid and alg).
pub fn mint(key: &TestKey, claims: &Value) -> String {
    mint_with(key, key.alg, Some(&key.kid), claims)
}

pub fn mint_with(key: &TestKey, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

/// A token with a hand-written header and an arbitrary signature.
pub fn forge(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

// ---------------------------------------------------------------- the service

/// A running jwt-authz on a loopback port, with a connected client.
pub struct Authz {
    pub addr: SocketAddr,
    /// The admin HTTP endpoints (/metrics, /healthz, /readyz).
    pub admin: SocketAddr,
    pub client: AuthorizationClient<Channel>,
    pub channel: Channel,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Builds the configuration from `serve` flags.
pub fn config(flags: &[&str]) -> Config {
    let mut argv = vec!["jwt-authz", "serve", "--listen", "127.0.0.1:0"];
    argv.extend_from_slice(flags);
    let Command::Serve(args) = Cli::try_parse_from(argv).unwrap().command else {
        panic!("serve expected")
    };
    Config::load(&args).unwrap()
}

impl Authz {
    /// Starts the server with `flags` and connects; does not wait for keys.
    pub async fn start(flags: &[&str]) -> Authz {
        let config = config(flags);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = admin_listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(jwt_authz::server::serve(
            config,
            listener,
            Some(admin_listener),
            async move {
                let _ = rx.await;
            },
        ));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Authz {
            addr,
            admin,
            client: AuthorizationClient::new(channel.clone()),
            channel,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Starts the server for `idp`'s issuer and waits until health says SERVING.
    pub async fn start_for(idp: &Idp, extra: &[&str]) -> Authz {
        let authz = Authz::start_trusting(&idp.issuer(), &idp.jwks_uri(), extra).await;
        authz.wait_serving().await;
        authz
    }

    /// Starts the server trusting `issuer` with keys at `jwks_uri` (audience [`AUDIENCE`]),
    /// without waiting for the keys to load.
    pub async fn start_trusting(issuer: &str, jwks_uri: &str, extra: &[&str]) -> Authz {
        let mut flags = vec![
            "--issuer",
            issuer,
            "--audience",
            AUDIENCE,
            "--jwks-uri",
            jwks_uri,
        ];
        flags.extend_from_slice(extra);
        Authz::start(&flags).await
    }

    /// The overall health status.
    pub async fn health(&self) -> ServingStatus {
        let mut health = HealthClient::new(self.channel.clone());
        let status = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        ServingStatus::try_from(status).unwrap()
    }

    /// Waits for SERVING through the health Watch stream (no polling, no sleeps).
    pub async fn wait_serving(&self) {
        wait_serving(&self.channel).await;
    }

    pub async fn check(&self, request: CheckRequest) -> CheckResponse {
        self.client
            .clone()
            .check(request)
            .await
            .expect("Check RPC must succeed")
            .into_inner()
    }

    /// Checks a request carrying `Authorization: Bearer <token>`.
    pub async fn check_token(&self, token: &str) -> CheckResponse {
        self.check(request(Some(&format!("Bearer {token}")), None))
            .await
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.shutdown.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap()
    }
}

impl Drop for Authz {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Waits (20 s at most) until the server behind `channel` reports SERVING, through the
/// health Watch stream.
pub async fn wait_serving(channel: &Channel) {
    let mut health = HealthClient::new(channel.clone());
    let mut stream = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let wait = async {
        while let Some(msg) = stream.message().await.unwrap() {
            if msg.status == ServingStatus::Serving as i32 {
                return;
            }
        }
        panic!("health stream ended before SERVING");
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("service did not become SERVING within 20s");
}

/// A CheckRequest as Envoy builds it: lower-case headers including pseudo-headers, and
/// `required_scopes` in the context extensions when given.
pub fn request(authorization: Option<&str>, required_scopes: Option<&str>) -> CheckRequest {
    let mut headers = HashMap::from([
        (":authority".to_owned(), "api.example.com".to_owned()),
        (":method".to_owned(), "GET".to_owned()),
        (":path".to_owned(), "/api/private".to_owned()),
        (":scheme".to_owned(), "http".to_owned()),
        ("user-agent".to_owned(), "curl/8.0".to_owned()),
    ]);
    if let Some(value) = authorization {
        headers.insert("authorization".into(), value.into());
    }
    let mut context_extensions = HashMap::new();
    if let Some(scopes) = required_scopes {
        context_extensions.insert("required_scopes".to_owned(), scopes.to_owned());
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                time: None,
                http: Some(HttpRequest {
                    id: "1".into(),
                    method: "GET".into(),
                    headers,
                    path: "/api/private".into(),
                    host: "api.example.com".into(),
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    ..Default::default()
                }),
            }),
            context_extensions,
            ..Default::default()
        }),
    }
}

/// A CheckRequest with raw headers (`encode_raw_headers: true`): `header_map` only.
pub fn raw_request(authorizations: &[&[u8]]) -> CheckRequest {
    let mut req = request(None, None);
    let http = req
        .attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http
        .as_mut()
        .unwrap();
    http.headers.clear();
    let mut map = vec![HeaderValue {
        key: ":path".into(),
        raw_value: b"/api/private".to_vec(),
        ..Default::default()
    }];
    for value in authorizations {
        map.push(HeaderValue {
            key: "authorization".into(),
            raw_value: value.to_vec(),
            ..Default::default()
        });
    }
    http.header_map = Some(HeaderMap { headers: map });
    req
}

// ---------------------------------------------------------------- assertions

/// The decision in a CheckResponse, as Envoy reads it.
#[derive(Debug)]
pub enum Decision {
    Allow {
        headers: HashMap<String, String>,
        remove: Vec<String>,
    },
    Deny {
        grpc: i32,
        http: i32,
        code: String,
        body: Value,
        headers: HashMap<String, String>,
        error: bool,
    },
}

pub fn decision(response: &CheckResponse) -> Decision {
    let grpc = response
        .status
        .as_ref()
        .expect("status must always be set")
        .code;
    match (grpc, response.http_response.as_ref()) {
        (0, Some(HttpResponse::OkResponse(ok))) => Decision::Allow {
            headers: ok
                .headers
                .iter()
                .map(|h| {
                    let h = h.header.as_ref().unwrap();
                    (h.key.clone(), h.value.clone())
                })
                .collect(),
            remove: ok.headers_to_remove.clone(),
        },
        (0, other) => panic!("OK status without ok_response: {other:?}"),
        (grpc, Some(HttpResponse::DeniedResponse(d) | HttpResponse::ErrorResponse(d))) => {
            let body: Value = serde_json::from_str(&d.body).expect("deny body is JSON");
            assert_eq!(
                body.as_object().unwrap().len(),
                2,
                "body is code + description: {body}"
            );
            Decision::Deny {
                grpc,
                http: d.status.as_ref().unwrap().code,
                code: body["code"].as_str().unwrap().to_owned(),
                body: body.clone(),
                headers: d
                    .headers
                    .iter()
                    .map(|h| {
                        let h = h.header.as_ref().unwrap();
                        (h.key.clone(), h.value.clone())
                    })
                    .collect(),
                error: matches!(response.http_response, Some(HttpResponse::ErrorResponse(_))),
            }
        }
        (grpc, other) => panic!("status {grpc} without a denied response: {other:?}"),
    }
}

/// Asserts a denial with this HTTP status and JSON code; returns the deny's headers.
#[track_caller]
pub fn assert_denied(
    response: &CheckResponse,
    http_status: i32,
    code: &str,
) -> HashMap<String, String> {
    match decision(response) {
        Decision::Deny {
            http,
            code: c,
            headers,
            grpc,
            ..
        } => {
            assert_eq!((http, c.as_str()), (http_status, code), "unexpected denial");
            let expected_grpc = match http_status {
                401 => 16,
                403 => 7,
                503 => 14,
                _ => panic!("unexpected status {http_status}"),
            };
            assert_eq!(grpc, expected_grpc);
            assert_eq!(
                headers.get("content-type").map(String::as_str),
                Some("application/json")
            );
            headers
        }
        allow => panic!("expected {http_status} {code}, got {allow:?}"),
    }
}

/// Asserts an allow; returns the headers set on the upstream request.
#[track_caller]
pub fn assert_allowed(response: &CheckResponse) -> HashMap<String, String> {
    match decision(response) {
        Decision::Allow { headers, .. } => headers,
        deny => panic!("expected allow, got {deny:?}"),
    }
}

// ---------------------------------------------------------------- external tools

/// A port that was free a moment ago, for processes that bind it themselves (Envoy, the
/// demo binary).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Path of an external tool the tests drive: `$VAR`, else `.tools/<rel>`. Panics with the
/// install command when it is missing: a missing tool is a failure, never a skip.
pub fn tool(var: &str, rel: &str) -> std::path::PathBuf {
    let path = std::env::var_os(var)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(".tools")
                .join(rel)
        });
    assert!(
        path.is_file(),
        "{} not found (set ${var} or run scripts/install-test-tools.sh)",
        path.display()
    );
    path
}

// ---------------------------------------------------------------- hostile input and faults

/// Signs raw header and payload bytes with `key` as `alg`: for tokens no JSON serializer
/// would write (duplicate names, non-objects, out-of-range numbers, odd `alg` values), so
/// that only their shape, never their signature, is what the service has to refuse.
pub fn sign_raw(key: &TestKey, alg: Algorithm, header: &[u8], payload: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key.encoding, alg).unwrap();
    format!("{signing_input}.{signature}")
}

/// A loopback address nothing listens on: bound, read and released, so a connection to
/// it is refused until someone binds it again.
pub fn unused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

impl Idp {
    /// Like [`Idp::start`], on a given address (an identity provider that comes up where
    /// the service already looks for it). Retries the bind for a few seconds in case the
    /// address is briefly taken.
    pub async fn start_at(addr: SocketAddr, keys: Vec<Value>) -> Idp {
        let mut attempt = 0;
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(e) if attempt < 50 => {
                    attempt += 1;
                    eprintln!("bind {addr}: {e}, retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("bind {addr}: {e}"),
            }
        };
        Idp::serve(listener, keys)
    }

    /// Requests received for any path.
    pub fn total_hits(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }
}

/// A loopback HTTP server that answers every request with the same status line and body,
/// sent without `content-length` and ended by closing the connection: a body whose size
/// the client learns only while reading it.
pub struct StreamingServer {
    pub addr: SocketAddr,
    hits: Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl StreamingServer {
    pub async fn start(body: Vec<u8>) -> StreamingServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let body = Arc::new(body);
        let h = Arc::clone(&hits);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (h, body) = (Arc::clone(&h), Arc::clone(&body));
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    // The client hangs up once it has read its cap: stop writing then.
                    for chunk in body.chunks(64 * 1024) {
                        if stream.write_all(chunk).await.is_err() {
                            return;
                        }
                    }
                    let _ = stream.shutdown().await;
                });
            }
        });
        StreamingServer { addr, hits, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for StreamingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls `done` every 10 ms until it holds, failing after `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
