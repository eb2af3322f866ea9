use super::*;
use crate::alg::KeyType;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const FIXTURE: &str = include_str!("../../tests/fixtures/jwks.json");

fn fixture_keys() -> Vec<serde_json::Value> {
    let doc: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    doc["keys"].as_array().unwrap().clone()
}

fn jwks(keys: &[serde_json::Value]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap()
}

#[test]
fn fixture_keys_of_every_type_load() {
    let (set, skipped) = KeySet::parse(FIXTURE.as_bytes()).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(set.len(), 5);
    assert_eq!(
        set.select(Some("rsa-1"), Algorithm::RS256)
            .unwrap()
            .key_type,
        KeyType::Rsa
    );
    assert!(set.select(Some("ec-256"), Algorithm::ES256).is_some());
    assert!(set.select(Some("ec-384"), Algorithm::ES384).is_some());
    assert!(set.select(Some("ed-1"), Algorithm::EdDSA).is_some());
}

#[test]
fn key_is_never_used_for_another_family() {
    let (set, _) = KeySet::parse(FIXTURE.as_bytes()).unwrap();
    assert!(set.select(Some("ec-256"), Algorithm::RS256).is_none());
    assert!(set.select(Some("rsa-1"), Algorithm::ES256).is_none());
    assert!(set.select(Some("ec-384"), Algorithm::ES256).is_none());
}

#[test]
fn pinned_alg_restricts_the_key() {
    let (set, _) = KeySet::parse(FIXTURE.as_bytes()).unwrap();
    // rsa-1 names RS256; rsa-2 names no alg and takes any RSA algorithm.
    assert!(set.select(Some("rsa-1"), Algorithm::PS256).is_none());
    assert!(set.select(Some("rsa-2"), Algorithm::PS256).is_some());
}

#[test]
fn token_without_kid_needs_exactly_one_fitting_key() {
    let (set, _) = KeySet::parse(FIXTURE.as_bytes()).unwrap();
    // Two RSA keys could verify RS256: ambiguous.
    assert!(set.select(None, Algorithm::RS256).is_none());
    // Only ec-256 fits ES256.
    assert_eq!(
        set.select(None, Algorithm::ES256).unwrap().kid.as_deref(),
        Some("ec-256")
    );
}

#[test]
fn one_bad_key_does_not_spoil_the_others() {
    let mut keys = fixture_keys();
    keys.push(serde_json::json!({"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"}));
    keys.push(serde_json::json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}));
    keys.push(
        serde_json::json!({"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"}),
    );
    keys.push(serde_json::json!("not an object"));
    let (set, skipped) = KeySet::parse(&jwks(&keys)).unwrap();
    assert_eq!(set.len(), 5);
    assert_eq!(skipped.len(), 4, "{skipped:?}");
    assert!(!set.contains_kid("hmac"));
}

#[test]
fn short_rsa_keys_are_refused() {
    let short = serde_json::json!({
        "kty": "RSA", "kid": "short", "e": "AQAB",
        "n": URL_SAFE_NO_PAD.encode([0xffu8; 128]),
    });
    let err = KeySet::parse(&jwks(&[short])).unwrap_err();
    assert!(err.to_string().contains("1024 bits"), "{err}");
}

#[test]
fn empty_or_foreign_documents_are_errors() {
    assert!(matches!(
        KeySet::parse(br#"{"keys": []}"#),
        Err(KeySetError::NoUsableKey(_))
    ));
    assert!(matches!(
        KeySet::parse(b"<html>"),
        Err(KeySetError::NotJwks(_))
    ));
    assert!(matches!(
        KeySet::parse(br#"{"keys": {}}"#),
        Err(KeySetError::NotJwks(_))
    ));
}

#[test]
fn alg_that_does_not_fit_the_key_type_is_skipped() {
    let mut rsa = fixture_keys()[0].clone();
    rsa["alg"] = "ES256".into();
    assert!(KeySet::parse(&jwks(&[rsa])).is_err());
}

#[tokio::test]
async fn fetch_errors_never_show_userinfo_or_query() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url: url::Url = format!("http://user:hunter2@127.0.0.1:{port}/jwks.json?api_key=s3cret")
        .parse()
        .unwrap();
    let settings = JwksSettings {
        refresh: Duration::from_secs(600),
        cooldown: Duration::from_secs(5),
        timeout: Duration::from_secs(2),
        max_bytes: 1 << 20,
        insecure_allow_http: false,
    };
    let cache = JwksCache::new(
        "http://admin:pw@127.0.0.1/",
        &url,
        &JwksSource::Uri(url.clone()),
        &settings,
    )
    .unwrap();
    let error = cache.refresh().await.unwrap_err().to_string();
    assert!(
        !error.contains("hunter2") && !error.contains("s3cret") && !error.contains("user"),
        "{error}"
    );
    assert!(
        error.starts_with(&format!("GET http://127.0.0.1:{port}/jwks.json: ")),
        "{error}"
    );
    assert_eq!(cache.label(), "http://127.0.0.1/");
}

#[test]
fn small_order_and_non_canonical_ed25519_keys_are_skipped_and_the_rest_loads() {
    let mut keys = fixture_keys();
    // The identity point: with it, R = identity and S = 0 verify any message.
    keys.push(serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "kid": "identity",
        "x": "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    }));
    // y = p: a non-canonical encoding of 0.
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    keys.push(serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "kid": "y-is-p", "x": URL_SAFE_NO_PAD.encode(p),
    }));
    let (set, skipped) = KeySet::parse(&jwks(&keys)).unwrap();
    assert_eq!(set.len(), 5, "the fixture keys still load");
    assert!(set.select(Some("ed-1"), Algorithm::EdDSA).is_some());
    assert!(!set.contains_kid("identity") && !set.contains_kid("y-is-p"));
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(skipped[0].contains("\"identity\"") && skipped[0].contains("small order"));
    assert!(skipped[1].contains("\"y-is-p\"") && skipped[1].contains("non-canonical"));
}

#[test]
fn ec_points_off_the_curve_are_refused() {
    let mut keys = fixture_keys();
    let mut off = keys[2].clone();
    assert_eq!(off["crv"], "P-256");
    off["kid"] = "off-curve".into();
    // (1, 1) is not on P-256.
    let mut one = [0u8; 32];
    one[31] = 1;
    off["x"] = URL_SAFE_NO_PAD.encode(one).into();
    off["y"] = URL_SAFE_NO_PAD.encode(one).into();
    keys.push(off);
    let (set, skipped) = KeySet::parse(&jwks(&keys)).unwrap();
    assert_eq!(set.len(), 5);
    assert!(!set.contains_kid("off-curve"));
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(
        skipped[0].contains("\"off-curve\"") && skipped[0].contains("invalid EcP256 key"),
        "{skipped:?}"
    );
}

#[test]
fn rsa_keys_under_2048_bits_are_skipped_and_the_rest_loads() {
    let mut keys = fixture_keys();
    let mut short = keys[0].clone();
    short["kid"] = "rsa-2047".into();
    // 2047 bits: the top bit of a 256-byte modulus clear.
    let mut n = [0xffu8; 256];
    n[0] = 0x7f;
    short["n"] = URL_SAFE_NO_PAD.encode(n).into();
    keys.push(short);
    let (set, skipped) = KeySet::parse(&jwks(&keys)).unwrap();
    assert_eq!(set.len(), 5);
    assert!(!set.contains_kid("rsa-2047"));
    assert!(skipped[0].contains("2047 bits"), "{skipped:?}");
}
