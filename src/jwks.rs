//! JSON Web Key Sets: parsing a JWKS document into verification keys, and choosing the key
//! for a token. Fetching and caching live in [`cache`].
//!
//! Keys are parsed once, when a JWKS is loaded, never per request. A bad key is skipped
//! with a reason and the good ones still load. Only signature keys of the types this
//! service verifies are kept; RSA keys shorter than 2048 bits are refused.

mod cache;
mod key;

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use url::Url;

pub(crate) use cache::well_known;
pub use cache::{JwksCache, JwksError, JwksStats, KeyLookup};
pub use key::{VerifyingKey, parse_key};

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A fixed JWKS URL.
    Uri(Url),
    /// OpenID discovery under the issuer, falling back to `.well-known/jwks.json`.
    Discover,
}

/// Fetch settings shared by every issuer's JWKS cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSettings {
    /// Interval of the background refetch.
    pub refresh: Duration,
    /// Least time between two fetches triggered by unknown `kid`s.
    pub cooldown: Duration,
    /// Timeout of one fetch.
    pub timeout: Duration,
    /// Largest body accepted.
    pub max_bytes: usize,
    /// Accept plain http off loopback, for discovered and redirected URLs as for
    /// configured ones ([`crate::fetch_url::check_scheme`]). Risky: anyone on the network
    /// path can replace the keys.
    pub insecure_allow_http: bool,
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
    fn contains_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests;
