use super::*;
use serde_json::json;
use std::time::Duration;

const NOW: u64 = 1_800_000_000;
const NOW_F: f64 = NOW as f64;
const NOW_MS: u64 = NOW * 1000;

fn check(claims: &Claims, issuer: &IssuerConfig, now_ms: u64) -> Result<(), AuthError> {
    check_claims(claims, issuer, now_ms).map(|_| ())
}

fn issuer() -> IssuerConfig {
    IssuerConfig {
        issuer: "https://idp.example/".into(),
        issuer_url: "https://idp.example/".parse().unwrap(),
        audiences: vec!["api".into(), "other".into()],
        jwks: JwksSource::Discover,
        algorithms: vec![Algorithm::RS256],
        leeway: Duration::from_secs(60),
        require_access_token_type: false,
        dpop: Default::default(),
        introspection: None,
    }
}

fn claims(value: Value) -> Claims {
    value.as_object().unwrap().clone()
}

fn base() -> Value {
    json!({"iss": "https://idp.example/", "aud": "api", "exp": NOW + 300, "sub": "u1"})
}

fn with(key: &str, value: Value) -> Claims {
    let mut c = claims(base());
    c.insert(key.into(), value);
    c
}

fn without(key: &str) -> Claims {
    let mut c = claims(base());
    c.remove(key);
    c
}

#[test]
fn valid_claims_pass() {
    assert_eq!(check(&claims(base()), &issuer(), NOW_MS), Ok(()));
}

#[test]
fn expired_token_is_rejected_past_the_leeway_only() {
    let i = issuer();
    assert_eq!(check(&with("exp", json!(NOW - 59)), &i, NOW_MS), Ok(()));
    assert_eq!(
        check(&with("exp", json!(NOW - 61)), &i, NOW_MS),
        Err(AuthError::Expired)
    );
}

#[test]
fn future_nbf_is_rejected() {
    let i = issuer();
    assert_eq!(check(&with("nbf", json!(NOW + 30)), &i, NOW_MS), Ok(()));
    assert_eq!(
        check(&with("nbf", json!(NOW + 120)), &i, NOW_MS),
        Err(AuthError::NotYetValid)
    );
    assert_eq!(
        check(&with("nbf", json!("soon")), &i, NOW_MS),
        Err(AuthError::MissingClaim)
    );
}

#[test]
fn numeric_dates_are_whole_seconds() {
    let i = issuer();
    for bad in [
        json!(NOW_F + 300.5),
        json!(18446744073709551616.0_f64),
        json!(-5),
        json!(1e300),
    ] {
        assert_eq!(
            check(&with("exp", bad.clone()), &i, NOW_MS),
            Err(AuthError::MissingClaim),
            "{bad}"
        );
    }
}

#[test]
fn exp_and_aud_are_required() {
    let i = issuer();
    assert_eq!(
        check(&without("exp"), &i, NOW_MS),
        Err(AuthError::MissingClaim)
    );
    assert_eq!(
        check(&without("aud"), &i, NOW_MS),
        Err(AuthError::MissingClaim)
    );
    assert_eq!(
        check(&with("exp", json!("1800000300")), &i, NOW_MS),
        Err(AuthError::MissingClaim)
    );
}

#[test]
fn aud_may_be_a_string_or_an_array() {
    let i = issuer();
    assert_eq!(
        check(&with("aud", json!(["x", "other"])), &i, NOW_MS),
        Ok(())
    );
    assert_eq!(
        check(&with("aud", json!(["x", "y"])), &i, NOW_MS),
        Err(AuthError::WrongAudience)
    );
    assert_eq!(
        check(&with("aud", json!([])), &i, NOW_MS),
        Err(AuthError::WrongAudience)
    );
    assert_eq!(
        check(&with("aud", json!("nope")), &i, NOW_MS),
        Err(AuthError::WrongAudience)
    );
    assert_eq!(
        check(&with("aud", json!(["api", 7])), &i, NOW_MS),
        Err(AuthError::MissingClaim)
    );
}

#[test]
fn wrong_issuer_is_rejected() {
    assert_eq!(
        check(
            &with("iss", json!("https://evil.example/")),
            &issuer(),
            NOW_MS
        ),
        Err(AuthError::WrongIssuer)
    );
}

#[test]
fn none_and_hmac_algorithms_are_refused() {
    for alg in [
        "none", "None", "NONE", "HS256", "HS384", "HS512", "rs256", "",
    ] {
        assert_eq!(
            asymmetric_algorithm(alg),
            Err(AuthError::DisallowedAlgorithm),
            "{alg}"
        );
    }
    assert_eq!(asymmetric_algorithm("ES384"), Ok(Algorithm::ES384));
}

#[test]
fn header_must_be_a_strict_object() {
    let parse = |s: &str| JoseHeader::parse(s.as_bytes()).map(|h| h.alg);
    assert_eq!(parse(r#"{"alg":"RS256","kid":"a"}"#), Ok("RS256".into()));
    for bad in [
        r#"{"alg":"none","alg":"RS256"}"#,
        r#"["RS256","rsa-1"]"#,
        r#"{"kid":"a"}"#,
        r#"{"alg":7}"#,
        r#"{"alg":"RS256","kid":7}"#,
        r#"{"alg":"RS256","typ":null}"#,
    ] {
        assert_eq!(parse(bad), Err(AuthError::Malformed), "{bad}");
    }
    let deep = format!(
        r#"{{"alg":"RS256","x":{}1{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert_eq!(parse(&deep), Err(AuthError::Malformed));
}

#[test]
fn access_token_type_follows_rfc9068() {
    assert!(is_access_token_type(Some("at+jwt")));
    assert!(is_access_token_type(Some("application/AT+JWT")));
    assert!(!is_access_token_type(Some("JWT")));
    assert!(!is_access_token_type(None));
}
