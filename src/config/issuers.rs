//! Trusted issuers, from `--issuer` and its flags or from the file's `issuers` list, parsed
//! into the [`IssuerConfig`] that verification owns.

use std::time::Duration;

use super::defaults;
use super::file::FileIssuer;
use super::values::{parse_algorithms, parse_fetch_url};
use super::{Errors, ServeArgs, trimmed};
use crate::binding::dpop::DpopMode;
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
    parsed
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
    })
}
