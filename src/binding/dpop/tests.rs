use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::testkit::{self, ProofKey, proof_claims, proof_key};

const TOKEN: &str = "header.payload.signature";
const URL: &str = "https://api.example.com/api/messages";

fn settings() -> DpopSettings {
    DpopSettings {
        algorithms: ["ES256", "ES384", "EdDSA", "RS256", "PS256"]
            .iter()
            .map(|n| crate::alg::asymmetric_algorithm(n).unwrap())
            .collect(),
        max_age: Duration::from_secs(60),
        clock_skew: Duration::from_secs(5),
        public_base_url: None,
    }
}

fn target() -> ProofTarget<'static> {
    ProofTarget {
        method: "GET",
        scheme: Some("https"),
        host: "api.example.com",
        path: "/api/messages?page=2",
        access_token: TOKEN,
    }
}

fn now_ms() -> u64 {
    testkit::now() * 1000
}

fn check(proofs: &[&str]) -> Result<CheckedProof, AuthError> {
    check_with(proofs, &target(), &settings())
}

fn check_with(
    proofs: &[&str],
    target: &ProofTarget<'_>,
    settings: &DpopSettings,
) -> Result<CheckedProof, AuthError> {
    check_proof(
        proofs.iter().map(|p| p.as_bytes()),
        target,
        settings,
        8192,
        now_ms(),
    )
}

fn valid(key: &ProofKey) -> String {
    key.proof("GET", URL, Some(TOKEN))
}

fn refused(result: Result<CheckedProof, AuthError>) -> &'static str {
    match result {
        Err(AuthError::DpopProof(why)) => why,
        other => panic!("expected a refused proof, got {other:?}"),
    }
}

#[test]
fn proofs_of_every_accepted_key_type_verify() {
    for kid in ["ec-256", "ec-384", "rsa-1", "ed-1"] {
        let key = proof_key(kid);
        let checked = check(&[&valid(&key)]).unwrap_or_else(|e| panic!("{kid}: {e}"));
        assert_eq!(checked.jkt, key.thumbprint(), "{kid}");
    }
}

/// RFC 7638 §3.1's worked example.
#[test]
fn thumbprint_matches_rfc7638_example() {
    let jwk = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    assert_eq!(
        jwk_thumbprint(jwk.as_object().unwrap()).as_deref(),
        Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
    );
}

#[test]
fn one_dpop_header_exactly() {
    let key = proof_key("ec-256");
    let (a, b) = (valid(&key), valid(&key));
    assert_eq!(refused(check(&[])), "no DPoP header");
    assert_eq!(refused(check(&[&a, &b])), "more than one DPoP header");
    assert_eq!(
        refused(check(&[&format!("{a},{b}")])),
        "more than one DPoP header"
    );
    assert_eq!(refused(check(&["a.b"])), "DPoP header is not a compact JWS");
    assert_eq!(
        refused(check(&["a.b.c.d"])),
        "DPoP header is not a compact JWS"
    );
    assert_eq!(
        refused(check(&["!!.e30.AA"])),
        "a proof segment is not base64url"
    );
}

#[test]
fn header_must_be_a_public_key_proof() {
    let key = proof_key("ec-256");
    let claims = proof_claims("GET", URL, Some(TOKEN));
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut header = key.header();
        edit(&mut header);
        check(&[&key.sign(&header, &claims)])
    };
    assert_eq!(
        refused(with(&|h| h["typ"] = json!("JWT"))),
        "typ is not dpop+jwt"
    );
    assert_eq!(
        refused(with(&|h| {
            h.as_object_mut().unwrap().remove("typ");
        })),
        "typ is not dpop+jwt"
    );
    assert_eq!(
        refused(with(&|h| h["crit"] = json!(["exp"]))),
        "unsupported critical header"
    );
    assert_eq!(
        refused(with(&|h| {
            h.as_object_mut().unwrap().remove("jwk");
        })),
        "no jwk header"
    );
    assert_eq!(
        refused(with(&|h| h["jwk"]["d"] = json!("AAAA"))),
        "jwk holds a private key"
    );
    assert_eq!(
        refused(with(&|h| h["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"}))),
        "jwk holds a private key"
    );
    assert_eq!(
        refused(with(&|h| h["jwk"]["alg"] = json!("ES384"))),
        "alg does not fit the jwk"
    );
    // The header's jwk is another key than the one that signed.
    assert_eq!(
        refused(with(&|h| h["jwk"] = proof_key("ec-384").jwk)),
        "jwk is not a usable public key"
    );
    let rsa = proof_key("rsa-1");
    let other = proof_key("rsa-2");
    let mut header = rsa.header();
    header["jwk"] = other.jwk.clone();
    assert_eq!(
        refused(check(&[&rsa.sign(&header, &claims)])),
        "signature does not verify with the jwk"
    );
}

#[test]
fn symmetric_none_and_unlisted_algorithms_are_refused() {
    let key = proof_key("ec-256");
    let claims = proof_claims("GET", URL, Some(TOKEN));
    let body = |header: &Value| {
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
        )
    };
    let mut hs = key.header();
    hs["alg"] = json!("HS256");
    let secret = jsonwebtoken::EncodingKey::from_secret(b"secret").unwrap();
    let input = body(&hs);
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &secret, jsonwebtoken::Algorithm::HS256)
            .unwrap();
    assert_eq!(
        refused(check(&[&format!("{input}.{signature}")])),
        "alg is not an accepted proof algorithm"
    );
    let mut none = key.header();
    none["alg"] = json!("none");
    assert_eq!(
        refused(check(&[&format!("{}.AA", body(&none))])),
        "alg is not an accepted proof algorithm"
    );
    let only_rsa = DpopSettings {
        algorithms: vec![jsonwebtoken::Algorithm::RS256],
        ..settings()
    };
    assert_eq!(
        refused(check_with(&[&valid(&key)], &target(), &only_rsa)),
        "alg is not an accepted proof algorithm"
    );
}

#[test]
fn proof_must_name_this_request() {
    let key = proof_key("ec-256");
    let for_request = |method: &str, url: &str| check(&[&key.proof(method, url, Some(TOKEN))]);
    assert_eq!(
        refused(for_request("POST", URL)),
        "htm is not the request method"
    );
    assert_eq!(
        refused(for_request("get", URL)),
        "htm is not the request method"
    );
    for other in [
        "https://api.example.com/api/messages/1",
        "https://api.example.com/api",
        "http://api.example.com/api/messages",
        "https://api.example.com:8443/api/messages",
        "https://evil.example.com/api/messages",
        "https://user@api.example.com/api/messages",
        "/api/messages",
        "https://api.example.com/api/%6Dessages%2F",
    ] {
        assert_eq!(
            refused(for_request("GET", other)),
            "htu is not the request URL",
            "{other}"
        );
    }
    // RFC 3986 §6.2.2 and §6.2.3 equivalents; the query and fragment are ignored.
    for same in [
        "https://api.example.com/api/messages",
        "HTTPS://API.Example.COM/api/messages",
        "https://api.example.com:443/api/messages",
        "https://api.example.com/api/%6Dessages",
        "https://api.example.com/api/./messages",
        "https://api.example.com/api/messages?page=1#top",
    ] {
        assert!(for_request("GET", same).is_ok(), "{same}");
    }
}

#[test]
fn request_url_comes_from_the_public_base_when_configured() {
    let key = proof_key("ec-256");
    let behind = DpopSettings {
        public_base_url: Some(url::Url::parse("https://public.example.com/v1").unwrap()),
        ..settings()
    };
    let internal = ProofTarget {
        scheme: Some("http"),
        host: "authz.internal:8080",
        path: "/api/messages",
        ..target()
    };
    let proof = key.proof(
        "GET",
        "https://public.example.com/v1/api/messages",
        Some(TOKEN),
    );
    assert!(check_with(&[&proof], &internal, &behind).is_ok());
    assert_eq!(
        refused(check_with(&[&valid(&key)], &internal, &behind)),
        "htu is not the request URL"
    );
    let unknown = ProofTarget {
        scheme: None,
        ..target()
    };
    assert_eq!(
        refused(check_with(&[&valid(&key)], &unknown, &settings())),
        "the request scheme is not known"
    );
}

#[test]
fn a_host_outside_the_authority_grammar_never_reaches_the_comparison() {
    // Each host would, glued to the path and re-parsed as a URL, read as the origin the
    // proof names with another path, port or user: here it is refused before any
    // comparison.
    let key = proof_key("ec-256");
    for (host, htu) in [
        ("api.example.com?", "https://api.example.com/"),
        ("api.example.com#", "https://api.example.com/"),
        ("api.example.com?x=1", "https://api.example.com/"),
        ("x@api.example.com", "https://api.example.com/api/messages"),
        (
            "api.example.com/api/private#",
            "https://api.example.com/api/private",
        ),
        (
            "api.example.com:443/",
            "https://api.example.com/api/messages",
        ),
        (
            "api.example.com:00443",
            "https://api.example.com/api/messages",
        ),
        (
            "api.example.com:65979",
            "https://api.example.com:443/api/messages",
        ),
        ("api.example.com\\", "https://api.example.com/api/messages"),
        ("api example.com", "https://api.example.com/api/messages"),
        ("127.1", "https://127.0.0.1/api/messages"),
        ("0x7f.0.0.1", "https://127.0.0.1/api/messages"),
        ("[::1", "https://[::1]/api/messages"),
        ("", "https:///api/messages"),
    ] {
        let target = ProofTarget { host, ..target() };
        let proof = key.proof("GET", htu, Some(TOKEN));
        let why = refused(check_with(&[&proof], &target, &settings()));
        assert!(
            why == "the request host is not a plain name or address"
                || why == "htu is not the request URL",
            "{host:?}: {why}"
        );
        assert_ne!(
            host.is_empty(),
            why == "the request host is not a plain name or address",
            "{host:?}"
        );
    }
    // The same origin in its other spellings is one reading.
    for (host, htu) in [
        ("API.example.com", "https://api.example.com/api/messages"),
        ("api.example.com.", "https://api.example.com/api/messages"),
        (
            "api.example.com:443",
            "https://api.example.com/api/messages",
        ),
        (
            "api.example.com",
            "https://api.example.com:443/api/messages",
        ),
        ("127.0.0.1:443", "https://127.0.0.1/api/messages"),
        ("[::1]", "https://[0:0::1]/api/messages"),
    ] {
        let target = ProofTarget { host, ..target() };
        let proof = key.proof("GET", htu, Some(TOKEN));
        assert!(
            check_with(&[&proof], &target, &settings()).is_ok(),
            "{host}"
        );
    }
}

#[test]
fn iat_must_be_recent() {
    let key = proof_key("ec-256");
    let at = |iat: Value| {
        let mut claims = proof_claims("GET", URL, Some(TOKEN));
        claims["iat"] = iat;
        check(&[&key.sign(&key.header(), &claims)])
    };
    let now = testkit::now();
    assert!(at(json!(now - 60)).is_ok());
    assert!(at(json!(now + 4)).is_ok());
    assert_eq!(refused(at(json!(now - 70))), "iat is too old");
    assert_eq!(refused(at(json!(now + 30))), "iat is in the future");
    assert_eq!(
        refused(at(json!("now"))),
        "iat is missing or not a whole number"
    );
    assert_eq!(
        refused(at(json!(now as f64 + 0.5))),
        "iat is missing or not a whole number"
    );
}

#[test]
fn ath_and_jti_are_required() {
    let key = proof_key("ec-256");
    let without = |name: &str| {
        let mut claims = proof_claims("GET", URL, Some(TOKEN));
        claims.as_object_mut().unwrap().remove(name);
        check(&[&key.sign(&key.header(), &claims)])
    };
    assert_eq!(refused(without("ath")), "ath is missing");
    assert_eq!(refused(without("jti")), "jti is missing or too long");
    assert_eq!(refused(without("htu")), "htu is missing");
    assert_eq!(refused(without("htm")), "htm is not the request method");
    let other_token = key.proof("GET", URL, Some("another.access.token"));
    assert_eq!(
        refused(check(&[&other_token])),
        "ath is not the hash of the access token"
    );
    let mut long = proof_claims("GET", URL, Some(TOKEN));
    long["jti"] = json!("x".repeat(257));
    assert_eq!(
        refused(check(&[&key.sign(&key.header(), &long)])),
        "jti is missing or too long"
    );
}

#[test]
fn replay_key_is_per_key_and_jti() {
    let key = proof_key("ec-256");
    let claims = proof_claims("GET", URL, Some(TOKEN));
    let first = check(&[&key.sign(&key.header(), &claims)]).unwrap();
    let again = check(&[&key.sign(&key.header(), &claims)]).unwrap();
    assert_eq!(first.replay_key, again.replay_key);
    let other = check(&[&valid(&key)]).unwrap();
    assert_ne!(first.replay_key, other.replay_key);
    let ed = proof_key("ed-1");
    let same_jti = check(&[&ed.sign(&ed.header(), &claims)]).unwrap();
    assert_ne!(first.replay_key, same_jti.replay_key);
}

#[test]
fn mode_and_ttl() {
    assert_eq!(DpopMode::parse("required"), Ok(DpopMode::Required));
    assert!(DpopMode::parse("on").is_err());
    let window = settings().window();
    assert_eq!((window.max_age_ms, window.ttl_ms()), (65_000, 70_001));
    assert_eq!(settings().algs(), "ES256 ES384 EdDSA RS256 PS256");
}
