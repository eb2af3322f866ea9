//! Command line, environment, configuration file, and the typed [`Config`] built from
//! them at start-up: defaults < file < environment < flags.
//!
//! This is the only module that reads the environment (through clap's `env` twins) or the
//! configuration file. Every value is parsed into its final type here and every problem is
//! reported at once, so the rest of the service never sees an unchecked setting.

mod file;
pub mod values;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use jsonwebtoken::Algorithm;
use url::Url;

use crate::policy::{Action, HostPattern, PathPattern, Policy, Rule, ScopeRule};
use crate::upstream::{ClaimHeader, UpstreamConfig};
pub use file::FileConfig;
pub use values::{parse_algorithms, parse_duration};

/// Command line of the `jwt-authz` binary.
#[derive(Debug, Parser)]
#[command(
    name = "jwt-authz",
    version,
    about = "Envoy ext_authz service that verifies JWT access tokens against a cached JWKS"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve envoy.service.auth.v3.Authorization/Check over gRPC.
    Serve(Box<ServeArgs>),
    /// Run a self-contained demo: a development issuer, the Check service, an echo
    /// upstream and, when `envoy` is found, Envoy in front of them.
    Demo(Box<DemoArgs>),
    /// Validate a configuration file and exit: 0 when it is good, 64 with one line per
    /// problem when it is not.
    CheckConfig {
        /// The YAML configuration file.
        file: PathBuf,
    },
}

/// Flags of `jwt-authz serve`. Each has an environment twin and overrides the file.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// YAML configuration file (issuers, route rules, claim headers, and every flag below).
    #[arg(long, env = "JWT_AUTHZ_CONFIG")]
    pub config: Option<PathBuf>,

    /// Expected `iss`, compared exactly (Auth0: `https://TENANT.auth0.com/`, trailing slash
    /// included). Replaces the file's `issuers` when given.
    #[arg(long, env = "JWT_AUTHZ_ISSUER")]
    pub issuer: Option<String>,

    /// Accepted `aud` value; repeat the flag (or comma-separate the env var) for several.
    /// A token passes when any of its audiences is one of these.
    #[arg(long = "audience", env = "JWT_AUTHZ_AUDIENCE", value_delimiter = ',')]
    pub audiences: Vec<String>,

    /// JWKS URL. Default: `jwks_uri` from the issuer's OpenID discovery document, else
    /// `<issuer>/.well-known/jwks.json`.
    #[arg(long, env = "JWT_AUTHZ_JWKS_URI")]
    pub jwks_uri: Option<String>,

    /// Accepted signing algorithms, comma-separated [default: RS256]. `none` and HS* are
    /// always refused.
    #[arg(long, env = "JWT_AUTHZ_ALGORITHMS", value_delimiter = ',')]
    pub algorithms: Vec<String>,

    /// Accept only RFC 9068 access tokens (`typ: at+jwt`), so ID tokens are refused.
    #[arg(long, env = "JWT_AUTHZ_REQUIRE_ACCESS_TOKEN_TYPE")]
    pub require_access_token_type: bool,

    /// gRPC listen address [default: 0.0.0.0:9191].
    #[arg(long, env = "JWT_AUTHZ_LISTEN")]
    pub listen: Option<String>,

    /// Admin HTTP listen address for /metrics, /healthz and /readyz [default: 0.0.0.0:9192];
    /// `off` disables it.
    #[arg(long, env = "JWT_AUTHZ_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,

    /// Clock skew tolerated on `exp` and `nbf` (`60s`, `2m`; a bare number is seconds)
    /// [default: 60s].
    #[arg(long, env = "JWT_AUTHZ_LEEWAY")]
    pub leeway: Option<String>,

    /// How often the JWKS is refetched in the background [default: 10m].
    #[arg(long, env = "JWT_AUTHZ_JWKS_REFRESH")]
    pub jwks_refresh: Option<String>,

    /// Minimum time between two fetches triggered by unknown `kid`s [default: 5s]. Lower
    /// values let a flood of forged `kid`s reach the identity provider more often.
    #[arg(long, env = "JWT_AUTHZ_JWKS_COOLDOWN")]
    pub jwks_cooldown: Option<String>,

    /// Timeout of one JWKS or discovery fetch [default: 5s].
    #[arg(long, env = "JWT_AUTHZ_JWKS_TIMEOUT")]
    pub jwks_timeout: Option<String>,

    /// Largest JWKS or discovery body accepted, in bytes [default: 1048576].
    #[arg(long, env = "JWT_AUTHZ_JWKS_MAX_BYTES")]
    pub jwks_max_bytes: Option<usize>,

    /// Claims read for scopes, comma-separated [default: scope,scp,permissions].
    #[arg(long, env = "JWT_AUTHZ_SCOPE_CLAIMS", value_delimiter = ',')]
    pub scope_claims: Vec<String>,

    /// Largest `authorization` header accepted, in bytes [default: 8192]; longer ones are
    /// `invalid_header`.
    #[arg(long, env = "JWT_AUTHZ_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<usize>,

    /// Cache the claims of verified tokens, keyed by a hash of the token [default: true].
    #[arg(long, env = "JWT_AUTHZ_TOKEN_CACHE")]
    pub token_cache: Option<bool>,

    /// Most verified tokens kept in the cache [default: 100000].
    #[arg(long, env = "JWT_AUTHZ_TOKEN_CACHE_MAX_ENTRIES")]
    pub token_cache_max_entries: Option<u64>,

    /// `realm` sent in `WWW-Authenticate` [default: jwt-authz].
    #[arg(long, env = "JWT_AUTHZ_REALM")]
    pub realm: Option<String>,

    /// Allow `http://` issuer and JWKS URLs on hosts other than loopback. Risky: keys fetched
    /// over plain HTTP can be replaced by anyone on the path.
    #[arg(long, env = "JWT_AUTHZ_INSECURE_ALLOW_HTTP")]
    pub insecure_allow_http: bool,

    /// Log filter (`info`, `debug`, or a tracing directive such as `jwt_authz=debug`)
    /// [default: info].
    #[arg(long, env = "JWT_AUTHZ_LOG_LEVEL")]
    pub log_level: Option<String>,

    /// Log format [default: human].
    #[arg(long, env = "JWT_AUTHZ_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// Flags of `jwt-authz demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// gRPC Check listen address.
    #[arg(long, default_value = "127.0.0.1:9191")]
    pub listen: SocketAddr,
    /// Development issuer (JWKS, discovery, `/token`) listen address.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub issuer_listen: SocketAddr,
    /// Echo upstream listen address.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub upstream_listen: SocketAddr,
    /// Envoy binary; default: `envoy` on the PATH, if any.
    #[arg(long)]
    pub envoy: Option<PathBuf>,
    /// Do not start Envoy, even when one is found.
    #[arg(long)]
    pub no_envoy: bool,
    /// Envoy bootstrap to run.
    #[arg(long, default_value = "envoy/envoy.yaml")]
    pub envoy_config: PathBuf,
    /// Port of Envoy's HTTP listener (the bootstrap says 8080).
    #[arg(long, default_value_t = 8080)]
    pub envoy_port: u16,
    /// Port of Envoy's admin interface (the bootstrap says 9901).
    #[arg(long, default_value_t = 9901)]
    pub envoy_admin_port: u16,
    /// Optional configuration file for route rules and claim headers; its issuers are
    /// replaced by the demo issuer.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Log filter.
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A fixed JWKS URL.
    Uri(Url),
    /// OpenID discovery under the issuer, falling back to `.well-known/jwks.json`.
    Discover,
}

/// One trusted token issuer.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// Exact `iss` value.
    pub issuer: String,
    /// The issuer parsed as a URL, the base for discovery.
    pub issuer_url: Url,
    /// Accepted audiences; never empty.
    pub audiences: Vec<String>,
    pub jwks: JwksSource,
    /// Allowed `alg` values; never empty, never `none` or HMAC.
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    /// Require RFC 9068 `typ: at+jwt`.
    pub require_access_token_type: bool,
}

/// Settings shared by every issuer's JWKS cache.
#[derive(Debug, Clone)]
pub struct JwksSettings {
    pub refresh: Duration,
    pub cooldown: Duration,
    pub timeout: Duration,
    pub max_bytes: usize,
}

/// The verified-token cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCacheConfig {
    pub enabled: bool,
    pub max_entries: u64,
}

/// The whole, checked configuration of a running service.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `None` when the admin port is off.
    pub admin_listen: Option<SocketAddr>,
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

    /// Merges defaults < `file` < `args` into a checked configuration.
    pub fn from_sources(args: &ServeArgs, file: FileConfig) -> Result<Config, ConfigErrors> {
        let mut e = Errors(Vec::new());
        let jwks_file = file.jwks.unwrap_or_default();
        let log_file = file.log.unwrap_or_default();
        let cache_file = file.token_cache.unwrap_or_default();
        let allow_http = args.insecure_allow_http || file.insecure_allow_http.unwrap_or(false);

        let listen_text = pick(&args.listen, &file.listen, "0.0.0.0:9191");
        let listen = e.check("listen", parse_addr(&listen_text));
        let admin_text = pick(&args.admin_listen, &file.admin_listen, "0.0.0.0:9192");
        let admin_listen = if admin_text == "off" {
            Some(None)
        } else {
            e.check("admin_listen", parse_addr(&admin_text)).map(Some)
        };
        let leeway_text = pick(&args.leeway, &file.leeway, "60s");
        let leeway = e.check("leeway", parse_duration(&leeway_text));
        let refresh = positive(
            &mut e,
            "jwks.refresh",
            &pick(&args.jwks_refresh, &jwks_file.refresh, "10m"),
        );
        let cooldown = positive(
            &mut e,
            "jwks.cooldown",
            &pick(&args.jwks_cooldown, &jwks_file.cooldown, "5s"),
        );
        let timeout = positive(
            &mut e,
            "jwks.timeout",
            &pick(&args.jwks_timeout, &jwks_file.timeout, "5s"),
        );
        let max_bytes = args
            .jwks_max_bytes
            .or(jwks_file.max_bytes)
            .unwrap_or(1024 * 1024);
        if max_bytes == 0 {
            e.push("jwks.max_bytes", "must be greater than 0");
        }
        let max_header_bytes = args
            .max_header_bytes
            .or(file.max_header_bytes)
            .unwrap_or(8192);
        if max_header_bytes == 0 {
            e.push("max_header_bytes", "must be greater than 0");
        }
        let scope_claims = if !args.scope_claims.is_empty() {
            trimmed(&args.scope_claims)
        } else {
            file.scope_claims
                .as_deref()
                .map(trimmed)
                .unwrap_or_else(|| vec!["scope".into(), "scp".into(), "permissions".into()])
        };
        if scope_claims.is_empty() {
            e.push("scope_claims", "at least one claim is required");
        }
        let token_cache = TokenCacheConfig {
            enabled: args.token_cache.or(cache_file.enabled).unwrap_or(true),
            max_entries: args
                .token_cache_max_entries
                .or(cache_file.max_entries)
                .unwrap_or(100_000),
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

        let issuers = match (&args.issuer, file.issuers.is_empty()) {
            (Some(issuer), _) => {
                let file_issuer = file::FileIssuer {
                    issuer: issuer.clone(),
                    audiences: trimmed(&args.audiences),
                    jwks_uri: args.jwks_uri.clone(),
                    algorithms: (!args.algorithms.is_empty()).then(|| args.algorithms.clone()),
                    leeway: None,
                    require_access_token_type: Some(args.require_access_token_type),
                };
                vec![file_issuer]
            }
            (None, file_has_none) => {
                if !args.audiences.is_empty()
                    || args.jwks_uri.is_some()
                    || !args.algorithms.is_empty()
                {
                    e.push(
                        "issuer",
                        "--audience, --jwks-uri and --algorithms need --issuer (file issuers set their own)",
                    );
                }
                if file_has_none {
                    e.push(
                        "issuer",
                        "required (--issuer, JWT_AUTHZ_ISSUER or `issuers` in the file), e.g. https://TENANT.auth0.com/",
                    );
                }
                file.issuers
            }
        };
        let mut checked_issuers = Vec::new();
        for (i, issuer) in issuers.into_iter().enumerate() {
            let field = if args.issuer.is_some() {
                String::new()
            } else {
                format!("issuers[{i}].")
            };
            if let Some(issuer) = check_issuer(&mut e, &field, issuer, leeway, allow_http) {
                if checked_issuers
                    .iter()
                    .any(|c: &IssuerConfig| c.issuer == issuer.issuer)
                {
                    e.push(
                        &format!("{field}issuer"),
                        format!("`{}` is listed twice", issuer.issuer),
                    );
                }
                checked_issuers.push(issuer);
            }
        }

        let policy = check_routes(&mut e, file.routes);
        let upstream = check_upstream(&mut e, file.upstream.unwrap_or_default());

        match (listen, admin_listen, refresh, cooldown, timeout, log_format) {
            (
                Some(listen),
                Some(admin_listen),
                Some(refresh),
                Some(cooldown),
                Some(timeout),
                Some(log_format),
            ) if e.0.is_empty() => Ok(Config {
                listen,
                admin_listen,
                issuers: checked_issuers,
                jwks: JwksSettings {
                    refresh,
                    cooldown,
                    timeout,
                    max_bytes,
                },
                scope_claims,
                max_header_bytes,
                token_cache,
                realm: pick(&args.realm, &file.realm, "jwt-authz"),
                policy,
                upstream,
                log_level: pick(&args.log_level, &log_file.level, "info"),
                log_format,
            }),
            _ => Err(ConfigErrors(e.0)),
        }
    }
}

/// Reads and parses a configuration file; errors name the file and the line.
pub fn read_file(path: &Path) -> Result<FileConfig, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        ConfigErrors(vec![format!(
            "config: cannot read {}: {err}",
            path.display()
        )])
    })?;
    file::parse(&text).map_err(|err| ConfigErrors(vec![format!("{}: {err}", path.display())]))
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

fn check_issuer(
    e: &mut Errors,
    field: &str,
    issuer: file::FileIssuer,
    default_leeway: Option<Duration>,
    allow_http: bool,
) -> Option<IssuerConfig> {
    let f = |name: &str| format!("{field}{name}");
    let issuer_url = if issuer.issuer.trim().is_empty() {
        e.push(&f("issuer"), "must not be empty");
        None
    } else {
        e.check(
            &f("issuer"),
            values::parse_fetch_url(&issuer.issuer, allow_http),
        )
    };
    let audiences = trimmed(&issuer.audiences);
    if audiences.is_empty() {
        let name = if field.is_empty() {
            "audience"
        } else {
            "audiences"
        };
        e.push(&f(name), "at least one is required");
    }
    let jwks = match issuer.jwks_uri.as_deref() {
        None | Some("") => Some(JwksSource::Discover),
        Some(uri) => e
            .check(&f("jwks_uri"), values::parse_fetch_url(uri, allow_http))
            .map(JwksSource::Uri),
    };
    let algorithms = match &issuer.algorithms {
        None => Some(vec![Algorithm::RS256]),
        Some(names) => e.check(&f("algorithms"), parse_algorithms(names)),
    };
    let leeway = match &issuer.leeway {
        None => default_leeway,
        Some(text) => e.check(&f("leeway"), parse_duration(text)),
    };
    Some(IssuerConfig {
        issuer: issuer.issuer,
        issuer_url: issuer_url?,
        audiences,
        jwks: jwks?,
        algorithms: algorithms?,
        leeway: leeway?,
        require_access_token_type: issuer.require_access_token_type.unwrap_or(false),
    })
}

fn check_routes(e: &mut Errors, routes: Vec<file::FileRoute>) -> Policy {
    let mut rules = Vec::new();
    for (i, route) in routes.into_iter().enumerate() {
        let field = |name: &str| format!("routes[{i}].{name}");
        let host = route
            .host
            .as_deref()
            .and_then(|h| e.check(&field("host"), HostPattern::parse(h)));
        let methods: Vec<String> = route
            .methods
            .unwrap_or_default()
            .iter()
            .map(|m| m.trim().to_ascii_uppercase())
            .collect();
        if methods
            .iter()
            .any(|m| m.is_empty() || !m.chars().all(|c| c.is_ascii_alphabetic()))
        {
            e.push(&field("methods"), "each method must be a word such as GET");
        }
        let path = match (&route.path, &route.path_prefix) {
            (Some(_), Some(_)) => {
                e.push(&field("path"), "give `path` or `path_prefix`, not both");
                None
            }
            (Some(p), None) => e.check(&field("path"), PathPattern::parse_path(p)),
            (None, Some(p)) => e.check(&field("path_prefix"), PathPattern::parse_prefix(p)),
            (None, None) => Some(PathPattern::Any),
        };
        let anonymous = route.allow_anonymous.unwrap_or(false);
        let deny = route.deny.unwrap_or(false);
        let action = match (anonymous, deny, route.scopes) {
            (true, false, None) => Some(Action::Anonymous),
            (false, true, None) => Some(Action::Deny),
            (false, false, None) => Some(Action::Token(ScopeRule::None)),
            (false, false, Some(scopes)) => match (scopes.all_of, scopes.any_of) {
                (Some(all), None) if !trimmed(&all).is_empty() => {
                    Some(Action::Token(ScopeRule::AllOf(trimmed(&all))))
                }
                (None, Some(any)) if !trimmed(&any).is_empty() => {
                    Some(Action::Token(ScopeRule::AnyOf(trimmed(&any))))
                }
                _ => {
                    e.push(
                        &field("scopes"),
                        "give a non-empty `all_of` or `any_of`, not both",
                    );
                    None
                }
            },
            _ => {
                e.push(
                    &field("allow_anonymous"),
                    "`allow_anonymous`, `deny` and `scopes` exclude each other",
                );
                None
            }
        };
        if let (Some(path), Some(action)) = (path, action) {
            rules.push(Rule {
                name: route.name.unwrap_or_else(|| format!("routes[{i}]")),
                host,
                methods,
                path,
                action,
            });
        }
    }
    Policy::new(rules)
}

fn check_upstream(e: &mut Errors, file: file::FileUpstream) -> UpstreamConfig {
    let defaults = UpstreamConfig::default();
    let mut claim_headers = Vec::new();
    if let Some(mappings) = file.claims_to_headers {
        for (i, m) in mappings.into_iter().enumerate() {
            let field = format!("upstream.claims_to_headers[{i}]");
            if m.claim.trim().is_empty() {
                e.push(&format!("{field}.claim"), "must not be empty");
            }
            if let Some(header) = e.check(
                &format!("{field}.header"),
                values::parse_header_name(&m.header),
            ) {
                if claim_headers
                    .iter()
                    .any(|c: &ClaimHeader| c.header == header)
                {
                    e.push(
                        &format!("{field}.header"),
                        format!("`{header}` is mapped twice"),
                    );
                }
                claim_headers.push(ClaimHeader {
                    claim: m.claim.trim().to_owned(),
                    header,
                });
            }
        }
    } else {
        claim_headers = defaults.claim_headers;
    }
    let forward_payload_header = file.forward_payload_header.as_deref().and_then(|h| {
        e.check(
            "upstream.forward_payload_header",
            values::parse_header_name(h),
        )
    });
    let array_separator = file.array_separator.unwrap_or(defaults.array_separator);
    if array_separator.chars().any(char::is_control) {
        e.push(
            "upstream.array_separator",
            "must not contain control characters",
        );
    }
    UpstreamConfig {
        claim_headers,
        array_separator,
        forward_payload_header,
        strip_authorization: file.strip_authorization.unwrap_or(false),
        metadata_claims: file
            .metadata_claims
            .map(|c| trimmed(&c))
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests;
