//! Why a request was not allowed, and the one place that decides how each reason goes on
//! the wire: HTTP status, JSON `code`, fixed description, RFC 6750 `error` and the
//! `CheckResponse.status` gRPC code.
//!
//! The codes are the Auth0 quickstart's vocabulary plus `insufficient_scope` (RFC 6750) and
//! `jwks_unavailable`. They are part of the public API: README.md lists them.

use thiserror::Error;

/// A reason to deny a request. Never carries the token, a claim value or a key id, so it
/// can be logged and rendered as-is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// No `authorization` header was forwarded.
    #[error("authorization header is missing")]
    MissingHeader,
    /// The header's scheme is not `Bearer` (compared case-insensitively).
    #[error("authorization scheme is not bearer")]
    NotBearer,
    /// `Bearer` with nothing after it.
    #[error("bearer token is empty")]
    NoToken,
    /// More than `Bearer <token>`: extra words, or two headers joined by a comma.
    #[error("authorization header has more than two parts")]
    TooManyParts,
    /// The header value is not visible ASCII, or the token is longer than the configured cap.
    #[error("authorization header is too long or not printable")]
    BadHeaderValue,
    /// The token is not three base64url segments with a JSON header and payload.
    #[error("token is malformed")]
    Malformed,
    /// `alg` is not in the issuer's allow-list (`none` and HMAC never are).
    #[error("token algorithm is not allowed")]
    DisallowedAlgorithm,
    /// The header lists a `crit` extension this service does not understand (RFC 7515 §4.1.11).
    #[error("token header has unsupported critical parameters")]
    UnsupportedCritical,
    /// No key in the issuer's JWKS matches the token's `kid` and `alg`, even after a refetch.
    #[error("no matching signing key")]
    UnknownKey,
    /// The signature does not verify with the selected key.
    #[error("signature is invalid")]
    BadSignature,
    /// `exp` is in the past, beyond the leeway.
    #[error("token is expired")]
    Expired,
    /// `iss` is missing or names no configured issuer.
    #[error("issuer is not accepted")]
    WrongIssuer,
    /// `aud` names none of the configured audiences.
    #[error("audience is not accepted")]
    WrongAudience,
    /// `nbf` is in the future, beyond the leeway.
    #[error("token is not yet valid")]
    NotYetValid,
    /// A required claim (`exp`, `aud`, `iss`) is absent or has the wrong type.
    #[error("required claim is missing or malformed")]
    MissingClaim,
    /// `typ` is not `at+jwt` where the issuer requires RFC 9068 access tokens.
    #[error("token type is not an access token")]
    WrongTokenType,
    /// The token is valid but lacks a scope the route requires.
    #[error("insufficient scope")]
    InsufficientScope {
        /// The scopes the route requires, space-separated, for `WWW-Authenticate`.
        required: String,
    },
    /// The route is configured to deny every request.
    #[error("route denies all requests")]
    RouteDenied,
    /// The issuer's keys have never been loaded: the service cannot verify anything yet.
    #[error("signing keys are not available")]
    JwksUnavailable,
}

/// How an [`AuthError`] is presented to the client.
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

const UNAUTHENTICATED: i32 = 16;
const PERMISSION_DENIED: i32 = 7;
const UNAVAILABLE: i32 = 14;

const fn unauthenticated(code: &'static str, description: &'static str) -> WireError {
    WireError {
        http_status: 401,
        code,
        description,
        bearer_error: Some("invalid_token"),
        grpc_code: UNAUTHENTICATED,
    }
}

impl AuthError {
    /// The single mapping from reason to wire form. Exhaustive on purpose: a new variant
    /// must decide its status and code here.
    pub const fn wire(&self) -> WireError {
        match self {
            // RFC 6750 §3.1: a request with no credentials gets a challenge without `error`.
            AuthError::MissingHeader => WireError {
                bearer_error: None,
                ..unauthenticated(
                    "authorization_header_missing",
                    "Authorization header is expected",
                )
            },
            AuthError::NotBearer => unauthenticated(
                "invalid_header",
                "Authorization header must start with Bearer",
            ),
            AuthError::NoToken => unauthenticated("invalid_header", "Token not found"),
            AuthError::TooManyParts => unauthenticated(
                "invalid_header",
                "Authorization header must be Bearer token",
            ),
            AuthError::BadHeaderValue => unauthenticated(
                "invalid_header",
                "Authorization header is too long or contains invalid characters",
            ),
            AuthError::Malformed => {
                unauthenticated("invalid_header", "Unable to parse authentication token.")
            }
            AuthError::DisallowedAlgorithm => unauthenticated(
                "invalid_header",
                "Invalid header. Use an allowed asymmetric signing algorithm",
            ),
            AuthError::UnsupportedCritical => unauthenticated(
                "invalid_header",
                "Invalid header. Unsupported critical header parameter",
            ),
            AuthError::UnknownKey => {
                unauthenticated("invalid_header", "Unable to find appropriate key")
            }
            AuthError::BadSignature => unauthenticated("invalid_token", "The signature is invalid"),
            AuthError::Expired => unauthenticated("token_expired", "token is expired"),
            AuthError::WrongIssuer
            | AuthError::WrongAudience
            | AuthError::NotYetValid
            | AuthError::MissingClaim
            | AuthError::WrongTokenType => unauthenticated(
                "invalid_claims",
                "incorrect claims, please check the audience and issuer",
            ),
            AuthError::InsufficientScope { .. } => WireError {
                http_status: 403,
                code: "insufficient_scope",
                description: "You don't have access to this resource.",
                bearer_error: Some("insufficient_scope"),
                grpc_code: PERMISSION_DENIED,
            },
            AuthError::RouteDenied => WireError {
                http_status: 403,
                code: "access_denied",
                description: "This resource is not accessible.",
                bearer_error: None,
                grpc_code: PERMISSION_DENIED,
            },
            AuthError::JwksUnavailable => WireError {
                http_status: 503,
                code: "jwks_unavailable",
                description: "Signing keys are not available yet. Retry later",
                bearer_error: None,
                grpc_code: UNAVAILABLE,
            },
        }
    }

    /// The JSON body sent to the client: `{"code": ..., "description": ...}`.
    pub fn json_body(&self) -> String {
        let wire = self.wire();
        // invariant: codes and descriptions are fixed sentences with nothing to escape in
        // JSON (no quote, backslash or control character); a test checks every variant.
        format!(
            "{{\"code\":\"{}\",\"description\":\"{}\"}}",
            wire.code, wire.description
        )
    }

    /// The `WWW-Authenticate` value (RFC 6750 §3), or `None` where no challenge applies.
    pub fn www_authenticate(&self, realm: &str) -> Option<String> {
        let wire = self.wire();
        if wire.http_status == 503 || matches!(self, AuthError::RouteDenied) {
            return None;
        }
        let mut value = format!("Bearer realm=\"{realm}\"");
        if let Some(error) = wire.bearer_error {
            value.push_str(&format!(", error=\"{error}\""));
        }
        if wire.http_status == 401 && wire.bearer_error.is_some() {
            value.push_str(&format!(", error_description=\"{}\"", wire.description));
        }
        if let AuthError::InsufficientScope { required } = self {
            value.push_str(&format!(", scope=\"{required}\""));
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quickstart_codes_are_kept() {
        assert_eq!(
            AuthError::MissingHeader.wire().code,
            "authorization_header_missing"
        );
        assert_eq!(AuthError::NotBearer.wire().code, "invalid_header");
        assert_eq!(AuthError::UnknownKey.wire().code, "invalid_header");
        assert_eq!(AuthError::BadSignature.wire().code, "invalid_token");
        assert_eq!(AuthError::Expired.wire().code, "token_expired");
        assert_eq!(AuthError::WrongAudience.wire().code, "invalid_claims");
        let scope = AuthError::InsufficientScope {
            required: "read:messages".into(),
        };
        assert_eq!(scope.wire().http_status, 403);
        assert_eq!(scope.wire().grpc_code, 7);
        assert_eq!(AuthError::JwksUnavailable.wire().http_status, 503);
    }

    #[test]
    fn every_body_is_valid_json() {
        let all = [
            AuthError::MissingHeader,
            AuthError::NotBearer,
            AuthError::NoToken,
            AuthError::TooManyParts,
            AuthError::BadHeaderValue,
            AuthError::Malformed,
            AuthError::DisallowedAlgorithm,
            AuthError::UnsupportedCritical,
            AuthError::UnknownKey,
            AuthError::BadSignature,
            AuthError::Expired,
            AuthError::WrongIssuer,
            AuthError::WrongAudience,
            AuthError::NotYetValid,
            AuthError::MissingClaim,
            AuthError::WrongTokenType,
            AuthError::InsufficientScope {
                required: "a".into(),
            },
            AuthError::RouteDenied,
            AuthError::JwksUnavailable,
        ];
        for error in all {
            let wire = error.wire();
            let body: serde_json::Value = serde_json::from_str(&error.json_body()).unwrap();
            assert_eq!(body["code"], wire.code);
            assert_eq!(body["description"], wire.description);
        }
    }

    #[test]
    fn body_is_code_and_description_only() {
        let body: serde_json::Value =
            serde_json::from_str(&AuthError::Expired.json_body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"code": "token_expired", "description": "token is expired"})
        );
    }

    #[test]
    fn challenge_follows_rfc6750() {
        assert_eq!(
            AuthError::MissingHeader.www_authenticate("api").as_deref(),
            Some("Bearer realm=\"api\"")
        );
        let bad = AuthError::BadSignature.www_authenticate("api").unwrap();
        assert!(bad.starts_with("Bearer realm=\"api\", error=\"invalid_token\""));
        let scope = AuthError::InsufficientScope {
            required: "a b".into(),
        }
        .www_authenticate("api")
        .unwrap();
        assert_eq!(
            scope,
            "Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"a b\""
        );
        assert_eq!(AuthError::JwksUnavailable.www_authenticate("api"), None);
    }
}
