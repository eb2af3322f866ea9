//! The verified-token cache: what a token that verified allows, keyed by the SHA-256 of
//! the token (never the token itself), so a repeat of the same token skips signature
//! verification and claim parsing.
//!
//! An entry holds only what the allow path needs: the scopes the token grants, the
//! upstream mutations, and what it takes to re-check the token on every hit (`exp`, `nbf`,
//! and the identity of the signing key, which must still be in the issuer's JWKS). It is
//! bounded in entries; a full shard evicts an expired entry if it finds one, else an
//! arbitrary one. Sharded mutexes keep the lock per request short and unshared with the
//! JWKS refresher.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use jsonwebtoken::Algorithm;

use crate::verify;

const SHARDS: usize = 16;

/// SHA-256 of a token.
pub type TokenKey = [u8; 32];

type Shard = Mutex<HashMap<TokenKey, Arc<CachedToken>>>;

/// What a verified token allows, kept between requests.
///
/// Kept small, since a cache may hold a hundred thousand of them: the strings live in one
/// buffer (`text`, cut at `ends`), the header names stay in the configuration, and the
/// metadata exists only when it is configured.
pub struct CachedToken {
    /// The settings the entry was built under (see the service's entry fingerprints).
    pub config_fingerprint: u64,
    pub alg: Algorithm,
    pub key_fingerprint: u64,
    /// `exp` in Unix seconds.
    pub exp: u64,
    /// `nbf` in Unix seconds.
    pub nbf: Option<u64>,
    pub leeway_ms: u64,
    /// `iss`, `kid`, `sub`, the granted scopes (space-separated), the payload segment when
    /// it is forwarded, one value per configured claim header, then the audiences. Empty
    /// means absent.
    text: Box<str>,
    ends: Box<[u32]>,
    /// Index in `ends` of the first audience.
    first_audience: u32,
    /// Bit `i` is set when the policy's condition `i` holds for the token's claims.
    conditions: Box<[u64]>,
    pub metadata: Option<Box<prost_types::Struct>>,
}

const ISS: usize = 0;
const KID: usize = 1;
const SUB: usize = 2;
const SCOPES: usize = 3;
const PAYLOAD: usize = 4;
const HEADERS: usize = 5;

/// Everything a [`CachedToken`] is built from.
pub struct EntryParts<'a> {
    pub config_fingerprint: u64,
    pub alg: Algorithm,
    pub key_fingerprint: u64,
    pub exp: u64,
    pub nbf: Option<u64>,
    pub leeway_ms: u64,
    pub iss: &'a str,
    pub kid: Option<&'a str>,
    pub sub: Option<&'a str>,
    /// Scopes granted, already split on U+0020 ([`crate::policy::granted_scopes`]); any
    /// still containing whitespace (a tab, say) or control characters are dropped (RFC
    /// 6749 §3.3 scope tokens have none, so no configured scope could match them, and the
    /// space-joined cache entry must not split them into two).
    pub scopes: Vec<&'a str>,
    pub payload: Option<&'a str>,
    pub header_values: Vec<Option<String>>,
    /// The token's `aud` values.
    pub audiences: Vec<&'a str>,
    /// Whether each of the policy's claim conditions holds, in policy order.
    pub conditions: Vec<bool>,
    pub metadata: Option<prost_types::Struct>,
}

impl CachedToken {
    pub fn new(parts: EntryParts<'_>) -> CachedToken {
        let valid_scope =
            |s: &&str| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        let scopes = parts
            .scopes
            .iter()
            .copied()
            .filter(valid_scope)
            .collect::<Vec<_>>()
            .join(" ");
        let fields = [
            parts.iss,
            parts.kid.unwrap_or(""),
            parts.sub.unwrap_or(""),
            &scopes,
            parts.payload.unwrap_or(""),
        ]
        .into_iter()
        .chain(
            parts
                .header_values
                .iter()
                .map(|v| v.as_deref().unwrap_or("")),
        )
        .chain(parts.audiences.iter().copied());
        let first_audience = u32::try_from(HEADERS + parts.header_values.len()).unwrap_or(u32::MAX);
        let mut text = String::new();
        let mut ends =
            Vec::with_capacity(HEADERS + parts.header_values.len() + parts.audiences.len());
        for field in fields {
            text.push_str(field);
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        }
        CachedToken {
            config_fingerprint: parts.config_fingerprint,
            alg: parts.alg,
            key_fingerprint: parts.key_fingerprint,
            exp: parts.exp,
            nbf: parts.nbf,
            leeway_ms: parts.leeway_ms,
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
            first_audience,
            conditions: bits(&parts.conditions),
            metadata: parts.metadata.map(Box::new),
        }
    }

    fn field(&self, index: usize) -> &str {
        let end = self.ends.get(index).map_or(0, |&e| e as usize);
        let start = index
            .checked_sub(1)
            .and_then(|i| self.ends.get(i))
            .map_or(0, |&e| e as usize);
        self.text.get(start..end).unwrap_or("")
    }

    fn optional(&self, index: usize) -> Option<&str> {
        Some(self.field(index)).filter(|f| !f.is_empty())
    }

    pub fn iss(&self) -> &str {
        self.field(ISS)
    }

    pub fn kid(&self) -> Option<&str> {
        self.optional(KID)
    }

    pub fn sub(&self) -> Option<&str> {
        self.optional(SUB)
    }

    /// The scopes the token grants.
    pub fn scopes(&self) -> impl Iterator<Item = &str> + Clone {
        self.field(SCOPES).split(' ').filter(|s| !s.is_empty())
    }

    /// The payload segment, when it is forwarded upstream.
    pub fn payload(&self) -> &str {
        self.field(PAYLOAD)
    }

    /// The value of the `i`-th configured claim header.
    pub fn header_value(&self, i: usize) -> Option<&str> {
        if HEADERS + i >= self.first_audience as usize {
            return None;
        }
        self.optional(HEADERS + i)
    }

    /// The token's audiences.
    pub fn audiences(&self) -> impl Iterator<Item = &str> {
        (self.first_audience as usize..self.ends.len()).map(|i| self.field(i))
    }

    /// Whether the policy's claim condition `i` holds for the token.
    pub fn condition(&self, i: usize) -> bool {
        self.conditions
            .get(i / 64)
            .is_some_and(|word| word & (1 << (i % 64)) != 0)
    }

    /// Whether `exp` and `nbf` still hold at `now_ms` (Unix milliseconds, leeway
    /// included), by the same rule as on first use.
    pub fn is_fresh(&self, now_ms: u64) -> bool {
        verify::before_expiry(self.exp, self.leeway_ms, now_ms)
            && verify::after_not_before(self.nbf, self.leeway_ms, now_ms)
    }
}

/// Prints what identifies the entry's key and validity, never a claim value: `sub`, the
/// scopes, the payload and the header values stay out of logs.
impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("alg", &self.alg)
            .field("exp", &self.exp)
            .field("nbf", &self.nbf)
            .finish_non_exhaustive()
    }
}

fn bits(flags: &[bool]) -> Box<[u64]> {
    let mut words = vec![0u64; flags.len().div_ceil(64)];
    for (i, _) in flags.iter().enumerate().filter(|(_, f)| **f) {
        words[i / 64] |= 1 << (i % 64);
    }
    words.into_boxed_slice()
}

/// A bounded map from token hash to [`CachedToken`].
pub struct TokenCache {
    shards: Box<[Shard]>,
    per_shard: usize,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl TokenCache {
    /// A cache of at most `max_entries` tokens (at least one per shard).
    pub fn new(max_entries: u64) -> TokenCache {
        let per_shard = usize::try_from(max_entries.div_ceil(SHARDS as u64))
            .unwrap_or(usize::MAX)
            .max(1);
        TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cache key of a token.
    pub fn key(token: &str) -> TokenKey {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        key
    }

    fn shard(&self, key: &TokenKey) -> &Shard {
        &self.shards[usize::from(key[0]) % SHARDS]
    }

    /// The entry for `key`, counted as a hit or a miss.
    pub fn get(&self, key: &TokenKey) -> Option<Arc<CachedToken>> {
        let found = lock(self.shard(key)).get(key).cloned();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Stores an entry, evicting one when the shard is full.
    pub fn insert(&self, key: TokenKey, entry: Arc<CachedToken>, now_ms: u64) {
        let mut shard = lock(self.shard(&key));
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            // Prefer an expired entry among a few; else the first in hash order, which is
            // as good as random for SHA-256 keys.
            let victim = shard
                .iter()
                .take(8)
                .find(|(_, e)| !e.is_fresh(now_ms))
                .or_else(|| shard.iter().next())
                .map(|(k, _)| *k);
            if let Some(victim) = victim {
                shard.remove(&victim);
            }
        }
        shard.insert(key, entry);
    }

    /// Drops an entry that no longer holds.
    pub fn remove(&self, key: &TokenKey) {
        lock(self.shard(key)).remove(key);
    }

    /// Entries currently held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Locks a shard. A panic while holding the lock cannot leave a map half-updated in a way
/// that matters (entries are replaced whole), so a poisoned lock is used as is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(exp: u64) -> EntryParts<'static> {
        EntryParts {
            config_fingerprint: 0,
            alg: Algorithm::RS256,
            key_fingerprint: 1,
            exp,
            nbf: None,
            leeway_ms: 0,
            iss: "i",
            kid: None,
            sub: None,
            scopes: Vec::new(),
            payload: None,
            header_values: Vec::new(),
            audiences: vec!["api"],
            conditions: Vec::new(),
            metadata: None,
        }
    }

    fn entry(exp: u64) -> Arc<CachedToken> {
        Arc::new(CachedToken::new(parts(exp)))
    }

    #[test]
    fn fields_round_trip_through_the_shared_buffer() {
        let e = CachedToken::new(EntryParts {
            kid: Some("rsa-1"),
            sub: None,
            scopes: vec![
                "read:a",
                "",
                "bad scope",
                "write:b",
                "x\u{7}",
                "read:messages\tadmin",
            ],
            payload: Some("cGF5"),
            header_values: vec![Some("u1".into()), None, Some("v3".into())],
            ..parts(10)
        });
        assert_eq!(e.iss(), "i");
        assert_eq!(e.kid(), Some("rsa-1"));
        assert_eq!(e.sub(), None);
        assert_eq!(e.scopes().collect::<Vec<_>>(), ["read:a", "write:b"]);
        assert_eq!(e.payload(), "cGF5");
        assert_eq!(e.header_value(0), Some("u1"));
        assert_eq!(e.header_value(1), None);
        assert_eq!(e.header_value(2), Some("v3"));
        assert_eq!(e.header_value(3), None);
        assert_eq!(e.audiences().collect::<Vec<_>>(), ["api"]);
    }

    #[test]
    fn audiences_and_conditions_round_trip() {
        let mut flags = vec![false; 130];
        flags[0] = true;
        flags[64] = true;
        flags[129] = true;
        let e = CachedToken::new(EntryParts {
            audiences: vec!["a", "", "https://b"],
            conditions: flags,
            header_values: vec![Some("h".into())],
            ..parts(10)
        });
        assert_eq!(e.audiences().collect::<Vec<_>>(), ["a", "", "https://b"]);
        assert_eq!(e.header_value(0), Some("h"));
        assert_eq!(e.header_value(1), None);
        let held: Vec<usize> = (0..200).filter(|&i| e.condition(i)).collect();
        assert_eq!(held, [0, 64, 129]);
    }

    #[test]
    fn keys_are_sha256_of_the_token() {
        let key = TokenCache::key("abc");
        assert_eq!(key[..4], [0xba, 0x78, 0x16, 0xbf]);
        assert_ne!(TokenCache::key("abd"), key);
    }

    #[test]
    fn hits_and_misses_are_counted() {
        let cache = TokenCache::new(10);
        let key = TokenCache::key("t");
        assert!(cache.get(&key).is_none());
        cache.insert(key, entry(100), 0);
        assert!(cache.get(&key).is_some());
        assert_eq!(cache.hits.load(Ordering::Relaxed), 1);
        assert_eq!(cache.misses.load(Ordering::Relaxed), 1);
        cache.remove(&key);
        assert!(cache.is_empty());
    }

    #[test]
    fn size_is_bounded() {
        let cache = TokenCache::new(160);
        for i in 0..10_000 {
            cache.insert(TokenCache::key(&i.to_string()), entry(100), 0);
        }
        assert!(cache.len() <= 160, "{}", cache.len());
        assert!(cache.len() >= 100, "{}", cache.len());
    }

    #[test]
    fn expired_entries_are_evicted_first() {
        let cache = TokenCache::new(16); // one entry per shard
        let old = TokenCache::key("old");
        cache.insert(old, entry(10), 0);
        // A key in the same shard.
        let new = (0..)
            .map(|i: u32| TokenCache::key(&i.to_string()))
            .find(|k| k[0] % 16 == old[0] % 16)
            .unwrap();
        cache.insert(new, entry(100), 50_000);
        assert!(cache.get(&old).is_none());
        assert!(cache.get(&new).is_some());
    }

    #[test]
    fn freshness_applies_leeway_to_exp_and_nbf() {
        let e = CachedToken::new(EntryParts {
            leeway_ms: 10_000,
            nbf: Some(50),
            ..parts(100)
        });
        assert!(e.is_fresh(109_000));
        assert!(!e.is_fresh(110_000));
        assert!(e.is_fresh(40_000));
        assert!(!e.is_fresh(39_000));
    }

    #[test]
    fn debug_prints_no_claim_values() {
        let e = CachedToken::new(EntryParts {
            sub: Some("auth0|secret-user"),
            scopes: vec!["read:secret"],
            payload: Some("cGF5bG9hZA"),
            header_values: vec![Some("header-value".into())],
            ..parts(10)
        });
        let text = format!("{e:?}");
        for value in ["secret-user", "read:secret", "cGF5bG9hZA", "header-value"] {
            assert!(!text.contains(value), "{text}");
        }
    }
}
