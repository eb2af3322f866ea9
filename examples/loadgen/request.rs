//! CheckRequests shaped like Envoy's: the full one carries every request header of a
//! browser API call (about 1.6 KB encoded with an RS256 token), the small one only
//! `authorization`, as with `allowed_headers: [authorization]`.

use std::collections::HashMap;

use jwt_authz::proto::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use jwt_authz::proto::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use jwt_authz::proto::{AttributeContext, CheckRequest};

use crate::{CheckArgs, Shape};

/// Builds one CheckRequest per call from a fixed template.
pub struct Template {
    base: CheckRequest,
    no_auth: bool,
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

impl Template {
    pub fn new(args: &CheckArgs) -> Template {
        let mut headers = HashMap::new();
        if args.shape == Shape::Full {
            headers.extend(
                [
                    (":authority", "api.example.com"),
                    (":method", "GET"),
                    (":path", args.path.as_str()),
                    (":scheme", "https"),
                ]
                .into_iter()
                .chain(BROWSER_HEADERS.iter().copied())
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
            );
        }
        let mut context_extensions = HashMap::new();
        if !args.required_scopes.is_empty() {
            context_extensions.insert("required_scopes".into(), args.required_scopes.clone());
        }
        let peer = |ip: &str, port: u32| Peer {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: ip.into(),
                    port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        };
        let base = CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(peer("203.0.113.7", 51_234)),
                destination: Some(peer("10.0.0.12", 8080)),
                request: Some(Request {
                    time: Some(prost_types::Timestamp {
                        seconds: 1_790_000_000,
                        nanos: 123_456_000,
                    }),
                    http: Some(HttpRequest {
                        id: "1844674407370955161".into(),
                        method: "GET".into(),
                        headers,
                        path: args.path.clone(),
                        host: "api.example.com".into(),
                        scheme: "https".into(),
                        protocol: "HTTP/1.1".into(),
                        ..Default::default()
                    }),
                }),
                context_extensions,
                ..Default::default()
            }),
        };
        Template {
            base,
            no_auth: args.no_auth,
        }
    }

    /// The request carrying `token` (or no `authorization` with `--no-auth`).
    pub fn build(&self, token: &str) -> CheckRequest {
        let mut request = self.base.clone();
        if !self.no_auth
            && let Some(http) = request
                .attributes
                .as_mut()
                .and_then(|a| a.request.as_mut())
                .and_then(|r| r.http.as_mut())
        {
            http.headers
                .insert("authorization".into(), format!("Bearer {token}"));
        }
        request
    }
}
