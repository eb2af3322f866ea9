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
/// What the token cache's entries may hold in all: tokens forwarded whole
/// (`forward_payload_header`) are bounded here rather than by their count.
pub const TOKEN_CACHE_MAX_BYTES: &str = "64MiB";
/// `realm` of `WWW-Authenticate`.
pub const REALM: &str = "jwt-authz";
/// How often the configuration file is polled for changes.
pub const CONFIG_POLL: &str = "500ms";
/// How long a changed configuration file must read the same before it is applied: longer
/// than a writer rewriting the file in place pauses between writes.
pub const CONFIG_SETTLE: &str = "2s";
/// Log filter.
pub const LOG_LEVEL: &str = "info";
/// Denial log lines per JSON code per second (0: every denial); the rest are summarised.
pub const LOG_DENY_RATE: u32 = 10;
/// Whether an issuer's tokens may be DPoP-bound: `off`, `allowed` or `required`.
pub const DPOP: &str = "allowed";
/// DPoP proof algorithms accepted.
pub const DPOP_ALGORITHMS: [&str; 5] = ["ES256", "ES384", "EdDSA", "RS256", "PS256"];
/// How old a DPoP proof's `iat` may be.
pub const DPOP_MAX_AGE: &str = "60s";
/// How far a DPoP proof's `iat` may be ahead of this clock (and behind, beyond `max_age`).
pub const DPOP_CLOCK_SKEW: &str = "5s";
/// Where DPoP proofs' `jti`s are remembered: `memory` or a `redis://` URL.
pub const DPOP_REPLAY_STORE: &str = "memory";
/// Most `jti`s the in-memory replay store holds at once.
pub const DPOP_REPLAY_MAX_ENTRIES: usize = 1_000_000;
/// Unexpired proofs one proof key may hold: 10,000 in a 65 s window is ~150 requests/s
/// from one key, and 100 keys are needed to fill the default store.
pub const DPOP_REPLAY_MAX_PER_KEY: usize = crate::replay::DEFAULT_MAX_PER_HOLDER;
/// Timeout of one replay store operation (Redis).
pub const DPOP_REPLAY_TIMEOUT: &str = "250ms";
/// Signing algorithm an issuer allows when it names none.
pub const ALGORITHM: &str = "RS256";

/// A `--help` line: `text` followed by the default it shows.
pub fn help(text: &str, default: impl std::fmt::Display) -> String {
    format!("{text} [default: {default}]")
}
/// Timeout of one introspection call (waiting for a free call included).
pub const INTROSPECTION_TIMEOUT: &str = "2s";
/// The longest an active introspection answer is cached (never past the token's `exp`).
pub const INTROSPECTION_CACHE_MAX: &str = "60s";
/// How long an inactive introspection answer is cached.
pub const INTROSPECTION_NEGATIVE_CACHE: &str = "10s";
/// Introspection calls in flight at once, per issuer.
pub const INTROSPECTION_MAX_CONCURRENT: usize = 64;
/// Where revocations are kept, once a `revocation` block exists.
pub const REVOCATION_STORE: &str = "memory";
/// Prefix of the Redis keys of the revocation store.
pub const REVOCATION_KEY_PREFIX: &str = "jwt-authz:";
/// Timeout of one revocation store command.
pub const REVOCATION_TIMEOUT: &str = "500ms";
/// How old the last confirmation that a replica holds every revocation may be.
pub const REVOCATION_MAX_LAG: &str = "1s";
/// The longest token lifetime accepted while revocations are checked; how long a cut-off
/// revocation is kept.
pub const REVOCATION_MAX_TOKEN_LIFETIME: &str = "24h";
/// Most revocations held.
pub const REVOCATION_MAX_ENTRIES: usize = 1_000_000;
/// The Shared Signals push endpoint's path.
pub const SSF_PATH: &str = "/ssf/events";
/// How long a SET's `jti` is remembered, and the oldest `iat` accepted.
pub const SSF_MAX_AGE: &str = "1h";
/// The longest MCP request body read (the bound `with_request_body` should match).
pub const MCP_MAX_BODY_BYTES: u64 = 64 * 1024;
