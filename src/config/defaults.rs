//! Every default setting, written once: the merge in [`super::Config::from_sources`] uses
//! these values and `--help` shows them.

/// gRPC listen address.
pub const LISTEN: &str = "0.0.0.0:9191";
/// Admin HTTP listen address.
pub const ADMIN_LISTEN: &str = "0.0.0.0:9192";
/// HTTP authorization endpoint listen address: off unless asked for.
pub const HTTP_LISTEN: &str = "off";
/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY: &str = "60s";
/// Background JWKS refetch interval.
pub const JWKS_REFRESH: &str = "10m";
/// Least time between two unknown-`kid` refetches.
pub const JWKS_COOLDOWN: &str = "5s";
/// Timeout of one JWKS or discovery fetch.
pub const JWKS_TIMEOUT: &str = "5s";
/// Largest JWKS or discovery body, in bytes.
pub const JWKS_MAX_BYTES: usize = 1024 * 1024;
/// Claims read for granted scopes.
pub const SCOPE_CLAIMS: [&str; 3] = ["scope", "scp", "permissions"];
/// Largest `authorization` header, in bytes.
pub const MAX_HEADER_BYTES: usize = 8192;
/// Whether verified tokens are cached.
pub const TOKEN_CACHE: bool = true;
/// Most verified tokens cached.
pub const TOKEN_CACHE_MAX_ENTRIES: u64 = 100_000;
/// `realm` of `WWW-Authenticate`.
pub const REALM: &str = "jwt-authz";
/// How often the configuration file is polled for changes.
pub const CONFIG_POLL: &str = "500ms";
/// Log filter.
pub const LOG_LEVEL: &str = "info";
/// Denial log lines per JSON code per second (0: every denial); the rest are summarised.
pub const LOG_DENY_RATE: u32 = 10;
/// Signing algorithm an issuer allows when it names none.
pub const ALGORITHM: &str = "RS256";

/// A `--help` line: `text` followed by the default it shows.
pub fn help(text: &str, default: impl std::fmt::Display) -> String {
    format!("{text} [default: {default}]")
}
