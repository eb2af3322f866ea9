//! Revocations shared by replicas through Redis.
//!
//! Keys (under the configured prefix): a hash `revocations` (field: the entry's kind,
//! issuer and value as a JSON array; value: `<cutoff_ms> <expires_ms>`), a sorted set
//! `revocations:expiry` (the fields by expiry, to purge), a counter `revocations:seq` and
//! a digest `revocations:digest`, the SHA-1 chained over every write
//! (`sha1(previous \n field \n value)`). A revocation is one script: merge into the hash
//! (refused when the hash holds `max_entries`), bump the counter, chain the digest,
//! publish `<seq>\n<digest>\n<field>\n<value>` on the channel `<prefix>revocations`.
//!
//! Each replica follows the store: it subscribes, then reads the hash, the counter and the
//! digest at once, then applies each published revocation that is the next one (its
//! sequence number) and chains to what it holds (its digest, recomputed here). It polls
//! the counter and the digest every [`POLL`]: both equal to its own confirm the replica
//! holds exactly what Redis holds. A larger counter twice in a row (a message lost), a gap
//! in the sequence, a published message that does not chain (injected, or from a Redis
//! that lost a write in a failover), a digest that differs, or a counter that went back (a
//! flushed or restarted Redis) makes it read the whole hash again. A replica is *current* while its last confirmation is at most `max_lag`
//! old; otherwise (Redis unreachable, subscription lost, reads failing) every token it is
//! asked about is refused with `revocation_unavailable`, since a revocation it missed
//! could cover it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, Value};
use tokio_stream::StreamExt;

use super::{Kind, Revocation, RevocationSet, RevocationStore, RevokeError};

/// How often a replica confirms it has every revocation.
pub const POLL: Duration = Duration::from_millis(200);

/// A full read's bound: the whole hash in one script.
const FULL_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How often expired entries are removed from Redis.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Merge, count, chain, publish: the one write. -1 when the store is full.
const REVOKE: &str = r"
local field = ARGV[1]
local cutoff = tonumber(ARGV[2])
local expires = tonumber(ARGV[3])
local old = redis.call('HGET', KEYS[1], field)
if not old and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then
  return -1
end
if old then
  local c, e = string.match(old, '^(%d+) (%d+)$')
  if c then
    cutoff = math.max(cutoff, tonumber(c))
    expires = math.max(expires, tonumber(e))
  end
end
local value = string.format('%d %d', cutoff, expires)
redis.call('HSET', KEYS[1], field, value)
redis.call('ZADD', KEYS[2], expires, field)
local seq = redis.call('INCR', KEYS[3])
local digest = redis.sha1hex((redis.call('GET', KEYS[4]) or '') .. '\n' .. field .. '\n' .. value)
redis.call('SET', KEYS[4], digest)
redis.call('PUBLISH', ARGV[4], seq .. '\n' .. digest .. '\n' .. field .. '\n' .. value)
return seq
";

/// The counter, the digest and the hash, read at one instant.
const READ_ALL: &str = r"
return {redis.call('GET', KEYS[3]) or '0', redis.call('GET', KEYS[4]) or '', redis.call('HGETALL', KEYS[1])}
";

/// Removes the entries expired by Redis's own clock, less ARGV[1] ms: one replica's
/// clock running fast cannot take revocations from the others.
const PURGE: &str = r"
local t = redis.call('TIME')
local before = tonumber(t[1]) * 1000 - tonumber(ARGV[1])
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', before)
for _, field in ipairs(gone) do redis.call('HDEL', KEYS[1], field) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', before)
return #gone
";

/// How long after its expiry by Redis's clock an entry is purged.
const PURGE_MARGIN_MS: u64 = 10 * 60 * 1000;

/// The last write a replica holds: its sequence number and the digest chained to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Position {
    seq: u64,
    digest: String,
}

/// A Redis revocation store: its connection and what this replica has confirmed.
#[derive(Clone)]
pub struct RedisRevocations(Arc<Inner>);

struct Inner {
    client: Client,
    description: String,
    config: AsyncConnectionConfig,
    timeout: Duration,
    keys: [String; 4],
    channel: String,
    max_lag: Duration,
    started: Instant,
    /// ms since `started` of the last confirmation, plus one (0: never).
    confirmed: AtomicU64,
    /// The last revocation applied.
    applied: std::sync::Mutex<Position>,
    /// Most entries the shared hash may hold.
    max_entries: usize,
    /// Whether the last attempt to follow failed (logged once per outage).
    down: AtomicBool,
}

impl RedisRevocations {
    /// The store at `url` (redis:// or rediss://) with the settings of `config`.
    pub fn new(url: &str, config: &crate::config::RevocationConfig) -> Result<Self, String> {
        let prefix = &config.key_prefix;
        let (timeout, max_lag) = (config.timeout, config.max_lag);
        let max_entries = config.settings.max_entries;
        let (client, description) = crate::replay::parse_redis_url(url)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        Ok(RedisRevocations(Arc::new(Inner {
            client,
            description,
            config,
            timeout,
            keys: [
                format!("{prefix}revocations"),
                format!("{prefix}revocations:expiry"),
                format!("{prefix}revocations:seq"),
                format!("{prefix}revocations:digest"),
            ],
            channel: format!("{prefix}revocations"),
            max_lag,
            started: Instant::now(),
            confirmed: AtomicU64::new(0),
            applied: std::sync::Mutex::new(Position::default()),
            max_entries,
            down: AtomicBool::new(false),
        })))
    }

    pub fn describe(&self) -> &str {
        &self.0.description
    }

    /// Whether this replica confirmed, at most `max_lag` ago, that it holds every
    /// revocation.
    pub fn is_current(&self) -> bool {
        let confirmed = self.0.confirmed.load(Ordering::Acquire);
        confirmed != 0 && self.elapsed_ms().saturating_sub(confirmed - 1) <= millis(self.0.max_lag)
    }

    fn elapsed_ms(&self) -> u64 {
        millis(self.0.started.elapsed())
    }

    fn confirm(&self) {
        self.0
            .confirmed
            .store(self.elapsed_ms() + 1, Ordering::Release);
    }

    async fn connect(&self) -> Result<MultiplexedConnection, String> {
        let connecting = self
            .0
            .client
            .get_multiplexed_async_connection_with_config(&self.0.config);
        match tokio::time::timeout(self.0.timeout, connecting).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no connection within {:?}", self.0.timeout)),
        }
    }

    async fn eval(
        &self,
        connection: &mut MultiplexedConnection,
        script: &str,
        args: &[&str],
    ) -> Result<Value, String> {
        self.eval_within(connection, script, args, self.0.timeout)
            .await
    }

    async fn eval_within(
        &self,
        connection: &mut MultiplexedConnection,
        script: &str,
        args: &[&str],
        limit: Duration,
    ) -> Result<Value, String> {
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(script).arg(self.0.keys.len());
        for key in &self.0.keys {
            cmd.arg(key);
        }
        for arg in args {
            cmd.arg(*arg);
        }
        match tokio::time::timeout(limit.max(self.0.timeout), cmd.query_async(connection)).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", limit.max(self.0.timeout))),
        }
    }

    /// Writes `r` for every replica.
    pub async fn revoke(&self, r: &Revocation) -> Result<(), RevokeError> {
        let mut connection = self.connect().await.map_err(RevokeError::Unavailable)?;
        let field = field_of(r);
        let cutoff = r.cutoff_ms.to_string();
        let expires = r.expires_ms.to_string();
        let max = self.0.max_entries.to_string();
        let seq = self
            .eval(
                &mut connection,
                REVOKE,
                &[&field, &cutoff, &expires, &self.0.channel, &max],
            )
            .await
            .map_err(RevokeError::Unavailable)?;
        if seq == Value::Int(-1) {
            return Err(RevokeError::Full(self.0.max_entries));
        }
        Ok(())
    }

    /// Every entry, read at one instant.
    pub async fn read_all(&self) -> Result<RevocationSet, String> {
        let mut connection = self.connect().await?;
        Ok(self.read_all_on(&mut connection).await?.1)
    }

    /// The position and every entry, read at one instant. An entry that does not read
    /// fails the read: a replica does not vouch for a set it could not read whole.
    async fn read_all_on(
        &self,
        connection: &mut MultiplexedConnection,
    ) -> Result<(Position, RevocationSet), String> {
        let unexpected = || "unexpected answer to the read".to_owned();
        let value = self
            .eval_within(connection, READ_ALL, &[], FULL_READ_TIMEOUT)
            .await?;
        let Value::Array(parts) = value else {
            return Err(unexpected());
        };
        let [seq, digest, Value::Array(pairs)] = &parts[..] else {
            return Err(unexpected());
        };
        let seq = text(seq)
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or("the sequence counter is not a number")?;
        let digest = text(digest).ok_or_else(unexpected)?;
        let mut set = RevocationSet::default();
        for pair in pairs.chunks(2) {
            let [field, value] = pair else {
                return Err(unexpected());
            };
            let entry = text(field)
                .zip(text(value))
                .and_then(|(f, v)| entry_of(&f, &v))
                .ok_or("an entry in Redis does not read as a revocation")?;
            set.insert(&entry);
        }
        Ok((Position { seq, digest }, set))
    }

    /// Follows the store for `store` until the task is aborted.
    pub async fn follow(self, store: Arc<RevocationStore>) {
        loop {
            let outcome = self.follow_once(&store).await;
            if let Err(why) = outcome
                && !self.0.down.swap(true, Ordering::Relaxed)
            {
                tracing::warn!(
                    store = %self.0.description,
                    error = %why,
                    "revocation store: cannot follow; tokens are refused once the last confirmation is older than max_lag"
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn follow_once(&self, store: &RevocationStore) -> Result<(), String> {
        let mut connection = self.connect().await?;
        let subscribing = async {
            let mut pubsub = self.0.client.get_async_pubsub().await?;
            pubsub.subscribe(&self.0.channel).await?;
            Ok::<_, ::redis::RedisError>(pubsub)
        };
        let mut pubsub = match tokio::time::timeout(self.0.timeout, subscribing).await {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no subscription within {:?}", self.0.timeout)),
        };
        self.reload(store, &mut connection).await?;
        if self.0.down.swap(false, Ordering::Relaxed) {
            tracing::info!(store = %self.0.description, "revocation store: following again");
        }
        let mut messages = pubsub.on_message();
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut behind = 0u32;
        let mut purged = Instant::now();
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else {
                        return Err("the subscription ended".to_owned());
                    };
                    if !self.apply_published(store, message.get_payload_bytes()) {
                        self.reload(store, &mut connection).await?;
                    }
                }
                _ = poll.tick() => {
                    let position = self.position(&mut connection).await?;
                    let applied = self.applied();
                    if position == applied {
                        behind = 0;
                        self.confirm();
                    } else if position.seq <= applied.seq || behind >= 1 {
                        // Another history (a digest that differs), a counter that went
                        // back, or still behind: read it all again.
                        behind = 0;
                        self.reload(store, &mut connection).await?;
                    } else {
                        behind += 1;
                    }
                    if purged.elapsed() >= PURGE_EVERY {
                        purged = Instant::now();
                        self.eval(&mut connection, PURGE, &[&PURGE_MARGIN_MS.to_string()]).await?;
                        store.purge(crate::clock::Clock::system().now_millis());
                    }
                }
            }
        }
    }

    fn applied(&self) -> Position {
        self.0
            .applied
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Applies a published revocation when it is the next one and chains to what this
    /// replica holds; whether the replica is still in step (a message already applied
    /// keeps it so).
    fn apply_published(&self, store: &RevocationStore, payload: &[u8]) -> bool {
        let Some(message) = published(payload) else {
            return false;
        };
        let mut applied = self
            .0
            .applied
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if message.seq <= applied.seq {
            return true;
        }
        if message.seq != applied.seq + 1
            || chain(&applied.digest, &message.field, &message.value) != message.digest
        {
            return false;
        }
        store.apply(&message.revocation);
        *applied = Position {
            seq: message.seq,
            digest: message.digest,
        };
        true
    }

    /// The counter and the digest in Redis now.
    async fn position(&self, connection: &mut MultiplexedConnection) -> Result<Position, String> {
        let mut cmd = ::redis::cmd("MGET");
        cmd.arg(&self.0.keys[2]).arg(&self.0.keys[3]);
        let value = match tokio::time::timeout(self.0.timeout, cmd.query_async(connection)).await {
            Ok(result) => result.map_err(|e: ::redis::RedisError| e.to_string())?,
            Err(_) => return Err(format!("no answer within {:?}", self.0.timeout)),
        };
        let Value::Array(parts) = value else {
            return Err("unexpected answer to MGET".to_owned());
        };
        let [seq, digest] = &parts[..] else {
            return Err("unexpected answer to MGET".to_owned());
        };
        let seq = match seq {
            Value::Nil => 0,
            other => text(other)
                .and_then(|s| s.parse().ok())
                .ok_or("the sequence counter is not a number")?,
        };
        let digest = match digest {
            Value::Nil => String::new(),
            other => text(other).ok_or("the digest is not text")?,
        };
        Ok(Position { seq, digest })
    }

    async fn reload(
        &self,
        store: &RevocationStore,
        connection: &mut MultiplexedConnection,
    ) -> Result<(), String> {
        let (position, set) = self.read_all_on(connection).await?;
        let previous = std::mem::replace(
            &mut *self
                .0
                .applied
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            position.clone(),
        );
        if position.seq < previous.seq {
            tracing::warn!(
                store = %self.0.description,
                "revocation store: Redis lost its revocations (flushed, or restarted without persistence); only those it holds now are in force"
            );
        }
        store.replace(set);
        self.confirm();
        Ok(())
    }
}

/// A hash field: kind, issuer and value as a JSON array.
fn field_of(r: &Revocation) -> String {
    serde_json::to_string(&(r.kind.as_str(), &r.issuer, &r.value)).unwrap_or_default()
}

/// The entry a hash field and value stand for.
fn entry_of(field: &str, value: &str) -> Option<Revocation> {
    let (kind, issuer, value_of): (String, String, String) = serde_json::from_str(field).ok()?;
    let (cutoff, expires) = value.split_once(' ')?;
    Some(Revocation {
        kind: Kind::parse(&kind)?,
        issuer,
        value: value_of,
        cutoff_ms: cutoff.parse().ok()?,
        expires_ms: expires.parse().ok()?,
    })
}

/// A published revocation.
#[derive(Debug, PartialEq, Eq)]
struct Published {
    seq: u64,
    digest: String,
    field: String,
    value: String,
    revocation: Revocation,
}

fn published(payload: &[u8]) -> Option<Published> {
    let payload = std::str::from_utf8(payload).ok()?;
    let mut lines = payload.splitn(4, '\n');
    let seq = lines.next()?.parse().ok()?;
    let digest = lines.next()?.to_owned();
    let field = lines.next()?.to_owned();
    let value = lines.next()?.to_owned();
    let revocation = entry_of(&field, &value)?;
    Some(Published {
        seq,
        digest,
        field,
        value,
        revocation,
    })
}

/// The digest after `field` and `value` follow `previous`, as the write script chains it.
fn chain(previous: &str, field: &str, value: &str) -> String {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    for part in [previous, "\n", field, "\n", value] {
        context.update(part.as_bytes());
    }
    context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_messages_read_back() {
        let r = Revocation {
            kind: Kind::Sub,
            issuer: "https://idp.example/".into(),
            value: "user \"1\"\n".into(),
            cutoff_ms: 1_700_000_000_000,
            expires_ms: 1_700_086_400_000,
        };
        let field = field_of(&r);
        assert!(!field.contains('\n'));
        assert_eq!(
            entry_of(&field, "1700000000000 1700086400000"),
            Some(r.clone())
        );
        let message = format!("7\nabc\n{field}\n1700000000000 1700086400000");
        let read = published(message.as_bytes()).unwrap();
        assert_eq!(
            (read.seq, read.digest.as_str(), read.revocation),
            (7, "abc", r)
        );
        assert_eq!(published(b"x\nd\n[]\n1 2"), None);
        assert_eq!(entry_of(&field, "1 two"), None);
        assert_eq!(entry_of("[\"nope\",\"i\",\"v\"]", "1 2"), None);
    }

    /// The digest Redis's `sha1hex` chains: SHA-1 of the text, lower-case hex.
    #[test]
    fn the_chain_is_sha1_over_previous_field_and_value() {
        let digest = chain("", "f", "v");
        assert_eq!(digest, "322647acf2b7fa552417a719c99bc682e55b3cbc");
        assert_ne!(chain(&digest, "f", "v"), digest);
    }
}
