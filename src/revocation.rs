//! Revocations: tokens that must stop working before they expire.
//!
//! An entry covers tokens of one issuer by `jti` (that token), or by `sub`, `sid`,
//! `client_id` or `email` with a cut-off (every such token issued at or before it). Each
//! entry is kept until no token it covers can still be valid: a `jti` entry until the
//! token's `exp` when known, a cut-off until the cut-off plus the longest token lifetime
//! the store accepts (`max_token_lifetime`). A token whose lifetime (`exp - iat`) is
//! longer, or that does not say when it was issued, is refused while revocations are
//! checked: no entry could be kept long enough to cover it.
//!
//! Every replica holds the whole set in memory, so a check is a few hash lookups and,
//! with nothing revoked, one atomic load. With Redis ([`redis`]) the set is shared: a
//! revocation is written once and every replica applies it within the poll interval, and
//! a replica that cannot confirm it holds every revocation refuses covered requests
//! ([`AuthError::RevocationUnavailable`]).

pub mod cli;
pub mod redis;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::AuthError;

/// What a revocation is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One token, by its `jti`.
    Jti,
    /// Every token of a subject issued at or before the cut-off.
    Sub,
    /// Every token of a session (`sid`) issued at or before the cut-off.
    Sid,
    /// Every token issued to a client (`client_id`, or `azp`) at or before the cut-off.
    ClientId,
    /// Every token with this `email` claim issued at or before the cut-off.
    Email,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Jti, Kind::Sub, Kind::Sid, Kind::ClientId, Kind::Email];

    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Jti => "jti",
            Kind::Sub => "sub",
            Kind::Sid => "sid",
            Kind::ClientId => "client_id",
            Kind::Email => "email",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub kind: Kind,
    /// The issuer whose tokens it covers (exact `iss`).
    pub issuer: String,
    pub value: String,
    /// Unix ms: tokens issued at or before it are covered (a `jti` entry covers its token
    /// whenever it was issued).
    pub cutoff_ms: u64,
    /// Unix ms after which no token it covers can be valid, and the entry goes.
    pub expires_ms: u64,
}

/// What of a token a revocation may cover it by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenIds<'a> {
    pub jti: Option<&'a str>,
    pub sid: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub email: Option<&'a str>,
    /// `iat`, Unix seconds.
    pub iat: Option<u64>,
}

/// What [`RevocationStore::check`] reads of a verified token.
#[derive(Debug, Clone, Copy)]
pub struct RevocableToken<'a> {
    pub iss: &'a str,
    pub sub: Option<&'a str>,
    pub ids: TokenIds<'a>,
    /// `exp`, Unix seconds.
    pub exp: u64,
    /// The issuer's leeway on `exp`, in ms.
    pub leeway_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    cutoff_ms: u64,
    expires_ms: u64,
}

/// Every revocation in force, by kind, then issuer, then value.
#[derive(Debug, Default)]
pub struct RevocationSet {
    by: [HashMap<String, HashMap<String, Entry>>; 5],
    len: usize,
}

impl RevocationSet {
    /// Adds `r`, merged with an entry for the same token or subject: the later cut-off
    /// and the later expiry win, so applying revocations in any order gives one set.
    pub fn insert(&mut self, r: &Revocation) {
        let values = self.by[r.kind as usize]
            .entry(r.issuer.clone())
            .or_default();
        match values.get_mut(&r.value) {
            Some(entry) => {
                entry.cutoff_ms = entry.cutoff_ms.max(r.cutoff_ms);
                entry.expires_ms = entry.expires_ms.max(r.expires_ms);
            }
            None => {
                values.insert(
                    r.value.clone(),
                    Entry {
                        cutoff_ms: r.cutoff_ms,
                        expires_ms: r.expires_ms,
                    },
                );
                self.len += 1;
            }
        }
    }

    /// Whether an entry in force at `now_ms` covers the token.
    fn covers(&self, iss: &str, sub: Option<&str>, ids: &TokenIds<'_>, now_ms: u64) -> bool {
        let issued_ms = ids.iat.unwrap_or(0).saturating_mul(1000);
        let hit = |kind: Kind, value: Option<&str>| {
            value
                .and_then(|value| self.by[kind as usize].get(iss)?.get(value))
                .is_some_and(|entry| {
                    entry.expires_ms > now_ms && (kind == Kind::Jti || issued_ms <= entry.cutoff_ms)
                })
        };
        hit(Kind::Jti, ids.jti)
            || hit(Kind::Sub, sub)
            || hit(Kind::Sid, ids.sid)
            || hit(Kind::ClientId, ids.client_id)
            || hit(Kind::Email, ids.email)
    }

    /// Drops the entries no token can need any more.
    pub fn purge(&mut self, now_ms: u64) {
        let mut len = 0;
        for issuers in &mut self.by {
            issuers.retain(|_, values| {
                values.retain(|_, entry| entry.expires_ms > now_ms);
                len += values.len();
                !values.is_empty()
            });
        }
        self.len = len;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry, sorted by kind, issuer and value.
    pub fn list(&self) -> Vec<Revocation> {
        let mut all = Vec::with_capacity(self.len);
        for kind in Kind::ALL {
            for (issuer, values) in &self.by[kind as usize] {
                for (value, entry) in values {
                    all.push(Revocation {
                        kind,
                        issuer: issuer.clone(),
                        value: value.clone(),
                        cutoff_ms: entry.cutoff_ms,
                        expires_ms: entry.expires_ms,
                    });
                }
            }
        }
        all.sort_by(|a, b| {
            (a.kind as usize, &a.issuer, &a.value).cmp(&(b.kind as usize, &b.issuer, &b.value))
        });
        all
    }
}

/// Why a revocation could not be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevokeError {
    #[error("the revocation store holds its maximum of {0} entries")]
    Full(usize),
    #[error("the revocation store is unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Invalid(&'static str),
}

/// The revocation store's settings (`revocation` in the configuration file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationSettings {
    /// The longest token lifetime (`exp - iat`) accepted, and how long a cut-off is kept.
    pub max_token_lifetime: Duration,
    pub max_entries: usize,
}

/// The revocations in force, checked on every request that carries a token.
pub struct RevocationStore {
    set: RwLock<RevocationSet>,
    /// `set.len()`, read without the lock.
    count: AtomicUsize,
    settings: RevocationSettings,
    /// The Redis store this replica follows; `None` for one replica in memory.
    shared: Option<redis::RedisRevocations>,
    /// Revocations applied (from the command line, a SET, or another replica).
    applied: AtomicU64,
}

impl RevocationStore {
    /// A store in this process only.
    pub fn memory(settings: RevocationSettings) -> Arc<RevocationStore> {
        Arc::new(Self::with(settings, None))
    }

    /// A store following the Redis store `shared`; start [`RevocationStore::follow`].
    pub fn redis(
        settings: RevocationSettings,
        shared: redis::RedisRevocations,
    ) -> Arc<RevocationStore> {
        Arc::new(Self::with(settings, Some(shared)))
    }

    /// Follows the shared store, when there is one, until the task is aborted.
    pub async fn follow(self: Arc<Self>) {
        match self.shared.clone() {
            Some(shared) => shared.follow(self).await,
            None => std::future::pending().await,
        }
    }

    fn with(settings: RevocationSettings, shared: Option<redis::RedisRevocations>) -> Self {
        RevocationStore {
            set: RwLock::new(RevocationSet::default()),
            count: AtomicUsize::new(0),
            settings,
            shared,
            applied: AtomicU64::new(0),
        }
    }

    /// Whether the store follows a Redis server.
    pub fn describe(&self) -> String {
        match &self.shared {
            Some(shared) => shared.describe().to_owned(),
            None => "memory".to_owned(),
        }
    }

    pub fn settings(&self) -> &RevocationSettings {
        &self.settings
    }

    /// Whether the store can vouch, at this moment, that it holds every revocation.
    pub fn is_current(&self) -> bool {
        self.shared.as_ref().is_none_or(|s| s.is_current())
    }

    /// The check of one verified token: refused when revoked, or when the store cannot
    /// vouch for its set. With nothing revoked, one atomic load (and, with Redis, the
    /// freshness check).
    ///
    /// While revocations are checked, a token must say when it was issued (`iat`, not
    /// after now and the leeway) and be valid, leeway included, for at most
    /// `max_token_lifetime` after it: then an entry, kept that long after its cut-off,
    /// outlives every token it covers.
    pub fn check(&self, token: &RevocableToken<'_>, now_ms: u64) -> Result<(), AuthError> {
        if !self.is_current() {
            return Err(AuthError::RevocationUnavailable);
        }
        let Some(iat) = token.ids.iat else {
            return Err(AuthError::MissingClaim);
        };
        let issued_ms = iat.saturating_mul(1000);
        if issued_ms > now_ms.saturating_add(token.leeway_ms) {
            return Err(AuthError::NotYetValid);
        }
        let valid_until_ms = token
            .exp
            .saturating_mul(1000)
            .saturating_add(token.leeway_ms);
        let lifetime_ms =
            u64::try_from(self.settings.max_token_lifetime.as_millis()).unwrap_or(u64::MAX);
        if valid_until_ms.saturating_sub(issued_ms) > lifetime_ms {
            return Err(AuthError::LifetimeTooLong);
        }
        if self.count.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let set = self.set.read().unwrap_or_else(PoisonError::into_inner);
        if set.covers(token.iss, token.sub, &token.ids, now_ms) {
            Err(AuthError::Revoked)
        } else {
            Ok(())
        }
    }

    /// Applies `r` here (and, with Redis, for every replica).
    pub async fn revoke(&self, r: Revocation, now_ms: u64) -> Result<(), RevokeError> {
        let r = normalized(r);
        validate(&r)?;
        if let Some(shared) = &self.shared {
            shared.revoke(&r).await?;
        } else if self.len() >= self.settings.max_entries {
            self.purge(now_ms);
            if self.len() >= self.settings.max_entries {
                return Err(RevokeError::Full(self.settings.max_entries));
            }
        }
        self.apply(&r);
        Ok(())
    }

    /// Adds `r` to this replica's set.
    fn apply(&self, r: &Revocation) {
        let mut set = self.set.write().unwrap_or_else(PoisonError::into_inner);
        set.insert(r);
        self.count.store(set.len(), Ordering::Relaxed);
        self.applied.fetch_add(1, Ordering::Relaxed);
    }

    /// Replaces the whole set (a Redis store's full read).
    fn replace(&self, set: RevocationSet) {
        let mut held = self.set.write().unwrap_or_else(PoisonError::into_inner);
        *held = set;
        self.count.store(held.len(), Ordering::Relaxed);
    }

    pub fn purge(&self, now_ms: u64) {
        let mut set = self.set.write().unwrap_or_else(PoisonError::into_inner);
        set.purge(now_ms);
        self.count.store(set.len(), Ordering::Relaxed);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Revocations applied since start.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    /// Every entry in force at `now_ms`.
    pub fn list(&self, now_ms: u64) -> Vec<Revocation> {
        let set = self.set.read().unwrap_or_else(PoisonError::into_inner);
        let mut all = set.list();
        all.retain(|r| r.expires_ms > now_ms);
        all
    }

    /// How long a cut-off revocation made at `cutoff_ms` is kept.
    pub fn cutoff_expiry(&self, cutoff_ms: u64) -> u64 {
        self.settings.cutoff_expiry(cutoff_ms)
    }
}

impl RevocationSettings {
    /// Until when a cut-off revocation made at `cutoff_ms` is kept: no token it covers can
    /// be valid after.
    pub fn cutoff_expiry(&self, cutoff_ms: u64) -> u64 {
        let lifetime = u64::try_from(self.max_token_lifetime.as_millis()).unwrap_or(u64::MAX);
        cutoff_ms.saturating_add(lifetime)
    }
}

/// Emails are compared in ASCII lower case, on both sides.
pub fn normalized(mut r: Revocation) -> Revocation {
    if r.kind == Kind::Email {
        r.value.make_ascii_lowercase();
    }
    r
}

/// The one form a revocation takes: a non-empty issuer and value of at most 1 KiB each,
/// without control characters, expiring after its cut-off.
pub(crate) fn validate(r: &Revocation) -> Result<(), RevokeError> {
    let fits = |s: &str| !s.is_empty() && s.len() <= 1024 && !s.chars().any(char::is_control);
    if !fits(&r.issuer) {
        return Err(RevokeError::Invalid(
            "the issuer must be 1 to 1024 characters, none of them control characters",
        ));
    }
    if !fits(&r.value) {
        return Err(RevokeError::Invalid(
            "the value must be 1 to 1024 characters, none of them control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
