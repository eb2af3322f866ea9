//! The verified-token cache: what a token that verified allows, keyed by the SHA-256 of
//! the token (never the token itself), so a repeat of the same token skips signature
//! verification and claim parsing.
//!
//! An entry holds only what the allow path needs: the scopes the token grants, the
//! upstream mutations, and what it takes to re-check the token on every hit (`exp`, `nbf`,
//! and the identity of the signing key, which must still be in the issuer's JWKS). It is
//! bounded in entries and in bytes (everything an entry holds, the map's share included);
//! a full shard evicts expired entries if it finds some, else arbitrary ones, until the
//! new entry fits. Sharded mutexes keep the lock per request short and unshared with the
//! JWKS refresher.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use jsonwebtoken::Algorithm;

use crate::verify;

const SHARDS: usize = 16;

/// SHA-256 of a token.
type TokenKey = [u8; 32];

type Shard = Mutex<ShardMap>;

#[derive(Default)]
struct ShardMap {
    entries: HashMap<TokenKey, Arc<CachedToken>>,
    /// The sum of the entries' [`CachedToken::footprint`].
    bytes: usize,
}

/// What one entry costs beyond the [`CachedToken`] itself: its slot in the map (key,
/// pointer and control byte, at the map's load factor) and the `Arc`'s counts.
const ENTRY_OVERHEAD: usize = 88;

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
    /// `nbf` in Unix seconds, 0 when absent (the same instant for every check): eight
    /// bytes less per entry than an `Option`.
    nbf: u64,
    /// The leeway on `exp` and `nbf`, in ms (at most 49 days: four bytes less per entry).
    leeway_ms: u32,
    /// `iat` in Unix seconds, 0 when absent: a token that does not say when it was issued
    /// is covered by every cut-off revocation.
    iat: u64,
    /// `iss`, `kid`, `sub`, the granted scopes (space-separated), the payload segment when
    /// it is forwarded, the `cnf` thumbprints (`jkt`, `x5t#S256`), what revocations are
    /// keyed by (`jti`, `sid`, `client_id`, `email`), one value per configured claim
    /// header, then the audiences. Empty means absent.
    text: Box<str>,
    ends: Box<[u32]>,
    /// Index in `ends` of the first audience.
    first_audience: u32,
    /// Bit `i` is set when the policy's condition `i` holds for the token's claims.
    conditions: Box<[u64]>,
    pub metadata: Option<Box<prost_types::Struct>>,
    /// Bytes the entry holds in the cache ([`CachedToken::footprint`]).
    footprint: u32,
}

const ISS: usize = 0;
const KID: usize = 1;
const SUB: usize = 2;
const SCOPES: usize = 3;
const PAYLOAD: usize = 4;
const JKT: usize = 5;
const X5T: usize = 6;
const JTI: usize = 7;
const SID: usize = 8;
const CLIENT_ID: usize = 9;
const EMAIL: usize = 10;
const HEADERS: usize = 11;

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
    /// What revocations are keyed by.
    pub ids: crate::revocation::TokenIds<'a>,
    /// Scopes granted, already split on U+0020 ([`crate::policy::granted_scopes`]); any
    /// still containing whitespace (a tab, say) or control characters are dropped (RFC
    /// 6749 §3.3 scope tokens have none, so no configured scope could match them, and the
    /// space-joined cache entry must not split them into two).
    pub scopes: Vec<&'a str>,
    pub payload: Option<&'a str>,
    /// The key (`cnf.jkt`) and certificate (`cnf["x5t#S256"]`) the token is bound to.
    pub binding: crate::binding::Confirmation<'a>,
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
            parts.binding.jkt.unwrap_or(""),
            parts.binding.x5t_s256.unwrap_or(""),
            parts.ids.jti.unwrap_or(""),
            parts.ids.sid.unwrap_or(""),
            parts.ids.client_id.unwrap_or(""),
            parts.ids.email.unwrap_or(""),
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
        let metadata = parts.metadata.map(Box::new);
        let text = text.into_boxed_str();
        let ends = ends.into_boxed_slice();
        let conditions = bits(&parts.conditions);
        let footprint = std::mem::size_of::<CachedToken>()
            + ENTRY_OVERHEAD
            + text.len()
            + std::mem::size_of_val(&*ends)
            + std::mem::size_of_val(&*conditions)
            + metadata.as_deref().map_or(0, |m| {
                std::mem::size_of::<prost_types::Struct>() + struct_bytes(m)
            });
        CachedToken {
            config_fingerprint: parts.config_fingerprint,
            alg: parts.alg,
            key_fingerprint: parts.key_fingerprint,
            exp: parts.exp,
            nbf: parts.nbf.unwrap_or(0),
            leeway_ms: u32::try_from(parts.leeway_ms).unwrap_or(u32::MAX),
            iat: parts.ids.iat.unwrap_or(0),
            text,
            ends,
            first_audience,
            conditions,
            metadata,
            footprint: u32::try_from(footprint).unwrap_or(u32::MAX),
        }
    }

    /// Bytes this entry holds while cached: the struct, its buffers, the metadata tree,
    /// its map slot and reference counts.
    fn footprint(&self) -> usize {
        self.footprint as usize
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

    /// The leeway on `exp` and `nbf`, in ms.
    pub fn leeway_ms(&self) -> u64 {
        u64::from(self.leeway_ms)
    }

    /// What a revocation may cover this token by.
    pub fn ids(&self) -> crate::revocation::TokenIds<'_> {
        crate::revocation::TokenIds {
            jti: self.optional(JTI),
            sid: self.optional(SID),
            client_id: self.optional(CLIENT_ID),
            email: self.optional(EMAIL),
            iat: Some(self.iat).filter(|&iat| iat != 0),
        }
    }

    /// The scopes the token grants.
    pub fn scopes(&self) -> impl Iterator<Item = &str> + Clone {
        self.field(SCOPES).split(' ').filter(|s| !s.is_empty())
    }

    /// The payload segment, when it is forwarded upstream.
    pub fn payload(&self) -> &str {
        self.field(PAYLOAD)
    }

    /// The RFC 7638 thumbprint of the DPoP key the token is bound to (`cnf.jkt`).
    pub fn jkt(&self) -> Option<&str> {
        self.optional(JKT)
    }

    /// The SHA-256 thumbprint of the client certificate the token is bound to
    /// (`cnf["x5t#S256"]`).
    pub fn x5t_s256(&self) -> Option<&str> {
        self.optional(X5T)
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
        let leeway_ms = u64::from(self.leeway_ms);
        verify::before_expiry(self.exp, leeway_ms, now_ms)
            && verify::after_not_before(Some(self.nbf), leeway_ms, now_ms)
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

/// Heap bytes of a metadata tree: its B-tree's nodes (a leaf holds up to 11 members and
/// is allocated whole, so a one-member map costs a full node), then per member the key's
/// and the value's own heap; strings, lists and nested structures counted by length.
fn struct_bytes(tree: &prost_types::Struct) -> usize {
    /// Members a B-tree leaf holds (the standard library's `B = 6`).
    const LEAF_MEMBERS: usize = 11;
    /// A leaf's bytes beyond its members: parent pointer, indices, length.
    const LEAF_HEADER: usize = 16;
    let member = std::mem::size_of::<String>() + std::mem::size_of::<prost_types::Value>();
    let leaves = tree.fields.len().div_ceil(LEAF_MEMBERS);
    // Internal nodes add child pointers to a leaf's size: counting a second node for each
    // leaf but the first covers them.
    let nodes = leaves + leaves.saturating_sub(1);
    nodes * (LEAF_HEADER + LEAF_MEMBERS * member)
        + tree
            .fields
            .iter()
            .map(|(key, value)| key.capacity() + value_bytes(value))
            .sum::<usize>()
}

fn value_bytes(value: &prost_types::Value) -> usize {
    use prost_types::value::Kind;
    match &value.kind {
        Some(Kind::StringValue(text)) => text.capacity(),
        Some(Kind::StructValue(tree)) => struct_bytes(tree),
        Some(Kind::ListValue(list)) => {
            list.values.capacity() * std::mem::size_of::<prost_types::Value>()
                + list.values.iter().map(value_bytes).sum::<usize>()
        }
        _ => 0,
    }
}

fn bits(flags: &[bool]) -> Box<[u64]> {
    let mut words = vec![0u64; flags.len().div_ceil(64)];
    for (i, _) in flags.iter().enumerate().filter(|(_, f)| **f) {
        words[i / 64] |= 1 << (i % 64);
    }
    words.into_boxed_slice()
}

/// A map from token hash to [`CachedToken`], bounded in entries and in bytes.
pub struct TokenCache {
    shards: Box<[Shard]>,
    per_shard: usize,
    bytes_per_shard: usize,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl TokenCache {
    /// A cache of at most `max_entries` tokens (at least one per shard), with no byte
    /// budget beyond what they hold.
    pub fn new(max_entries: u64) -> TokenCache {
        TokenCache::with_budget(max_entries, u64::MAX)
    }

    /// A cache of at most `max_entries` tokens holding at most `max_bytes` in all (each
    /// shard a sixteenth of both). An entry larger than a shard's budget is not cached.
    pub fn with_budget(max_entries: u64, max_bytes: u64) -> TokenCache {
        let per_shard = usize::try_from(max_entries.div_ceil(SHARDS as u64))
            .unwrap_or(usize::MAX)
            .max(1);
        let bytes_per_shard = usize::try_from(max_bytes / SHARDS as u64).unwrap_or(usize::MAX);
        TokenCache {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(ShardMap::default()))
                .collect(),
            per_shard,
            bytes_per_shard,
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
        let found = lock(self.shard(key)).entries.get(key).cloned();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Stores an entry, evicting others until it fits the shard's entry count and byte
    /// budget. An entry that alone exceeds the budget is not stored.
    pub fn insert(&self, key: TokenKey, entry: Arc<CachedToken>, now_ms: u64) {
        let size = entry.footprint();
        if size > self.bytes_per_shard {
            return;
        }
        let mut shard = lock(self.shard(&key));
        if let Some(old) = shard.entries.remove(&key) {
            shard.bytes -= old.footprint();
        }
        while shard.entries.len() >= self.per_shard || shard.bytes + size > self.bytes_per_shard {
            // Prefer an expired entry among a few; else the first in hash order, which is
            // as good as random for SHA-256 keys.
            let victim = shard
                .entries
                .iter()
                .take(8)
                .find(|(_, e)| !e.is_fresh(now_ms))
                .or_else(|| shard.entries.iter().next())
                .map(|(k, _)| *k);
            let Some(victim) = victim else { break };
            if let Some(old) = shard.entries.remove(&victim) {
                shard.bytes -= old.footprint();
            }
        }
        shard.bytes += size;
        shard.entries.insert(key, entry);
    }

    /// Drops an entry that no longer holds.
    pub fn remove(&self, key: &TokenKey) {
        let mut shard = lock(self.shard(key));
        if let Some(old) = shard.entries.remove(key) {
            shard.bytes -= old.footprint();
        }
    }

    /// Entries currently held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).entries.len()).sum()
    }

    /// Bytes the entries hold, by their [`CachedToken::footprint`].
    pub fn bytes(&self) -> usize {
        self.shards.iter().map(|s| lock(s).bytes).sum()
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
mod tests;
