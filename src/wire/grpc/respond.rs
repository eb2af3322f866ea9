//! The gRPC adapter: `envoy.service.auth.v3.Authorization/Check` in, a [`Verdict`] out.
//! It translates Envoy's `CheckRequest` into the wire-independent [`Inbound`] (from its
//! bytes through [`super::read`], or from prost's decoding of it) and the verdict into a
//! `CheckResponse`, and decides nothing.
//!
//! A denial is always a successful RPC with a non-OK `CheckResponse.status`: a gRPC error
//! would count as a failure in Envoy, which `failure_mode_allow` turns into an allow.

use tonic::{Request, Response, Status};

use crate::inbound::Inbound;
use crate::policy::REQUIRED_SCOPES_KEY;
use crate::service::{AuthzService, Verdict, Wire};
use crate::trace::Trace;
use crate::wire::answer::{self, Reply};
use crate::wire::proto::envoy::service::auth::v3::attribute_context::HttpRequest;
use crate::wire::proto::google::rpc;
use crate::wire::proto::{
    Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};

/// The `CheckResponse` for a verdict.
pub fn check_response(service: &AuthzService, verdict: Verdict) -> CheckResponse {
    match verdict {
        Verdict::Allow(allow) => {
            // The verdict's strings move into the response: no copy per header.
            let ok = OkHttpResponse {
                headers: allow.set.into_iter().map(|(k, v)| header(k, v)).collect(),
                headers_to_remove: allow.remove,
                query_parameters_to_remove: allow.remove_query,
                ..Default::default()
            };
            CheckResponse {
                status: Some(rpc::Status {
                    code: 0,
                    ..Default::default()
                }),
                http_response: Some(HttpResponse::OkResponse(ok)),
                dynamic_metadata: allow.metadata,
            }
        }
        Verdict::Deny(denial) => reply(answer::denial(service, &denial)),
        Verdict::ResourceMetadata(index) => reply(answer::resource_metadata(service, index)),
    }
}

/// A refusal, or the service's own answer, as the `CheckResponse` Envoy sends instead of
/// forwarding.
fn reply(deny: Reply) -> CheckResponse {
    {
        {
            let mut headers: Vec<HeaderValueOption> = Vec::with_capacity(deny.headers.len());
            for (name, value) in deny.headers {
                // A repeated name (two challenges) is appended, not overwritten.
                let repeated = headers
                    .iter()
                    .any(|seen| seen.header.as_ref().is_some_and(|h| h.key == name));
                let mut option = header(name.to_owned(), value);
                if repeated {
                    option.append_action = HeaderAppendAction::AppendIfExistsOrAdd as i32;
                }
                headers.push(option);
            }
            let body = DeniedHttpResponse {
                status: Some(HttpStatus {
                    code: i32::from(deny.http_status),
                }),
                headers,
                body: deny.body,
            };
            CheckResponse {
                status: Some(rpc::Status {
                    code: deny.grpc_code,
                    message: deny.code.to_owned(),
                    details: Vec::new(),
                }),
                // Keys unavailable is the server's failure, not the client's: Envoy 1.37+
                // treats `error_response` as an error (status_on_error / failure_mode_allow
                // apply); older Envoys ignore the unknown field and see a plain denial.
                http_response: Some(if deny.server_error {
                    HttpResponse::ErrorResponse(body)
                } else {
                    HttpResponse::DeniedResponse(body)
                }),
                dynamic_metadata: None,
            }
        }
    }
}

impl AuthzService {
    /// The Check of an encoded `CheckRequest`, read by [`super::read`]:
    /// the answer [`Authorization::check`] gives for prost's decoding of the same bytes. A
    /// request that cannot be read is refused with the status tonic gives a message it
    /// cannot decode (INTERNAL).
    pub async fn check_encoded(
        &self,
        request: &[u8],
        call: Option<&http::HeaderMap>,
    ) -> Result<CheckResponse, Status> {
        let inbound =
            super::read::decode(request).map_err(|error| Status::internal(error.to_string()))?;
        let verdict = self.authorize(&inbound, Wire::Grpc, call).await;
        Ok(check_response(self, verdict))
    }

    /// [`AuthzService::check_encoded`], with the decision's record of its steps
    /// (`explain`).
    pub async fn check_encoded_traced(
        &self,
        request: &[u8],
    ) -> Result<(CheckResponse, Trace), Status> {
        let inbound =
            super::read::decode(request).map_err(|error| Status::internal(error.to_string()))?;
        let (verdict, trace) = self.authorize_traced(&inbound, Wire::Grpc).await;
        Ok((check_response(self, verdict), trace))
    }
}

#[tonic::async_trait]
impl Authorization for AuthzService {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        let call = metadata.into_headers();
        let inbound = inbound_of(&request);
        let verdict = self.authorize(&inbound, Wire::Grpc, Some(&call)).await;
        Ok(Response::new(check_response(self, verdict)))
    }
}

/// The request as the decision sees it, from a decoded `CheckRequest`: the HTTP
/// attributes ([`inbound`]), the route's `required_scopes` context extension and the
/// client certificate of the source peer, when not empty.
pub fn inbound_of(request: &CheckRequest) -> Inbound<'_> {
    let attributes = request.attributes.as_ref();
    let http = attributes
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref());
    let mut inbound = inbound(http);
    inbound.required_scopes = attributes
        .and_then(|a| a.context_extensions.get(REQUIRED_SCOPES_KEY))
        .map(String::as_str);
    inbound.peer_certificate = attributes
        .and_then(|a| a.source.as_ref())
        .map(|peer| peer.certificate.as_str())
        .filter(|pem| !pem.is_empty());
    inbound
}

/// The request as the decision sees it, from Envoy's HTTP attributes: every header of
/// `headers` (lower-case keys, repeats joined by a comma) and of `header_map` (raw
/// headers, repeats kept apart, sent instead of `headers` with `encode_raw_headers`).
pub fn inbound(http: Option<&HttpRequest>) -> Inbound<'_> {
    let Some(h) = http else {
        return Inbound::default();
    };
    let joined = h.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
    let raw = h
        .header_map
        .as_ref()
        .into_iter()
        .flat_map(|m| m.headers.iter())
        .map(|h| {
            let value = if h.raw_value.is_empty() {
                h.value.as_bytes()
            } else {
                h.raw_value.as_slice()
            };
            (h.key.as_str(), value)
        });
    Inbound {
        method: &h.method,
        host: &h.host,
        path: &h.path,
        headers: joined.chain(raw).collect(),
        required_scopes: None,
        scheme: Some(h.scheme.as_str()).filter(|s| !s.is_empty()),
        peer_certificate: None,
        body: body_of(&h.raw_body, h.body.as_bytes()),
    }
}

/// The body the proxy sent: `raw_body` (Envoy's `pack_as_bytes`), else `body`; none
/// when both are empty.
pub(crate) fn body_of<'a>(raw_body: &'a [u8], body: &'a [u8]) -> Option<&'a [u8]> {
    [raw_body, body].into_iter().find(|b| !b.is_empty())
}

/// A header option set the portable way: `append` unset, overwrite-or-add.
fn header(key: String, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key,
            value,
            raw_value: Vec::new(),
        }),
        // `append` (deprecated) stays unset: Envoy versions disagree on how it combines
        // with `append_action`, and unset + overwrite behaves the same in all of them.
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}
