//! The real jwt-authz gRPC server on a loopback port, started in process through
//! [`crate::server::serve_all`] and driven through a real tonic client, with health waits that
//! follow the grpc.health.v1 Watch stream instead of sleeping.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use super::idp::Idp;
use super::mint::AUDIENCE;
use super::request::request;
use crate::config::{Cli, Command, Config};
use crate::wire::proto::{AuthorizationClient, CheckRequest, CheckResponse};

/// A running jwt-authz on a loopback port, with a connected client.
pub struct Authz {
    /// The gRPC address (Check, health, reflection).
    pub addr: SocketAddr,
    /// The admin HTTP endpoints (/metrics, /healthz, /readyz).
    pub admin: SocketAddr,
    /// The HTTP authorization endpoint (always on in tests).
    pub http: SocketAddr,
    /// The Shared Signals push endpoint (served when the configuration has `ssf`).
    pub ssf: SocketAddr,
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

/// Every problem `Config::load` reports for a configuration file of `text`, one a line;
/// panics when the file is accepted.
pub fn config_errors(text: &str) -> String {
    let file = super::TempFile::new("refused.yaml", text);
    let args = crate::config::ServeArgs {
        config: Some(file.path().to_owned()),
        ..Default::default()
    };
    Config::load(&args)
        .expect_err("the configuration is refused")
        .lines()
        .join("\n")
}

impl Authz {
    /// Starts the server with `flags` and connects; does not wait for keys.
    pub async fn start(flags: &[&str]) -> Authz {
        let config = config(flags);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = admin_listener.local_addr().unwrap();
        let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = http_listener.local_addr().unwrap();
        let ssf_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ssf = ssf_listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let listeners = crate::server::Listeners {
            grpc: listener,
            admin: Some(admin_listener),
            http: Some(http_listener),
            ssf: Some(ssf_listener),
        };
        let task = tokio::spawn(crate::server::serve_all(config, listeners, async move {
            let _ = rx.await;
        }));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Authz {
            addr,
            admin,
            http,
            ssf,
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

    /// Calls Check; an RPC error fails the test.
    pub async fn check(&self, request: CheckRequest) -> CheckResponse {
        self.client
            .clone()
            .check(request)
            .await
            .expect("Check RPC must succeed")
            .into_inner()
    }

    /// Calls the gRPC method at `path` with `request` as the message, already encoded.
    pub async fn call_encoded(
        &self,
        path: &'static str,
        request: bytes::Bytes,
    ) -> Result<CheckResponse, tonic::Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.expect("the channel is ready");
        let path = http::uri::PathAndQuery::from_static(path);
        grpc.unary(tonic::Request::new(request), path, super::EncodedCheck)
            .await
            .map(tonic::Response::into_inner)
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

/// GET `path` on `authz`'s admin port: the status and the body.
pub async fn scrape(authz: &Authz, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{}{path}", authz.admin))
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}
