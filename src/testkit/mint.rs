//! Tokens: honestly signed with any algorithm, header and claims, or forged and signed over
//! raw bytes no JSON serializer would write, so that each test states exactly what the
//! service must refuse.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header};
use serde_json::Value;

use super::keys::TestKey;
use crate::demo::issuer::access_token_claims;

/// The audience every kit token is minted for.
pub const AUDIENCE: &str = "https://api.example.com";

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims of a valid token for `issuer` and [`AUDIENCE`], `sub` `auth0|user-1`, scope
/// `openid read:messages`, expiring in five minutes. Edit the value for other cases.
pub fn claims(issuer: &str) -> Value {
    let now = now();
    access_token_claims(
        issuer,
        AUDIENCE,
        "auth0|user-1",
        "openid read:messages",
        now,
        now + 300,
    )
}

/// Signs `claims` with `key` under its own kid and algorithm.
pub fn mint(key: &TestKey, claims: &Value) -> String {
    mint_with(key, key.alg, Some(&key.kid), claims)
}

/// Signs `claims` with `key` as `alg`, naming `kid` (or none) in the header.
pub fn mint_with(key: &TestKey, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    mint_header(&header, claims, &key.encoding)
}

/// Signs `claims` under a header the caller wrote (`typ`, `crit`, `jku`, HMAC keys...).
pub fn mint_header(header: &Header, claims: &Value, key: &jsonwebtoken::EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).unwrap()
}

/// A token with a hand-written header and an arbitrary signature.
pub fn forge(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// Signs raw header and payload bytes with `key` as `alg`: for tokens no JSON serializer
/// would write (duplicate names, non-objects, out-of-range numbers, odd `alg` values), so
/// that only their shape, never their signature, is what the service has to refuse.
pub fn sign_raw(key: &TestKey, alg: Algorithm, header: &[u8], payload: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key.encoding, alg).unwrap();
    format!("{signing_input}.{signature}")
}

/// The same token with one signature character changed: well-formed, but its signature no
/// longer verifies, so the service pays for a full verification before refusing it.
pub fn corrupt_signature(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let at = bytes.len() - 10;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("invariant: a JWS is ASCII")
}

/// One of the `valid` inputs changed by fuzz `data`: its first four bytes pick the input,
/// the edit (`op % 3`: overwrite, insert, or cut and append) and the offset; the rest is
/// what is written. `op` is returned for targets that draw more choices from it. `None`
/// when `data` is too short to choose. Near-valid inputs reach the checks that random
/// bytes never pass.
pub fn edit_valid(valid: &[String], data: &[u8]) -> Option<(Vec<u8>, u8)> {
    let (&[pick, op, hi, lo], rest) = data.split_first_chunk::<4>()?;
    let mut input = valid
        .get(usize::from(pick) % valid.len().max(1))?
        .clone()
        .into_bytes();
    let at = (usize::from(hi) << 8 | usize::from(lo)) % (input.len() + 1);
    match op % 3 {
        0 => {
            for (slot, b) in input.iter_mut().skip(at).zip(rest) {
                *slot = *b;
            }
        }
        1 => {
            input.splice(at..at, rest.iter().copied());
        }
        _ => {
            input.truncate(at);
            input.extend_from_slice(rest);
        }
    }
    Some((input, op))
}
