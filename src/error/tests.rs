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
    ];
    for error in all {
        let wire = error.wire();
        let body: serde_json::Value = serde_json::from_str(&error.json_body()).unwrap();
        assert_eq!(body["code"], wire.code);
        assert_eq!(body["description"], wire.description);
    }
}

#[test]
fn every_code_is_listed_once_in_order() {
    for (i, code) in Code::ALL.iter().enumerate() {
        assert_eq!(code.index(), i);
    }
    let mut labels: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), Code::ALL.len());
}

/// The README's error table is part of the API: each row's HTTP status and
/// `CheckResponse.status` must be what [`Code`] gives its `code`, and every code
/// must have a row.
#[test]
fn readme_error_table_agrees_with_the_codes() {
    let readme = include_str!("../../docs/error-codes.md");
    let section = readme
        .split("# Error codes\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/error-codes.md has an `# Error codes` section");
    let grpc_name = |code: i32| match code {
        UNAUTHENTICATED => "UNAUTHENTICATED",
        PERMISSION_DENIED => "PERMISSION_DENIED",
        UNAVAILABLE => "UNAVAILABLE",
        other => panic!("no name for gRPC code {other}"),
    };
    let mut seen = std::collections::HashSet::new();
    let rows = section
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(2) // the header and the `---` line
        .collect::<Vec<_>>();
    assert!(rows.len() >= Code::ALL.len(), "{rows:?}");
    for row in rows {
        // The condition may hold `|` only inside backticks; the last three cells don't.
        let cells: Vec<&str> = row
            .trim_matches('|')
            .rsplitn(4, '|')
            .map(str::trim)
            .collect();
        let [status, code, http, condition] = cells[..] else {
            panic!("malformed row: {row}");
        };
        let name = code.trim_matches('`');
        let code = Code::ALL
            .into_iter()
            .find(|c| c.as_str() == name)
            .unwrap_or_else(|| panic!("README names unknown code `{name}`: {row}"));
        assert_eq!(
            http,
            code.http_status().to_string(),
            "HTTP status of {condition}"
        );
        assert_eq!(
            status,
            grpc_name(code.grpc_code()),
            "gRPC status of {condition}"
        );
        seen.insert(code);
    }
    for code in Code::ALL {
        assert!(
            seen.contains(&code),
            "README's error table has no row for {code:?}"
        );
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
