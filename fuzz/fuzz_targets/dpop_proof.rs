//! Arbitrary bytes as `DPoP` headers through the proof check, against a fixed request and
//! clock. The first byte picks how the rest becomes headers:
//!
//! - `0`: the rest, split at NUL bytes, is the list of `DPoP` header values;
//! - `1`: the rest edits one of a few valid proofs minted at start (`[proof, op, at_hi,
//!   at_lo, bytes...]`: overwrite, insert or cut-and-append at `at`), so the fuzzer reaches
//!   the signature and claim checks.
//!
//! The check never panics, and a proof it accepts signs exactly what one of the valid
//! proofs signs: nothing but an untouched signed part verifies.

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use jwt_authz::binding::dpop::{DpopSettings, ProofTarget, check_proof};
use jwt_authz::testkit;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJmdXp6In0.c2ln";
const URL: &str = "https://api.fuzz.example/api/items";
/// The proofs' `iat`, and the clock the check reads.
const IAT: u64 = 1_790_000_000;

struct State {
    settings: DpopSettings,
    valid: Vec<String>,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let valid = ["ec-256", "ec-384", "rsa-1", "ed-1"]
            .iter()
            .map(|kid| {
                let key = testkit::proof_key(kid);
                let mut claims = testkit::proof_claims("GET", URL, Some(TOKEN));
                claims["iat"] = json!(IAT);
                claims["jti"] = json!(format!("fuzz-{kid}"));
                key.sign(&key.header(), &claims)
            })
            .collect();
        State {
            settings: DpopSettings {
                algorithms: vec![
                    Algorithm::ES256,
                    Algorithm::ES384,
                    Algorithm::RS256,
                    Algorithm::EdDSA,
                ],
                max_age: Duration::from_secs(60),
                clock_skew: Duration::from_secs(5),
                public_base_url: None,
            },
            valid,
        }
    })
}

fn edited(valid: &[String], data: &[u8]) -> Option<Vec<u8>> {
    testkit::edit_valid(valid, data).map(|(proof, _)| proof)
}

/// The signed part of a compact JWS: everything before the last `.`.
fn signed_part(proof: &[u8]) -> &[u8] {
    let end = proof.iter().rposition(|b| *b == b'.').unwrap_or(0);
    &proof[..end]
}

fuzz_target!(|data: &[u8]| {
    let state = state();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let values: Vec<Vec<u8>> = match mode % 2 {
        0 => rest.split(|b| *b == 0).map(<[u8]>::to_vec).collect(),
        _ => match edited(&state.valid, rest) {
            Some(proof) => vec![proof],
            None => return,
        },
    };
    let target = ProofTarget {
        method: "GET",
        scheme: Some("https"),
        host: "api.fuzz.example",
        path: "/api/items?page=2",
        access_token: TOKEN,
    };
    let result = check_proof(
        values.iter().map(Vec::as_slice),
        &target,
        &state.settings,
        8192,
        IAT * 1000,
    );
    if result.is_ok() {
        let [value] = values.as_slice() else {
            panic!("accepted {} DPoP headers", values.len());
        };
        let trimmed = value.trim_ascii();
        assert!(
            state
                .valid
                .iter()
                .any(|v| signed_part(v.as_bytes()) == signed_part(trimmed)),
            "accepted a proof whose signed part no valid proof has: {:?}",
            String::from_utf8_lossy(value)
        );
    }
});
