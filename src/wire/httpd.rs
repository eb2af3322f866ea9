//! A minimal HTTP/1.1 server (hyper) for the endpoints around the gRPC service: the admin
//! port, the HTTP authorization endpoint, and the demo's issuer and echo upstream.
//! Handlers see only the request head, except the Shared Signals receiver's
//! ([`serve_body`]), which reads a body of bounded size within the head's timeout.
//!
//! Every listener runs within [`HttpLimits`]: a request head must arrive whole within a
//! timeout and a size, a connection idle for too long is closed, connections beyond a bound
//! are closed as they arrive, and on shutdown open connections finish the request in hand
//! (bounded by a drain timeout) before they are closed.

pub use crate::config::HttpLimits;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// A response with a fixed body.
pub type HttpResponse = Response<Full<Bytes>>;

/// Serves `handler` on `listener` within `limits` until `shutdown` completes, then drains.
pub async fn serve<F>(
    listener: TcpListener,
    limits: HttpLimits,
    handler: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(&http::request::Parts) -> HttpResponse + Send + Sync + 'static,
{
    serve_async(
        listener,
        limits,
        move |parts| std::future::ready(handler(&parts)),
        shutdown,
    )
    .await;
}

/// [`serve`] for a handler that answers asynchronously (the HTTP authorization endpoint).
pub async fn serve_async<F, R>(
    listener: TcpListener,
    limits: HttpLimits,
    handler: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(http::request::Parts) -> R + Send + Sync + 'static,
    R: Future<Output = HttpResponse> + Send + 'static,
{
    serve_requests(
        listener,
        limits,
        move |request: Request<Incoming>| handler(request.into_parts().0),
        shutdown,
    )
    .await;
}

/// Why a request body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    /// Not whole within the head's read timeout, or the connection failed.
    Incomplete,
}

/// [`serve_async`] for a handler that reads the body: at most `max_body` bytes, whole
/// within `limits.header_read_timeout`.
pub async fn serve_body<F, R>(
    listener: TcpListener,
    limits: HttpLimits,
    max_body: usize,
    handler: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(http::request::Parts, Result<Bytes, BodyError>) -> R + Send + Sync + 'static,
    R: Future<Output = HttpResponse> + Send + 'static,
{
    let handler = Arc::new(handler);
    serve_requests(
        listener,
        limits,
        move |request: Request<Incoming>| {
            let handler = Arc::clone(&handler);
            async move {
                use http_body_util::BodyExt;
                let (parts, body) = request.into_parts();
                let limited = http_body_util::Limited::new(body, max_body);
                let body = match tokio::time::timeout(limits.header_read_timeout, limited.collect())
                    .await
                {
                    Ok(Ok(collected)) => Ok(collected.to_bytes()),
                    Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                        Err(BodyError::TooLarge)
                    }
                    _ => Err(BodyError::Incomplete),
                };
                handler(parts, body).await
            }
        },
        shutdown,
    )
    .await;
}

async fn serve_requests<F, R>(
    listener: TcpListener,
    limits: HttpLimits,
    handler: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(Request<Incoming>) -> R + Send + Sync + 'static,
    R: Future<Output = HttpResponse> + Send + 'static,
{
    let handler = Arc::new(handler);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!("http accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = &mut shutdown => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // Over the bound: closed at once, so a flood of idle connections cannot take
            // every slot from the proxy.
            tracing::debug!(
                max_connections = limits.max_connections,
                "http connection refused"
            );
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = Arc::clone(&handler);
        let drain = drain_rx.clone();
        connections.spawn(async move {
            serve_connection(stream, limits, handler, drain).await;
            drop(slot);
        });
    }
    // Drain: every connection finishes the request in hand, then closes; whatever is left
    // after the drain timeout is dropped.
    let _ = drain_tx.send(true);
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = connections.len(),
            "http connections still open after the drain timeout"
        );
        connections.abort_all();
    }
}

/// One connection: requests served until the client closes, the idle timeout passes with
/// no request in flight, or the drain asks it to close after the request in hand.
async fn serve_connection<F, R>(
    stream: tokio::net::TcpStream,
    limits: HttpLimits,
    handler: Arc<F>,
    mut drain: watch::Receiver<bool>,
) where
    F: Fn(Request<Incoming>) -> R + Send + Sync + 'static,
    R: Future<Output = HttpResponse> + Send + 'static,
{
    let started = Instant::now();
    let millis = move || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let last_active = Arc::new(AtomicU64::new(0));
    let (flight, active) = (Arc::clone(&in_flight), Arc::clone(&last_active));
    let service = service_fn(move |request: Request<Incoming>| {
        flight.fetch_add(1, Ordering::AcqRel);
        let response = handler(request);
        let (flight, active) = (Arc::clone(&flight), Arc::clone(&active));
        async move {
            let response = response.await;
            active.store(millis(), Ordering::Release);
            flight.fetch_sub(1, Ordering::AcqRel);
            Ok::<_, Infallible>(response)
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let tick = (limits.idle_timeout / 4).max(Duration::from_millis(10));
    let idle_ms = u64::try_from(limits.idle_timeout.as_millis()).unwrap_or(u64::MAX);
    // Once closing, the connection gets the drain timeout to finish, then is dropped: a
    // client that never reads its answers cannot hold it open.
    let mut closing: Option<Instant> = None;
    loop {
        let deadline = closing.map_or(tick, |at| {
            (at + limits.drain_timeout).saturating_duration_since(Instant::now())
        });
        tokio::select! {
            _ = connection.as_mut() => return,
            changed = drain.changed(), if closing.is_none() => {
                if changed.is_err() || *drain.borrow() {
                    closing = Some(Instant::now());
                    connection.as_mut().graceful_shutdown();
                }
            }
            () = tokio::time::sleep(deadline) => {
                if closing.is_some() {
                    return;
                }
                let idle = millis().saturating_sub(last_active.load(Ordering::Acquire));
                if in_flight.load(Ordering::Acquire) == 0 && idle >= idle_ms {
                    closing = Some(Instant::now());
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// A response with `status`, `content_type` and `body`.
pub fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> HttpResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    response
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> HttpResponse {
    respond(status, "application/json", value.to_string())
}
