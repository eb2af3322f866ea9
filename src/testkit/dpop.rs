//! DPoP proofs (RFC 9449) and the hashes that bind tokens to a key or a certificate, written
//! from the RFCs independently of the service's own code, so that a test states what a
//! client sends.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use super::keys::{TestKey, key};
use super::mint::{now, sign_raw};

/// A client's proof key: a fixture private key and its public JWK (no `kid`, `alg` or
/// `use`, as a client puts it in a proof header).
#[derive(Clone)]
pub struct ProofKey {
    pub key: TestKey,
    pub jwk: Value,
}

/// The proof key made from fixture key `kid` (`ec-256`, `ec-384`, `rsa-1`, `rsa-2`, `ed-1`).
pub fn proof_key(kid: &str) -> ProofKey {
    let key = key(kid);
    let mut jwk = key.jwk.clone();
    let members = jwk.as_object_mut().expect("a fixture JWK is an object");
    for name in ["kid", "alg", "use", "key_ops"] {
        members.remove(name);
    }
    ProofKey { key, jwk }
}

impl ProofKey {
    /// The RFC 7638 SHA-256 thumbprint of the public key: what a bound token's `cnf.jkt`
    /// holds.
    pub fn thumbprint(&self) -> String {
        jwk_thumbprint(&self.jwk)
    }

    /// A fresh proof for `method` and `url` (`ath` of `access_token` when given), signed
    /// with this key's own algorithm.
    pub fn proof(&self, method: &str, url: &str, access_token: Option<&str>) -> String {
        let claims = proof_claims(method, url, access_token);
        self.sign(&self.header(), &claims)
    }

    /// The proof header for this key: `typ: dpop+jwt`, its `alg` and public `jwk`.
    pub fn header(&self) -> Value {
        json!({
            "typ": "dpop+jwt",
            "alg": alg_name(self.key.alg),
            "jwk": self.jwk,
        })
    }

    /// Signs any header and claims with this key's algorithm (for hostile proofs).
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        sign_raw(
            &self.key,
            self.key.alg,
            &serde_json::to_vec(header).unwrap(),
            &serde_json::to_vec(claims).unwrap(),
        )
    }
}

/// The claims of a fresh proof: a random `jti`, `iat` now, `htm`, `htu` and (for a request
/// to a resource) `ath`.
pub fn proof_claims(method: &str, url: &str, access_token: Option<&str>) -> Value {
    let mut claims = json!({
        "jti": unique_jti(),
        "htm": method,
        "htu": url,
        "iat": now(),
    });
    if let Some(token) = access_token {
        claims["ath"] = Value::String(ath(token));
    }
    claims
}

/// A `jti` no other proof of this process has used.
pub fn unique_jti() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("jti-{}-{}-{n}", std::process::id(), now())
}

/// `ath`: base64url SHA-256 of the access token (RFC 9449 §4.2).
pub fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, access_token.as_bytes()))
}

/// RFC 7638: SHA-256 over the required members of the JWK, in lexicographic order, no
/// whitespace.
pub fn jwk_thumbprint(jwk: &Value) -> String {
    let text = |name: &str| {
        jwk[name]
            .as_str()
            .expect("a required JWK member")
            .to_owned()
    };
    let canonical = match text("kty").as_str() {
        "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, text("e"), text("n")),
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            text("crv"),
            text("x"),
            text("y")
        ),
        "OKP" => format!(
            r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
            text("crv"),
            text("x")
        ),
        other => panic!("no thumbprint for kty {other}"),
    };
    let bytes = canonical.into_bytes();
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, &bytes))
}

/// `x5t#S256` of a DER certificate (RFC 8705 §3.1).
pub fn certificate_thumbprint(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, der))
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        other => panic!("no JWS name for {other:?}"),
    }
}
