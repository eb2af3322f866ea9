//! JSON Web Key Sets: parsing a JWKS document into verification keys, and choosing the key
//! for a token. Fetching and caching live in [`cache`].
//!
//! Keys are parsed once, when a JWKS is loaded, never per request. A bad key is skipped
//! with a reason and the good ones still load. Only signature keys of the types this
//! service verifies are kept; RSA keys shorter than 2048 bits are refused.

mod cache;

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

pub use cache::{JwksCache, JwksError, KeyLookup};

/// The curve or key type, which fixes the algorithms a key can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyType {
    /// Whether a key of this type may verify `alg`. This is what stops algorithm confusion:
    /// an EC key is never used for an RSA `alg`, whatever the token says.
    pub fn verifies(self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (
                KeyType::Rsa,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ) | (KeyType::EcP256, Algorithm::ES256)
                | (KeyType::EcP384, Algorithm::ES384)
                | (KeyType::Ed25519, Algorithm::EdDSA)
        )
    }
}

/// One verification key from a JWKS.
pub struct VerifyingKey {
    /// `kid`, when the JWK has one.
    pub kid: Option<String>,
    pub key_type: KeyType,
    /// `alg` pinned by the JWK, when it names one.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
    /// Identity of the key material (type and public parameters), stable across JWKS
    /// refreshes: a cached verification stays valid only while the same key is published.
    pub fingerprint: u64,
}

impl VerifyingKey {
    /// Whether this key may verify a token signed with `alg`: the key type must fit, and a
    /// JWK that names an `alg` is used for that algorithm only.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.key_type.verifies(alg) && self.alg.is_none_or(|pinned| pinned == alg)
    }
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("key_type", &self.key_type)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// An immutable, parsed key set. Replaced whole on refresh, never mutated.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
    by_kid: HashMap<String, Vec<usize>>,
}

/// Why a JWKS document could not be used at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeySetError {
    #[error("not a JWKS: {0}")]
    NotJwks(String),
    #[error("no usable signing key (skipped: {0})")]
    NoUsableKey(String),
}

/// The JWK members this service reads. Unknown members are ignored, as RFC 7517 requires.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// Parses a JWKS document. Returns the key set and one line per skipped key.
    ///
    /// Fails only when the document is not a JWKS or no key is usable, so that a broken
    /// document never replaces a working key set.
    pub fn parse(body: &[u8]) -> Result<(KeySet, Vec<String>), KeySetError> {
        let raw: RawJwks =
            serde_json::from_slice(body).map_err(|e| KeySetError::NotJwks(e.to_string()))?;
        let mut set = KeySet::default();
        let mut skipped = Vec::new();
        for (index, value) in raw.keys.into_iter().enumerate() {
            match parse_key(value) {
                Ok(key) => set.push(key),
                Err(reason) => skipped.push(format!("key {index}: {reason}")),
            }
        }
        if set.keys.is_empty() {
            let reasons = if skipped.is_empty() {
                "the set is empty".to_owned()
            } else {
                skipped.join("; ")
            };
            return Err(KeySetError::NoUsableKey(reasons));
        }
        Ok((set, skipped))
    }

    fn push(&mut self, key: VerifyingKey) {
        if let Some(kid) = &key.kid {
            self.by_kid
                .entry(kid.clone())
                .or_default()
                .push(self.keys.len());
        }
        self.keys.push(key);
    }

    /// The key for a token's `kid` and `alg`.
    ///
    /// With a `kid`, the first key with that id that accepts `alg`. Without one, the only
    /// key that accepts `alg`: a token without `kid` is refused when two keys could fit,
    /// rather than trying each.
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> Option<&VerifyingKey> {
        match kid {
            Some(kid) => self
                .by_kid
                .get(kid)?
                .iter()
                .map(|&i| &self.keys[i])
                .find(|k| k.accepts(alg)),
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.accepts(alg));
                let only = fitting.next()?;
                fitting.next().is_none().then_some(only)
            }
        }
    }

    /// Whether any key carries this `kid`.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn parse_key(value: serde_json::Value) -> Result<VerifyingKey, String> {
    let raw: RawJwk = serde_json::from_value(value).map_err(|e| format!("not a JWK: {e}"))?;
    let kid = raw.kid.clone();
    let label = kid
        .as_deref()
        .map(|k| format!("kid {k:?}: "))
        .unwrap_or_default();
    if let Some(use_) = raw.use_.as_deref().filter(|u| *u != "sig") {
        return Err(format!("{label}use is {use_:?}, not \"sig\""));
    }
    if raw
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        return Err(format!("{label}key_ops does not include \"verify\""));
    }
    let alg = match raw.alg.as_deref() {
        None => None,
        Some(name) => Some(
            crate::config::parse_algorithms(&[name]).map_err(|_| {
                format!("{label}alg {name:?} is not a supported signature algorithm")
            })?[0],
        ),
    };
    let need = |field: &Option<String>, name: &str| -> Result<String, String> {
        field
            .clone()
            .ok_or_else(|| format!("{label}{} key without {name:?}", raw.kty))
    };
    let (key_type, key) = match raw.kty.as_str() {
        "RSA" => {
            let n = need(&raw.n, "n")?;
            let e = need(&raw.e, "e")?;
            let modulus = URL_SAFE_NO_PAD
                .decode(&n)
                .map_err(|_| format!("{label}n is not base64url"))?;
            let bits = significant_bits(&modulus);
            if bits < 2048 {
                return Err(format!(
                    "{label}RSA modulus has {bits} bits, at least 2048 are required"
                ));
            }
            let key = DecodingKey::from_rsa_components(&n, &e)
                .map_err(|e| format!("{label}invalid RSA key: {e}"))?;
            (KeyType::Rsa, key)
        }
        "EC" => {
            let key_type = match raw.crv.as_deref() {
                Some("P-256") => KeyType::EcP256,
                Some("P-384") => KeyType::EcP384,
                other => return Err(format!("{label}EC curve {other:?} is not supported")),
            };
            let x = need(&raw.x, "x")?;
            let y = need(&raw.y, "y")?;
            let coordinate = if key_type == KeyType::EcP256 { 32 } else { 48 };
            for (name, value) in [("x", &x), ("y", &y)] {
                let bytes = URL_SAFE_NO_PAD
                    .decode(value)
                    .map_err(|_| format!("{label}{name} is not base64url"))?;
                if bytes.len() != coordinate {
                    return Err(format!(
                        "{label}{name} has {} bytes, expected {coordinate}",
                        bytes.len()
                    ));
                }
            }
            let key = DecodingKey::from_ec_components(&x, &y)
                .map_err(|e| format!("{label}invalid EC key: {e}"))?;
            (key_type, key)
        }
        "OKP" => {
            if raw.crv.as_deref() != Some("Ed25519") {
                return Err(format!("{label}OKP curve {:?} is not supported", raw.crv));
            }
            let x = need(&raw.x, "x")?;
            let bytes = URL_SAFE_NO_PAD
                .decode(&x)
                .map_err(|_| format!("{label}x is not base64url"))?;
            if bytes.len() != 32 {
                return Err(format!("{label}x has {} bytes, expected 32", bytes.len()));
            }
            let key = DecodingKey::from_ed_components(&x)
                .map_err(|e| format!("{label}invalid Ed25519 key: {e}"))?;
            (KeyType::Ed25519, key)
        }
        other => return Err(format!("{label}kty {other:?} is not supported")),
    };
    if let Some(alg) = alg.filter(|a| !key_type.verifies(*a)) {
        return Err(format!(
            "{label}alg {alg:?} does not fit a {key_type:?} key"
        ));
    }
    let fingerprint = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&raw.kty, &raw.crv, &raw.n, &raw.e, &raw.x, &raw.y, alg).hash(&mut hasher);
        hasher.finish()
    };
    Ok(VerifyingKey {
        kid,
        key_type,
        alg,
        key,
        fingerprint,
    })
}

fn significant_bits(bytes: &[u8]) -> usize {
    match bytes.iter().position(|&b| b != 0) {
        Some(i) => (bytes.len() - i) * 8 - bytes[i].leading_zeros() as usize,
        None => 0,
    }
}

#[cfg(test)]
mod tests;
