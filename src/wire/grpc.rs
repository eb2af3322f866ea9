//! The `envoy.service.auth.v3.Authorization` gRPC service the server runs. `Check`'s
//! request reaches the service as the bytes tonic received, read by the byte reader
//! ([`crate::wire::grpc::read`]) rather than decoded whole by prost; the `CheckResponse` is
//! encoded by prost. Everything else is tonic's, as in the generated `AuthorizationServer`
//! (which in-process callers still use through the `Authorization` trait): framing,
//! message size limit, compression settings, a refused request's status (INTERNAL, as for
//! any message tonic cannot decode), UNIMPLEMENTED for any other method.

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstEncoder;

mod read;
mod respond;

pub use read::{DecodeError, decode};
pub use respond::{check_response, inbound, inbound_of};

use crate::reload::LiveAuthz;
use crate::wire::proto::CheckResponse;

/// The gRPC path of `Check`.
pub const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// The Authorization service of the running configuration ([`LiveAuthz`]), for tonic's
/// router.
#[derive(Clone)]
pub struct CheckServer {
    live: LiveAuthz,
}

impl CheckServer {
    pub fn new(live: LiveAuthz) -> CheckServer {
        CheckServer { live }
    }
}

impl NamedService for CheckServer {
    const NAME: &'static str = "envoy.service.auth.v3.Authorization";
}

impl<B> Service<http::Request<B>> for CheckServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != CHECK_PATH {
            return Box::pin(async { Ok(unimplemented()) });
        }
        let check = Check(self.live.clone());
        Box::pin(async move { Ok(Grpc::new(RequestBytes).unary(check, request).await) })
    }
}

/// One Check, on the configuration current when it arrives.
struct Check(LiveAuthz);

impl UnaryService<Bytes> for Check {
    type Response = CheckResponse;
    type Future = BoxFuture<Response<CheckResponse>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        // invariant: the whole Check runs on one configuration, loaded once here.
        let service = self.0.current();
        Box::pin(async move {
            let response = service
                .check_encoded(request.get_ref(), Some(request.metadata().as_ref()))
                .await?;
            Ok(Response::new(response))
        })
    }
}

/// The request message as received (tonic has framed it and, when enabled, decompressed
/// it); the response encoded by prost.
#[derive(Debug, Clone, Copy)]
struct RequestBytes;

impl Codec for RequestBytes {
    type Encode = CheckResponse;
    type Decode = Bytes;
    type Encoder = ProstEncoder<CheckResponse>;
    type Decoder = RequestBytes;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestBytes
    }
}

impl Decoder for RequestBytes {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        // A view of tonic's buffer, not a copy.
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}

/// The answer to a method this service does not have, as tonic's generated servers give it.
fn unimplemented() -> http::Response<tonic::body::Body> {
    let mut response = http::Response::new(tonic::body::Body::default());
    let headers = response.headers_mut();
    headers.insert(
        Status::GRPC_STATUS,
        (tonic::Code::Unimplemented as i32).into(),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        tonic::metadata::GRPC_CONTENT_TYPE,
    );
    response
}
