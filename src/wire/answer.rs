//! A refusal as the client receives it, on either wire: the HTTP status, the JSON body
//! `{"code": ..., "description": ...}`, the `WWW-Authenticate` challenges (RFC 6750 §3,
//! RFC 9449 §7.1, RFC 9728 §5.1), `retry-after` for the server's own failures, and the
//! `google.rpc.Code` of a gRPC answer. The reasons and codes are the table of
//! [`crate::error`]; this module only renders them.

use crate::error::{AuthError, Challenge, Code};
use crate::service::{AuthzService, Denial};

/// What the client is sent instead of the upstream's response: a denial, or the service's
/// own answer (the RFC 9728 metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub http_status: u16,
    pub grpc_code: i32,
    pub code: &'static str,
    /// `content-type`, `www-authenticate`, `retry-after`.
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// The server, not the client, failed (keys unavailable).
    pub server_error: bool,
}

/// The reply to `denial` under `service`'s settings.
pub fn denial(service: &AuthzService, denial: &Denial) -> Reply {
    let settings = service.settings();
    let error = &denial.error;
    let code = error.code();
    // A gRPC caller gets a gRPC status from the proxy (Envoy maps the HTTP status: 401
    // UNAUTHENTICATED, 403 PERMISSION_DENIED, 503 UNAVAILABLE) with the body as its
    // message: the description alone, and no content type that would replace the
    // response's `application/grpc`.
    let mut headers = Vec::with_capacity(3);
    if !denial.grpc_request {
        headers.push(("content-type", "application/json".to_owned()));
    }
    let to = ChallengeTo {
        realm: &settings.realm,
        dpop_algs: settings.dpop_algs.as_deref(),
        dpop_request: denial.dpop_request,
        resource_metadata: denial
            .resource
            .and_then(|i| settings.resources.get(i))
            .map(|r| r.metadata.url.as_str()),
    };
    for challenge in error.www_authenticate(&to) {
        headers.push(("www-authenticate", challenge));
    }
    let server_error = code.is_server_error();
    if server_error {
        headers.push(("retry-after", settings.retry_after_secs.to_string()));
    }
    Reply {
        http_status: code.http_status(),
        grpc_code: code.grpc_code(),
        code: code.as_str(),
        headers,
        body: if denial.grpc_request {
            error.description().to_owned()
        } else {
            error.json_body()
        },
        server_error,
    }
}

/// The RFC 9728 document, as a `200` the proxy sends itself.
pub fn resource_metadata(service: &AuthzService, index: usize) -> Reply {
    let body = service
        .settings()
        .resources
        .get(index)
        .map(|r| r.metadata.body.clone())
        .unwrap_or_default();
    Reply {
        http_status: 200,
        // Any status but OK makes Envoy send this response instead of forwarding.
        grpc_code: Code::AccessDenied.grpc_code(),
        code: "resource_metadata",
        headers: vec![
            ("content-type", "application/json".to_owned()),
            ("cache-control", "max-age=300".to_owned()),
        ],
        body,
        server_error: false,
    }
}

/// How an [`AuthError`] is presented to the client, derived from its [`Code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireError {
    /// HTTP status sent by Envoy.
    pub http_status: u16,
    /// JSON `code`.
    pub code: &'static str,
    /// JSON `description`: a fixed sentence.
    pub description: &'static str,
    /// RFC 6750 `error` attribute of `WWW-Authenticate`, if one applies.
    pub bearer_error: Option<&'static str>,
    /// `google.rpc.Code` for `CheckResponse.status`.
    pub grpc_code: i32,
}

/// An [`AuthError`] as the client receives it.
pub trait Rendered {
    /// Everything the wire carries, in one value.
    fn wire(&self) -> WireError;
    /// The JSON body sent to the client: `{"code": ..., "description": ...}`.
    fn json_body(&self) -> String;
    /// The `WWW-Authenticate` values, one per challenge; empty where none applies.
    fn www_authenticate(&self, to: &ChallengeTo<'_>) -> Vec<String>;
}

/// Whether only a `DPoP` challenge can help: the request must be made with DPoP (or with
/// a proof that verifies).
const fn needs_dpop(error: &AuthError) -> bool {
    matches!(
        error,
        AuthError::DpopProof(_)
            | AuthError::DpopRequired
            | AuthError::BoundTokenAsBearer
            | AuthError::TokenNotDpopBound
    )
}

impl Rendered for AuthError {
    fn wire(&self) -> WireError {
        let (code, description) = self.code_and_description();
        let bearer_error = match code.challenge() {
            Challenge::Bearer(error) => error,
            Challenge::Dpop(error) => Some(error),
            Challenge::None => None,
        };
        WireError {
            http_status: code.http_status(),
            code: code.as_str(),
            description,
            bearer_error,
            grpc_code: code.grpc_code(),
        }
    }

    fn json_body(&self) -> String {
        let (code, description) = self.code_and_description();
        // invariant: codes and descriptions are fixed sentences with nothing to escape in
        // JSON (no quote, backslash or control character); a test checks every variant.
        format!(
            "{{\"code\":\"{}\",\"description\":\"{description}\"}}",
            code.as_str()
        )
    }

    /// The `WWW-Authenticate` values (RFC 6750 §3, RFC 9449 §7.1), one per challenge; empty
    /// where no challenge applies.
    ///
    /// A request made with the DPoP scheme, or refused for a reason only DPoP fixes, gets
    /// a `DPoP` challenge carrying the error. Any other gets the `Bearer` challenge, plus an
    /// error-free `DPoP` one naming the proof algorithms when DPoP is accepted. Every
    /// challenge names the resource metadata (RFC 9728 §5.1) when it is published.
    fn www_authenticate(&self, to: &ChallengeTo<'_>) -> Vec<String> {
        let (code, description) = self.code_and_description();
        let error = match code.challenge() {
            Challenge::None => return Vec::new(),
            Challenge::Bearer(error) => error,
            Challenge::Dpop(error) => Some(error),
        };
        let with_error = |scheme: &str, error: Option<&str>| {
            let mut value = format!("{scheme} realm=\"{}\"", to.realm);
            if let Some(error) = error {
                value.push_str(&format!(", error=\"{error}\""));
                if code.http_status() == 401 {
                    value.push_str(&format!(", error_description=\"{description}\""));
                }
            }
            if let AuthError::InsufficientScope { required } = self {
                value.push_str(&format!(", scope=\"{required}\""));
            }
            if scheme == "DPoP"
                && let Some(algs) = to.dpop_algs
            {
                value.push_str(&format!(", algs=\"{algs}\""));
            }
            if let Some(url) = to.resource_metadata {
                value.push_str(&format!(", resource_metadata=\"{url}\""));
            }
            value
        };
        if (to.dpop_request || needs_dpop(self)) && to.dpop_algs.is_some() {
            return vec![with_error("DPoP", error)];
        }
        let mut values = vec![with_error("Bearer", error)];
        if to.dpop_algs.is_some() {
            values.push(with_error("DPoP", None));
        }
        values
    }
}

/// Who a challenge is for: what `WWW-Authenticate` may offer besides the error.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChallengeTo<'a> {
    pub realm: &'a str,
    /// The DPoP proof algorithms, space-separated, when any issuer accepts DPoP.
    pub dpop_algs: Option<&'a str>,
    /// The request used the `DPoP` authorization scheme.
    pub dpop_request: bool,
    /// The RFC 9728 metadata URL, when the resource publishes one.
    pub resource_metadata: Option<&'a str>,
}

#[cfg(test)]
mod tests;
