//! A static JWKS on loopback, so the server under test fetches the fixture keys that the
//! loadgen signs with.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use http::StatusCode;

pub async fn serve(listen: SocketAddr, file: &Path, max_time: Duration) -> anyhow::Result<()> {
    let body = bytes::Bytes::from(
        std::fs::read(file).with_context(|| format!("reading {}", file.display()))?,
    );
    serde_json::from_slice::<serde_json::Value>(&body)
        .with_context(|| format!("{} is not JSON", file.display()))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot bind {listen}"))?;
    eprintln!("serving {} at http://{listen}/jwks.json", file.display());
    let stop = async move {
        tokio::select! {
            () = jwt_authz::server::shutdown_signal() => {}
            () = tokio::time::sleep(max_time) => {}
        }
    };
    jwt_authz::httpd::serve(
        listener,
        move |request| {
            if request.uri.path().ends_with("jwks.json") {
                jwt_authz::httpd::respond(StatusCode::OK, "application/json", body.clone())
            } else {
                jwt_authz::httpd::respond(StatusCode::NOT_FOUND, "text/plain", "not found\n")
            }
        },
        stop,
    )
    .await;
    Ok(())
}
