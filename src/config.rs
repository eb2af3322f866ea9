//! Command line, environment and the typed [`Config`] built from them at start-up.
//!
//! This is the only module that reads the environment (through clap's `env` twins). Every
//! value is parsed into its final type here and every problem is reported at once, so the
//! rest of the service never sees an unchecked setting.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use jsonwebtoken::Algorithm;
use url::Url;

/// Command line of the `jwt-authz` binary.
#[derive(Debug, Parser)]
#[command(
    name = "jwt-authz",
    version,
    about = "Envoy ext_authz service that verifies JWT access tokens"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve envoy.service.auth.v3.Authorization/Check over gRPC.
    Serve(Box<ServeArgs>),
}

/// Flags of `jwt-authz serve`. Each has an environment twin.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Expected `iss`, compared exactly (Auth0: `https://TENANT.auth0.com/`, trailing slash included).
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

    /// Accepted signing algorithms, comma-separated. `none` and HS* are always refused.
    #[arg(
        long,
        env = "JWT_AUTHZ_ALGORITHMS",
        value_delimiter = ',',
        default_value = "RS256"
    )]
    pub algorithms: Vec<String>,

    /// gRPC listen address.
    #[arg(long, env = "JWT_AUTHZ_LISTEN", default_value = "0.0.0.0:9191")]
    pub listen: String,

    /// Clock skew tolerated on `exp` and `nbf` (`60s`, `2m`; a bare number is seconds).
    #[arg(long, env = "JWT_AUTHZ_LEEWAY", default_value = "60s")]
    pub leeway: String,

    /// How often the JWKS is refetched in the background.
    #[arg(long, env = "JWT_AUTHZ_JWKS_REFRESH", default_value = "10m")]
    pub jwks_refresh: String,

    /// Minimum time between two fetches triggered by unknown `kid`s. Lower values let a
    /// flood of forged `kid`s hit the identity provider more often.
    #[arg(long, env = "JWT_AUTHZ_JWKS_COOLDOWN", default_value = "5s")]
    pub jwks_cooldown: String,

    /// Timeout of one JWKS or discovery fetch.
    #[arg(long, env = "JWT_AUTHZ_JWKS_TIMEOUT", default_value = "5s")]
    pub jwks_timeout: String,

    /// Largest JWKS or discovery body accepted, in bytes.
    #[arg(long, env = "JWT_AUTHZ_JWKS_MAX_BYTES", default_value_t = 1024 * 1024)]
    pub jwks_max_bytes: usize,

    /// Claims read for scopes, comma-separated: `scope` (space-separated string), `scp`
    /// (array or string), `permissions` (Auth0 RBAC array).
    #[arg(
        long,
        env = "JWT_AUTHZ_SCOPE_CLAIMS",
        value_delimiter = ',',
        default_value = "scope,scp,permissions"
    )]
    pub scope_claims: Vec<String>,

    /// Largest `authorization` header accepted, in bytes; longer ones are `invalid_header`.
    #[arg(long, env = "JWT_AUTHZ_MAX_HEADER_BYTES", default_value_t = 8192)]
    pub max_header_bytes: usize,

    /// `realm` sent in `WWW-Authenticate`.
    #[arg(long, env = "JWT_AUTHZ_REALM", default_value = "jwt-authz")]
    pub realm: String,

    /// Allow `http://` issuer and JWKS URLs on hosts other than loopback. Risky: keys fetched
    /// over plain HTTP can be replaced by anyone on the path.
    #[arg(long, env = "JWT_AUTHZ_INSECURE_ALLOW_HTTP")]
    pub insecure_allow_http: bool,

    /// Log filter (`info`, `debug`, or a tracing directive such as `jwt_authz=debug`).
    #[arg(long, env = "JWT_AUTHZ_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format.
    #[arg(long, env = "JWT_AUTHZ_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
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

/// The whole, checked configuration of a running service.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub issuers: Vec<IssuerConfig>,
    pub jwks: JwksSettings,
    pub scope_claims: Vec<String>,
    pub max_header_bytes: usize,
    pub realm: String,
    pub log_level: String,
    pub log_format: LogFormat,
}

/// Every problem found in the configuration, one per line.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Builds the configuration from `serve` flags, collecting every error.
    pub fn from_args(args: &ServeArgs) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let mut err = |e: String| errors.push(e);

        let listen = args
            .listen
            .parse::<SocketAddr>()
            .map_err(|_| {
                err(format!(
                    "listen: `{}` is not an address like 0.0.0.0:9191",
                    args.listen
                ))
            })
            .ok();
        let leeway = parse_duration(&args.leeway)
            .map_err(|e| err(format!("leeway: {e}")))
            .ok();
        let refresh = positive_duration("jwks-refresh", &args.jwks_refresh, &mut err);
        let cooldown = positive_duration("jwks-cooldown", &args.jwks_cooldown, &mut err);
        let timeout = positive_duration("jwks-timeout", &args.jwks_timeout, &mut err);
        if args.jwks_max_bytes == 0 {
            err("jwks-max-bytes: must be greater than 0".into());
        }
        if args.max_header_bytes == 0 {
            err("max-header-bytes: must be greater than 0".into());
        }
        let algorithms = parse_algorithms(&args.algorithms)
            .map_err(|e| err(format!("algorithms: {e}")))
            .ok();
        let scope_claims: Vec<String> = args
            .scope_claims
            .iter()
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect();

        let issuer_url = match args.issuer.as_deref() {
            None | Some("") => {
                err("issuer: required (--issuer or JWT_AUTHZ_ISSUER), e.g. https://TENANT.auth0.com/".into());
                None
            }
            Some(issuer) => check_url("issuer", issuer, args.insecure_allow_http)
                .map_err(&mut err)
                .ok(),
        };
        let audiences: Vec<String> = args
            .audiences
            .iter()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        if audiences.is_empty() {
            err("audience: at least one is required (--audience or JWT_AUTHZ_AUDIENCE)".into());
        }
        let jwks = match args.jwks_uri.as_deref() {
            None | Some("") => Some(JwksSource::Discover),
            Some(uri) => check_url("jwks-uri", uri, args.insecure_allow_http)
                .map(JwksSource::Uri)
                .map_err(&mut err)
                .ok(),
        };

        match (
            listen, leeway, refresh, cooldown, timeout, algorithms, issuer_url, jwks,
        ) {
            (
                Some(listen),
                Some(leeway),
                Some(refresh),
                Some(cooldown),
                Some(timeout),
                Some(algorithms),
                Some(issuer_url),
                Some(jwks),
            ) if errors.is_empty() => Ok(Config {
                listen,
                issuers: vec![IssuerConfig {
                    issuer: args.issuer.clone().unwrap_or_default(),
                    issuer_url,
                    audiences,
                    jwks,
                    algorithms,
                    leeway,
                    require_access_token_type: false,
                }],
                jwks: JwksSettings {
                    refresh,
                    cooldown,
                    timeout,
                    max_bytes: args.jwks_max_bytes,
                },
                scope_claims,
                max_header_bytes: args.max_header_bytes,
                realm: args.realm.clone(),
                log_level: args.log_level.clone(),
                log_format: args.log_format,
            }),
            _ => Err(ConfigErrors(errors)),
        }
    }
}

fn positive_duration(name: &str, value: &str, err: &mut impl FnMut(String)) -> Option<Duration> {
    match parse_duration(value) {
        Ok(d) if d.is_zero() => {
            err(format!("{name}: must be greater than 0"));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            err(format!("{name}: {e}"));
            None
        }
    }
}

/// Parses `500ms`, `60s`, `10m`, `1h`, or a bare number of seconds.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{value}` is not a duration like 60s, 10m or 500ms"))?;
    let duration = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{value}` (use ms, s, m or h)"
            ));
        }
    };
    Ok(duration)
}

/// Parses an algorithm allow-list. Symmetric and unsigned algorithms are refused whatever
/// the configuration says: a public JWKS cannot hold an HMAC secret, and `none` is unsigned.
pub fn parse_algorithms<S: AsRef<str>>(names: &[S]) -> Result<Vec<Algorithm>, String> {
    let mut out = Vec::new();
    for name in names {
        let name = name.as_ref().trim();
        if name.is_empty() {
            continue;
        }
        let alg = match name {
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "PS256" => Algorithm::PS256,
            "PS384" => Algorithm::PS384,
            "PS512" => Algorithm::PS512,
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            "EdDSA" => Algorithm::EdDSA,
            n if n.eq_ignore_ascii_case("none") || n.to_ascii_uppercase().starts_with("HS") => {
                return Err(format!(
                    "`{n}` is never allowed: only asymmetric algorithms verify against a public JWKS"
                ));
            }
            n => {
                return Err(format!(
                    "unknown algorithm `{n}` (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
                ));
            }
        };
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    if out.is_empty() {
        return Err("at least one algorithm is required".into());
    }
    Ok(out)
}

/// Checks a URL the service will fetch from: https, or http on loopback (or when allowed).
fn check_url(name: &str, value: &str, allow_http: bool) -> Result<Url, String> {
    let url = Url::parse(value).map_err(|e| format!("{name}: `{value}` is not a URL ({e})"))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_http || is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "{name}: `{value}` must use https (http is accepted only on loopback, or with --insecure-allow-http)"
        )),
        other => Err(format!(
            "{name}: scheme `{other}` is not supported, use https"
        )),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Config, ConfigErrors> {
        let mut argv = vec!["jwt-authz", "serve"];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv).expect("flags parse");
        let Command::Serve(serve) = cli.command;
        Config::from_args(&serve)
    }

    #[test]
    fn minimal_flags_give_defaults() {
        let config = args(&[
            "--issuer",
            "https://t.auth0.com/",
            "--audience",
            "https://api",
        ])
        .unwrap();
        assert_eq!(config.listen, "0.0.0.0:9191".parse().unwrap());
        let issuer = &config.issuers[0];
        assert_eq!(issuer.issuer, "https://t.auth0.com/");
        assert_eq!(issuer.algorithms, vec![Algorithm::RS256]);
        assert_eq!(issuer.leeway, Duration::from_secs(60));
        assert_eq!(issuer.jwks, JwksSource::Discover);
        assert_eq!(config.jwks.refresh, Duration::from_secs(600));
        assert_eq!(config.jwks.cooldown, Duration::from_secs(5));
        assert_eq!(config.scope_claims, ["scope", "scp", "permissions"]);
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let errors = args(&[
            "--listen",
            "nope",
            "--algorithms",
            "HS256",
            "--leeway",
            "5 parsecs",
        ])
        .unwrap_err()
        .0;
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors.iter().any(|e| e.starts_with("listen:")));
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("algorithms: `HS256` is never allowed"))
        );
        assert!(errors.iter().any(|e| e.starts_with("leeway:")));
        assert!(errors.iter().any(|e| e.starts_with("issuer: required")));
        assert!(errors.iter().any(|e| e.starts_with("audience:")));
    }

    #[test]
    fn none_algorithm_is_refused_in_any_casing() {
        assert!(parse_algorithms(&["NoNe"]).is_err());
        assert!(parse_algorithms(&["hs512"]).is_err());
        assert_eq!(
            parse_algorithms(&["ES256", "EdDSA", "ES256"]).unwrap(),
            vec![Algorithm::ES256, Algorithm::EdDSA]
        );
    }

    #[test]
    fn plain_http_is_refused_off_loopback() {
        let errors = args(&["--issuer", "http://idp.example.com/", "--audience", "a"])
            .unwrap_err()
            .0;
        assert!(errors[0].contains("must use https"), "{errors:?}");
        assert!(args(&["--issuer", "http://127.0.0.1:8080/", "--audience", "a"]).is_ok());
        assert!(
            args(&[
                "--issuer",
                "http://idp.example.com/",
                "--audience",
                "a",
                "--insecure-allow-http"
            ])
            .is_ok()
        );
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert!(parse_duration("10 minutes").is_err());
        assert!(parse_duration("").is_err());
    }
}
