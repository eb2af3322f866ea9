//! A static JWKS on loopback, so the server under test fetches the fixture keys that the
//! loadgen signs with: the test kit's identity provider, serving the file as it is.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use jwt_authz::testkit::Idp;

pub async fn serve(listen: SocketAddr, file: &Path, max_time: Duration) -> anyhow::Result<()> {
    let body = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    serde_json::from_slice::<serde_json::Value>(&body)
        .with_context(|| format!("{} is not JSON", file.display()))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot bind {listen}"))?;
    let idp = Idp::on(listener, Vec::new());
    idp.update(|state| state.jwks_body = Some(body));
    eprintln!("serving {} at {}", file.display(), idp.jwks_uri());
    tokio::select! {
        () = jwt_authz::server::shutdown_signal() => {}
        () = tokio::time::sleep(max_time) => {}
    }
    Ok(())
}
