//! Arbitrary bytes as a JWKS document: parsing never panics, a parsed set is never empty,
//! and choosing a key from it never panics.

#![no_main]

use jsonwebtoken::Algorithm;
use jwt_authz::jwks::KeySet;
use libfuzzer_sys::fuzz_target;

const ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fuzz_target!(|data: &[u8]| {
    let Ok((set, _skipped)) = KeySet::parse(data) else {
        return;
    };
    assert!(!set.is_empty(), "a parsed key set holds at least one key");
    for alg in ALGORITHMS {
        for kid in [None, Some("rsa-1"), Some(""), Some("k")] {
            if let Some(key) = set.select(kid, alg) {
                assert!(
                    key.accepts(alg),
                    "select returned a key that does not fit {alg:?}"
                );
                if let Some(kid) = kid {
                    assert_eq!(key.kid.as_deref(), Some(kid));
                }
            }
        }
    }
});
