//! A minimal HTTP/1.1 server (hyper) for the endpoints around the gRPC service: the admin
//! port, the HTTP authorization endpoint, and the demo's issuer and echo upstream.
//! Handlers see only the request head: none of these endpoints reads a body.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A response with a fixed body.
pub type HttpResponse = Response<Full<Bytes>>;

/// Serves `handler` on `listener` until `shutdown` completes. Open connections are left to
/// finish on their own.
pub async fn serve<F>(listener: TcpListener, handler: F, shutdown: impl Future<Output = ()>)
where
    F: Fn(&http::request::Parts) -> HttpResponse + Send + Sync + 'static,
{
    serve_async(
        listener,
        move |parts| std::future::ready(handler(&parts)),
        shutdown,
    )
    .await;
}

/// [`serve`] for a handler that answers asynchronously (the HTTP authorization endpoint).
pub async fn serve_async<F, R>(
    listener: TcpListener,
    handler: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(http::request::Parts) -> R + Send + Sync + 'static,
    R: Future<Output = HttpResponse> + Send + 'static,
{
    let handler = Arc::new(handler);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!("http accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let _ = stream.set_nodelay(true);
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let (parts, _body) = request.into_parts();
                let response = handler(parts);
                async move { Ok::<_, Infallible>(response.await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
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
