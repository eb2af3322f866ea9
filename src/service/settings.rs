//! The settings a Check reads on every request, worked out once per configuration.

use crate::binding::dpop::{DpopMode, DpopSettings};
use crate::config::Config;
use crate::inbound::{Inbound, spelled_as};
use crate::policy::Policy;
use crate::resource_metadata::Resources;
use crate::token_source::TokenSource;
use crate::upstream::UpstreamConfig;
use crate::verify::IssuerConfig;

/// Settings the Check path reads on every request.
#[derive(Debug, Clone)]
pub struct CheckSettings {
    pub scope_claims: Vec<String>,
    pub max_header_bytes: usize,
    pub realm: String,
    /// Seconds sent in `retry-after` while keys are unavailable.
    pub retry_after_secs: u64,
    pub policy: Policy,
    pub upstream: UpstreamConfig,
    /// Denial log lines per code per second; 0 logs every denial.
    pub deny_log_rate: u32,
    /// Where the token may be, tried in order.
    pub token_sources: Vec<TokenSource>,
    /// The same, with the `authorization` header's scheme `DPoP`: read for a request that
    /// uses that scheme. `None` when no issuer accepts DPoP or that reading changes no
    /// source: worked out once, not on every Check.
    pub dpop_sources: Option<Vec<TokenSource>>,
    pub dpop: DpopSettings,
    /// The `algs` of DPoP challenges; `None` when no issuer accepts DPoP.
    pub dpop_algs: Option<String>,
    /// Room for an allow's headers set and removed
    /// ([`UpstreamConfig::most_mutations`], and the `cookie` and `dpop` removals when the
    /// token is stripped): made once per allow, worked out once here.
    pub allow_room: (usize, usize),
    /// RFC 9728 metadata, served by the Check and named in challenges.
    pub resources: Resources,
    /// [`UpstreamConfig::dotted_spelling_keys`], worked out once.
    pub dotted_keys: Vec<String>,
}

impl CheckSettings {
    /// The Check settings of `config`.
    pub fn from_config(config: &Config) -> CheckSettings {
        let dpop_accepted = config
            .settings
            .issuers
            .iter()
            .any(|i| i.dpop != DpopMode::Off);
        CheckSettings {
            scope_claims: config.settings.scope_claims.clone(),
            max_header_bytes: config.settings.max_header_bytes,
            realm: config.settings.realm.clone(),
            retry_after_secs: config.startup.jwks.cooldown.as_secs().max(1),
            policy: config.settings.policy.clone(),
            upstream: config.settings.upstream.clone(),
            deny_log_rate: config.startup.log_deny_rate,
            token_sources: config.settings.token_sources.clone(),
            dpop_sources: dpop_accepted.then(|| dpop_sources(config)).flatten(),
            dpop: config.settings.dpop.clone(),
            dpop_algs: dpop_accepted.then(|| config.settings.dpop.algs()),
            allow_room: allow_room(&config.settings.upstream),
            resources: config.settings.resources.clone(),
            dotted_keys: {
                let mut keys = config.settings.upstream.dotted_spelling_keys();
                // An MCP operation's headers, where it is read.
                if config.settings.policy.mcp().is_some() {
                    keys.extend(["mcp-method".to_owned(), "mcp-name".to_owned()]);
                }
                keys
            },
        }
    }

    /// Whether a header name with a `.` reads, to PHP, as a header the decision reads or
    /// sets (`x.jwt.sub`, `x.http.method.override`).
    pub(super) fn dotted_spelling(&self, request: &Inbound<'_>) -> bool {
        request.headers.iter().any(|(name, _)| {
            name.contains('.') && self.dotted_keys.iter().any(|key| spelled_as(name, key))
        })
    }

    /// Whether `request` uses the `DPoP` authorization scheme where DPoP is accepted.
    pub(super) fn is_dpop_request(&self, request: &Inbound<'_>) -> bool {
        self.dpop_sources.is_some()
            && request.values("authorization").next().is_some_and(|value| {
                value
                    .split(|b| *b == b' ')
                    .next()
                    .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"dpop"))
            })
    }
}

/// Room for an allow's headers set and removed under `upstream` (see
/// [`CheckSettings::allow_room`]).
pub fn allow_room(upstream: &UpstreamConfig) -> (usize, usize) {
    let (set, removed) = upstream.most_mutations();
    let stripped = if upstream.strip_authorization { 2 } else { 0 };
    (set, removed + stripped)
}

/// The token sources of a request with the `DPoP` scheme: `config`'s, with the scheme of
/// `authorization` read as `DPoP`. `None` when that reading changes no source.
fn dpop_sources(config: &Config) -> Option<Vec<TokenSource>> {
    let sources: Vec<TokenSource> = config
        .settings
        .token_sources
        .iter()
        .map(|source| match source {
            TokenSource::Header {
                name,
                scheme: Some(_),
            } if name == "authorization" => TokenSource::Header {
                name: name.clone(),
                scheme: Some("DPoP".into()),
            },
            other => other.clone(),
        })
        .collect();
    (sources != config.settings.token_sources).then_some(sources)
}

/// A fingerprint of what a cache entry of `issuer`'s tokens is built from under
/// `settings`. `Debug` text is enough: it is compared within one process only.
pub(super) fn entry_fingerprint(issuer: &IssuerConfig, settings: &CheckSettings) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    format!("{issuer:?}").hash(&mut hasher);
    format!("{:?}", settings.upstream).hash(&mut hasher);
    settings.scope_claims.hash(&mut hasher);
    for condition in settings.policy.conditions() {
        format!("{condition:?}").hash(&mut hasher);
    }
    hasher.finish()
}
