//! The settings bound at start-up: listeners and their limits, logging, the token cache's
//! size, how the file is watched, JWKS fetching, the replay store. A reload never applies
//! them ([`Startup::changes`] names the ones a new file changes, which wait for a restart).

use std::net::SocketAddr;
use std::time::Duration;

use clap::ValueEnum;

use super::file::{FileConfig, FileDpop, FileHttpServer, FileJwks, Poll};
use super::signals::{RevocationConfig, SsfConfig};
use super::values::{parse_bytes, parse_duration};
use super::{Errors, ServeArgs, defaults};
use crate::jwks::JwksSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// The verified-token cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCacheConfig {
    pub enabled: bool,
    pub max_entries: u64,
    /// What the entries may hold in all, in bytes (`token_cache.max_bytes`).
    pub max_bytes: u64,
}

/// Where DPoP proofs' `jti`s are remembered.
#[derive(Clone, PartialEq, Eq)]
pub enum ReplayStoreConfig {
    /// In this process, at most `max_entries` at once (one replica).
    Memory { max_entries: usize },
    /// A Redis server every replica shares.
    Redis { url: String, timeout: Duration },
}

/// Never prints the Redis URL's password.
impl std::fmt::Debug for ReplayStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayStoreConfig::Memory { max_entries } => {
                write!(f, "Memory {{ max_entries: {max_entries} }}")
            }
            ReplayStoreConfig::Redis { url, timeout } => write!(
                f,
                "Redis {{ url: {:?}, timeout: {timeout:?} }}",
                crate::fetch_url::redact_str(url)
            ),
        }
    }
}

/// The bounds every HTTP listener runs within (`http_server` in the configuration file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request head must arrive whole within this time. hyper counts it from when it
    /// starts waiting for a head, between kept-alive requests too, so it also bounds how
    /// long a connection may wait idle for its next request.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (the shorter of this
    /// and `header_read_timeout` applies between requests).
    pub idle_timeout: Duration,
    /// The largest request head read; a larger one is answered 431 and closed.
    pub max_header_bytes: usize,
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// On shutdown, how long open connections may take to finish their request; also how
    /// long a connection being closed for idleness may take to go.
    pub drain_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            max_connections: 1024,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Everything bound at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Startup {
    pub listen: SocketAddr,
    /// `None` when the admin port is off.
    pub admin_listen: Option<SocketAddr>,
    /// The HTTP authorization endpoint; `None` when off (the default).
    pub http_listen: Option<SocketAddr>,
    /// Limits of the HTTP listeners (`http_server`).
    pub http_limits: HttpLimits,
    pub log_level: String,
    pub log_format: LogFormat,
    /// Denial log lines per code per second; 0 logs every denial.
    pub log_deny_rate: u32,
    pub token_cache: TokenCacheConfig,
    /// How often the file is polled for changes; `None`: only SIGHUP reloads.
    pub config_poll: Option<Duration>,
    /// How long a changed file must stay unchanged before it is applied.
    pub config_settle: Duration,
    pub jwks: JwksSettings,
    pub replay_store: ReplayStoreConfig,
    /// Unexpired proofs one proof key may hold in the replay store.
    pub replay_max_per_key: usize,
    /// Revocations checked on every token; `None` when there is no `revocation` block.
    pub revocation: Option<RevocationConfig>,
    /// The Shared Signals receiver; `None` when there is no `ssf` block.
    pub ssf: Option<SsfConfig>,
    /// Traces; `None` when off.
    pub tracing: Option<super::TracesConfig>,
}

impl Startup {
    /// The settings `new` gives another value than `self`, by their names in the file.
    /// Every field is named here: a new one does not compile until it is.
    pub fn changes(&self, new: &Startup) -> Vec<&'static str> {
        let Startup {
            listen,
            admin_listen,
            http_listen,
            http_limits,
            log_level,
            log_format,
            log_deny_rate,
            token_cache,
            config_poll,
            config_settle,
            jwks,
            replay_store,
            replay_max_per_key,
            revocation,
            ssf,
            tracing,
        } = self;
        let mut changed = Vec::new();
        let mut differs = |same: bool, name| {
            if !same {
                changed.push(name);
            }
        };
        differs(*listen == new.listen, "listen");
        differs(*admin_listen == new.admin_listen, "admin_listen");
        differs(*http_listen == new.http_listen, "http_listen");
        differs(*http_limits == new.http_limits, "http_server");
        differs(*log_level == new.log_level, "log.level");
        differs(*log_format == new.log_format, "log.format");
        differs(*log_deny_rate == new.log_deny_rate, "log.deny_rate");
        differs(*token_cache == new.token_cache, "token_cache");
        differs(*config_poll == new.config_poll, "config_poll");
        differs(*config_settle == new.config_settle, "config_settle");
        differs(*jwks == new.jwks, "jwks");
        differs(*replay_store == new.replay_store, "dpop.replay_store");
        differs(
            *replay_max_per_key == new.replay_max_per_key,
            "dpop.replay_max_per_key",
        );
        differs(*revocation == new.revocation, "revocation");
        differs(*ssf == new.ssf, "ssf");
        differs(*tracing == new.tracing, "tracing");
        changed
    }
}

/// The start-up settings of `args` over `file`; `None` when one is bad (and recorded).
pub(super) fn parse(
    e: &mut Errors,
    args: &ServeArgs,
    file: &FileConfig,
    allow_http: bool,
) -> Option<Startup> {
    let address = |e: &mut Errors,
                   field: &str,
                   flag: &Option<String>,
                   file: &Option<String>,
                   default: &str| {
        let text = super::pick(flag, file, default);
        if text == "off" {
            Some(None)
        } else {
            e.check(field, parse_addr(&text)).map(Some)
        }
    };
    let listen_text = super::pick(&args.listen, &file.listen, defaults::LISTEN);
    let listen = e.check("listen", parse_addr(&listen_text));
    let admin_listen = address(
        e,
        "admin_listen",
        &args.admin_listen,
        &file.admin_listen,
        defaults::ADMIN_LISTEN,
    );
    let http_listen = address(
        e,
        "http_listen",
        &args.http_listen,
        &file.http_listen,
        defaults::HTTP_LISTEN,
    );
    let config_settle = duration(
        e,
        "config_settle",
        args.config_settle.as_deref(),
        file.config_settle,
        defaults::CONFIG_SETTLE,
    );
    let config_poll = match (&args.config_poll, file.config_poll) {
        (Some(text), _) if text.trim() == "off" => Some(None),
        (Some(text), _) => positive(
            e,
            "config_poll",
            Some(text.as_str()),
            None,
            defaults::CONFIG_POLL,
        )
        .map(Some),
        (None, Some(Poll::Off)) => Some(None),
        (None, Some(Poll::Every(every))) => {
            positive(e, "config_poll", None, Some(every), defaults::CONFIG_POLL).map(Some)
        }
        (None, None) => positive(e, "config_poll", None, None, defaults::CONFIG_POLL).map(Some),
    };
    let log = file.log.as_ref();
    let log_format = match (args.log_format, log.and_then(|l| l.format.as_deref())) {
        (Some(format), _) => Some(format),
        (None, None) => Some(LogFormat::Human),
        (None, Some(text)) => e.check(
            "log.format",
            LogFormat::from_str(text, true).map_err(|_| format!("`{text}` is not human or json")),
        ),
    };
    let cache = file.token_cache.as_ref();
    let max_bytes = match (&args.token_cache_max_bytes, cache.and_then(|c| c.max_bytes)) {
        (Some(text), _) => e.check("token_cache.max_bytes", parse_bytes(text)),
        (None, Some(bytes)) => Some(bytes),
        (None, None) => parse_bytes(defaults::TOKEN_CACHE_MAX_BYTES).ok(),
    };
    let token_cache = TokenCacheConfig {
        enabled: args
            .token_cache
            .or(cache.and_then(|c| c.enabled))
            .unwrap_or(defaults::TOKEN_CACHE),
        max_entries: args
            .token_cache_max_entries
            .or(cache.and_then(|c| c.max_entries))
            .unwrap_or(defaults::TOKEN_CACHE_MAX_ENTRIES),
        max_bytes: max_bytes.unwrap_or(u64::MAX),
    };
    let dpop = file.dpop.as_ref();
    let replay_max_per_key = dpop
        .and_then(|d| d.replay_max_per_key)
        .unwrap_or(defaults::DPOP_REPLAY_MAX_PER_KEY);
    if replay_max_per_key == 0 {
        e.push("dpop.replay_max_per_key", "must be greater than 0");
    }
    let jwks = jwks_settings(e, args, file.jwks.as_ref(), allow_http);
    let replay_store = replay_store(e, dpop);
    let http_limits = http_limits(e, file.http_server.as_ref());
    let revocation = super::signals::parse_revocation(e, file.revocation.as_ref());
    let ssf = super::signals::parse_ssf(
        e,
        file.ssf.as_ref(),
        revocation.as_ref().and_then(Option::as_ref),
        allow_http,
    );
    let tracing = super::traces::parse(e, file.tracing.as_ref(), &|name| std::env::var(name).ok());
    Some(Startup {
        listen: listen?,
        admin_listen: admin_listen?,
        http_listen: http_listen?,
        http_limits,
        log_level: super::pick(
            &args.log_level,
            &log.and_then(|l| l.level.clone()),
            defaults::LOG_LEVEL,
        ),
        log_format: log_format?,
        log_deny_rate: args
            .log_deny_rate
            .or(log.and_then(|l| l.deny_rate))
            .unwrap_or(defaults::LOG_DENY_RATE),
        token_cache,
        config_poll: config_poll?,
        config_settle: config_settle?,
        jwks: jwks?,
        replay_store: replay_store?,
        replay_max_per_key,
        revocation: revocation?,
        ssf: ssf?,
        tracing: tracing?,
    })
}

/// A duration from its flag (text), else the file (read typed), else `default`; `None`
/// when the flag's text is not one (recorded).
pub(super) fn duration(
    e: &mut Errors,
    field: &str,
    flag: Option<&str>,
    file: Option<Duration>,
    default: &str,
) -> Option<Duration> {
    match (flag, file) {
        (Some(text), _) => e.check(field, parse_duration(text)),
        (None, Some(duration)) => Some(duration),
        (None, None) => e.check(field, parse_duration(default)),
    }
}

/// [`duration`], which must not be zero.
pub(super) fn positive(
    e: &mut Errors,
    field: &str,
    flag: Option<&str>,
    file: Option<Duration>,
    default: &str,
) -> Option<Duration> {
    let value = duration(e, field, flag, file, default)?;
    if value.is_zero() {
        e.push(field, "must be greater than 0");
        return None;
    }
    Some(value)
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not an address like 0.0.0.0:9191"))
}

/// The JWKS fetch settings; `None` when one of them is bad (and recorded).
fn jwks_settings(
    e: &mut Errors,
    args: &ServeArgs,
    file: Option<&FileJwks>,
    allow_http: bool,
) -> Option<JwksSettings> {
    let refresh = positive(
        e,
        "jwks.refresh",
        args.jwks_refresh.as_deref(),
        file.and_then(|f| f.refresh),
        defaults::JWKS_REFRESH,
    );
    let cooldown = positive(
        e,
        "jwks.cooldown",
        args.jwks_cooldown.as_deref(),
        file.and_then(|f| f.cooldown),
        defaults::JWKS_COOLDOWN,
    );
    let timeout = positive(
        e,
        "jwks.timeout",
        args.jwks_timeout.as_deref(),
        file.and_then(|f| f.timeout),
        defaults::JWKS_TIMEOUT,
    );
    let max_bytes = args
        .jwks_max_bytes
        .or(file.and_then(|f| f.max_bytes))
        .unwrap_or(defaults::JWKS_MAX_BYTES);
    if max_bytes == 0 {
        e.push("jwks.max_bytes", "must be greater than 0");
    }
    Some(JwksSettings {
        refresh: refresh?,
        cooldown: cooldown?,
        timeout: timeout?,
        max_bytes,
        insecure_allow_http: allow_http,
    })
}

/// The HTTP listeners' limits: the defaults of [`HttpLimits`] where the file says nothing.
fn http_limits(e: &mut Errors, file: Option<&FileHttpServer>) -> HttpLimits {
    let defaults = HttpLimits::default();
    let Some(file) = file else {
        return defaults;
    };
    let duration =
        |e: &mut Errors, field: &str, value: Option<Duration>, default: Duration| match value {
            Some(d) if d.is_zero() => {
                e.push(field, "must be greater than 0");
                default
            }
            Some(d) => d,
            None => default,
        };
    let count = |e: &mut Errors, field: &str, value: Option<usize>, default: usize| match value {
        Some(0) => {
            e.push(field, "must be greater than 0");
            default
        }
        Some(n) => n,
        None => default,
    };
    HttpLimits {
        header_read_timeout: duration(
            e,
            "http_server.header_read_timeout",
            file.header_read_timeout,
            defaults.header_read_timeout,
        ),
        idle_timeout: duration(
            e,
            "http_server.idle_timeout",
            file.idle_timeout,
            defaults.idle_timeout,
        ),
        max_header_bytes: count(
            e,
            "http_server.max_header_bytes",
            file.max_header_bytes,
            defaults.max_header_bytes,
        ),
        max_connections: count(
            e,
            "http_server.max_connections",
            file.max_connections,
            defaults.max_connections,
        ),
        drain_timeout: duration(
            e,
            "http_server.drain_timeout",
            file.drain_timeout,
            defaults.drain_timeout,
        ),
    }
}

/// Where proofs' `jti`s go; `None` when the setting is bad (and recorded).
fn replay_store(e: &mut Errors, file: Option<&FileDpop>) -> Option<ReplayStoreConfig> {
    let store = file
        .and_then(|f| f.replay_store.as_deref())
        .unwrap_or(defaults::DPOP_REPLAY_STORE)
        .trim();
    let timeout = positive(
        e,
        "dpop.replay_store_timeout",
        None,
        file.and_then(|f| f.replay_store_timeout),
        defaults::DPOP_REPLAY_TIMEOUT,
    );
    let max_entries = file
        .and_then(|f| f.replay_max_entries)
        .unwrap_or(defaults::DPOP_REPLAY_MAX_ENTRIES);
    if max_entries == 0 {
        e.push("dpop.replay_max_entries", "must be greater than 0");
    }
    if store == "memory" {
        return Some(ReplayStoreConfig::Memory { max_entries });
    }
    if !(store.starts_with("redis://") || store.starts_with("rediss://"))
        || url::Url::parse(store).is_err()
    {
        e.push(
            "dpop.replay_store",
            format!(
                "`{}` is not `memory` or a redis:// or rediss:// URL",
                crate::fetch_url::redact_str(store)
            ),
        );
        return None;
    }
    Some(ReplayStoreConfig::Redis {
        url: store.to_owned(),
        timeout: timeout?,
    })
}
