//! A controllable identity provider on loopback: a real HTTP/1.1 server that serves a JWKS
//! and, when asked, an OpenID discovery document, with the faults an outage brings (error
//! statuses, latency, garbage bodies, a lying discovery document, redirects) and a record
//! of requests per path (count and arrival time), so tests can assert how often, and how
//! far apart, the service fetched.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the test identity provider answers.
#[derive(Clone)]
pub struct IdpState {
    /// The `keys` array served as the JWKS.
    pub keys: Vec<Value>,
    /// Status for every request; 200 serves the documents.
    pub status: u16,
    /// Delay before answering each request, taken when the request arrives: a change
    /// applies to the requests that come after it, not to those already waiting.
    pub delay: Duration,
    /// Serve `/.well-known/openid-configuration` and `/.well-known/ssf-configuration`
    /// (else 404).
    pub discovery: bool,
    /// `issuer` written in the discovery document, when not the real one.
    pub discovery_issuer: Option<String>,
    /// Raw body served instead of the JWKS.
    pub jwks_body: Option<Vec<u8>>,
    /// `jwks_uri` written in the discovery document, when not this server's `/jwks.json`.
    pub discovery_jwks_uri: Option<String>,
    /// Answer `/redirect` with `302 Found` and this `location`.
    pub redirect_to: Option<String>,
}

/// A real HTTP/1.1 server on 127.0.0.1 that serves a JWKS and counts requests per path.
pub struct Idp {
    pub addr: SocketAddr,
    state: Arc<Mutex<IdpState>>,
    hits: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
    task: JoinHandle<()>,
}

impl Idp {
    /// Serves `keys` as the JWKS on a free loopback port.
    pub async fn start(keys: Vec<Value>) -> Idp {
        Idp::on(TcpListener::bind("127.0.0.1:0").await.unwrap(), keys)
    }

    /// Serves the documents on a listener the caller bound.
    pub fn on(listener: TcpListener, keys: Vec<Value>) -> Idp {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(IdpState {
            keys,
            status: 200,
            delay: Duration::ZERO,
            discovery: false,
            discovery_issuer: None,
            jwks_body: None,
            discovery_jwks_uri: None,
            redirect_to: None,
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

    /// The JWKS URL, at `/jwks.json`.
    pub fn jwks_uri(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    /// Changes what the provider answers from the next request on.
    pub fn update(&self, f: impl FnOnce(&mut IdpState)) {
        f(&mut self.state.lock().unwrap());
    }

    /// Requests received for `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).map_or(0, Vec::len)
    }

    /// When each request for any JWKS path arrived, in order.
    pub fn jwks_hit_times(&self) -> Vec<Instant> {
        let hits = self.hits.lock().unwrap();
        let mut times: Vec<Instant> = ["/jwks.json", "/.well-known/jwks.json"]
            .iter()
            .filter_map(|p| hits.get(*p))
            .flatten()
            .copied()
            .collect();
        times.sort();
        times
    }

    /// Requests received for any JWKS path.
    pub fn jwks_hits(&self) -> usize {
        self.hits("/jwks.json") + self.hits("/.well-known/jwks.json")
    }

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
        Idp::on(listener, keys)
    }

    /// Requests received for any path.
    pub fn total_hits(&self) -> usize {
        self.hits.lock().unwrap().values().map(Vec::len).sum()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads up to the end of the request head; `None` when the client hangs up first.
async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(head)
}

async fn serve_one(
    mut stream: tokio::net::TcpStream,
    addr: SocketAddr,
    state: Arc<Mutex<IdpState>>,
    hits: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
) {
    let Some(head) = read_head(&mut stream).await else {
        return;
    };
    let head = String::from_utf8_lossy(&head);
    // Routed and counted by path; a query string is ignored, as an API key in it would be.
    let target = head.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/").to_owned();
    hits.lock()
        .unwrap()
        .entry(path.clone())
        .or_default()
        .push(Instant::now());
    let snapshot = state.lock().unwrap().clone();
    if !snapshot.delay.is_zero() {
        tokio::time::sleep(snapshot.delay).await;
    }
    let issuer = format!("http://{addr}/");
    if let (Some(location), "/redirect") = (&snapshot.redirect_to, path.as_str()) {
        let response = format!(
            "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        return;
    }
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
            // The SSF transmitter configuration metadata names the same two members.
            "/.well-known/openid-configuration" | "/.well-known/ssf-configuration"
                if snapshot.discovery =>
            {
                (
                    200,
                    serde_json::to_vec(&json!({
                        "issuer": snapshot.discovery_issuer.unwrap_or(issuer),
                        "jwks_uri": snapshot
                            .discovery_jwks_uri
                            .unwrap_or_else(|| format!("http://{addr}/jwks.json")),
                    }))
                    .unwrap(),
                )
            }
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

/// A loopback HTTP server that answers every request with the same status line and body,
/// sent without `content-length` and ended by closing the connection: a body whose size
/// the client learns only while reading it.
pub struct StreamingServer {
    pub addr: SocketAddr,
    hits: Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl StreamingServer {
    /// Serves `body` on a free loopback port.
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
                    if read_head(&mut stream).await.is_none() {
                        return;
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

    /// A JWKS URL on this server (any path gets the same body).
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
