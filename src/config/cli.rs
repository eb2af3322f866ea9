//! The command line: subcommands and the flags of `serve` and `demo`. Each `serve` flag
//! has a `JWT_AUTHZ_*` environment twin and overrides the file; its `--help` line shows the
//! default from [`super::defaults`], the one place defaults are written.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::LogFormat;
use super::defaults::{self, help};

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
    /// Explain, offline, how the service decides one request under a configuration file:
    /// each step, and the exact response.
    Explain(Box<ExplainArgs>),
    /// Validate a configuration file and exit: 0 when it is good, 64 with one line per
    /// problem when it is not.
    CheckConfig {
        /// The YAML configuration file.
        file: PathBuf,
    },
    /// Revoke tokens, or list the revocations in force, in the configuration's shared
    /// revocation store (`revocation.store: redis://...`): every replica applies a
    /// revocation within `revocation.max_lag`.
    Revoke(Box<RevokeArgs>),
}

/// Flags of `jwt-authz revoke`: `--list`, or one of `--jti`, `--sub`, `--sid`,
/// `--client-id`, `--email` with `--issuer`.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["list", "jti", "sub", "sid", "client_id", "email"])))]
pub struct RevokeArgs {
    /// The YAML configuration file whose `revocation.store` to use.
    #[arg(long, env = "JWT_AUTHZ_CONFIG")]
    pub config: PathBuf,
    /// List the revocations in force, one JSON object per line.
    #[arg(long)]
    pub list: bool,
    /// Revoke one token by its `jti` (until the longest token lifetime has passed).
    #[arg(long)]
    pub jti: Option<String>,
    /// Revoke every token of this subject issued until now.
    #[arg(long)]
    pub sub: Option<String>,
    /// Revoke every token of this session (`sid`) issued until now.
    #[arg(long)]
    pub sid: Option<String>,
    /// Revoke every token issued to this client (`client_id`) until now.
    #[arg(long = "client-id")]
    pub client_id: Option<String>,
    /// Revoke every token with this `email` claim issued until now.
    #[arg(long)]
    pub email: Option<String>,
    /// The issuer whose tokens are revoked: one the configuration trusts, exactly as `iss`.
    #[arg(long, required_unless_present = "list")]
    pub issuer: Option<String>,
}

/// Flags of `jwt-authz serve`. `None` (or empty) means "not given": the file's value, else
/// the default, applies.
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

    #[arg(long, env = "JWT_AUTHZ_ALGORITHMS", value_delimiter = ',', help = help(
        "Accepted signing algorithms, comma-separated; `none` and HS* are always refused",
        defaults::ALGORITHM,
    ))]
    pub algorithms: Vec<String>,

    /// Accept only RFC 9068 access tokens (`typ: at+jwt`), so ID tokens are refused.
    #[arg(long, env = "JWT_AUTHZ_REQUIRE_ACCESS_TOKEN_TYPE")]
    pub require_access_token_type: bool,

    #[arg(long, env = "JWT_AUTHZ_LISTEN", help = help("gRPC listen address", defaults::LISTEN))]
    pub listen: Option<String>,

    #[arg(long, env = "JWT_AUTHZ_ADMIN_LISTEN", help = help(
        "Admin HTTP listen address for /metrics, /healthz and /readyz; `off` disables it",
        defaults::ADMIN_LISTEN,
    ))]
    pub admin_listen: Option<String>,

    #[arg(long, env = "JWT_AUTHZ_HTTP_LISTEN", help = help(
        "HTTP authorization endpoint (Envoy http_service, nginx auth_request, Traefik \
         forwardAuth) listen address, or `off`. It trusts X-Original-*/X-Forwarded-* \
         headers: make it reachable by the proxy alone",
        defaults::HTTP_LISTEN,
    ))]
    pub http_listen: Option<String>,

    #[arg(long, env = "JWT_AUTHZ_LEEWAY", help = help(
        "Clock skew tolerated on `exp` and `nbf` (`60s`, `2m`; a bare number is seconds)",
        defaults::LEEWAY,
    ))]
    pub leeway: Option<String>,

    #[arg(long, env = "JWT_AUTHZ_JWKS_REFRESH", help = help(
        "How often the JWKS is refetched in the background",
        defaults::JWKS_REFRESH,
    ))]
    pub jwks_refresh: Option<String>,

    #[arg(long, env = "JWT_AUTHZ_JWKS_COOLDOWN", help = help(
        "Minimum time between two fetches triggered by unknown `kid`s; lower values let a \
         flood of forged `kid`s reach the identity provider more often",
        defaults::JWKS_COOLDOWN,
    ))]
    pub jwks_cooldown: Option<String>,

    #[arg(long, env = "JWT_AUTHZ_JWKS_TIMEOUT", help = help(
        "Timeout of one JWKS or discovery fetch",
        defaults::JWKS_TIMEOUT,
    ))]
    pub jwks_timeout: Option<String>,

    #[arg(long, env = "JWT_AUTHZ_JWKS_MAX_BYTES", help = help(
        "Largest JWKS or discovery body accepted, in bytes",
        defaults::JWKS_MAX_BYTES,
    ))]
    pub jwks_max_bytes: Option<usize>,

    #[arg(long, env = "JWT_AUTHZ_SCOPE_CLAIMS", value_delimiter = ',', help = help(
        "Claims read for scopes, comma-separated",
        defaults::SCOPE_CLAIMS.join(","),
    ))]
    pub scope_claims: Vec<String>,

    #[arg(long, env = "JWT_AUTHZ_MAX_HEADER_BYTES", help = help(
        "Largest `authorization` header accepted, in bytes; longer ones are `invalid_header`",
        defaults::MAX_HEADER_BYTES,
    ))]
    pub max_header_bytes: Option<usize>,

    #[arg(long, env = "JWT_AUTHZ_TOKEN_CACHE", help = help(
        "Cache the claims of verified tokens, keyed by a hash of the token",
        defaults::TOKEN_CACHE,
    ))]
    pub token_cache: Option<bool>,

    #[arg(long, env = "JWT_AUTHZ_TOKEN_CACHE_MAX_ENTRIES", help = help(
        "Most verified tokens kept in the cache",
        defaults::TOKEN_CACHE_MAX_ENTRIES,
    ))]
    pub token_cache_max_entries: Option<u64>,

    #[arg(long, env = "JWT_AUTHZ_TOKEN_CACHE_MAX_BYTES", help = help(
        "Most bytes the cached tokens may hold in all, everything an entry holds counted \
         (`64MiB`, `512KiB` or a number of bytes)",
        defaults::TOKEN_CACHE_MAX_BYTES,
    ))]
    pub token_cache_max_bytes: Option<String>,

    #[arg(long, env = "JWT_AUTHZ_REALM", help = help(
        "`realm` sent in `WWW-Authenticate`",
        defaults::REALM,
    ))]
    pub realm: Option<String>,

    /// Allow `http://` issuer and JWKS URLs on hosts other than loopback. Risky: keys fetched
    /// over plain HTTP can be replaced by anyone on the path.
    #[arg(long, env = "JWT_AUTHZ_INSECURE_ALLOW_HTTP")]
    pub insecure_allow_http: bool,

    #[arg(long, env = "JWT_AUTHZ_CONFIG_POLL", help = help(
        "How often the configuration file is checked for changes (a valid new version is \
         swapped in live, as on SIGHUP); `off` leaves reloads to SIGHUP",
        defaults::CONFIG_POLL,
    ))]
    pub config_poll: Option<String>,

    #[arg(long, env = "JWT_AUTHZ_CONFIG_SETTLE", help = help(
        "How long a changed configuration file must read the same before it is applied, so \
         a file rewritten in place is never applied half-written; `0s` applies a change at \
         the next poll",
        defaults::CONFIG_SETTLE,
    ))]
    pub config_settle: Option<String>,

    #[arg(long, env = "JWT_AUTHZ_LOG_LEVEL", help = help(
        "Log filter (`info`, `debug`, or a tracing directive such as `jwt_authz=debug`)",
        defaults::LOG_LEVEL,
    ))]
    pub log_level: Option<String>,

    #[arg(long, env = "JWT_AUTHZ_LOG_FORMAT", value_enum, help = help("Log format", "human"))]
    pub log_format: Option<LogFormat>,

    #[arg(long, env = "JWT_AUTHZ_LOG_DENY_RATE", help = help(
        "Denial log lines per JSON code per second; the first of each code is always logged, \
         the rest are counted in a summary line every 10s (metrics stay exact). 0 logs every \
         denial, which lets a flood of bad requests cost a log line each",
        defaults::LOG_DENY_RATE,
    ))]
    pub log_deny_rate: Option<u32>,
}

/// Flags of `jwt-authz demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// gRPC Check listen address.
    #[arg(long, default_value = "127.0.0.1:9191")]
    pub listen: SocketAddr,
    /// HTTP authorization endpoint listen address (what curl, nginx, Traefik and Envoy's
    /// `http_service` call).
    #[arg(long, default_value = "127.0.0.1:9193")]
    pub http_listen: SocketAddr,
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
    #[arg(long, default_value = defaults::LOG_LEVEL)]
    pub log_level: String,
}

/// Flags of `jwt-authz explain`.
#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// The configuration file to explain.
    #[arg(long)]
    pub config: PathBuf,
    /// Request method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Request host (`:authority`).
    #[arg(long, default_value = "")]
    pub host: String,
    /// Request path, with its query if any, as the client sent it.
    #[arg(long)]
    pub path: String,
    /// A request header, `name: value`; repeat for several.
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// The access token, sent as `authorization: Bearer <token>`. Prefer --token-file:
    /// a command line is visible to other users of the machine.
    #[arg(long, conflicts_with = "token_file")]
    pub token: Option<String>,
    /// A file holding the access token (`-` for standard input).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// A JWKS file whose keys are trusted for every configured issuer.
    #[arg(long, conflicts_with = "fetch_keys")]
    pub jwks: Option<PathBuf>,
    /// Fetch each issuer's keys as the service would (network access).
    #[arg(long)]
    pub fetch_keys: bool,
    /// The scheme the token is sent with in `authorization` (`DPoP` for a DPoP-bound
    /// token, with its proof in `--header "dpop: ..."`).
    #[arg(long)]
    pub token_scheme: Option<String>,
    /// Request scheme (`https`), as Envoy sends it: a DPoP proof's `htu` names it.
    #[arg(long)]
    pub scheme: Option<String>,
    /// A PEM file: the client certificate the proxy verified and forwards (mTLS), which a
    /// certificate-bound token is checked against.
    #[arg(long)]
    pub peer_certificate: Option<PathBuf>,
    /// A context extension the route sets, `key=value` (`required_scopes=read write`);
    /// repeat for several.
    #[arg(long = "context-extension")]
    pub context_extensions: Vec<String>,
    /// Print the decision, every step and the response as JSON.
    #[arg(long)]
    pub json: bool,
}
