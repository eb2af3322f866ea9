//! MCP operations (Streamable HTTP, MCP 2026-07-28, SEP-2243): which JSON-RPC method, and
//! which tool, prompt or resource, a POST to an MCP endpoint names.
//!
//! The client names them twice: in the `Mcp-Method` and `Mcp-Name` headers, and in the
//! JSON-RPC body. A rule on MCP operations is decided on one reading only:
//! - `Mcp-Method` exactly once, a method name (`[A-Za-z0-9/_.-]`, at most 128 bytes);
//! - `Mcp-Name` exactly once for the methods that name something (`tools/call`,
//!   `prompts/get`: `params.name`; `resources/read`, `resources/subscribe`,
//!   `resources/unsubscribe`: `params.uri`), and never for the others. Its value is
//!   printable ASCII without leading or trailing space, or `=?base64?<base64 of
//!   UTF-8>?=` (the markers exactly so), decoded;
//! - when the proxy sent the body, it must be one JSON-RPC object (not a batch array),
//!   without repeated members where the decision reads, whose `method` and name are
//!   written without escapes and equal the headers; a body the proxy cut short, or
//!   longer than the bound, is refused.
//!
//! Anything else is refused as ambiguous: the server behind the proxy reads the body, and
//! a rule decided on headers that say something else would guard the wrong operation.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use super::request::Ambiguity;

/// The methods whose operation names something, and the member that names it.
const NAMED: [(&str, &str); 5] = [
    ("tools/call", "name"),
    ("prompts/get", "name"),
    ("resources/read", "uri"),
    ("resources/subscribe", "uri"),
    ("resources/unsubscribe", "uri"),
];

/// The longest `Mcp-Method` accepted.
const MAX_METHOD: usize = 128;
/// The longest `Mcp-Name` accepted, as sent.
const MAX_NAME: usize = 2048;

/// One MCP operation, as the request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpOperation<'a> {
    pub method: &'a str,
    /// The tool, prompt or resource, decoded from its header.
    pub name: Option<Cow<'a, str>>,
}

/// Whether the body must come with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyCheck {
    /// Checked against the headers when the proxy sends it; the headers decide otherwise.
    WhenSent,
    /// Refused without it.
    #[default]
    Required,
}

/// The MCP settings of a policy: its endpoints and how their requests are read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct McpSettings {
    /// Normal paths of the MCP endpoints.
    pub endpoints: Vec<String>,
    pub body: BodyCheck,
    /// The longest body read.
    pub max_body_bytes: usize,
}

/// A rule's condition on the operation: the method, and the name, each exact or a
/// pattern with `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpMatch {
    pub method: String,
    pub name: Option<String>,
}

impl McpMatch {
    pub fn matches(&self, op: &McpOperation<'_>) -> bool {
        super::pattern::glob(&self.method, op.method, false)
            && match (&self.name, &op.name) {
                (None, _) => true,
                (Some(pattern), Some(name)) => super::pattern::glob(pattern, name, false),
                (Some(_), None) => false,
            }
    }
}

fn refused(why: McpRefusal) -> Ambiguity {
    Ambiguity::Mcp(why)
}

/// Why a POST to an MCP endpoint names no one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpRefusal {
    MethodMissing,
    MethodRepeated,
    MethodNotName,
    NameMissing,
    NameRepeated,
    NameUnexpected,
    NameNotCanonical,
    UriNotCanonical,
    ContentType,
    ContentEncoding,
    BodyCut,
    BodyMissing,
    BodyTooLarge,
    BodyNotObject,
    BodyRepeatedMember,
    BodyCaseTwins,
    BodyParams,
    BodyMembers,
    MethodDiffers,
    NameDiffers,
}

impl McpRefusal {
    /// A short reason for the decision log.
    pub const fn reason(self) -> &'static str {
        match self {
            McpRefusal::MethodMissing => "Mcp-Method is missing",
            McpRefusal::MethodRepeated => "Mcp-Method is sent more than once",
            McpRefusal::MethodNotName => "Mcp-Method is not a method name",
            McpRefusal::NameMissing => "Mcp-Name is missing",
            McpRefusal::NameRepeated => "Mcp-Name is sent more than once",
            McpRefusal::NameUnexpected => "Mcp-Name is sent for a method that names nothing",
            McpRefusal::NameNotCanonical => "Mcp-Name is not a plain or =?base64?...?= value",
            McpRefusal::UriNotCanonical => {
                "the resource URI is not in its one spelling (WHATWG-serialised, no dot segment, no escape of an unreserved character)"
            }
            McpRefusal::ContentType => "the content type is not one application/json in UTF-8",
            McpRefusal::ContentEncoding => "the body has a content encoding",
            McpRefusal::BodyCut => "the body was cut short by the proxy",
            McpRefusal::BodyMissing => "the body is required and was not sent",
            McpRefusal::BodyTooLarge => "the body is larger than the bound",
            McpRefusal::BodyNotObject => "the body is not one JSON-RPC object",
            McpRefusal::BodyRepeatedMember => {
                "the body is not one JSON object without repeated members"
            }
            McpRefusal::BodyCaseTwins => "two members of the body differ only by case",
            McpRefusal::BodyParams => {
                "the body's params are not one object whose members differ beyond case"
            }
            McpRefusal::BodyMembers => {
                "the body's method or name is missing, not a string, or escaped"
            }
            McpRefusal::MethodDiffers => "Mcp-Method and the body's method differ",
            McpRefusal::NameDiffers => "Mcp-Name and the body's name differ",
        }
    }
}

/// The member that names the operation of `method`, if it names one.
fn named_by(method: &str) -> Option<&'static str> {
    NAMED
        .iter()
        .find(|(m, _)| *m == method)
        .map(|(_, member)| *member)
}

/// The headers of a POST to an MCP endpoint the operation is read from: every value of
/// each.
#[derive(Debug, Clone, Default)]
pub struct McpHeaders<'a> {
    pub methods: Vec<&'a [u8]>,
    pub names: Vec<&'a [u8]>,
    pub content_types: Vec<&'a [u8]>,
    pub content_encodings: Vec<&'a [u8]>,
    /// Envoy marked the body it sent as cut at its bound.
    pub partial_body: bool,
}

/// `application/json`, alone or with `charset=utf-8` (any case, quoted or not): the one
/// encoding the body is read in. Another charset (`utf-7`, which body-parser decodes)
/// would let the server read other member names than these bytes spell.
fn json_utf8(value: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(value) else {
        return false;
    };
    let mut parts = text.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return false;
    }
    match (parts.next(), parts.next()) {
        (None, _) => true,
        (Some(param), None) => {
            let Some((name, value)) = param.trim().split_once('=') else {
                return false;
            };
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            name.trim().eq_ignore_ascii_case("charset") && value.eq_ignore_ascii_case("utf-8")
        }
        _ => false,
    }
}

/// Reads the operation of a POST to an MCP endpoint from its headers and, when sent, its
/// body.
pub fn read<'a>(
    headers: &McpHeaders<'a>,
    body: Option<&'a [u8]>,
    settings: &McpSettings,
) -> Result<McpOperation<'a>, Ambiguity> {
    let (methods, names) = (&headers.methods[..], &headers.names[..]);
    match &headers.content_types[..] {
        [one] if json_utf8(one) => {}
        _ => {
            return Err(refused(McpRefusal::ContentType));
        }
    }
    if !headers
        .content_encodings
        .iter()
        .all(|e| e.eq_ignore_ascii_case(b"identity"))
    {
        return Err(refused(McpRefusal::ContentEncoding));
    }
    let partial_body = headers.partial_body;
    let method = match methods {
        [one] => std::str::from_utf8(one)
            .ok()
            .filter(|m| {
                !m.is_empty()
                    && m.len() <= MAX_METHOD
                    && m.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b))
            })
            .ok_or(refused(McpRefusal::MethodNotName))?,
        [] => return Err(refused(McpRefusal::MethodMissing)),
        _ => return Err(refused(McpRefusal::MethodRepeated)),
    };
    let member = named_by(method);
    let name = match (member, names) {
        (Some(member), [one]) => Some(header_name(one, member == "uri")?),
        (Some(_), []) => return Err(refused(McpRefusal::NameMissing)),
        (None, []) => None,
        (None, _) => return Err(refused(McpRefusal::NameUnexpected)),
        (Some(_), _) => return Err(refused(McpRefusal::NameRepeated)),
    };
    let op = McpOperation { method, name };
    if partial_body {
        return Err(refused(McpRefusal::BodyCut));
    }
    match body {
        Some(body) => check_body(body, &op, member, settings.max_body_bytes)?,
        None if settings.body == BodyCheck::Required => {
            return Err(refused(McpRefusal::BodyMissing));
        }
        None => {}
    }
    Ok(op)
}

/// `Mcp-Name`: printable ASCII without leading or trailing space, or the Base64 sentinel.
/// A resource URI must be in the one spelling servers resolve it to.
fn header_name(value: &[u8], uri: bool) -> Result<Cow<'_, str>, Ambiguity> {
    let name = plain_or_base64(value)?;
    if uri && !canonical_uri(&name) {
        return Err(refused(McpRefusal::UriNotCanonical));
    }
    Ok(name)
}

/// Whether `uri` is a URL exactly as the WHATWG serialisation writes it (so `FILE:`,
/// `file:/x`, `file://localhost/x` and `a/../b` are refused: servers resolve them to
/// another name), without an escape of an unreserved character, `.` or `/`.
fn canonical_uri(uri: &str) -> bool {
    let Ok(parsed) = url::Url::parse(uri) else {
        return false;
    };
    if parsed.as_str() != uri {
        return false;
    }
    let bytes = uri.as_bytes();
    !bytes.windows(3).any(|w| {
        w[0] == b'%'
            && std::str::from_utf8(&w[1..])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .is_some_and(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b))
    })
}

fn plain_or_base64(value: &[u8]) -> Result<Cow<'_, str>, Ambiguity> {
    let bad = || refused(McpRefusal::NameNotCanonical);
    if value.is_empty() || value.len() > MAX_NAME {
        return Err(bad());
    }
    let text = std::str::from_utf8(value).map_err(|_| bad())?;
    if let Some(encoded) = text
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    {
        let bytes = STANDARD.decode(encoded).map_err(|_| bad())?;
        let decoded = String::from_utf8(bytes).map_err(|_| bad())?;
        if decoded.is_empty() || decoded.chars().any(char::is_control) {
            return Err(bad());
        }
        return Ok(Cow::Owned(decoded));
    }
    let printable = text.bytes().all(|b| (0x20..0x7f).contains(&b));
    if !printable || text.starts_with(' ') || text.ends_with(' ') || text.starts_with("=?base64?") {
        return Err(bad());
    }
    Ok(Cow::Borrowed(text))
}

/// The members of a JSON-RPC request the decision reads, borrowed from the body: a string
/// with an escape cannot be borrowed, so it is refused (its decoded text could name
/// another tool than its bytes to a reader that does not decode). A repeated member is
/// refused by the derived reader.
#[derive(Deserialize)]
struct JsonRpc<'a> {
    #[serde(borrow)]
    method: &'a str,
    #[serde(borrow, default)]
    params: Option<Params<'a>>,
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(borrow, default)]
    name: Option<&'a str>,
    #[serde(borrow, default)]
    uri: Option<&'a str>,
}

fn check_body(
    body: &[u8],
    op: &McpOperation<'_>,
    member: Option<&str>,
    max: usize,
) -> Result<(), Ambiguity> {
    if body.len() > max {
        return Err(refused(McpRefusal::BodyTooLarge));
    }
    // One object: a batch (an array) names several operations, and a struct would also
    // read from an array.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(refused(McpRefusal::BodyNotObject));
    }
    // No repeated member anywhere, as for tokens.
    let Some(object) = crate::claims::parse_object(body) else {
        return Err(refused(McpRefusal::BodyRepeatedMember));
    };
    // Nor two members that are one to a reader that ignores case (Go's encoding/json):
    // `method` and `Method`, `name` and `NAME`, `params` and `paramſ`.
    let folds_apart = |members: &serde_json::Map<String, serde_json::Value>| {
        let mut folded: Vec<String> = members
            .keys()
            .map(|k| k.to_uppercase().to_lowercase())
            .collect();
        folded.sort();
        folded.windows(2).all(|w| w[0] != w[1])
    };
    if !folds_apart(&object) {
        return Err(refused(McpRefusal::BodyCaseTwins));
    }
    match object.get("params") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(params)) if folds_apart(params) => {}
        Some(_) => {
            return Err(refused(McpRefusal::BodyParams));
        }
    }
    let rpc: JsonRpc<'_> =
        serde_json::from_slice(body).map_err(|_| refused(McpRefusal::BodyMembers))?;
    if rpc.method != op.method {
        return Err(refused(McpRefusal::MethodDiffers));
    }
    let named = match (member, &rpc.params) {
        (Some("name"), Some(params)) => params.name,
        (Some(_), Some(params)) => params.uri,
        (Some(_), None) => None,
        (None, _) => return Ok(()),
    };
    match (named, &op.name) {
        (Some(named), Some(header)) if named == header.as_ref() => Ok(()),
        _ => Err(refused(McpRefusal::NameDiffers)),
    }
}

#[cfg(test)]
mod tests;
