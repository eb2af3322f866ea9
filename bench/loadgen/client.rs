//! The Check call. By default each distinct request is encoded once, up front, and sent as
//! bytes through tonic's gRPC client (the same `Grpc::unary` call the generated client
//! makes), so the load generator spends its core on the RPC rather than on building and
//! encoding 1.6 KB messages. `--generated-client` uses `AuthorizationClient` and builds
//! and encodes every request instead.

use bytes::{BufMut, Bytes};
use http::uri::PathAndQuery;
use jwt_authz::proto::{AuthorizationClient, CheckRequest, CheckResponse};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Response, Status};

const CHECK: &str = "/envoy.service.auth.v3.Authorization/Check";

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
                    PathAndQuery::from_static(CHECK),
                    RawCodec,
                )
                .await
            }
            (Client::Generated(client), Payload::Message(request)) => client.check(*request).await,
            _ => Err(Status::internal("loadgen: payload does not fit the client")),
        }
    }
}

/// Sends pre-encoded `CheckRequest` bytes; decodes the `CheckResponse` with prost.
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = CheckResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

struct ResponseDecoder;

impl Decoder for ResponseDecoder {
    type Item = CheckResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<CheckResponse>, Status> {
        CheckResponse::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("decoding a CheckResponse: {e}")))
    }
}
