use super::*;
use crate::error::AuthError;

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
        AuthError::TokenSentTwice,
        AuthError::BadTokenValue,
        AuthError::QueryTokenNotRemovable,
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
        AuthError::AmbiguousRequest("dot segment in path"),
        AuthError::ClaimsNotSatisfied,
        AuthError::JwksUnavailable,
        AuthError::DpopProof("iat is too old"),
        AuthError::DpopRequired,
        AuthError::BoundTokenAsBearer,
        AuthError::TokenNotDpopBound,
        AuthError::CertificateBinding("no client certificate"),
        AuthError::UnsupportedConfirmation,
        AuthError::ReplayStoreUnavailable,
        AuthError::Inactive,
        AuthError::OpaqueNotAccepted,
        AuthError::IntrospectionUnavailable("timeout"),
        AuthError::Revoked,
        AuthError::LifetimeTooLong,
        AuthError::RevocationUnavailable,
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
    let body: serde_json::Value = serde_json::from_str(&AuthError::Expired.json_body()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"code": "token_expired", "description": "token is expired"})
    );
}

const API: ChallengeTo<'static> = ChallengeTo {
    realm: "api",
    dpop_algs: None,
    dpop_request: false,
    resource_metadata: None,
};

#[test]
fn challenge_follows_rfc6750() {
    assert_eq!(
        AuthError::MissingHeader.www_authenticate(&API),
        ["Bearer realm=\"api\""]
    );
    let bad = AuthError::BadSignature.www_authenticate(&API);
    assert!(bad[0].starts_with("Bearer realm=\"api\", error=\"invalid_token\""));
    let scope = AuthError::InsufficientScope {
        required: "a b".into(),
    }
    .www_authenticate(&API);
    assert_eq!(
        scope,
        ["Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"a b\""]
    );
    assert!(AuthError::JwksUnavailable.www_authenticate(&API).is_empty());
    assert!(
        AuthError::ReplayStoreUnavailable
            .www_authenticate(&API)
            .is_empty()
    );
}

/// RFC 9449 §7.1: where DPoP is accepted, a bearer request is offered a `DPoP` challenge
/// too (without error); a DPoP request, or a failure only DPoP fixes, gets the `DPoP`
/// challenge alone, with the error and `algs`. RFC 9728 §5.1 names the metadata in each.
#[test]
fn dpop_and_resource_metadata_challenges() {
    let dpop = ChallengeTo {
        dpop_algs: Some("ES256 EdDSA"),
        resource_metadata: Some("https://api.example.com/.well-known/oauth-protected-resource"),
        ..API
    };
    let meta = "resource_metadata=\"https://api.example.com/.well-known/oauth-protected-resource\"";
    assert_eq!(
        AuthError::MissingHeader.www_authenticate(&dpop),
        [
            format!("Bearer realm=\"api\", {meta}"),
            format!("DPoP realm=\"api\", algs=\"ES256 EdDSA\", {meta}"),
        ]
    );
    let proof = AuthError::DpopProof("htu is not the request URL").www_authenticate(&dpop);
    assert_eq!(proof.len(), 1);
    assert!(
        proof[0].starts_with("DPoP realm=\"api\", error=\"invalid_dpop_proof\""),
        "{proof:?}"
    );
    assert!(proof[0].contains("algs=\"ES256 EdDSA\""), "{proof:?}");
    for only_dpop in [AuthError::BoundTokenAsBearer, AuthError::DpopRequired] {
        let challenge = only_dpop.www_authenticate(&dpop);
        assert_eq!(challenge.len(), 1);
        assert!(challenge[0].starts_with("DPoP realm=\"api\", error=\"invalid_token\""));
    }
    let expired = AuthError::Expired.www_authenticate(&ChallengeTo {
        dpop_request: true,
        ..dpop
    });
    assert_eq!(expired.len(), 1);
    assert!(expired[0].starts_with("DPoP realm=\"api\", error=\"invalid_token\""));
}
