//! The JWS algorithms this service verifies: one table, read by the configuration (what
//! an issuer may allow), the JWKS parser (what a key may verify) and the token header
//! (what a token claims), so the three can never disagree.
//!
//! `none` and the HMAC algorithms are absent on purpose: a public JWKS cannot hold an
//! HMAC secret, and `none` is unsigned.

use jsonwebtoken::Algorithm;

/// The curve or key type, which fixes the algorithms a key can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

/// One supported algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgorithmInfo {
    /// The name as RFC 7518 and RFC 8037 write it, compared case-sensitively.
    pub name: &'static str,
    pub alg: Algorithm,
    /// The only key type that may verify it.
    pub key_type: KeyType,
}

const fn info(name: &'static str, alg: Algorithm, key_type: KeyType) -> AlgorithmInfo {
    AlgorithmInfo {
        name,
        alg,
        key_type,
    }
}

/// Every algorithm this service verifies.
pub const ALGORITHMS: [AlgorithmInfo; 9] = [
    info("RS256", Algorithm::RS256, KeyType::Rsa),
    info("RS384", Algorithm::RS384, KeyType::Rsa),
    info("RS512", Algorithm::RS512, KeyType::Rsa),
    info("PS256", Algorithm::PS256, KeyType::Rsa),
    info("PS384", Algorithm::PS384, KeyType::Rsa),
    info("PS512", Algorithm::PS512, KeyType::Rsa),
    info("ES256", Algorithm::ES256, KeyType::EcP256),
    info("ES384", Algorithm::ES384, KeyType::EcP384),
    info("EdDSA", Algorithm::EdDSA, KeyType::Ed25519),
];

/// The asymmetric algorithm named `name` (exact case). `None` for `none`, HMAC and
/// anything unknown.
pub fn asymmetric_algorithm(name: &str) -> Option<Algorithm> {
    ALGORITHMS.iter().find(|a| a.name == name).map(|a| a.alg)
}

/// The RFC 7518 name of `alg`; `"unsupported"` for one outside [`ALGORITHMS`].
pub fn name(alg: Algorithm) -> &'static str {
    ALGORITHMS
        .iter()
        .find(|a| a.alg == alg)
        .map_or("unsupported", |a| a.name)
}

/// Every supported name, comma-separated, for error messages.
pub fn names() -> String {
    ALGORITHMS.map(|a| a.name).join(", ")
}

impl KeyType {
    /// The algorithms a key of this type may verify. This is what stops algorithm
    /// confusion: an EC key is never used for an RSA `alg`, whatever the token says.
    pub fn algorithms(self) -> impl Iterator<Item = Algorithm> {
        ALGORITHMS
            .iter()
            .filter(move |a| a.key_type == self)
            .map(|a| a.alg)
    }

    /// Whether a key of this type may verify `alg`.
    pub fn verifies(self, alg: Algorithm) -> bool {
        self.algorithms().any(|a| a == alg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_types_fix_their_algorithms() {
        assert!(KeyType::Rsa.verifies(Algorithm::PS512));
        assert!(!KeyType::Rsa.verifies(Algorithm::ES256));
        assert!(!KeyType::EcP256.verifies(Algorithm::ES384));
        assert!(!KeyType::Ed25519.verifies(Algorithm::RS256));
        assert_eq!(KeyType::Rsa.algorithms().count(), 6);
    }

    #[test]
    fn names_round_trip_and_symmetric_ones_are_absent() {
        for a in ALGORITHMS {
            assert_eq!(asymmetric_algorithm(a.name), Some(a.alg));
            assert_eq!(name(a.alg), a.name);
        }
        for refused in ["none", "HS256", "HS384", "HS512", "rs256", ""] {
            assert_eq!(asymmetric_algorithm(refused), None, "{refused}");
        }
    }
}
