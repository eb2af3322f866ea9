//! A Check service that decodes the request and answers an empty OK at once: the floor
//! that tonic, h2 and prost set on this machine, with none of jwt-authz's work. Only for
//! comparing against; it allows everything.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use jwt_authz::proto::{Authorization, AuthorizationServer, CheckRequest, CheckResponse};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

struct Noop;

#[tonic::async_trait]
impl Authorization for Noop {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        drop(request.into_inner());
        Ok(Response::new(CheckResponse::default()))
    }
}

pub async fn serve(listen: SocketAddr, max_time: Duration) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot bind {listen}"))?;
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    eprintln!("no-op Check service on {listen}");
    let stop = async move {
        tokio::select! {
            () = jwt_authz::server::shutdown_signal() => {}
            () = tokio::time::sleep(max_time) => {}
        }
    };
    Server::builder()
        .add_service(health)
        .add_service(AuthorizationServer::new(Noop))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), stop)
        .await?;
    Ok(())
}
