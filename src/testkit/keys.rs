//! The fixture keys in `tests/fixtures/`: private PEMs and the public JWKS that lists them
//! by `kid`. Tests, benches and the fuzz targets sign with these, so a token is valid
//! wherever that JWKS is trusted.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::Value;

use crate::jwks::{JwksSettings, KeySet};
use crate::verify::{Issuer, IssuerConfig, Verifier};

/// The fixture directory, absolute, so any crate's test or bench finds it.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// A signing key with its `kid`, default algorithm and public JWK.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    /// The public JWK from `tests/fixtures/jwks.json`; `Null` for a key that is not a
    /// fixture.
    pub jwk: Value,
}

impl TestKey {
    /// A key from PEM (PKCS#8 or, for RSA, PKCS#1) that signs as `alg` under `kid`.
    pub fn from_pem(
        kid: &str,
        alg: Algorithm,
        pem: &[u8],
    ) -> jsonwebtoken::errors::Result<TestKey> {
        let encoding = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => EncodingKey::from_rsa_pem(pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
            _ => EncodingKey::from_ec_pem(pem),
        }?;
        Ok(TestKey {
            kid: kid.into(),
            alg,
            encoding,
            jwk: Value::Null,
        })
    }
}

/// Loads a fixture key by its kid: `rsa-1`, `rsa-2` (RS256), `ec-256` (ES256), `ec-384`
/// (ES384), `ed-1` (EdDSA).
pub fn key(kid: &str) -> TestKey {
    let (file, alg) = match kid {
        "rsa-1" => ("rsa1.pem", Algorithm::RS256),
        "rsa-2" => ("rsa2.pem", Algorithm::RS256),
        "ec-256" => ("ec256.pem", Algorithm::ES256),
        "ec-384" => ("ec384.pem", Algorithm::ES384),
        "ed-1" => ("ed25519.pem", Algorithm::EdDSA),
        other => panic!("no fixture key {other}"),
    };
    let pem = std::fs::read(format!("{FIXTURES}/{file}")).unwrap();
    let mut key = TestKey::from_pem(kid, alg, &pem).unwrap();
    let jwks: Value = serde_json::from_slice(&fixture_jwks()).unwrap();
    key.jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap()
        .clone();
    key
}

/// The bytes of `tests/fixtures/jwks.json`.
pub fn fixture_jwks() -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/jwks.json")).unwrap()
}

/// A verifier for `issuer` holding the fixture JWKS, parsed once and never fetched: the
/// Check path without the network, for benches and fuzzing. An issuer that introspects
/// gets its introspection client.
pub fn fixed_verifier(issuer: &IssuerConfig, settings: &JwksSettings) -> Arc<Verifier> {
    let (keys, _) = KeySet::parse(&fixture_jwks()).expect("the fixture JWKS parses");
    let jwks = issuer.fixed_jwks_cache(settings, keys).expect("fixed keys");
    let introspector = issuer.introspector(true).expect("an introspection client");
    Arc::new(Verifier::new(vec![Issuer {
        config: issuer.clone(),
        jwks,
        introspector,
    }]))
}
