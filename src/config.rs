//! The typed [`Config`] built at start-up from defaults < file < environment < flags.
//!
//! This is the only module that reads the environment (through clap's `env` twins, in
//! [`cli`]) or the configuration file ([`file`]). Every value is parsed into the type the
//! module that uses it owns, and every problem is reported at once, so the rest of the
//! service never sees an unchecked setting.

mod cli;
pub mod defaults;
mod file;
mod issuers;
mod rules;
pub mod source;
mod token_sources;
pub mod values;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clap::ValueEnum;

use crate::binding::dpop::{DpopMode, DpopSettings};
use crate::clock::Clock;
use crate::jwks::JwksSettings;
use crate::policy::{Action, Policy, ScopeRule};
use crate::resource_metadata::{ResourceFacts, ResourceMetadata, parse_resource};
use crate::token_source::TokenSource;
use crate::upstream::{IdentityHeader, UpstreamConfig};
use crate::verify::IssuerConfig;
use crate::wire::httpd::HttpLimits;
pub use cli::{Cli, Command, DemoArgs, ExplainArgs, ServeArgs};
pub use file::FileConfig;
pub use values::{parse_algorithms, parse_duration};

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

/// Where DPoP proofs' `jti`s are remembered. Fixed at start-up: a reload that changes it
/// is named in the log and waits for a restart.
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

/// The whole, checked configuration of a running service.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `None` when the admin port is off.
    pub admin_listen: Option<SocketAddr>,
    /// The HTTP authorization endpoint; `None` when off (the default).
    pub http_listen: Option<SocketAddr>,
    /// Where the access token may be, tried in order.
    pub token_sources: Vec<TokenSource>,
    pub issuers: Vec<IssuerConfig>,
    pub jwks: JwksSettings,
    pub scope_claims: Vec<String>,
    pub max_header_bytes: usize,
    pub token_cache: TokenCacheConfig,
    pub realm: String,
    pub policy: Policy,
    pub upstream: UpstreamConfig,
    pub log_level: String,
    pub log_format: LogFormat,
    /// How often the file is polled for changes; `None`: only SIGHUP reloads.
    pub config_poll: Option<Duration>,
    /// How long a changed file must stay unchanged before it is applied.
    pub config_settle: Duration,
    /// Denial log lines per code per second; 0 logs every denial.
    pub log_deny_rate: u32,
    /// The wall clock tokens are checked against: the system's, or a manual one in tests.
    pub clock: Clock,
    /// The flags and environment this configuration was built from; a reload re-reads
    /// the file and applies them over it again.
    pub origin: ServeArgs,
    /// How DPoP proofs are checked.
    pub dpop: DpopSettings,
    pub replay_store: ReplayStoreConfig,
    /// Unexpired proofs one proof key may hold in the replay store (`dpop.replay_max_per_key`).
    pub replay_max_per_key: usize,
    /// RFC 9728 metadata, when a resource identifier is configured.
    pub resource_metadata: Option<ResourceMetadata>,
    /// Limits of the HTTP listeners (`http_server`); set at start-up.
    pub http_limits: HttpLimits,
}

/// Every problem found in the configuration, one per line, each naming its option.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors while a configuration is being built.
struct Errors(Vec<String>);

impl Errors {
    fn push(&mut self, field: &str, message: impl std::fmt::Display) {
        self.0.push(format!("{field}: {message}"));
    }

    /// Records an error and yields `None`, or yields the value.
    fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|e| self.push(field, e)).ok()
    }
}

impl Config {
    /// Builds the configuration from `serve` flags, reading `--config` if given.
    pub fn load(args: &ServeArgs) -> Result<Config, ConfigErrors> {
        let file = match &args.config {
            None => FileConfig::default(),
            Some(path) => read_file(path)?,
        };
        Config::from_sources(args, file)
    }

    /// Builds the configuration from `serve` flags and `bytes`, the content of their
    /// `--config` file already read ([`source::read`]).
    pub fn load_bytes(args: &ServeArgs, bytes: &[u8]) -> Result<Config, ConfigErrors> {
        let path = args.config.as_deref().unwrap_or(Path::new("config"));
        Config::from_sources(args, parse_bytes(path, bytes)?)
    }

    /// Merges defaults < `file` < `args` into a checked configuration.
    pub fn from_sources(args: &ServeArgs, file: FileConfig) -> Result<Config, ConfigErrors> {
        let mut e = Errors(Vec::new());
        let settings = rules::parse_policy_settings(&mut e, &file);
        let log_file = file.log.unwrap_or_default();
        let allow_http = args.insecure_allow_http || file.insecure_allow_http.unwrap_or(false);

        let listen_text = pick(&args.listen, &file.listen, defaults::LISTEN);
        let listen = e.check("listen", parse_addr(&listen_text));
        let admin_text = pick(
            &args.admin_listen,
            &file.admin_listen,
            defaults::ADMIN_LISTEN,
        );
        let admin_listen = if admin_text == "off" {
            Some(None)
        } else {
            e.check("admin_listen", parse_addr(&admin_text)).map(Some)
        };
        let settle_text = pick(
            &args.config_settle,
            &file.config_settle,
            defaults::CONFIG_SETTLE,
        );
        let config_settle = e
            .check("config_settle", parse_duration(&settle_text))
            .unwrap_or_default();
        let poll_text = pick(&args.config_poll, &file.config_poll, defaults::CONFIG_POLL);
        let config_poll = if poll_text == "off" {
            Some(None)
        } else {
            positive(&mut e, "config_poll", &poll_text).map(Some)
        };
        let http_text = pick(&args.http_listen, &file.http_listen, defaults::HTTP_LISTEN);
        let http_listen = if http_text == "off" {
            Some(None)
        } else {
            e.check("http_listen", parse_addr(&http_text)).map(Some)
        };
        let token_sources = token_sources::parse_token_sources(&mut e, file.token_sources);
        let leeway_text = pick(&args.leeway, &file.leeway, defaults::LEEWAY);
        let leeway = e.check("leeway", parse_duration(&leeway_text));
        let jwks = parse_jwks_settings(&mut e, args, file.jwks.unwrap_or_default(), allow_http);
        let max_header_bytes = args
            .max_header_bytes
            .or(file.max_header_bytes)
            .unwrap_or(defaults::MAX_HEADER_BYTES);
        if max_header_bytes == 0 {
            e.push("max_header_bytes", "must be greater than 0");
        }
        let scope_claims = if !args.scope_claims.is_empty() {
            trimmed(&args.scope_claims)
        } else {
            file.scope_claims
                .as_deref()
                .map(trimmed)
                .unwrap_or_else(|| defaults::SCOPE_CLAIMS.map(String::from).to_vec())
        };
        if scope_claims.is_empty() {
            e.push("scope_claims", "at least one claim is required");
        }
        let cache_file = file.token_cache.unwrap_or_default();
        let token_cache = TokenCacheConfig {
            enabled: args
                .token_cache
                .or(cache_file.enabled)
                .unwrap_or(defaults::TOKEN_CACHE),
            max_entries: args
                .token_cache_max_entries
                .or(cache_file.max_entries)
                .unwrap_or(defaults::TOKEN_CACHE_MAX_ENTRIES),
            max_bytes: e
                .check(
                    "token_cache.max_bytes",
                    values::parse_bytes(&pick(
                        &args.token_cache_max_bytes,
                        &cache_file.max_bytes,
                        defaults::TOKEN_CACHE_MAX_BYTES,
                    )),
                )
                .unwrap_or(u64::MAX),
        };
        let log_format = match (args.log_format, log_file.format.as_deref()) {
            (Some(f), _) => Some(f),
            (None, None) => Some(LogFormat::Human),
            (None, Some(text)) => e.check(
                "log.format",
                LogFormat::from_str(text, true)
                    .map_err(|_| format!("`{text}` is not human or json")),
            ),
        };
        let issuers = issuers::parse_issuers(&mut e, args, file.issuers, leeway, allow_http);
        let issuer_names: Vec<&str> = issuers.iter().map(|i| i.issuer.as_str()).collect();
        let policy = rules::parse_routes(&mut e, file.routes, settings, &issuer_names);
        let mut upstream = rules::parse_upstream(&mut e, file.upstream.unwrap_or_default());
        // Every token header in every `-`/`_` spelling: removed upstream when stripped,
        // as identity headers are (CGI, WSGI and PHP read them all as one).
        upstream.token_headers = Vec::new();
        for source in &token_sources {
            if let TokenSource::Header { name, .. } = source {
                match IdentityHeader::new(name) {
                    Ok(header) => {
                        upstream.token_headers.push(name.clone());
                        upstream
                            .token_headers
                            .extend(header.confusable().iter().cloned());
                    }
                    Err(why) => e.push("token_sources", why),
                }
            }
        }
        let dpop_file = file.dpop.unwrap_or_default();
        let dpop = parse_dpop(&mut e, &dpop_file, allow_http);
        let replay_store = parse_replay_store(&mut e, &dpop_file);
        let replay_max_per_key = dpop_file
            .replay_max_per_key
            .unwrap_or(defaults::DPOP_REPLAY_MAX_PER_KEY);
        if replay_max_per_key == 0 {
            e.push("dpop.replay_max_per_key", "must be greater than 0");
        }
        let resource_metadata = match (&file.protected_resource, &dpop) {
            (Some(resource), Some(dpop)) => parse_resource_metadata(
                &mut e,
                resource,
                allow_http,
                &issuers,
                &policy,
                &token_sources,
                dpop,
            ),
            _ => None,
        };
        let http_limits = parse_http_limits(&mut e, file.http_server.as_ref());
        for claim in &upstream.claim_headers {
            let name = claim.header.name();
            let key = claim.header.spelling_key();
            if upstream
                .token_headers
                .iter()
                .any(|t| t.replace('_', "-") == key)
            {
                e.push("token_sources", format!("`{name}` is also a claim header"));
            }
        }

        match (
            listen,
            admin_listen,
            http_listen,
            jwks,
            log_format,
            config_poll,
            dpop,
            replay_store,
        ) {
            (
                Some(listen),
                Some(admin_listen),
                Some(http_listen),
                Some(jwks),
                Some(log_format),
                Some(config_poll),
                Some(dpop),
                Some(replay_store),
            ) if e.0.is_empty() => Ok(Config {
                dpop,
                replay_store,
                replay_max_per_key,
                resource_metadata,
                http_limits,
                listen,
                admin_listen,
                http_listen,
                token_sources,
                issuers,
                jwks,
                scope_claims,
                max_header_bytes,
                token_cache,
                realm: pick(&args.realm, &file.realm, defaults::REALM),
                policy,
                upstream,
                log_level: pick(&args.log_level, &log_file.level, defaults::LOG_LEVEL),
                log_format,
                config_poll,
                config_settle,
                log_deny_rate: args
                    .log_deny_rate
                    .or(log_file.deny_rate)
                    .unwrap_or(defaults::LOG_DENY_RATE),
                clock: Clock::system(),
                origin: args.clone(),
            }),
            _ => Err(ConfigErrors(e.0)),
        }
    }
}

/// The DPoP proof settings; `None` when one is bad (and recorded).
fn parse_dpop(e: &mut Errors, file: &file::FileDpop, allow_http: bool) -> Option<DpopSettings> {
    let algorithms = match &file.algorithms {
        None => e.check(
            "dpop.algorithms",
            parse_algorithms(&defaults::DPOP_ALGORITHMS.map(String::from)),
        ),
        Some(names) => e.check("dpop.algorithms", parse_algorithms(names)),
    };
    let max_age = positive(
        e,
        "dpop.max_age",
        file.max_age.as_deref().unwrap_or(defaults::DPOP_MAX_AGE),
    );
    let clock_skew = e.check(
        "dpop.clock_skew",
        parse_duration(
            file.clock_skew
                .as_deref()
                .unwrap_or(defaults::DPOP_CLOCK_SKEW),
        ),
    );
    let public_base_url = match file.public_base_url.as_deref() {
        None => Some(None),
        Some(text) => e
            .check(
                "dpop.public_base_url",
                parse_resource(text, allow_http).map_err(|err| {
                    format!("{err} (the scheme, host and path prefix clients address)")
                }),
            )
            .map(Some),
    };
    Some(DpopSettings {
        algorithms: algorithms?,
        max_age: max_age?,
        clock_skew: clock_skew?,
        public_base_url: public_base_url?,
    })
}

/// The HTTP listeners' limits: the defaults of [`HttpLimits`] where the file says nothing.
fn parse_http_limits(e: &mut Errors, file: Option<&file::FileHttpServer>) -> HttpLimits {
    let defaults = HttpLimits::default();
    let Some(file) = file else {
        return defaults;
    };
    let duration = |e: &mut Errors, field: &str, text: &Option<String>, default: Duration| {
        text.as_deref()
            .map_or(Some(default), |t| positive(e, field, t))
            .unwrap_or(default)
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
            &file.header_read_timeout,
            defaults.header_read_timeout,
        ),
        idle_timeout: duration(
            e,
            "http_server.idle_timeout",
            &file.idle_timeout,
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
            &file.drain_timeout,
            defaults.drain_timeout,
        ),
    }
}

/// Where proofs' `jti`s go; `None` when the setting is bad (and recorded).
fn parse_replay_store(e: &mut Errors, file: &file::FileDpop) -> Option<ReplayStoreConfig> {
    let store = file
        .replay_store
        .as_deref()
        .unwrap_or(defaults::DPOP_REPLAY_STORE)
        .trim();
    let timeout = positive(
        e,
        "dpop.replay_store_timeout",
        file.replay_store_timeout
            .as_deref()
            .unwrap_or(defaults::DPOP_REPLAY_TIMEOUT),
    );
    let max_entries = file
        .replay_max_entries
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

/// RFC 9728 metadata from the resource identifier and what the rest of the configuration
/// says (issuers, route scopes, token sources, DPoP).
fn parse_resource_metadata(
    e: &mut Errors,
    file: &file::FileProtectedResource,
    allow_http: bool,
    issuers: &[IssuerConfig],
    policy: &Policy,
    token_sources: &[TokenSource],
    dpop: &DpopSettings,
) -> Option<ResourceMetadata> {
    let resource = e.check(
        "protected_resource.resource",
        parse_resource(file.resource.trim(), allow_http),
    )?;
    let scopes = policy
        .rules()
        .iter()
        .filter_map(|r| match &r.action {
            Action::Token(t) => Some(&t.scopes),
            _ => None,
        })
        .flat_map(|s| match s {
            ScopeRule::None => &[][..],
            ScopeRule::AllOf(v) | ScopeRule::AnyOf(v) => v.as_slice(),
        })
        .map(String::as_str)
        .collect();
    let mut bearer_methods = Vec::new();
    for source in token_sources {
        let method = match source {
            TokenSource::Header { .. } => "header",
            TokenSource::Query(_) => "query",
            TokenSource::Cookie(_) => continue,
        };
        if !bearer_methods.contains(&method) {
            bearer_methods.push(method);
        }
    }
    let dpop_accepted = issuers.iter().any(|i| i.dpop != DpopMode::Off);
    let dpop_algs = if dpop_accepted {
        dpop.algorithms
            .iter()
            .map(|a| crate::alg::name(*a))
            .collect()
    } else {
        Vec::new()
    };
    ResourceMetadata::build(&ResourceFacts {
        resource: Some(&resource),
        resource_text: file.resource.trim(),
        resource_name: file.resource_name.as_deref(),
        resource_documentation: file.resource_documentation.as_deref(),
        authorization_servers: issuers.iter().map(|i| i.issuer.as_str()).collect(),
        scopes,
        bearer_methods,
        dpop_algs,
        dpop_required: !issuers.is_empty() && issuers.iter().all(|i| i.dpop == DpopMode::Required),
    })
}

/// The JWKS fetch settings; `None` when one of them is bad (and recorded).
fn parse_jwks_settings(
    e: &mut Errors,
    args: &ServeArgs,
    file: file::FileJwks,
    allow_http: bool,
) -> Option<JwksSettings> {
    let refresh = positive(
        e,
        "jwks.refresh",
        &pick(&args.jwks_refresh, &file.refresh, defaults::JWKS_REFRESH),
    );
    let cooldown = positive(
        e,
        "jwks.cooldown",
        &pick(&args.jwks_cooldown, &file.cooldown, defaults::JWKS_COOLDOWN),
    );
    let timeout = positive(
        e,
        "jwks.timeout",
        &pick(&args.jwks_timeout, &file.timeout, defaults::JWKS_TIMEOUT),
    );
    let max_bytes = args
        .jwks_max_bytes
        .or(file.max_bytes)
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

/// Reads and parses a configuration file; errors name the file and the line.
pub fn read_file(path: &Path) -> Result<FileConfig, ConfigErrors> {
    let bytes = source::read(path).map_err(|err| ConfigErrors(vec![format!("config: {err}")]))?;
    parse_bytes(path, &bytes)
}

fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<FileConfig, ConfigErrors> {
    let text = std::str::from_utf8(bytes).map_err(|_| {
        ConfigErrors(vec![format!(
            "config: {} is not UTF-8 text",
            path.display()
        )])
    })?;
    file::parse(text).map_err(|err| ConfigErrors(vec![format!("{}: {err}", path.display())]))
}

/// Parses configuration file text (YAML); errors name the line and column.
pub fn parse_file(text: &str) -> Result<FileConfig, String> {
    file::parse(text)
}

fn pick(flag: &Option<String>, file: &Option<String>, default: &str) -> String {
    flag.clone()
        .or_else(|| file.clone())
        .unwrap_or_else(|| default.to_owned())
}

fn trimmed(values: &[String]) -> Vec<String> {
    values
        .iter()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not an address like 0.0.0.0:9191"))
}

fn positive(e: &mut Errors, field: &str, text: &str) -> Option<Duration> {
    match parse_duration(text) {
        Ok(d) if d.is_zero() => {
            e.push(field, "must be greater than 0");
            None
        }
        Ok(d) => Some(d),
        Err(err) => {
            e.push(field, err);
            None
        }
    }
}

#[cfg(test)]
mod tests;
