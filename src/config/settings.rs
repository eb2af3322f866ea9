//! The settings a reload may change: token sources, issuers, route rules, upstream
//! headers, DPoP proof checks, RFC 9728 metadata. A reload builds new [`Settings`] and
//! keeps the running [`super::Startup`].

use super::file::{FileConfig, FileDpop, FileProtectedResource};
use super::startup::{duration, positive};
use super::values::parse_algorithms;
use super::{Errors, ServeArgs, defaults, issuers, rules, token_sources, trimmed};
use crate::binding::dpop::{DpopMode, DpopSettings};
use crate::policy::{Action, Policy, ScopeRule};
use crate::policy::{HostPattern, PathPattern};
use crate::resource_metadata::{
    ProtectedResource, ResourceFacts, ResourceMetadata, Resources, parse_resource,
};
use crate::token_source::TokenSource;
use crate::upstream::{IdentityHeader, UpstreamConfig};
use crate::verify::IssuerConfig;

/// Everything a reload may change.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the access token may be, tried in order.
    pub token_sources: Vec<TokenSource>,
    pub issuers: Vec<IssuerConfig>,
    pub scope_claims: Vec<String>,
    pub max_header_bytes: usize,
    pub realm: String,
    pub policy: Policy,
    pub upstream: UpstreamConfig,
    /// How DPoP proofs are checked.
    pub dpop: DpopSettings,
    /// The protected resources (RFC 9728), each with its metadata: none, the one of
    /// `protected_resource`, or those of `protected_resources`.
    pub resources: Resources,
}

/// The reloadable settings of `args` over `file`; `None` when one is bad (and recorded).
pub(super) fn parse(
    e: &mut Errors,
    args: &ServeArgs,
    file: FileConfig,
    allow_http: bool,
) -> Option<Settings> {
    let policy_settings = rules::parse_policy_settings(e, &file);
    let token_sources = token_sources::parse_token_sources(e, file.token_sources);
    let leeway = duration(
        e,
        "leeway",
        args.leeway.as_deref(),
        file.leeway,
        defaults::LEEWAY,
    );
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
    let issuers = issuers::parse_issuers(e, args, file.issuers, leeway, allow_http);
    let issuer_names: Vec<&str> = issuers.iter().map(|i| i.issuer.as_str()).collect();
    let mcp = rules::parse_mcp(e, file.mcp.as_ref());
    let policy = rules::parse_routes(e, file.routes, policy_settings, &issuer_names, mcp.as_ref());
    let mut upstream = rules::parse_upstream(e, file.upstream.unwrap_or_default());
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
    let dpop = dpop(e, &file.dpop.unwrap_or_default(), allow_http);
    let resources = match (&file.protected_resource, &file.protected_resources, &dpop) {
        (Some(_), Some(_), _) => {
            e.push(
                "protected_resources",
                "give `protected_resource` (one) or `protected_resources` (several), not both",
            );
            Resources::default()
        }
        (Some(resource), None, Some(dpop)) => {
            if resource.host.is_some()
                || resource.path_prefix.is_some()
                || resource.authorization_servers.is_some()
                || resource.audiences.is_some()
            {
                e.push(
                    "protected_resource",
                    "`host`, `path_prefix`, `authorization_servers` and `audiences` belong to entries of `protected_resources`",
                );
            }
            let facts = MetadataFacts {
                allow_http,
                issuers: &issuers,
                policy: &policy,
                token_sources: &token_sources,
                dpop,
            };
            match resource_metadata(e, "protected_resource", resource, &facts) {
                Some(metadata) => Resources {
                    list: vec![ProtectedResource {
                        metadata,
                        host: None,
                        prefix: PathPattern::Any,
                        audiences: Vec::new(),
                        issuers: Vec::new(),
                    }],
                    enforced: false,
                },
                None => Resources::default(),
            }
        }
        (None, Some(list), Some(dpop)) => {
            let facts = MetadataFacts {
                allow_http,
                issuers: &issuers,
                policy: &policy,
                token_sources: &token_sources,
                dpop,
            };
            protected_resources(e, list, &facts)
        }
        _ => Resources::default(),
    };
    Some(Settings {
        token_sources,
        issuers,
        scope_claims,
        max_header_bytes,
        realm: super::pick(&args.realm, &file.realm, defaults::REALM),
        policy,
        upstream,
        dpop: dpop?,
        resources,
    })
}

/// The DPoP proof settings; `None` when one is bad (and recorded).
fn dpop(e: &mut Errors, file: &FileDpop, allow_http: bool) -> Option<DpopSettings> {
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
        None,
        file.max_age,
        defaults::DPOP_MAX_AGE,
    );
    let clock_skew = duration(
        e,
        "dpop.clock_skew",
        None,
        file.clock_skew,
        defaults::DPOP_CLOCK_SKEW,
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

/// What a resource's document is built from besides its own entry.
struct MetadataFacts<'a> {
    allow_http: bool,
    issuers: &'a [IssuerConfig],
    policy: &'a Policy,
    token_sources: &'a [TokenSource],
    dpop: &'a DpopSettings,
}

/// Each entry of `protected_resources`: its document (its authorization servers only), the
/// requests it is for (`host`, `path_prefix`, by default the resource URL's path) and the
/// tokens it accepts (`audiences`, by default the resource URL itself; its issuers).
fn protected_resources(
    e: &mut Errors,
    list: &[FileProtectedResource],
    facts: &MetadataFacts<'_>,
) -> Resources {
    if list.is_empty() {
        e.push("protected_resources", "at least one resource is required");
    }
    let mut resources = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let field = format!("protected_resources[{i}]");
        let servers: Vec<String> = entry.authorization_servers.clone().unwrap_or_default();
        for server in &servers {
            if !facts.issuers.iter().any(|c| &c.issuer == server) {
                e.push(
                    &format!("{field}.authorization_servers"),
                    format!(
                        "`{}` is not a configured issuer",
                        crate::fetch_url::redact_str(server)
                    ),
                );
            }
        }
        let issuers: Vec<IssuerConfig> = facts
            .issuers
            .iter()
            .filter(|c| servers.is_empty() || servers.contains(&c.issuer))
            .cloned()
            .collect();
        let own = MetadataFacts {
            issuers: &issuers,
            ..*facts
        };
        let Some(metadata) = resource_metadata(e, &field, entry, &own) else {
            continue;
        };
        // The host its requests name: by default the resource URL's (ports are not told
        // apart, so two resources differing only by port are refused below).
        let url_host = url::Url::parse(entry.resource.trim())
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned));
        let host = entry
            .host
            .clone()
            .or(url_host)
            .and_then(|h| e.check(&format!("{field}.host"), HostPattern::parse(&h)));
        for (name, list) in [
            ("audiences", entry.audiences.as_ref()),
            (
                "authorization_servers",
                entry.authorization_servers.as_ref(),
            ),
        ] {
            if list.is_some_and(Vec::is_empty) {
                e.push(
                    &format!("{field}.{name}"),
                    "must not be empty: leave it out for the default",
                );
            }
        }
        let prefix_text = match &entry.path_prefix {
            Some(prefix) => prefix.clone(),
            None => url::Url::parse(entry.resource.trim())
                .map(|u| u.path().to_owned())
                .unwrap_or_else(|_| "/".to_owned()),
        };
        let prefix = if prefix_text.trim_end_matches('/').is_empty() {
            Some(PathPattern::Any)
        } else {
            e.check(
                &format!("{field}.path_prefix"),
                PathPattern::parse_prefix(&prefix_text),
            )
        };
        let audiences = entry
            .audiences
            .clone()
            .unwrap_or_else(|| vec![entry.resource.trim().to_owned()]);
        if resources
            .iter()
            .any(|r: &ProtectedResource| r.host == host && r.metadata.path == metadata.path)
        {
            e.push(
                &format!("{field}.resource"),
                "another resource has the same host and document path: requests could not tell them apart",
            );
        }
        if let Some(prefix) = prefix {
            resources.push(ProtectedResource {
                metadata,
                host,
                prefix,
                audiences,
                issuers: servers,
            });
        }
    }
    Resources {
        list: resources,
        enforced: true,
    }
}

/// RFC 9728 metadata from the resource identifier and what the rest of the configuration
/// says (issuers, route scopes, token sources, DPoP).
fn resource_metadata(
    e: &mut Errors,
    field: &str,
    file: &FileProtectedResource,
    facts: &MetadataFacts<'_>,
) -> Option<ResourceMetadata> {
    let MetadataFacts {
        allow_http,
        issuers,
        policy,
        token_sources,
        dpop,
    } = *facts;
    let resource = e.check(
        &format!("{field}.resource"),
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
