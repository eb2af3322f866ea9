//! `CheckRequest`s as Envoy builds them: lower-case header names including the
//! pseudo-headers, the path, host and method in their own fields, `required_scopes` in the
//! context extensions, and, with `encode_raw_headers: true`, raw bytes in `header_map`.

use std::collections::HashMap;

use crate::wire::proto::envoy::config::core::v3::{
    Address, HeaderMap, HeaderValue, SocketAddress, address, socket_address,
};
use crate::wire::proto::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use crate::wire::proto::{AttributeContext, CheckRequest};

/// A `GET /api/private` from curl, with `authorization` when given and `required_scopes`
/// in the context extensions when given.
pub fn request(authorization: Option<&str>, required_scopes: Option<&str>) -> CheckRequest {
    let mut headers = pseudo_headers("/api/private", "http");
    headers.insert("user-agent".into(), "curl/8.0".into());
    if let Some(value) = authorization {
        headers.insert("authorization".into(), value.into());
    }
    let http = HttpRequest {
        id: "1".into(),
        headers,
        ..http_request("/api/private", "http")
    };
    wrap(http, required_scopes, None)
}

/// A [`request`] for `path` (`:path` and `path` both).
pub fn request_at(path: &str, authorization: Option<&str>) -> CheckRequest {
    let mut request = request(authorization, None);
    let http = http_mut(&mut request);
    http.path = path.into();
    http.headers.insert(":path".into(), path.into());
    request
}

/// A [`request`] with raw headers (`encode_raw_headers: true`): `header_map` only, holding
/// `:path` and one `authorization` entry per value.
pub fn raw_request(authorizations: &[&[u8]]) -> CheckRequest {
    let mut req = request(None, None);
    let http = http_mut(&mut req);
    http.headers.clear();
    let mut map = vec![HeaderValue {
        key: ":path".into(),
        raw_value: b"/api/private".to_vec(),
        ..Default::default()
    }];
    for value in authorizations {
        map.push(HeaderValue {
            key: "authorization".into(),
            raw_value: value.to_vec(),
            ..Default::default()
        });
    }
    http.header_map = Some(HeaderMap { headers: map });
    req
}

/// How much of the client's request Envoy forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Every header of a browser's API call (about 1.6 KB encoded with an RS256 token), as
    /// Envoy sends without `allowed_headers`.
    Full,
    /// No headers until [`set_authorization`] adds one, as with
    /// `allowed_headers: [authorization]`.
    Small,
}

/// A browser's `GET path` over HTTPS as a production Envoy forwards it: peer addresses, a
/// request time, the headers of `shape` and `required_scopes` when given. It carries no
/// `authorization`: add one with [`set_authorization`].
pub fn browser_request(path: &str, required_scopes: Option<&str>, shape: Shape) -> CheckRequest {
    let mut headers = HashMap::new();
    if shape == Shape::Full {
        headers = pseudo_headers(path, "https");
        headers.extend(
            BROWSER_HEADERS
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
    }
    let http = HttpRequest {
        id: "1844674407370955161".into(),
        headers,
        ..http_request(path, "https")
    };
    let mut request = wrap(
        http,
        required_scopes,
        Some(prost_types::Timestamp {
            seconds: 1_790_000_000,
            nanos: 123_456_000,
        }),
    );
    let attributes = request.attributes.as_mut().expect("set by wrap");
    attributes.source = Some(peer("203.0.113.7", 51_234));
    attributes.destination = Some(peer("10.0.0.12", 8080));
    request
}

/// Sets the `authorization` header to `value`, replacing any.
pub fn set_authorization(request: &mut CheckRequest, value: &str) {
    http_mut(request)
        .headers
        .insert("authorization".into(), value.into());
}

/// The HTTP attributes of a request built here.
pub fn http_mut(request: &mut CheckRequest) -> &mut HttpRequest {
    request
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
        .expect("request has HTTP attributes")
}

/// A `GET path` to `api.example.com` without headers.
fn http_request(path: &str, scheme: &str) -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        path: path.into(),
        host: "api.example.com".into(),
        scheme: scheme.into(),
        protocol: "HTTP/1.1".into(),
        ..Default::default()
    }
}

fn pseudo_headers(path: &str, scheme: &str) -> HashMap<String, String> {
    [
        (":authority", "api.example.com"),
        (":method", "GET"),
        (":path", path),
        (":scheme", scheme),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn wrap(
    http: HttpRequest,
    required_scopes: Option<&str>,
    time: Option<prost_types::Timestamp>,
) -> CheckRequest {
    let context_extensions = required_scopes
        .map(|s| ("required_scopes".to_owned(), s.to_owned()))
        .into_iter()
        .collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                time,
                http: Some(http),
            }),
            context_extensions,
            ..Default::default()
        }),
    }
}

const BROWSER_HEADERS: &[(&str, &str)] = &[
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    ),
    ("accept", "application/json, text/plain, */*"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("accept-language", "en-US,en;q=0.9,de;q=0.8"),
    ("origin", "https://app.example.com"),
    ("referer", "https://app.example.com/messages?folder=inbox"),
    (
        "sec-ch-ua",
        "\"Chromium\";v=\"126\", \"Google Chrome\";v=\"126\", \"Not-A.Brand\";v=\"8\"",
    ),
    ("sec-ch-ua-mobile", "?0"),
    ("sec-ch-ua-platform", "\"Linux\""),
    ("sec-fetch-dest", "empty"),
    ("sec-fetch-mode", "cors"),
    ("sec-fetch-site", "same-site"),
    (
        "cookie",
        "_ga=GA1.1.1234567890.1700000000; _ga_XYZ=GS1.1.1700000000.1.1.1700000100.0.0.0; theme=dark; consent=analytics%3Dfalse",
    ),
    ("x-forwarded-for", "203.0.113.7"),
    ("x-forwarded-proto", "https"),
    ("x-request-id", "5f0e8c3a-9b1d-4c8e-a7f2-3d6b1e9c0a42"),
    (
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ),
    ("x-envoy-expected-rq-timeout-ms", "15000"),
];

/// A peer at `ip:port`.
fn peer(ip: &str, port: u32) -> Peer {
    Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: ip.into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

/// A Check as a proxyless gRPC server sends it (gRFC A92, "Communication With the
/// ext_authz Server"): `source` (the peer's address, `principal` its first URI SAN, and
/// `certificate` when given), `destination`, the RPC's start time, and `http` with only
/// method `POST`, the call's `metadata` as raw `header_map` entries, `path`, `size` -1 and
/// protocol `HTTP/2`: no `headers`, host, scheme, id, query, body or context extensions.
pub fn proxyless_request(
    path: &str,
    metadata: &[(&str, &str)],
    certificate: Option<&str>,
) -> CheckRequest {
    let http = HttpRequest {
        method: "POST".into(),
        header_map: Some(HeaderMap {
            headers: metadata
                .iter()
                .map(|(k, v)| HeaderValue {
                    key: (*k).into(),
                    raw_value: v.as_bytes().to_vec(),
                    ..Default::default()
                })
                .collect(),
        }),
        path: path.into(),
        size: -1,
        protocol: "HTTP/2".into(),
        ..Default::default()
    };
    let mut source = peer("10.0.0.7", 40_312);
    if certificate.is_some() {
        source.principal = "spiffe://cluster.local/ns/shop/sa/client".into();
    }
    source.certificate = certificate
        .map(crate::percent::encode_all)
        .unwrap_or_default();
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(source),
            destination: Some(peer("10.0.0.12", 50_051)),
            request: Some(Request {
                time: Some(prost_types::Timestamp {
                    seconds: 1_790_000_000,
                    nanos: 0,
                }),
                http: Some(http),
            }),
            ..Default::default()
        }),
    }
}

/// What the test kit's requests address: `GET http://api.example.com/api/private`.
pub const URL: &str = "http://api.example.com/api/private";

/// `GET /api/private` with `authorization: <value>` and each `DPoP` value, kept apart as
/// Envoy's raw `header_map` does.
pub fn with_proofs(authorization: &str, proofs: &[&str]) -> CheckRequest {
    let mut request = request(Some(authorization), None);
    let http = http_mut(&mut request);
    match proofs {
        [] => {}
        [one] => {
            http.headers.insert("dpop".into(), (*one).into());
        }
        many => {
            http.header_map = Some(HeaderMap {
                headers: many
                    .iter()
                    .map(|p| HeaderValue {
                        key: "dpop".into(),
                        raw_value: p.as_bytes().to_vec(),
                        ..Default::default()
                    })
                    .collect(),
            });
        }
    }
    request
}

/// Envoy's `attributes.source.certificate`: the URL-encoded PEM of the client certificate.
pub fn with_certificate(token: &str, pem: Option<&str>) -> CheckRequest {
    let mut request = request(Some(&format!("Bearer {token}")), None);
    if let Some(pem) = pem {
        let attributes = request.attributes.get_or_insert_with(Default::default);
        let source = attributes.source.get_or_insert_with(Default::default);
        source.certificate = crate::percent::encode_all(pem);
    }
    request
}
