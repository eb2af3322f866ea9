//! The Check call. By default each distinct request is encoded once, up front, and sent as
//! bytes through tonic's gRPC client (the same `Grpc::unary` call the generated client
//! makes), so the load generator spends its core on the RPC rather than on building and
//! encoding 1.6 KB messages. `--generated-client` uses `AuthorizationClient` and builds
//! and encodes every request instead.

use bytes::Bytes;
use http::uri::PathAndQuery;
use jwt_authz::testkit::{CHECK_PATH, EncodedCheck};
use jwt_authz::wire::proto::{AuthorizationClient, CheckRequest, CheckResponse};
use tonic::transport::Channel;
use tonic::{Response, Status};

/// What one Check call sends.
pub enum Payload {
    Encoded(Bytes),
    Message(Box<CheckRequest>),
}

#[derive(Clone)]
pub enum Client {
    Raw(tonic::client::Grpc<Channel>),
    Generated(AuthorizationClient<Channel>),
}

impl Client {
    pub fn new(channel: Channel, generated: bool) -> Client {
        if generated {
            Client::Generated(AuthorizationClient::new(channel))
        } else {
            Client::Raw(tonic::client::Grpc::new(channel))
        }
    }

    pub async fn check(&mut self, payload: Payload) -> Result<Response<CheckResponse>, Status> {
        match (self, payload) {
            (Client::Raw(grpc), Payload::Encoded(bytes)) => {
                grpc.ready()
                    .await
                    .map_err(|e| Status::unknown(format!("channel not ready: {e}")))?;
                grpc.unary(
                    tonic::Request::new(bytes),
                    PathAndQuery::from_static(CHECK_PATH),
                    EncodedCheck,
                )
                .await
            }
            (Client::Generated(client), Payload::Message(request)) => client.check(*request).await,
            _ => Err(Status::internal("loadgen: payload does not fit the client")),
        }
    }
}
