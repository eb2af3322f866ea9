//! The settings of a token's life after it is issued: the revocation store
//! (`revocation`) and the Shared Signals receiver (`ssf`). Both are bound at start-up.

use std::net::SocketAddr;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use url::Url;

use super::file::{FileRevocation, FileSsf, FileTransmitter};
use super::startup::{duration, positive};
use super::values::{parse_algorithms, parse_fetch_url};
use super::{Errors, defaults};
use crate::introspection::Secret;
use crate::revocation::RevocationSettings;

/// Where revocations are kept.
#[derive(Clone, PartialEq, Eq)]
pub enum RevocationStoreConfig {
    /// In this process (one replica).
    Memory,
    /// A Redis server every replica shares.
    Redis { url: String },
}

impl std::fmt::Debug for RevocationStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RevocationStoreConfig::Memory => f.write_str("Memory"),
            RevocationStoreConfig::Redis { url } => {
                write!(f, "Redis({:?})", crate::fetch_url::redact_str(url))
            }
        }
    }
}

/// The `revocation` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationConfig {
    pub store: RevocationStoreConfig,
    pub key_prefix: String,
    pub timeout: Duration,
    pub max_lag: Duration,
    pub settings: RevocationSettings,
}

/// One transmitter of Security Event Tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransmitterConfig {
    pub issuer: String,
    pub issuer_url: Url,
    /// `None`: the `jwks_uri` of `<issuer>/.well-known/ssf-configuration`.
    pub jwks_uri: Option<Url>,
    pub audience: String,
    /// The exact `Authorization` header value it pushes with.
    pub authorization: Secret,
    /// The access-token issuers its events speak for.
    pub token_issuers: Vec<String>,
    pub algorithms: Vec<Algorithm>,
}

/// The `ssf` block: the push endpoint and its transmitters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsfConfig {
    pub listen: SocketAddr,
    pub path: String,
    pub transmitters: Vec<TransmitterConfig>,
    /// The oldest `iat` accepted, and how long a `jti` is remembered.
    pub max_age: Duration,
}

/// The `revocation` block; `Some(None)` when absent, `None` when bad (recorded).
pub(super) fn parse_revocation(
    e: &mut Errors,
    file: Option<&FileRevocation>,
) -> Option<Option<RevocationConfig>> {
    let Some(file) = file else {
        return Some(None);
    };
    let store_text = file
        .store
        .as_deref()
        .unwrap_or(defaults::REVOCATION_STORE)
        .trim();
    let store = if store_text == "memory" {
        Some(RevocationStoreConfig::Memory)
    } else if (store_text.starts_with("redis://") || store_text.starts_with("rediss://"))
        && Url::parse(store_text).is_ok()
    {
        Some(RevocationStoreConfig::Redis {
            url: store_text.to_owned(),
        })
    } else {
        e.push(
            "revocation.store",
            format!(
                "`{}` is not `memory` or a redis:// or rediss:// URL",
                crate::fetch_url::redact_str(store_text)
            ),
        );
        None
    };
    let timeout = positive(
        e,
        "revocation.timeout",
        None,
        file.timeout,
        defaults::REVOCATION_TIMEOUT,
    );
    let max_lag = positive(
        e,
        "revocation.max_lag",
        None,
        file.max_lag,
        defaults::REVOCATION_MAX_LAG,
    );
    if max_lag.is_some_and(|lag| lag < crate::revocation::redis::POLL * 2) {
        e.push(
            "revocation.max_lag",
            format!(
                "must be at least {:?}: twice the interval at which a replica confirms it is current",
                crate::revocation::redis::POLL * 2
            ),
        );
    }
    let lifetime = positive(
        e,
        "revocation.max_token_lifetime",
        None,
        file.max_token_lifetime,
        defaults::REVOCATION_MAX_TOKEN_LIFETIME,
    );
    let max_entries = file.max_entries.unwrap_or(defaults::REVOCATION_MAX_ENTRIES);
    if max_entries == 0 {
        e.push("revocation.max_entries", "must be greater than 0");
    }
    let key_prefix = file
        .key_prefix
        .clone()
        .unwrap_or_else(|| defaults::REVOCATION_KEY_PREFIX.to_owned());
    Some(Some(RevocationConfig {
        store: store?,
        key_prefix,
        timeout: timeout?,
        max_lag: max_lag?,
        settings: RevocationSettings {
            max_token_lifetime: lifetime?,
            max_entries,
        },
    }))
}

/// The `ssf` block; `Some(None)` when absent, `None` when bad (recorded).
pub(super) fn parse_ssf(
    e: &mut Errors,
    file: Option<&FileSsf>,
    revocation: Option<&RevocationConfig>,
    allow_http: bool,
) -> Option<Option<SsfConfig>> {
    let Some(file) = file else {
        return Some(None);
    };
    if revocation.is_none() {
        e.push(
            "ssf",
            "needs a `revocation` block: the events it receives become revocations",
        );
    }
    let listen = e.check(
        "ssf.listen",
        file.listen
            .parse::<SocketAddr>()
            .map_err(|_| format!("`{}` is not an address like 0.0.0.0:9193", file.listen)),
    );
    let path = file
        .path
        .clone()
        .unwrap_or_else(|| defaults::SSF_PATH.to_owned());
    if !path.starts_with('/') || path.contains(['?', '#', '%']) {
        e.push(
            "ssf.path",
            "must be a path starting with / (no query, fragment or escape)",
        );
    }
    if file.transmitters.is_empty() {
        e.push("ssf.transmitters", "at least one transmitter is required");
    }
    let mut transmitters = Vec::new();
    for (i, t) in file.transmitters.iter().enumerate() {
        let field = format!("ssf.transmitters[{i}]");
        if let Some(t) = parse_transmitter(e, &field, t, allow_http) {
            if transmitters
                .iter()
                .any(|o: &TransmitterConfig| o.issuer == t.issuer)
            {
                e.push(&format!("{field}.issuer"), "is listed twice");
            }
            if transmitters
                .iter()
                .any(|o: &TransmitterConfig| o.authorization == t.authorization)
            {
                e.push(
                    &format!("{field}.authorization_file"),
                    "another transmitter pushes with the same Authorization value: each needs its own",
                );
            }
            transmitters.push(t);
        }
    }
    let max_age = duration(e, "ssf.max_age", None, None, defaults::SSF_MAX_AGE);
    Some(Some(SsfConfig {
        listen: listen?,
        path,
        transmitters,
        max_age: max_age?,
    }))
}

/// Every transmitter speaks for configured issuers only: an event about another issuer's
/// subject would revoke tokens no request carries, and be acknowledged as applied.
pub(super) fn check_token_issuers(
    e: &mut Errors,
    ssf: Option<&SsfConfig>,
    issuers: &[crate::verify::IssuerConfig],
) {
    let Some(ssf) = ssf else { return };
    for (i, t) in ssf.transmitters.iter().enumerate() {
        for issuer in &t.token_issuers {
            if !issuers.iter().any(|c| &c.issuer == issuer) {
                e.push(
                    &format!("ssf.transmitters[{i}].token_issuers"),
                    format!(
                        "`{}` is not a configured issuer (set token_issuers to the `iss` of the access tokens its events are about)",
                        crate::fetch_url::redact_str(issuer)
                    ),
                );
            }
        }
    }
}

fn parse_transmitter(
    e: &mut Errors,
    field: &str,
    t: &FileTransmitter,
    allow_http: bool,
) -> Option<TransmitterConfig> {
    let f = |name: &str| format!("{field}.{name}");
    let issuer_url = e.check(&f("issuer"), parse_fetch_url(&t.issuer, allow_http));
    let jwks_uri = match t.jwks_uri.as_deref() {
        None => Some(None),
        Some(uri) => e
            .check(&f("jwks_uri"), parse_fetch_url(uri, allow_http))
            .map(Some),
    };
    if t.audience.trim().is_empty() {
        e.push(&f("audience"), "must not be empty");
    }
    let authorization = super::read_secret(
        e,
        &format!("{field}."),
        "authorization",
        (&t.authorization_file, &t.authorization_env),
        ": pushes must be authorised",
    );
    let authorization = authorization.and_then(|value| {
        if value.is_empty() || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            e.push(
                &f("authorization_file"),
                "the authorization value must be non-empty visible ASCII",
            );
            None
        } else {
            Some(Secret::new(value))
        }
    });
    let algorithms = match &t.algorithms {
        None => e.check(
            &f("algorithms"),
            parse_algorithms(&["RS256", "ES256", "PS256", "EdDSA"]),
        ),
        Some(names) => e.check(&f("algorithms"), parse_algorithms(names)),
    };
    let token_issuers = t
        .token_issuers
        .clone()
        .unwrap_or_else(|| vec![t.issuer.clone()]);
    if token_issuers.is_empty() {
        e.push(&f("token_issuers"), "at least one is required");
    }
    Some(TransmitterConfig {
        issuer: t.issuer.clone(),
        issuer_url: issuer_url?,
        jwks_uri: jwks_uri?,
        audience: t.audience.trim().to_owned(),
        authorization: authorization?,
        token_issuers,
        algorithms: algorithms?,
    })
}
