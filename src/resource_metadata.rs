//! RFC 9728 protected-resource metadata: the document that tells an OAuth client (an MCP
//! client, say) which authorization servers issue tokens for this API, which scopes it
//! knows and how tokens are presented. Built once per configuration, from the issuers,
//! routes and token sources; served without a token at the well-known path (through
//! Envoy by the Check itself, and on the admin port), and named in every 401 challenge.

use serde_json::{Value, json};
use url::Url;

use crate::policy::{HostPattern, PathGrammar, PathPattern};

/// The metadata of one configuration: where it lives and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceMetadata {
    /// The request path it is served at: `/.well-known/oauth-protected-resource` followed
    /// by the resource's path (RFC 9728 §3.1).
    pub path: String,
    /// The absolute metadata URL, for `resource_metadata` in `WWW-Authenticate`.
    pub url: String,
    /// The JSON document.
    pub body: String,
}

/// What the document describes.
#[derive(Debug, Clone, Default)]
pub struct ResourceFacts<'a> {
    pub resource: Option<&'a Url>,
    /// The identifier as configured: RFC 9728 §3.3 has clients compare it exactly with the
    /// one they derived the metadata URL from.
    pub resource_text: &'a str,
    pub resource_name: Option<&'a str>,
    pub resource_documentation: Option<&'a str>,
    /// The configured issuers, in order.
    pub authorization_servers: Vec<&'a str>,
    /// Every scope a route names.
    pub scopes: Vec<&'a str>,
    /// RFC 6750 methods: `header`, `query`.
    pub bearer_methods: Vec<&'static str>,
    /// Proof algorithms, when some issuer accepts DPoP.
    pub dpop_algs: Vec<&'static str>,
    /// Every issuer requires DPoP.
    pub dpop_required: bool,
}

const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The path of the metadata of `resource` (RFC 9728 §3.1: the well-known segment goes
/// between the host and the resource's path).
fn metadata_path(resource: &Url) -> String {
    let path = resource.path().trim_end_matches('/');
    format!("{WELL_KNOWN}{path}")
}

/// Checks a configured resource identifier (RFC 9728 §1.2): an absolute `https` URL (or
/// `http` when allowed) without fragment or query.
pub fn parse_resource(text: &str, allow_http: bool) -> Result<Url, String> {
    let url = crate::fetch_url::parse_fetch_url(text, allow_http)?;
    if url.fragment().is_some() || url.query().is_some() {
        return Err("a resource identifier has no query or fragment".into());
    }
    Ok(url)
}

impl ResourceMetadata {
    /// The document for `facts`; `None` without a resource identifier.
    pub fn build(facts: &ResourceFacts<'_>) -> Option<ResourceMetadata> {
        let resource = facts.resource?;
        let path = metadata_path(resource);
        let mut origin = resource.clone();
        origin.set_path(&path);
        let mut scopes = facts.scopes.clone();
        scopes.sort_unstable();
        scopes.dedup();
        let mut document = json!({
            "resource": facts.resource_text,
            "authorization_servers": facts.authorization_servers,
            "scopes_supported": scopes,
            "bearer_methods_supported": facts.bearer_methods,
            "tls_client_certificate_bound_access_tokens": true,
        });
        if let Some(name) = facts.resource_name {
            document["resource_name"] = Value::String(name.into());
        }
        if let Some(docs) = facts.resource_documentation {
            document["resource_documentation"] = Value::String(docs.into());
        }
        if !facts.dpop_algs.is_empty() {
            document["dpop_signing_alg_values_supported"] = json!(facts.dpop_algs);
            document["dpop_bound_access_tokens_required"] = Value::Bool(facts.dpop_required);
        }
        Some(ResourceMetadata {
            path,
            url: origin.to_string(),
            body: document.to_string(),
        })
    }

    /// Whether a request for `method` and `target` (query included) asks for this
    /// document.
    pub fn is_request(&self, method: &str, target: &str) -> bool {
        matches!(method, "GET" | "HEAD") && target.split(['?', '#']).next() == Some(&self.path)
    }
}

/// One protected resource of a deployment: its document, which requests it is for, and
/// the tokens it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedResource {
    pub metadata: ResourceMetadata,
    /// The host requests for it name; `None`: any.
    pub host: Option<HostPattern>,
    /// The paths it covers (segment-aware prefix, or any).
    pub prefix: PathPattern,
    /// Audiences its tokens must name one of (RFC 8707); empty: the route's or issuer's.
    pub audiences: Vec<String>,
    /// Issuers its tokens may come from; empty: every configured one.
    pub issuers: Vec<String>,
}

/// Every protected resource, in the order configured: a request is for the first whose
/// host and path prefix it matches. `enforced` for `protected_resources` (each request
/// must be for one, with a token for it); the one `protected_resource` covers every
/// request and checks nothing more.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resources {
    pub list: Vec<ProtectedResource>,
    pub enforced: bool,
}

impl Resources {
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The resource whose document a request for `method`, `target` and `host` asks for:
    /// of several, the one whose host the request names.
    pub fn document(&self, method: &str, target: &str, host: &str) -> Option<usize> {
        let host = crate::policy::normalize_host(host).ok();
        self.list.iter().position(|r| {
            r.metadata.is_request(method, target)
                && (!self.enforced
                    || r.host
                        .as_ref()
                        .is_none_or(|h| host.as_deref().is_some_and(|host| h.matches(host))))
        })
    }

    /// The resource a request for `host` and `path` (as sent) is for. One resource covers
    /// every request; with several, the path is read in the policy's grammar, and a path
    /// that does not read is for none.
    pub fn for_request(&self, host: &str, path: &str, grammar: PathGrammar) -> Option<usize> {
        if !self.enforced {
            return (!self.list.is_empty()).then_some(0);
        }
        let normal = grammar.normalize(path).ok()?;
        let host = crate::policy::normalize_host(host).ok()?;
        // No host: a resource bound to one could neither be chosen nor passed over.
        if host.is_empty() && self.list.iter().any(|r| r.host.is_some()) {
            return None;
        }
        let find = |path: &str, fold: bool| {
            self.list.iter().position(|r| {
                r.host.as_ref().is_none_or(|h| h.matches(&host))
                    && if fold {
                        r.prefix.matches_ignoring_case(path)
                    } else {
                        r.prefix.matches(path)
                    }
            })
        };
        let chosen = find(&normal, false);
        // Every reading a server behind the proxy could make picks the same resource:
        // the path with its escapes kept, and the path in any case.
        let escaped = grammar.escaped_reading(path);
        if escaped
            .as_deref()
            .is_some_and(|escaped| find(escaped, false) != chosen)
            || find(&normal, true) != chosen
        {
            return None;
        }
        chosen
    }

    pub fn get(&self, index: usize) -> Option<&ProtectedResource> {
        self.list.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(resource: &Url) -> ResourceFacts<'_> {
        ResourceFacts {
            resource: Some(resource),
            resource_text: "https://api.example.com",
            authorization_servers: vec!["https://idp.example.com/"],
            scopes: vec!["write", "read", "read"],
            bearer_methods: vec!["header"],
            dpop_algs: vec!["ES256"],
            ..ResourceFacts::default()
        }
    }

    #[test]
    fn path_inserts_the_well_known_segment_before_the_resource_path() {
        let root = Url::parse("https://api.example.com").unwrap();
        let mcp = Url::parse("https://api.example.com/mcp/").unwrap();
        assert_eq!(metadata_path(&root), WELL_KNOWN);
        assert_eq!(metadata_path(&mcp), format!("{WELL_KNOWN}/mcp"));
        let metadata = ResourceMetadata::build(&facts(&mcp)).unwrap();
        assert_eq!(
            metadata.url,
            "https://api.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert!(metadata.is_request("GET", "/.well-known/oauth-protected-resource/mcp?x"));
        assert!(!metadata.is_request("POST", "/.well-known/oauth-protected-resource/mcp"));
        assert!(!metadata.is_request("GET", "/.well-known/oauth-protected-resource"));
    }

    #[test]
    fn document_lists_servers_scopes_and_dpop() {
        let resource = Url::parse("https://api.example.com/").unwrap();
        let metadata = ResourceMetadata::build(&facts(&resource)).unwrap();
        let doc: Value = serde_json::from_str(&metadata.body).unwrap();
        assert_eq!(doc["resource"], "https://api.example.com");
        assert_eq!(
            doc["authorization_servers"],
            json!(["https://idp.example.com/"])
        );
        assert_eq!(doc["scopes_supported"], json!(["read", "write"]));
        assert_eq!(doc["dpop_signing_alg_values_supported"], json!(["ES256"]));
        assert_eq!(doc["dpop_bound_access_tokens_required"], false);
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    }

    #[test]
    fn resources_with_query_or_fragment_are_refused() {
        assert!(parse_resource("https://api.example.com/?a=1", false).is_err());
        assert!(parse_resource("https://api.example.com/#x", false).is_err());
        assert!(parse_resource("http://api.example.com/", false).is_err());
        assert!(parse_resource("https://api.example.com/mcp", false).is_ok());
    }
}
