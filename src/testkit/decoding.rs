//! The two readings of an encoded `CheckRequest` side by side: prost's (the whole message,
//! then [`crate::wire::grpc::inbound_of`]) and the byte reader's
//! ([`crate::wire::grpc::decode`]). The byte reader's tests and the `request_bytes` fuzz
//! target hold them equal.

use prost::Message;

use crate::inbound::Inbound;
use crate::wire::grpc::{self, inbound_of};
use crate::wire::proto::CheckRequest;

/// What the decision reads of one request, comparable across the two readings.
#[derive(Debug, PartialEq, Eq)]
pub struct Reading {
    pub method: String,
    pub host: String,
    pub path: String,
    pub scheme: Option<String>,
    pub required_scopes: Option<String>,
    pub peer_certificate: Option<String>,
    /// The headers of the `headers` map, sorted: prost keeps them in a hash map, whose
    /// order means nothing.
    pub map_headers: Vec<(String, Vec<u8>)>,
    /// The headers of `header_map`, in order.
    pub raw_headers: Vec<(String, Vec<u8>)>,
    pub body: Option<Vec<u8>>,
}

impl Reading {
    /// `inbound`, whose first `map_headers` headers come from the `headers` map.
    fn of(inbound: &Inbound<'_>, map_headers: usize) -> Reading {
        let owned = |headers: &[(&str, &[u8])]| -> Vec<(String, Vec<u8>)> {
            headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.to_vec()))
                .collect()
        };
        let split = map_headers.min(inbound.headers.len());
        let (map, raw) = inbound.headers.split_at(split);
        let mut map_headers = owned(map);
        map_headers.sort();
        Reading {
            method: inbound.method.to_owned(),
            host: inbound.host.to_owned(),
            path: inbound.path.to_owned(),
            scheme: inbound.scheme.map(str::to_owned),
            required_scopes: inbound.required_scopes.map(str::to_owned),
            peer_certificate: inbound.peer_certificate.map(str::to_owned),
            map_headers,
            raw_headers: owned(raw),
            body: inbound.body.map(<[u8]>::to_vec),
        }
    }
}

/// Reads `buf` both ways: `Ok` with the one reading when both read it alike, `Ok(None)`
/// when both refuse it, `Err` saying how they differ otherwise.
pub fn compare_readings(buf: &[u8]) -> Result<Option<Reading>, String> {
    let full = CheckRequest::decode(buf);
    let bytes = grpc::decode(buf);
    match (full, bytes) {
        (Err(_), Err(_)) => Ok(None),
        (Ok(request), Ok(read)) => {
            let map_headers = request
                .attributes
                .as_ref()
                .and_then(|a| a.request.as_ref())
                .and_then(|r| r.http.as_ref())
                .map_or(0, |http| http.headers.len());
            let full = Reading::of(&inbound_of(&request), map_headers);
            let read = Reading::of(&read, map_headers);
            if full == read {
                Ok(Some(full))
            } else {
                Err(format!("prost read {full:?}, the byte reader {read:?}"))
            }
        }
        (Ok(request), Err(e)) => Err(format!(
            "prost read {:?}, the byte reader refused it: {e}",
            Reading::of(&inbound_of(&request), usize::MAX)
        )),
        (Err(e), Ok(read)) => Err(format!(
            "prost refused it ({e}), the byte reader read {:?}",
            Reading::of(&read, usize::MAX)
        )),
    }
}
