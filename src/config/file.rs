//! The YAML configuration file (`--config`). Shaped for people: every key the flags have,
//! plus several issuers, route rules and upstream claim headers. Unknown keys are errors,
//! reported with their line and column, so a typo never silently weakens a rule.

use serde::{Deserialize, Deserializer};

/// The whole file. Every key is optional; flags and environment override it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    /// A duration, or `off`.
    pub config_poll: Option<String>,
    /// A duration.
    pub config_settle: Option<String>,
    /// The HTTP authorization endpoint's address, or `off`.
    pub http_listen: Option<String>,
    /// Limits of the HTTP listeners (the authorization endpoint and the admin port).
    pub http_server: Option<FileHttpServer>,
    /// Where the access token may be, tried in order.
    pub token_sources: Option<Vec<FileTokenSource>>,
    #[serde(default, deserialize_with = "duration_text")]
    pub leeway: Option<String>,
    pub jwks: Option<FileJwks>,
    pub scope_claims: Option<Vec<String>>,
    pub max_header_bytes: Option<usize>,
    pub realm: Option<String>,
    pub insecure_allow_http: Option<bool>,
    pub log: Option<FileLog>,
    pub token_cache: Option<FileTokenCache>,
    #[serde(default)]
    pub issuers: Vec<FileIssuer>,
    #[serde(default)]
    pub routes: Vec<FileRoute>,
    /// `deny` or `authenticated`: what a request matching no rule gets.
    pub default_action: Option<String>,
    /// `allow` or `deny`: whether CORS preflights pass without a token.
    pub cors_preflight: Option<String>,
    /// `reject` or `strip`: what `;` path parameters do.
    pub path_parameters: Option<String>,
    /// Whether paths with encoded UTF-8 letters and digits are accepted.
    pub path_utf8: Option<bool>,
    pub upstream: Option<FileUpstream>,
    /// DPoP proof checks and the replay store.
    pub dpop: Option<FileDpop>,
    /// RFC 9728 protected-resource metadata.
    pub protected_resource: Option<FileProtectedResource>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHttpServer {
    #[serde(default, deserialize_with = "duration_text")]
    pub header_read_timeout: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    pub idle_timeout: Option<String>,
    pub max_header_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    #[serde(default, deserialize_with = "duration_text")]
    pub drain_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDpop {
    pub algorithms: Option<Vec<String>>,
    #[serde(default, deserialize_with = "duration_text")]
    pub max_age: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    pub clock_skew: Option<String>,
    pub public_base_url: Option<String>,
    /// `memory` or `redis://...`.
    pub replay_store: Option<String>,
    pub replay_max_entries: Option<usize>,
    pub replay_max_per_key: Option<usize>,
    #[serde(default, deserialize_with = "duration_text")]
    pub replay_store_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileProtectedResource {
    /// The resource identifier: the public URL of the protected API.
    pub resource: String,
    pub resource_name: Option<String>,
    pub resource_documentation: Option<String>,
}

/// One token source: exactly one of `header`, `cookie`, `query`; `scheme` with `header`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTokenSource {
    pub header: Option<String>,
    pub scheme: Option<String>,
    pub cookie: Option<String>,
    pub query: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileJwks {
    #[serde(default, deserialize_with = "duration_text")]
    pub refresh: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    pub cooldown: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    pub timeout: Option<String>,
    pub max_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLog {
    pub level: Option<String>,
    pub format: Option<String>,
    pub deny_rate: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTokenCache {
    pub enabled: Option<bool>,
    pub max_entries: Option<u64>,
    /// `64MiB`, `512KiB` or a number of bytes.
    #[serde(default, deserialize_with = "duration_text")]
    pub max_bytes: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileIssuer {
    pub issuer: String,
    #[serde(default)]
    pub audiences: Vec<String>,
    pub jwks_uri: Option<String>,
    pub algorithms: Option<Vec<String>>,
    #[serde(default, deserialize_with = "duration_text")]
    pub leeway: Option<String>,
    /// RFC 9068: accept only `typ: at+jwt`, so ID tokens are not taken as access tokens.
    pub require_access_token_type: Option<bool>,
    /// `off`, `allowed` or `required`.
    pub dpop: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    pub name: Option<String>,
    pub host: Option<String>,
    pub methods: Option<Vec<String>>,
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    pub scopes: Option<FileScopes>,
    pub allow_anonymous: Option<bool>,
    pub deny: Option<bool>,
    /// Configured issuers admitted on the route.
    pub issuers: Option<Vec<String>>,
    /// Audiences replacing the issuer's on the route.
    pub audiences: Option<Vec<String>>,
    pub claims: Option<Vec<FileClaimCondition>>,
    /// `allow` or `deny`, overriding the top-level `cors_preflight`.
    pub cors_preflight: Option<String>,
    /// Overrides the top-level `path_utf8` for the requests this rule decides.
    pub path_utf8: Option<bool>,
    /// `enforce` or `shadow`.
    pub mode: Option<String>,
    /// `required`: only DPoP-bound tokens with a valid proof, whatever the issuer allows.
    pub dpop: Option<String>,
}

/// One claim condition: `claim` and exactly one operator.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileClaimCondition {
    pub claim: String,
    pub equals: Option<serde_json::Value>,
    pub contains: Option<serde_json::Value>,
    pub contains_any: Option<Vec<serde_json::Value>>,
    pub matches: Option<String>,
    pub present: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileScopes {
    pub all_of: Option<Vec<String>>,
    pub any_of: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    pub claims_to_headers: Option<Vec<FileClaimHeader>>,
    pub array_separator: Option<String>,
    pub forward_payload_header: Option<String>,
    pub strip_authorization: Option<bool>,
    pub metadata_claims: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileClaimHeader {
    pub claim: String,
    pub header: String,
}

/// Parses the file's text. The error names the line, column and key, as the YAML parser
/// reports them.
pub fn parse(text: &str) -> Result<FileConfig, String> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_yaml_ng::from_str(text).map_err(|e| match e.location() {
        Some(loc) => format!(
            "line {}, column {}: {}",
            loc.line(),
            loc.column(),
            strip_location(&e.to_string())
        ),
        None => e.to_string(),
    })
}

fn strip_location(message: &str) -> &str {
    message.find(" at line ").map_or(message, |i| &message[..i])
}

/// Accepts `60s` as well as a bare `60` (seconds) for durations.
fn duration_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        S(String),
        N(u64),
    }
    Ok(Option::<Text>::deserialize(d)?.map(|t| match t {
        Text::S(s) => s,
        Text::N(n) => n.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_parses() {
        let file = parse(
            r#"
issuers:
  - issuer: https://tenant.auth0.com/
    audiences: [https://api.example.com]
    algorithms: [RS256]
routes:
  - path: /api/public
    allow_anonymous: true
  - methods: [GET]
    path: /api/messages/{id}
    scopes: { all_of: [read:messages] }
"#,
        )
        .unwrap();
        assert_eq!(file.issuers.len(), 1);
        assert_eq!(file.routes.len(), 2);
        assert_eq!(file.routes[1].path.as_deref(), Some("/api/messages/{id}"));
    }

    #[test]
    fn unknown_keys_name_line_and_field() {
        let err = parse("issuers:\n  - issuer: https://x/\n    audience: [a]\n").unwrap_err();
        assert!(err.starts_with("line 3, column 5:"), "{err}");
        assert!(err.contains("unknown field `audience`"), "{err}");
    }

    #[test]
    fn durations_accept_numbers() {
        let file = parse("leeway: 30\njwks: {refresh: 5m}\n").unwrap();
        assert_eq!(file.leeway.as_deref(), Some("30"));
        assert_eq!(file.jwks.unwrap().refresh.as_deref(), Some("5m"));
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert!(parse("").unwrap().issuers.is_empty());
    }
}
