//! Why a request was not allowed, and the one place that decides how each reason goes on
//! the wire: HTTP status, JSON `code`, fixed description, RFC 6750 `error` and the
//! `CheckResponse.status` gRPC code.
//!
//! The codes are the Auth0 quickstart's vocabulary plus `insufficient_scope` (RFC 6750) and
//! `jwks_unavailable`. They are part of the public API: docs/error-codes.md lists them.

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
    /// Two token sources carry different tokens, or a token cookie or query parameter
    /// appears twice (or under an encoded name): ambiguous, so refused.
    #[error("access token sent more than once")]
    TokenSentTwice,
    /// A token taken from a cookie, a raw header or the query is too long, empty of
    /// visible ASCII or malformed (bad quoting, bad percent-escape).
    #[error("access token value is too long or not printable")]
    BadTokenValue,
    /// The HTTP endpoint cannot remove a query parameter upstream, so with
    /// `strip_authorization` a token from the query would reach the upstream.
    #[error("query token cannot be stripped on this endpoint")]
    QueryTokenNotRemovable,
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
    /// The route is configured to deny every request, or no rule matched and the default
    /// action is `deny`.
    #[error("route denies all requests")]
    RouteDenied,
    /// The path, host or method could be read two ways by the servers behind the proxy
    /// (dot segments, encoded separators, case, a method override...).
    #[error("ambiguous request: {0}")]
    AmbiguousRequest(&'static str),
    /// The token is valid but a claim condition of the route does not hold.
    #[error("claim condition not satisfied")]
    ClaimsNotSatisfied,
    /// The issuer's keys have never been loaded: the service cannot verify anything yet.
    #[error("signing keys are not available")]
    JwksUnavailable,
    /// The `DPoP` proof (RFC 9449 §4.3) is missing, malformed, for another request, stale,
    /// replayed or signed by another key than the token is bound to; the reason is logged.
    #[error("DPoP proof is invalid: {0}")]
    DpopProof(&'static str),
    /// The issuer or route requires DPoP and the token came with the Bearer scheme.
    #[error("DPoP is required")]
    DpopRequired,
    /// A DPoP-bound token (`cnf.jkt`) was sent with the Bearer scheme (RFC 9449 §7.2).
    #[error("DPoP-bound token sent as a bearer token")]
    BoundTokenAsBearer,
    /// The `DPoP` scheme with a token that has no `cnf.jkt`.
    #[error("token is not DPoP-bound")]
    TokenNotDpopBound,
    /// A certificate-bound token (RFC 8705 §3) without the client certificate it is bound
    /// to: none was forwarded, or another one.
    #[error("certificate binding failed: {0}")]
    CertificateBinding(&'static str),
    /// `cnf` is not an object, or names a confirmation method this service cannot check.
    #[error("token confirmation method is not supported")]
    UnsupportedConfirmation,
    /// The DPoP replay store could not be reached (or is full), so a proof's `jti` could
    /// not be recorded: the proof is refused rather than risk a replay.
    #[error("DPoP replay store is unavailable")]
    ReplayStoreUnavailable,
    /// The token is not a JWS and the route's issuer introspects tokens (RFC 7662): the
    /// authorization server said it is not active.
    #[error("token is not active")]
    Inactive,
    /// The token is not a JWS and no issuer the route admits introspects tokens.
    #[error("opaque token and no introspecting issuer")]
    OpaqueNotAccepted,
    /// The introspection endpoint did not answer, or answered something that is not a
    /// valid introspection response: the token could not be judged.
    #[error("introspection unavailable: {0}")]
    IntrospectionUnavailable(&'static str),
    /// A revocation in force covers the token (its `jti`, or its subject, session, client
    /// or email revoked after it was issued).
    #[error("token is revoked")]
    Revoked,
    /// Revocations are checked and the token lives longer (`exp - iat`) than the longest
    /// lifetime a revocation is kept for: a revocation could lapse before it.
    #[error("token lifetime is longer than revocations are kept")]
    LifetimeTooLong,
    /// The revocation store cannot vouch that it holds every revocation (a lost
    /// subscription, an unreachable Redis): refused rather than risk a revoked token.
    #[error("revocations are not known to be current")]
    RevocationUnavailable,
}

/// Every JSON `code` a denial can carry: the one table from which the HTTP status, the
/// gRPC code, the challenge and the metric label all derive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    AuthorizationHeaderMissing,
    InvalidHeader,
    InvalidToken,
    TokenExpired,
    InvalidClaims,
    InsufficientScope,
    InsufficientClaims,
    AccessDenied,
    JwksUnavailable,
    InvalidDpopProof,
    ReplayStoreUnavailable,
    IntrospectionUnavailable,
    RevocationUnavailable,
}

/// What a denial puts in `WWW-Authenticate` (RFC 6750 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// No challenge: the request was refused whatever its credentials, or the server
    /// could not decide.
    None,
    /// `Bearer realm=...` with this `error` attribute, or none (§3.1: a request with no
    /// credentials gets no `error`).
    Bearer(Option<&'static str>),
    /// RFC 9449 §7.1: only a `DPoP` challenge carries the error, since only a DPoP
    /// request can fix it.
    Dpop(&'static str),
}

const UNAUTHENTICATED: i32 = 16;
const PERMISSION_DENIED: i32 = 7;
const UNAVAILABLE: i32 = 14;

impl Code {
    /// Every code, in the order metrics list them.
    pub const ALL: [Code; 13] = [
        Code::AuthorizationHeaderMissing,
        Code::InvalidHeader,
        Code::InvalidToken,
        Code::TokenExpired,
        Code::InvalidClaims,
        Code::InsufficientScope,
        Code::InsufficientClaims,
        Code::AccessDenied,
        Code::JwksUnavailable,
        Code::InvalidDpopProof,
        Code::ReplayStoreUnavailable,
        Code::IntrospectionUnavailable,
        Code::RevocationUnavailable,
    ];

    /// The JSON `code`, also the metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::AuthorizationHeaderMissing => "authorization_header_missing",
            Code::InvalidHeader => "invalid_header",
            Code::InvalidToken => "invalid_token",
            Code::TokenExpired => "token_expired",
            Code::InvalidClaims => "invalid_claims",
            Code::InsufficientScope => "insufficient_scope",
            Code::InsufficientClaims => "insufficient_claims",
            Code::AccessDenied => "access_denied",
            Code::JwksUnavailable => "jwks_unavailable",
            Code::InvalidDpopProof => "invalid_dpop_proof",
            Code::ReplayStoreUnavailable => "replay_store_unavailable",
            Code::IntrospectionUnavailable => "introspection_unavailable",
            Code::RevocationUnavailable => "revocation_unavailable",
        }
    }

    /// HTTP status sent to the client.
    pub const fn http_status(self) -> u16 {
        match self {
            Code::AuthorizationHeaderMissing
            | Code::InvalidHeader
            | Code::InvalidToken
            | Code::TokenExpired
            | Code::InvalidClaims
            | Code::InvalidDpopProof => 401,
            Code::InsufficientScope | Code::InsufficientClaims | Code::AccessDenied => 403,
            Code::JwksUnavailable
            | Code::ReplayStoreUnavailable
            | Code::IntrospectionUnavailable
            | Code::RevocationUnavailable => 503,
        }
    }

    /// `google.rpc.Code` for `CheckResponse.status`.
    pub const fn grpc_code(self) -> i32 {
        match self.http_status() {
            401 => UNAUTHENTICATED,
            403 => PERMISSION_DENIED,
            _ => UNAVAILABLE,
        }
    }

    /// The `WWW-Authenticate` challenge.
    pub const fn challenge(self) -> Challenge {
        match self {
            Code::AuthorizationHeaderMissing => Challenge::Bearer(None),
            Code::InvalidHeader | Code::InvalidToken | Code::TokenExpired | Code::InvalidClaims => {
                Challenge::Bearer(Some("invalid_token"))
            }
            Code::InsufficientScope => Challenge::Bearer(Some("insufficient_scope")),
            Code::InvalidDpopProof => Challenge::Dpop("invalid_dpop_proof"),
            // RFC 6750 has no error code for a claim condition; RFC 9470's step-up errors
            // are for authentication strength only. No challenge is better than a wrong one.
            Code::InsufficientClaims
            | Code::AccessDenied
            | Code::JwksUnavailable
            | Code::ReplayStoreUnavailable
            | Code::IntrospectionUnavailable
            | Code::RevocationUnavailable => Challenge::None,
        }
    }

    /// Whether the service, not the client, failed: answered as Envoy's `error_response`
    /// with `retry-after`.
    pub const fn is_server_error(self) -> bool {
        self.http_status() >= 500
    }

    /// Position in [`Code::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl AuthError {
    /// The single mapping from reason to code and fixed description. Exhaustive on
    /// purpose: a new variant must decide its code here.
    pub const fn code_and_description(&self) -> (Code, &'static str) {
        use Code::*;
        match self {
            AuthError::MissingHeader => (
                AuthorizationHeaderMissing,
                "Authorization header is expected",
            ),
            AuthError::NotBearer => (InvalidHeader, "Authorization header must start with Bearer"),
            AuthError::NoToken => (InvalidHeader, "Token not found"),
            AuthError::TooManyParts => (InvalidHeader, "Authorization header must be Bearer token"),
            AuthError::BadHeaderValue => (
                InvalidHeader,
                "Authorization header is too long or contains invalid characters",
            ),
            AuthError::TokenSentTwice => (InvalidHeader, "The access token must be sent once"),
            AuthError::BadTokenValue => (
                InvalidHeader,
                "The access token is too long or contains invalid characters",
            ),
            AuthError::QueryTokenNotRemovable => (
                InvalidHeader,
                "Send the access token in a header: it cannot be removed from the query string here",
            ),
            AuthError::Malformed => (InvalidHeader, "Unable to parse authentication token."),
            AuthError::DisallowedAlgorithm => (
                InvalidHeader,
                "Invalid header. Use an allowed asymmetric signing algorithm",
            ),
            AuthError::UnsupportedCritical => (
                InvalidHeader,
                "Invalid header. Unsupported critical header parameter",
            ),
            AuthError::UnknownKey => (InvalidHeader, "Unable to find appropriate key"),
            AuthError::BadSignature => (InvalidToken, "The signature is invalid"),
            AuthError::Expired => (TokenExpired, "token is expired"),
            AuthError::WrongIssuer
            | AuthError::WrongAudience
            | AuthError::NotYetValid
            | AuthError::MissingClaim
            | AuthError::WrongTokenType => (
                InvalidClaims,
                "incorrect claims, please check the audience and issuer",
            ),
            AuthError::InsufficientScope { .. } => {
                (InsufficientScope, "You don't have access to this resource.")
            }
            AuthError::RouteDenied => (AccessDenied, "This resource is not accessible."),
            AuthError::AmbiguousRequest(_) => (
                AccessDenied,
                "The request path or host is ambiguous and was refused.",
            ),
            AuthError::ClaimsNotSatisfied => (
                InsufficientClaims,
                "The token's claims do not grant access to this resource.",
            ),
            AuthError::JwksUnavailable => (
                JwksUnavailable,
                "Signing keys are not available yet. Retry later",
            ),
            AuthError::DpopProof(_) => (InvalidDpopProof, "The DPoP proof is invalid."),
            AuthError::DpopRequired => (
                InvalidToken,
                "This resource requires a DPoP-bound access token and a DPoP proof.",
            ),
            AuthError::BoundTokenAsBearer => (
                InvalidToken,
                "A DPoP-bound access token must be sent with the DPoP scheme.",
            ),
            AuthError::TokenNotDpopBound => {
                (InvalidToken, "The access token is not bound to a DPoP key.")
            }
            AuthError::CertificateBinding(_) => (
                InvalidToken,
                "The access token is bound to a client certificate this request did not present.",
            ),
            AuthError::UnsupportedConfirmation => (
                InvalidToken,
                "The access token's confirmation method is not supported.",
            ),
            AuthError::ReplayStoreUnavailable => (
                ReplayStoreUnavailable,
                "The DPoP replay store is unavailable. Retry later",
            ),
            AuthError::Inactive => (InvalidToken, "The token is not active."),
            AuthError::OpaqueNotAccepted => {
                (InvalidHeader, "Unable to parse authentication token.")
            }
            AuthError::IntrospectionUnavailable(_) => (
                IntrospectionUnavailable,
                "The token could not be introspected. Retry later",
            ),
            AuthError::Revoked => (InvalidToken, "The token has been revoked."),
            AuthError::LifetimeTooLong => (
                InvalidClaims,
                "The token's lifetime is longer than this service accepts.",
            ),
            AuthError::RevocationUnavailable => (
                RevocationUnavailable,
                "Revocations cannot be checked. Retry later",
            ),
        }
    }

    /// The JSON `code`.
    pub const fn code(&self) -> Code {
        self.code_and_description().0
    }

    /// The JSON `description`: a fixed sentence, never a value from the request.
    pub const fn description(&self) -> &'static str {
        self.code_and_description().1
    }
}

#[cfg(test)]
mod tests;
