//! One JWK turned into a verification key, parsed once when the JWKS loads.
//!
//! Each key is pre-parsed by aws-lc (`ParsedPublicKey`) for every algorithm it may verify,
//! so a Check never re-parses key material: that is a fifth of an RS256 verification.
//! Which algorithms a key may verify is fixed by its type and, where the JWK names one,
//! its `alg`; nothing in a token widens it.

use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::alg::{KeyType, asymmetric_algorithm};

/// aws-lc's verification algorithm for a JWS `alg`. RSA moduli of 2048 to 8192 bits; ECDSA
/// signatures in the fixed-length `r || s` form JWS uses.
fn verification_algorithm(alg: Algorithm) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &signature::ED25519,
        _ => return None,
    })
}

/// One verification key from a JWKS.
pub struct VerifyingKey {
    /// `kid`, when the JWK has one.
    pub kid: Option<String>,
    pub key_type: KeyType,
    /// `alg` pinned by the JWK, when it names one.
    pub alg: Option<Algorithm>,
    /// Identity of the key material (type and public parameters), stable across JWKS
    /// refreshes: a cached verification stays valid only while the same key is published.
    pub fingerprint: u64,
    /// The key parsed for each algorithm it accepts.
    parsed: Vec<(Algorithm, ParsedPublicKey)>,
}

impl VerifyingKey {
    /// Whether this key may verify a token signed with `alg`: the key type must fit, and a
    /// JWK that names an `alg` is used for that algorithm only.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.parsed.iter().any(|(a, _)| *a == alg)
    }

    /// Whether `signature` is a valid `alg` signature of `message` by this key. False when
    /// the key does not accept `alg`.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        self.parsed
            .iter()
            .find(|(a, _)| *a == alg)
            .is_some_and(|(_, key)| key.verify_sig(message, signature).is_ok())
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

/// Parses one JWK, or says why it cannot be used.
pub fn parse_key(value: serde_json::Value) -> Result<VerifyingKey, String> {
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
        Some(name) => Some(asymmetric_algorithm(name).ok_or_else(|| {
            format!("{label}alg {name:?} is not a supported signature algorithm")
        })?),
    };
    let field = |value: &Option<String>, name: &str| -> Result<Vec<u8>, String> {
        let text = value
            .as_deref()
            .ok_or_else(|| format!("{label}{} key without {name:?}", raw.kty))?;
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| format!("{label}{name} is not base64url"))
    };
    let sized = |bytes: Vec<u8>, name: &str, len: usize| -> Result<Vec<u8>, String> {
        if bytes.len() == len {
            Ok(bytes)
        } else {
            Err(format!(
                "{label}{name} has {} bytes, expected {len}",
                bytes.len()
            ))
        }
    };
    // The public key in the encoding aws-lc parses for each type.
    let (key_type, public) = match (raw.kty.as_str(), raw.crv.as_deref()) {
        ("RSA", _) => {
            let n = field(&raw.n, "n")?;
            let e = field(&raw.e, "e")?;
            let bits = significant_bits(&n);
            if bits < 2048 {
                return Err(format!(
                    "{label}RSA modulus has {bits} bits, at least 2048 are required"
                ));
            }
            (KeyType::Rsa, rsa_public_key_der(&n, &e))
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (key_type, len) = if crv == "P-256" {
                (KeyType::EcP256, 32)
            } else {
                (KeyType::EcP384, 48)
            };
            let x = sized(field(&raw.x, "x")?, "x", len)?;
            let y = sized(field(&raw.y, "y")?, "y", len)?;
            // SEC 1 uncompressed point.
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (key_type, point)
        }
        ("OKP", Some("Ed25519")) => {
            let x = sized(field(&raw.x, "x")?, "x", 32)?;
            if let Some(reason) = ed25519_refusal(&x) {
                return Err(format!("{label}Ed25519 key refused: {reason}"));
            }
            (KeyType::Ed25519, x)
        }
        ("EC" | "OKP", crv) => return Err(format!("{label}curve {crv:?} is not supported")),
        (other, _) => return Err(format!("{label}kty {other:?} is not supported")),
    };
    if let Some(alg) = alg.filter(|a| !key_type.verifies(*a)) {
        return Err(format!(
            "{label}alg {alg:?} does not fit a {key_type:?} key"
        ));
    }
    let mut parsed = Vec::new();
    for candidate in key_type.algorithms() {
        if alg.is_some_and(|pinned| pinned != candidate) {
            continue;
        }
        let Some(algorithm) = verification_algorithm(candidate) else {
            continue;
        };
        let key = ParsedPublicKey::new(algorithm, &public)
            .map_err(|e| format!("{label}invalid {key_type:?} key: {e}"))?;
        parsed.push((candidate, key));
    }
    let fingerprint = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (key_type as u8, &public, alg).hash(&mut hasher);
        hasher.finish()
    };
    Ok(VerifyingKey {
        kid,
        key_type,
        alg,
        fingerprint,
        parsed,
    })
}

/// The `y` coordinates, little-endian, of the eight Ed25519 points of small order
/// (order 1, 2, 4 or 8): 0 (two points), 1 (the identity), p - 1, and ±y8 (two points
/// each). The same list as libsodium's `ge25519_has_small_order`.
const SMALL_ORDER_Y: [[u8; 32]; 5] = [
    [0; 32],
    {
        let mut one = [0; 32];
        one[0] = 1;
        one
    },
    {
        let mut minus_one = [0xff; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        minus_one
    },
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
];

/// Why an Ed25519 public key (RFC 8032 §5.1.2 encoding: `y` little-endian, the top bit
/// the sign of `x`) must not be used, if it must not.
///
/// A key of small order lets one fixed signature verify any message (with the identity
/// point, `R` = identity and `S` = 0 verify everything), so a JWKS holding one would
/// hold a universal key. A non-canonical encoding (`y` ≥ p = 2^255 - 19) is refused by
/// RFC 8032's decoding and read differently by different libraries.
fn ed25519_refusal(encoded: &[u8]) -> Option<&'static str> {
    let mut y = [0u8; 32];
    y.copy_from_slice(encoded.get(..32)?);
    y[31] &= 0x7f;
    // y ≥ p: the top 250 bits all set and the low byte at least 0xed.
    let at_least_p = y[31] == 0x7f && y[1..31].iter().all(|&b| b == 0xff) && y[0] >= 0xed;
    if at_least_p {
        return Some("non-canonical encoding (y is not below 2^255 - 19)");
    }
    if SMALL_ORDER_Y.contains(&y) {
        return Some("point of small order");
    }
    None
}

fn significant_bits(bytes: &[u8]) -> usize {
    match bytes.iter().position(|&b| b != 0) {
        Some(i) => (bytes.len() - i) * 8 - bytes[i].leading_zeros() as usize,
        None => 0,
    }
}

/// DER of a PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut body = der_unsigned_integer(n);
    body.extend(der_unsigned_integer(e));
    der_tlv(0x30, &body)
}

fn der_unsigned_integer(bytes: &[u8]) -> Vec<u8> {
    let trimmed = match bytes.iter().position(|&b| b != 0) {
        Some(i) => &bytes[i..],
        None => &[0u8][..],
    };
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed[0] & 0x80 != 0 {
        content.push(0); // keep it positive
    }
    content.extend_from_slice(trimmed);
    der_tlv(0x02, &content)
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len() - 1);
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_sign(mut y: [u8; 32], sign: bool) -> [u8; 32] {
        y[31] |= u8::from(sign) << 7;
        y
    }

    #[test]
    fn every_small_order_ed25519_point_is_refused() {
        for y in SMALL_ORDER_Y {
            for sign in [false, true] {
                assert_eq!(
                    ed25519_refusal(&with_sign(y, sign)),
                    Some("point of small order"),
                    "{y:02x?} sign {sign}"
                );
            }
        }
    }

    #[test]
    fn non_canonical_ed25519_encodings_are_refused() {
        // y = p, p + 1, ..., 2^255 - 1, with either sign bit.
        for low in 0xed..=0xff_u8 {
            let mut y = [0xff; 32];
            y[0] = low;
            y[31] = 0x7f;
            for sign in [false, true] {
                let reason = ed25519_refusal(&with_sign(y, sign)).unwrap_or_default();
                assert!(reason.starts_with("non-canonical"), "{low:#x}: {reason}");
            }
        }
        // p - 1 is canonical (and of small order); p - 2 is an ordinary value.
        let mut y = [0xff; 32];
        y[0] = 0xeb;
        y[31] = 0x7f;
        assert_eq!(ed25519_refusal(&y), None);
    }

    #[test]
    fn der_integers_stay_positive_and_minimal() {
        assert_eq!(
            der_unsigned_integer(&[0x00, 0x01, 0x00, 0x01]),
            [0x02, 0x03, 0x01, 0x00, 0x01]
        );
        assert_eq!(der_unsigned_integer(&[0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(der_unsigned_integer(&[0, 0]), [0x02, 0x01, 0x00]);
    }

    #[test]
    fn der_lengths_use_the_long_form_past_127() {
        assert_eq!(der_tlv(0x30, &[0; 3])[..2], [0x30, 3]);
        assert_eq!(der_tlv(0x30, &[0; 200])[..3], [0x30, 0x81, 200]);
        assert_eq!(der_tlv(0x30, &[0; 300])[..4], [0x30, 0x82, 0x01, 0x2c]);
    }
}
