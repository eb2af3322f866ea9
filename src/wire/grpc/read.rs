//! The reading of Envoy's `CheckRequest`: the encoded request straight to an
//! [`Inbound`] that borrows every string from the request's buffer, without building the
//! whole prost message (a `String` per header name and value, a hash map of them) for the
//! few fields the decision reads.
//!
//! It reads exactly what [`super::inbound_of`] reads from prost's decoding, with prost's
//! rules: the last occurrence of a singular field wins, a repeated occurrence of a message
//! is merged into the first, a repeated map key keeps its last value, repeated message
//! fields append. Every other field is walked without being kept, and checked as prost
//! checks it, so this reader refuses exactly the inputs prost refuses: a malformed varint,
//! key or length, a known field of the wrong wire type, a string that is not UTF-8 (in any
//! field of the schema, read or not), a stray end-group, nesting past prost's recursion
//! limit. The fuzz target `request_bytes` holds the two readings equal for any input.
//!
//! Field numbers are those of `proto/` (Envoy's `attribute_context.proto`, `base.proto`,
//! `address.proto`, and the well-known `Struct` and `Timestamp`).

use std::collections::HashMap;
use std::fmt;

use crate::inbound::Inbound;
use crate::policy::REQUIRED_SCOPES_KEY;

/// Why an encoded `CheckRequest` could not be read. prost refuses the same inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError(&'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failed to decode Protobuf message: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// The request's fields the decision reads, borrowed from `buf`, an encoded `CheckRequest`.
pub fn decode(buf: &[u8]) -> Result<Inbound<'_>, DecodeError> {
    let mut reader = Reader::default();
    reader.message(buf, Msg::CheckRequest, RECURSION_LIMIT)?;
    let Reader {
        mut inbound,
        certificate,
        body,
        raw_body,
        ..
    } = reader;
    inbound.peer_certificate = Some(certificate).filter(|pem| !pem.is_empty());
    inbound.body = super::respond::body_of(raw_body, body);
    inbound.scheme = inbound.scheme.filter(|scheme| !scheme.is_empty());
    Ok(inbound)
}

/// prost's nesting budget (`prost::RECURSION_LIMIT`): each message, map entry and group
/// level spends one, and a field read with none left is refused.
const RECURSION_LIMIT: u32 = 100;

/// How many headers to make room for at the first one: a browser request through Envoy
/// carries about two dozen.
const HEADER_ROOM: usize = 32;

/// How many `headers` map keys are searched one by one for a repeat before they are indexed.
const INDEXED_MAP: usize = 64;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// The message types reachable from `CheckRequest`. A type read in two places with
/// different meaning (a peer, a string map) has one variant per place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Msg {
    CheckRequest,
    AttributeContext,
    /// `AttributeContext.source`: its `certificate` is read.
    Source,
    /// `AttributeContext.destination`.
    Peer,
    Request,
    HttpRequest,
    /// An entry of `HttpRequest.headers`.
    HeaderEntry,
    /// An entry of `AttributeContext.context_extensions`.
    ExtensionEntry,
    /// An entry of `Peer.labels`.
    LabelEntry,
    HeaderMap,
    HeaderValue,
    TlsSession,
    Timestamp,
    Metadata,
    /// An entry of `Metadata.filter_metadata` (string to `Struct`).
    StructEntry,
    Struct,
    /// An entry of `Struct.fields` (string to `Value`).
    ValueEntry,
    Value,
    ListValue,
    Address,
    SocketAddress,
    Pipe,
    EnvoyInternalAddress,
}

/// What a field of the schema holds.
#[derive(Debug, Clone, Copy)]
enum Field {
    Str,
    Bytes,
    /// Integers, booleans and enums.
    Varint,
    /// `double`.
    Fixed64,
    Message(Msg),
    /// Not in the schema: skipped as prost skips unknown fields.
    Unknown,
}

/// The schema: what field `tag` of `msg` holds.
fn field(msg: Msg, tag: u32) -> Field {
    use Field::{Bytes, Fixed64, Message, Str, Unknown, Varint};
    match (msg, tag) {
        (Msg::CheckRequest, 1) => Message(Msg::AttributeContext),
        (Msg::AttributeContext, 1) => Message(Msg::Source),
        (Msg::AttributeContext, 2) => Message(Msg::Peer),
        (Msg::AttributeContext, 4) => Message(Msg::Request),
        (Msg::AttributeContext, 10) => Message(Msg::ExtensionEntry),
        (Msg::AttributeContext, 11 | 13) => Message(Msg::Metadata),
        (Msg::AttributeContext, 12) => Message(Msg::TlsSession),
        (Msg::Source | Msg::Peer, 1) => Message(Msg::Address),
        (Msg::Source | Msg::Peer, 2 | 4 | 5) => Str,
        (Msg::Source | Msg::Peer, 3) => Message(Msg::LabelEntry),
        (Msg::Request, 1) => Message(Msg::Timestamp),
        (Msg::Request, 2) => Message(Msg::HttpRequest),
        (Msg::HttpRequest, 1 | 2 | 4 | 5 | 6 | 7 | 8 | 10 | 11) => Str,
        (Msg::HttpRequest, 3) => Message(Msg::HeaderEntry),
        (Msg::HttpRequest, 9) => Varint,
        (Msg::HttpRequest, 12) => Bytes,
        (Msg::HttpRequest, 13) => Message(Msg::HeaderMap),
        (Msg::HeaderEntry | Msg::ExtensionEntry | Msg::LabelEntry, 1 | 2) => Str,
        (Msg::HeaderMap, 1) => Message(Msg::HeaderValue),
        (Msg::HeaderValue, 1 | 2) => Str,
        (Msg::HeaderValue, 3) => Bytes,
        (Msg::TlsSession, 1) => Str,
        (Msg::Timestamp, 1 | 2) => Varint,
        (Msg::Metadata, 1) => Message(Msg::StructEntry),
        (Msg::StructEntry | Msg::ValueEntry, 1) => Str,
        (Msg::StructEntry, 2) => Message(Msg::Struct),
        (Msg::Struct, 1) => Message(Msg::ValueEntry),
        (Msg::ValueEntry, 2) => Message(Msg::Value),
        (Msg::Value, 1 | 4) => Varint,
        (Msg::Value, 2) => Fixed64,
        (Msg::Value, 3) => Str,
        (Msg::Value, 5) => Message(Msg::Struct),
        (Msg::Value, 6) => Message(Msg::ListValue),
        (Msg::ListValue, 1) => Message(Msg::Value),
        (Msg::Address, 1) => Message(Msg::SocketAddress),
        (Msg::Address, 2) => Message(Msg::Pipe),
        (Msg::Address, 3) => Message(Msg::EnvoyInternalAddress),
        (Msg::SocketAddress, 1 | 3 | 6) => Varint,
        (Msg::SocketAddress, 2 | 4 | 5 | 7) => Str,
        (Msg::Pipe, 1) => Str,
        (Msg::Pipe, 2) => Varint,
        (Msg::EnvoyInternalAddress, 1 | 2) => Str,
        _ => Unknown,
    }
}

/// The fields of one occurrence of a map entry or a `HeaderValue`: the last of each wins.
#[derive(Default)]
struct Entry<'a> {
    key: &'a str,
    /// Checked as UTF-8, and kept as bytes: header values are read as bytes.
    value: &'a [u8],
    raw_value: &'a [u8],
}

#[derive(Default)]
struct Reader<'a> {
    inbound: Inbound<'a>,
    /// How many of `inbound.headers` come from the `headers` map: they stay before those
    /// of `header_map`, as in [`super::inbound`].
    map_headers: usize,
    /// One bit per length and last byte of the map keys seen (see [`Self::map_header`]).
    map_marks: u64,
    /// Where each map key is, once there are [`INDEXED_MAP`] of them.
    map_index: Option<HashMap<&'a str, usize>>,
    certificate: &'a str,
    /// `body` and `raw_body`, the last occurrence of each.
    body: &'a [u8],
    raw_body: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads the fields of one occurrence of `msg`, `buf` being its whole body; `budget` is
    /// the nesting budget left for its fields.
    fn message(&mut self, mut buf: &'a [u8], msg: Msg, budget: u32) -> Result<(), DecodeError> {
        let mut entry = Entry::default();
        while !buf.is_empty() {
            let (tag, wire) = key(&mut buf)?;
            match field(msg, tag) {
                Field::Str => {
                    let bytes = length_delimited(wire, &mut buf)?;
                    self.string(msg, tag, bytes, &mut entry)?;
                }
                Field::Bytes => {
                    let bytes = length_delimited(wire, &mut buf)?;
                    if msg == Msg::HeaderValue {
                        entry.raw_value = bytes;
                    } else if msg == Msg::HttpRequest {
                        self.raw_body = bytes;
                    }
                }
                Field::Varint => {
                    expect(wire, VARINT)?;
                    varint(&mut buf)?;
                }
                Field::Fixed64 => {
                    expect(wire, FIXED64)?;
                    take(&mut buf, 8)?;
                }
                Field::Message(inner) => {
                    expect(wire, LEN)?;
                    let budget = enter(budget)?;
                    let len = varint(&mut buf)?;
                    let body = take(&mut buf, len)?;
                    self.message(body, inner, budget)?;
                }
                Field::Unknown => skip(wire, tag, &mut buf, budget)?,
            }
        }
        match msg {
            Msg::HeaderEntry => self.map_header(entry.key, entry.value),
            Msg::ExtensionEntry if entry.key == REQUIRED_SCOPES_KEY => {
                // UTF-8 already (checked in `string`): the value is kept as text here.
                self.inbound.required_scopes = std::str::from_utf8(entry.value).ok();
            }
            Msg::HeaderValue => {
                // Envoy sends a raw header in `raw_value` (bytes); `value` is the old field.
                let value = if entry.raw_value.is_empty() {
                    entry.value
                } else {
                    entry.raw_value
                };
                self.header((entry.key, value));
            }
            _ => {}
        }
        Ok(())
    }

    /// Checks string field `tag` of `msg` as UTF-8, as prost does, and keeps it when the
    /// decision reads it: as text where it is read as text, else as bytes. Most of a
    /// request's string bytes are header values and fields nobody reads, which only need
    /// the check, and `is_ascii` is its fast path.
    fn string(
        &mut self,
        msg: Msg,
        tag: u32,
        bytes: &'a [u8],
        entry: &mut Entry<'a>,
    ) -> Result<(), DecodeError> {
        let inbound = &mut self.inbound;
        match (msg, tag) {
            (Msg::HttpRequest, 2) => inbound.method = text(bytes)?,
            (Msg::HttpRequest, 4) => inbound.path = text(bytes)?,
            (Msg::HttpRequest, 5) => inbound.host = text(bytes)?,
            (Msg::HttpRequest, 6) => inbound.scheme = Some(text(bytes)?),
            (Msg::Source, 5) => self.certificate = text(bytes)?,
            (Msg::HttpRequest, 11) => {
                utf8(bytes)?;
                self.body = bytes;
            }
            (Msg::HeaderEntry | Msg::ExtensionEntry | Msg::HeaderValue, 1) => {
                entry.key = text(bytes)?;
            }
            (Msg::HeaderEntry | Msg::ExtensionEntry | Msg::HeaderValue, 2) => {
                utf8(bytes)?;
                entry.value = bytes;
            }
            _ => utf8(bytes)?,
        }
        Ok(())
    }

    /// An entry of the `headers` map: a key seen before takes the new value in its place.
    fn map_header(&mut self, key: &'a str, value: &'a [u8]) {
        if let Some(index) = &mut self.map_index {
            // invariant: a map header's place never moves (raw ones go after the map's).
            if let Some(&at) = index.get(key) {
                self.inbound.headers[at].1 = value;
                return;
            }
            index.insert(key, self.map_headers);
        } else {
            // Envoy never repeats a key: the keys seen are searched only when one with the
            // same length and last byte was.
            let mark = 1u64 << ((key.len() ^ usize::from(key.bytes().last().unwrap_or(0))) % 64);
            if self.map_marks & mark != 0 {
                let map = &mut self.inbound.headers[..self.map_headers];
                if let Some(seen) = map.iter_mut().find(|(name, _)| *name == key) {
                    seen.1 = value;
                    return;
                }
            }
            self.map_marks |= mark;
        }
        self.make_room();
        self.inbound.headers.insert(self.map_headers, (key, value));
        self.map_headers += 1;
        if self.map_headers == INDEXED_MAP && self.map_index.is_none() {
            // Past this many keys a search per entry would cost more than a hash map.
            let map = &self.inbound.headers[..self.map_headers];
            self.map_index = Some(
                map.iter()
                    .enumerate()
                    .map(|(at, (k, _))| (*k, at))
                    .collect(),
            );
        }
    }

    /// A `header_map` entry: after the map's, in order.
    fn header(&mut self, header: (&'a str, &'a [u8])) {
        self.make_room();
        self.inbound.headers.push(header);
    }

    /// Room for a request's headers at the first one, so that they take one allocation.
    fn make_room(&mut self) {
        if self.inbound.headers.capacity() == 0 {
            self.inbound.headers.reserve_exact(HEADER_ROOM);
        }
    }
}

/// One nesting level into a message, map entry or group: refused when none is left.
fn enter(budget: u32) -> Result<u32, DecodeError> {
    budget
        .checked_sub(1)
        .ok_or(DecodeError("recursion limit reached"))
}

fn expect(wire: u8, expected: u8) -> Result<(), DecodeError> {
    if wire == expected {
        Ok(())
    } else {
        Err(DecodeError("invalid wire type"))
    }
}

/// A base-128 varint of at most ten bytes whose value fits 64 bits, as prost reads it
/// (non-minimal encodings included).
fn varint(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    // Most keys, and the length of every field under 128 bytes, take one byte.
    if let Some((&byte, rest)) = buf.split_first()
        && byte < 0x80
    {
        *buf = rest;
        return Ok(u64::from(byte));
    }
    let mut value = 0u64;
    for (i, &byte) in buf.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            if i == 9 && byte > 1 {
                break;
            }
            *buf = &buf[i + 1..];
            return Ok(value);
        }
    }
    Err(DecodeError("invalid varint"))
}

/// A field key: its tag and wire type.
fn key(buf: &mut &[u8]) -> Result<(u32, u8), DecodeError> {
    let key = varint(buf)?;
    let key = u32::try_from(key).map_err(|_| DecodeError("invalid key value"))?;
    let wire = (key & 7) as u8;
    if wire > FIXED32 {
        return Err(DecodeError("invalid wire type value"));
    }
    let tag = key >> 3;
    if tag == 0 {
        return Err(DecodeError("invalid tag value: 0"));
    }
    Ok((tag, wire))
}

/// The next `len` bytes.
fn take<'a>(buf: &mut &'a [u8], len: u64) -> Result<&'a [u8], DecodeError> {
    let len = usize::try_from(len)
        .ok()
        .filter(|len| *len <= buf.len())
        .ok_or(DecodeError("buffer underflow"))?;
    let (taken, rest) = buf.split_at(len);
    *buf = rest;
    Ok(taken)
}

/// A length-delimited field's bytes.
fn length_delimited<'a>(wire: u8, buf: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    expect(wire, LEN)?;
    let len = varint(buf)?;
    take(buf, len)
}

const NOT_UTF8: DecodeError = DecodeError("invalid string value: data is not UTF-8 encoded");

/// A string field's bytes as text, refused when not UTF-8.
fn text(bytes: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(bytes).map_err(|_| NOT_UTF8)
}

/// Refuses a string field's bytes when they are not UTF-8.
fn utf8(bytes: &[u8]) -> Result<(), DecodeError> {
    if bytes.is_ascii() || std::str::from_utf8(bytes).is_ok() {
        Ok(())
    } else {
        Err(NOT_UTF8)
    }
}

/// Skips a field outside the schema, as `prost::encoding::skip_field` does: any wire type,
/// a group up to its matching end (each level spending one of the nesting budget).
fn skip(wire: u8, tag: u32, buf: &mut &[u8], budget: u32) -> Result<(), DecodeError> {
    if budget == 0 {
        return Err(DecodeError("recursion limit reached"));
    }
    match wire {
        VARINT => {
            varint(buf)?;
        }
        FIXED64 => {
            take(buf, 8)?;
        }
        LEN => {
            let len = varint(buf)?;
            take(buf, len)?;
        }
        START_GROUP => loop {
            let (inner_tag, inner_wire) = key(buf)?;
            if inner_wire == END_GROUP {
                if inner_tag != tag {
                    return Err(DecodeError("unexpected end group tag"));
                }
                break;
            }
            skip(inner_wire, inner_tag, buf, budget - 1)?;
        },
        FIXED32 => {
            take(buf, 4)?;
        }
        _ => return Err(DecodeError("unexpected end group tag")),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
