//! Check over gRPC with the request already encoded: bytes through tonic's client (the
//! `Grpc::unary` call the generated client makes), the response decoded by prost. It sends
//! what a typed client cannot (bytes prost would refuse) and spares the load generator the
//! encoding of every request.

use bytes::{BufMut, Bytes};
use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::wire::proto::CheckResponse;

/// Sends pre-encoded `CheckRequest` bytes; decodes the `CheckResponse` with prost.
#[derive(Debug, Clone, Copy, Default)]
pub struct EncodedCheck;

impl Codec for EncodedCheck {
    type Encode = Bytes;
    type Decode = CheckResponse;
    type Encoder = EncodedCheck;
    type Decoder = EncodedCheck;

    fn encoder(&mut self) -> EncodedCheck {
        EncodedCheck
    }

    fn decoder(&mut self) -> EncodedCheck {
        EncodedCheck
    }
}

impl Encoder for EncodedCheck {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for EncodedCheck {
    type Item = CheckResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<CheckResponse>, Status> {
        CheckResponse::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("decoding a CheckResponse: {e}")))
    }
}
