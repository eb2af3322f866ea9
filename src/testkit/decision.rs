//! Reading a `CheckResponse` as Envoy does: allow or deny, the HTTP status and JSON code of
//! a denial, and the headers each sets, with the invariants every answer must keep checked
//! on the way.

use std::collections::HashMap;

use serde_json::Value;

use crate::wire::proto::envoy::config::core::v3::HeaderValueOption;
use crate::wire::proto::{CheckResponse, HttpResponse};

/// The decision in a CheckResponse, as Envoy reads it.
#[derive(Debug)]
pub enum Decision {
    Allow {
        headers: HashMap<String, String>,
        remove: Vec<String>,
    },
    Deny {
        grpc: i32,
        http: i32,
        code: String,
        body: Value,
        headers: HashMap<String, String>,
        error: bool,
    },
}

pub fn decision(response: &CheckResponse) -> Decision {
    let grpc = response
        .status
        .as_ref()
        .expect("status must always be set")
        .code;
    match (grpc, response.http_response.as_ref()) {
        (0, Some(HttpResponse::OkResponse(ok))) => Decision::Allow {
            headers: header_map(&ok.headers),
            remove: ok.headers_to_remove.clone(),
        },
        (0, other) => panic!("OK status without ok_response: {other:?}"),
        (grpc, Some(HttpResponse::DeniedResponse(d) | HttpResponse::ErrorResponse(d))) => {
            let headers = header_map(&d.headers);
            // A gRPC caller's denial is the description alone, without a content type;
            // every other is the JSON `{"code", "description"}`.
            let (code, body) = if headers.contains_key("content-type") {
                let body: Value = serde_json::from_str(&d.body).expect("deny body is JSON");
                assert_eq!(
                    body.as_object().unwrap().len(),
                    2,
                    "body is code + description: {body}"
                );
                (body["code"].as_str().unwrap().to_owned(), body)
            } else {
                let code = response.status.as_ref().unwrap().message.clone();
                (code, Value::String(d.body.clone()))
            };
            Decision::Deny {
                grpc,
                http: d.status.as_ref().unwrap().code,
                code,
                body,
                headers,
                error: matches!(response.http_response, Some(HttpResponse::ErrorResponse(_))),
            }
        }
        (grpc, other) => panic!("status {grpc} without a denied response: {other:?}"),
    }
}

/// Asserts a denial with this HTTP status and JSON code; returns the deny's headers.
#[track_caller]
pub fn assert_denied(
    response: &CheckResponse,
    http_status: i32,
    code: &str,
) -> HashMap<String, String> {
    match decision(response) {
        Decision::Deny {
            http,
            code: c,
            headers,
            grpc,
            body,
            ..
        } => {
            assert_eq!((http, c.as_str()), (http_status, code), "unexpected denial");
            let expected_grpc = match http_status {
                401 => 16,
                403 => 7,
                503 => 14,
                _ => panic!("unexpected status {http_status}"),
            };
            assert_eq!(grpc, expected_grpc);
            // JSON, except the description alone for a gRPC caller.
            let content_type = headers.get("content-type").map(String::as_str);
            if body.is_string() {
                assert_eq!(content_type, None);
            } else {
                assert_eq!(content_type, Some("application/json"));
            }
            headers
        }
        allow => panic!("expected {http_status} {code}, got {allow:?}"),
    }
}

/// Asserts an allow; returns the headers set on the upstream request.
#[track_caller]
pub fn assert_allowed(response: &CheckResponse) -> HashMap<String, String> {
    match decision(response) {
        Decision::Allow { headers, .. } => headers,
        deny => panic!("expected allow, got {deny:?}"),
    }
}

/// Whether Envoy lets the request through: a missing status counts as OK, as in Envoy.
pub fn allows(response: &CheckResponse) -> bool {
    response.status.as_ref().is_none_or(|s| s.code == 0)
}

/// Each header's first value, as an HTTP client's `headers[name]` reads it (a second
/// `www-authenticate` challenge follows the first).
fn header_map(headers: &[HeaderValueOption]) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for h in headers {
        let h = h.header.as_ref().unwrap();
        map.entry(h.key.clone()).or_insert_with(|| h.value.clone());
    }
    map
}
