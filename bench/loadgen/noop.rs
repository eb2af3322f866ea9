//! A Check service that decodes the request and answers an empty OK at once: the floor
//! that tonic, h2 and prost set on this machine, with none of jwt-authz's work. Only for
//! comparing against; it allows everything. Two knobs take jwt-authz's traits one at a
//! time, to tell which of them costs Envoy: its allow response, and its time per Check.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use jwt_authz::wire::proto::google::rpc;
use jwt_authz::wire::proto::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, OkHttpResponse,
};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// What the no-op service answers, and how long it works first.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub allow_like_jwt_authz: bool,
    pub busy: Duration,
}

struct Noop(Answer);

#[tonic::async_trait]
impl Authorization for Noop {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        drop(request.into_inner());
        if !self.0.busy.is_zero() {
            let started = Instant::now();
            while started.elapsed() < self.0.busy {
                std::hint::spin_loop();
            }
        }
        if !self.0.allow_like_jwt_authz {
            return Ok(Response::new(CheckResponse::default()));
        }
        let header = |key: &str, value: &str| HeaderValueOption {
            header: Some(HeaderValue {
                key: key.into(),
                value: value.into(),
                ..Default::default()
            }),
            append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            ..Default::default()
        };
        Ok(Response::new(CheckResponse {
            status: Some(rpc::Status::default()),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers: vec![header("x-jwt-sub", "user-1")],
                headers_to_remove: ["x_jwt-sub", "x-jwt_sub", "x_jwt_sub"]
                    .map(str::to_owned)
                    .to_vec(),
                ..Default::default()
            })),
            dynamic_metadata: None,
        }))
    }
}

pub async fn serve(listen: SocketAddr, max_time: Duration, answer: Answer) -> anyhow::Result<()> {
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
        .add_service(AuthorizationServer::new(Noop(answer)))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), stop)
        .await?;
    Ok(())
}
