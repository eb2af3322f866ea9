//! Issue 19: the HTTP listeners (the authorization endpoint and the admin port) within
//! their limits: a request head trickled past the header-read timeout, an idle connection,
//! a head over the size bound, connections over the bound, and the drain on shutdown.

use std::time::{Duration, Instant};

use jwt_authz::testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMITS: &str = "
http_server:
  header_read_timeout: 500ms
  idle_timeout: 700ms
  max_header_bytes: 16384
  max_connections: 4
  drain_timeout: 2s
";

async fn start() -> (Authz, TempFile) {
    let path = TempFile::new("listener.yaml", LIMITS);
    let authz = Authz::start(&[
        "--issuer",
        "http://127.0.0.1:9/",
        "--audience",
        AUDIENCE,
        "--config",
        path.to_str().unwrap(),
    ])
    .await;
    (authz, path)
}

/// Reads until the peer closes (or 5 s pass): what it sent, and how long it took.
async fn read_until_closed(stream: &mut TcpStream) -> (String, Duration, bool) {
    let started = Instant::now();
    let mut bytes = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut bytes))
        .await
        .is_ok();
    (
        String::from_utf8_lossy(&bytes).into_owned(),
        started.elapsed(),
        closed,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trickled_head_and_an_idle_connection_are_closed() {
    let (authz, config) = start().await;
    for port in [authz.http.port(), authz.admin.port()] {
        // A head that never ends: one byte every 100 ms.
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let trickle = async {
            for b in b"GET /ext-authz/api/x HTTP/1.1\r\nhost: a\r\nx-slow: "
                .iter()
                .cycle()
            {
                if stream.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let started = Instant::now();
        let _ = tokio::time::timeout(Duration::from_secs(5), trickle).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "port {port}: a trickled head was still being read after {:?}",
            started.elapsed()
        );
        // A connection that sends nothing.
        let mut idle = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (_, took, closed) = read_until_closed(&mut idle).await;
        assert!(closed, "port {port}: an idle connection stayed open");
        assert!(
            took < Duration::from_secs(3),
            "port {port}: closed after {took:?}"
        );
        // A kept-alive connection that goes idle after a request.
        let mut kept = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .unwrap();
        let (text, took, closed) = read_until_closed(&mut kept).await;
        assert!(text.starts_with("HTTP/1.1 "), "{text}");
        assert!(
            closed && took < Duration::from_secs(3),
            "port {port}: {took:?}"
        );
    }
    authz.stop().await.unwrap();
    drop(config);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_over_the_bound_is_refused() {
    let (authz, config) = start().await;
    let mut stream = TcpStream::connect(("127.0.0.1", authz.http.port()))
        .await
        .unwrap();
    let big = "a".repeat(40_000);
    let request = format!("GET /ext-authz/api/x HTTP/1.1\r\nhost: a\r\nx-big: {big}\r\n\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let (text, _, closed) = read_until_closed(&mut stream).await;
    assert!(closed, "the connection stayed open");
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 431"),
        "a 40 kB head was answered: {text}"
    );
    authz.stop().await.unwrap();
    drop(config);
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_bound_are_closed_and_shutdown_drains() {
    let (authz, config) = start().await;
    let port = authz.http.port();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (text, took, closed) = read_until_closed(&mut extra).await;
    assert!(
        closed && text.is_empty(),
        "a fifth connection was served: {text}"
    );
    assert!(
        took < Duration::from_millis(400),
        "closed only after {took:?}"
    );
    drop(held);
    // Once they are gone, a new connection is served.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fresh = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    fresh
        .write_all(b"GET /ext-authz/api/x HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    fresh.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 401");
    // Shutdown: the kept-alive connection is closed, and the server stops within the
    // drain timeout.
    let started = Instant::now();
    authz.stop().await.unwrap();
    let (_, _, closed) = read_until_closed(&mut fresh).await;
    assert!(closed, "the connection outlived the server");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    drop(config);
}
