//! Trusted issuers, from `--issuer` and its flags or from the file's `issuers` list, parsed
//! into the [`IssuerConfig`] that verification owns.

use std::time::Duration;

use super::defaults;
use super::file::{FileIntrospection, FileIssuer};
use super::startup::positive;
use super::values::{parse_algorithms, parse_fetch_url};
use super::{Errors, ServeArgs, trimmed};
use crate::binding::dpop::DpopMode;
use crate::introspection::{ClientAuth, IntrospectionConfig, Secret};
use crate::jwks::JwksSource;
use crate::verify::IssuerConfig;

/// The issuers to trust. `--issuer` (with `--audience`, `--jwks-uri`, `--algorithms`)
/// replaces the file's list; without it those flags are an error.
pub(super) fn parse_issuers(
    e: &mut Errors,
    args: &ServeArgs,
    file_issuers: Vec<FileIssuer>,
    leeway: Option<Duration>,
    allow_http: bool,
) -> Vec<IssuerConfig> {
    let issuers = match &args.issuer {
        Some(issuer) => vec![FileIssuer {
            issuer: issuer.clone(),
            audiences: trimmed(&args.audiences),
            jwks_uri: args.jwks_uri.clone(),
            algorithms: (!args.algorithms.is_empty()).then(|| args.algorithms.clone()),
            leeway: None,
            require_access_token_type: Some(args.require_access_token_type),
            dpop: None,
            introspection: None,
        }],
        None => {
            if !args.audiences.is_empty() || args.jwks_uri.is_some() || !args.algorithms.is_empty()
            {
                e.push(
                    "issuer",
                    "--audience, --jwks-uri and --algorithms need --issuer (file issuers set their own)",
                );
            }
            if file_issuers.is_empty() {
                e.push(
                    "issuer",
                    "required (--issuer, JWT_AUTHZ_ISSUER or `issuers` in the file), e.g. https://TENANT.auth0.com/",
                );
            }
            file_issuers
        }
    };
    let mut parsed: Vec<IssuerConfig> = Vec::new();
    for (i, issuer) in issuers.into_iter().enumerate() {
        let field = if args.issuer.is_some() {
            String::new()
        } else {
            format!("issuers[{i}].")
        };
        if let Some(issuer) = parse_issuer(e, &field, issuer, leeway, allow_http) {
            if parsed.iter().any(|c| c.issuer == issuer.issuer) {
                e.push(
                    &format!("{field}issuer"),
                    format!(
                        "`{}` is listed twice",
                        crate::fetch_url::redact_str(&issuer.issuer)
                    ),
                );
            }
            parsed.push(issuer);
        }
    }
    let opaque: Vec<&str> = parsed
        .iter()
        .filter(|i| i.introspection.as_ref().is_some_and(|x| x.opaque_tokens))
        .map(|i| i.issuer.as_str())
        .collect();
    if opaque.len() > 1 {
        e.push(
            "issuers",
            format!(
                "{} issuers take opaque tokens ({}): a token that is not a JWS must belong to one issuer; set `introspection.opaque_tokens: false` on all but one",
                opaque.len(),
                opaque.join(", ")
            ),
        );
    }
    parsed
}

/// An issuer's `introspection` block; `None` when absent or bad (recorded).
fn parse_introspection(
    e: &mut Errors,
    field: &str,
    file: &FileIntrospection,
    allow_http: bool,
) -> Option<IntrospectionConfig> {
    let f = |name: &str| format!("{field}introspection.{name}");
    let endpoint = match file.endpoint.as_deref() {
        None => Some(None),
        Some(url) => e
            .check(&f("endpoint"), parse_fetch_url(url, allow_http).and_then(|url| {
                if url.username().is_empty() && url.password().is_none() && url.query().is_none() {
                    Ok(url)
                } else {
                    Err("must not carry credentials or a query: the client authenticates with its secret".to_owned())
                }
            }))
            .map(Some),
    };
    if file.client_id.trim().is_empty() {
        e.push(&f("client_id"), "must not be empty");
    }
    let secret = super::read_secret(
        e,
        &format!("{field}introspection."),
        "client_secret",
        (&file.client_secret_file, &file.client_secret_env),
        "",
    );
    let secret = secret.and_then(|s| {
        if s.is_empty() {
            e.push(&f("client_secret_file"), "the client secret is empty");
            None
        } else {
            Some(Secret::new(s))
        }
    });
    let client_auth = match file.client_auth.as_deref().unwrap_or("client_secret_basic") {
        "client_secret_basic" => Some(ClientAuth::Basic),
        "client_secret_post" => Some(ClientAuth::Post),
        other => {
            e.push(
                &f("client_auth"),
                format!("`{other}` is not client_secret_basic or client_secret_post"),
            );
            None
        }
    };
    let timeout = positive(
        e,
        &f("timeout"),
        None,
        file.timeout,
        defaults::INTROSPECTION_TIMEOUT,
    );
    let cache_max = super::startup::duration(
        e,
        &f("cache_max"),
        None,
        file.cache_max,
        defaults::INTROSPECTION_CACHE_MAX,
    );
    let negative_cache = super::startup::duration(
        e,
        &f("negative_cache"),
        None,
        file.negative_cache,
        defaults::INTROSPECTION_NEGATIVE_CACHE,
    );
    let max_concurrent = file
        .max_concurrent
        .unwrap_or(defaults::INTROSPECTION_MAX_CONCURRENT);
    if !(1..=10_000).contains(&max_concurrent) {
        e.push(&f("max_concurrent"), "must be from 1 to 10000");
    }
    Some(IntrospectionConfig {
        endpoint: endpoint?,
        client_id: file.client_id.trim().to_owned(),
        client_secret: secret?,
        client_auth: client_auth?,
        timeout: timeout?,
        cache_max: cache_max?,
        negative_cache: negative_cache?,
        max_concurrent,
        opaque_tokens: file.opaque_tokens.unwrap_or(true),
        jwts: file.jwts.unwrap_or(false),
    })
}

fn parse_issuer(
    e: &mut Errors,
    field: &str,
    issuer: FileIssuer,
    default_leeway: Option<Duration>,
    allow_http: bool,
) -> Option<IssuerConfig> {
    let f = |name: &str| format!("{field}{name}");
    let issuer_url = if issuer.issuer.trim().is_empty() {
        e.push(&f("issuer"), "must not be empty");
        None
    } else {
        e.check(&f("issuer"), parse_fetch_url(&issuer.issuer, allow_http))
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
            .check(&f("jwks_uri"), parse_fetch_url(uri, allow_http))
            .map(JwksSource::Uri),
    };
    let algorithms = match &issuer.algorithms {
        None => e.check(&f("algorithms"), parse_algorithms(&[defaults::ALGORITHM])),
        Some(names) => e.check(&f("algorithms"), parse_algorithms(names)),
    };
    let dpop = e.check(
        &f("dpop"),
        DpopMode::parse(issuer.dpop.as_deref().unwrap_or(defaults::DPOP)),
    );
    let introspection = match &issuer.introspection {
        None => Some(None),
        Some(file) => parse_introspection(e, field, file, allow_http).map(Some),
    };
    let leeway = match &issuer.leeway {
        None => default_leeway,
        Some(leeway) => Some(*leeway),
    };
    Some(IssuerConfig {
        issuer: issuer.issuer,
        issuer_url: issuer_url?,
        audiences,
        jwks: jwks?,
        algorithms: algorithms?,
        leeway: leeway?,
        require_access_token_type: issuer.require_access_token_type.unwrap_or(false),
        dpop: dpop?,
        introspection: introspection?,
    })
}
