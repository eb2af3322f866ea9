//! The YAML configuration file (`--config`). Shaped for people: every key the flags have,
//! plus several issuers, route rules and upstream claim headers. Unknown keys are errors,
//! reported with their line and column, so a typo never silently weakens a rule.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

use serde_yaml_ng::Value;

use super::error::ConfigError;
use super::locate::{Segment, locate, segments};
use super::values::{parse_bytes, parse_duration};

/// The whole file. Every key is optional; flags and environment override it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    /// A duration, or `off`.
    #[serde(default, deserialize_with = "poll")]
    pub config_poll: Option<Poll>,
    #[serde(default, deserialize_with = "duration")]
    pub config_settle: Option<Duration>,
    /// The HTTP authorization endpoint's address, or `off`.
    pub http_listen: Option<String>,
    /// Limits of the HTTP listeners (the authorization endpoint and the admin port).
    pub http_server: Option<FileHttpServer>,
    /// Where the access token may be, tried in order.
    pub token_sources: Option<Vec<FileTokenSource>>,
    #[serde(default, deserialize_with = "duration")]
    pub leeway: Option<Duration>,
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
    /// Several RFC 9728 protected resources, each for its host and path prefix.
    pub protected_resources: Option<Vec<FileProtectedResource>>,
    /// MCP endpoints: their POSTs name one operation, read one way.
    pub mcp: Option<FileMcp>,
    /// Revocations checked on every token.
    pub revocation: Option<FileRevocation>,
    /// The OpenID Shared Signals receiver.
    pub ssf: Option<FileSsf>,
    /// OpenTelemetry traces over OTLP/gRPC; off without this block.
    pub tracing: Option<FileTracing>,
}

/// Traces (`tracing`): where spans go and which are kept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTracing {
    /// The OTLP/gRPC collector, `http://host:4317`.
    pub endpoint: Option<String>,
    /// Of the requests that arrive without a sampled trace, the share traced.
    pub sampling_ratio: Option<f64>,
    pub service_name: Option<String>,
    /// How long one export may take.
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHttpServer {
    #[serde(default, deserialize_with = "duration")]
    pub header_read_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub idle_timeout: Option<Duration>,
    pub max_header_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    #[serde(default, deserialize_with = "duration")]
    pub drain_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDpop {
    pub algorithms: Option<Vec<String>>,
    #[serde(default, deserialize_with = "duration")]
    pub max_age: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub clock_skew: Option<Duration>,
    pub public_base_url: Option<String>,
    /// `memory` or `redis://...`.
    pub replay_store: Option<String>,
    pub replay_max_entries: Option<usize>,
    pub replay_max_per_key: Option<usize>,
    #[serde(default, deserialize_with = "duration")]
    pub replay_store_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileProtectedResource {
    /// The resource identifier: the public URL of the protected API.
    pub resource: String,
    pub resource_name: Option<String>,
    pub resource_documentation: Option<String>,
    /// `protected_resources` only: the host its requests name (default any).
    pub host: Option<String>,
    /// `protected_resources` only: the paths it covers (default the resource URL's path).
    pub path_prefix: Option<String>,
    /// `protected_resources` only: the issuers of its tokens (default every one).
    pub authorization_servers: Option<Vec<String>>,
    /// `protected_resources` only: audiences its tokens must name one of (default the
    /// resource URL).
    pub audiences: Option<Vec<String>>,
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
    #[serde(default, deserialize_with = "duration")]
    pub refresh: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub cooldown: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
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
    #[serde(default, deserialize_with = "bytes")]
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileIssuer {
    pub issuer: String,
    #[serde(default)]
    pub audiences: Vec<String>,
    pub jwks_uri: Option<String>,
    pub algorithms: Option<Vec<String>>,
    #[serde(default, deserialize_with = "duration")]
    pub leeway: Option<Duration>,
    /// RFC 9068: accept only `typ: at+jwt`, so ID tokens are not taken as access tokens.
    pub require_access_token_type: Option<bool>,
    /// `off`, `allowed` or `required`.
    pub dpop: Option<String>,
    /// RFC 7662 introspection of the issuer's opaque tokens (and JWTs, if so set).
    pub introspection: Option<FileIntrospection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileIntrospection {
    /// Absent: the discovery document's `introspection_endpoint`.
    pub endpoint: Option<String>,
    pub client_id: String,
    /// A file holding the client secret (trailing newline ignored).
    pub client_secret_file: Option<String>,
    /// An environment variable holding the client secret.
    pub client_secret_env: Option<String>,
    /// `client_secret_basic` (default) or `client_secret_post`.
    pub client_auth: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub cache_max: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub negative_cache: Option<Duration>,
    pub max_concurrent: Option<usize>,
    pub opaque_tokens: Option<bool>,
    pub jwts: Option<bool>,
}

/// Revocations (`revocation`): where they are kept and for how long.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRevocation {
    /// `memory` or a redis:// / rediss:// URL.
    pub store: Option<String>,
    pub key_prefix: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub max_lag: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub max_token_lifetime: Option<Duration>,
    pub max_entries: Option<usize>,
}

/// The OpenID Shared Signals receiver (`ssf`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSsf {
    /// The push endpoint's address (`host:port`).
    pub listen: String,
    /// The push endpoint's path (default `/ssf/events`).
    pub path: Option<String>,
    #[serde(default)]
    pub transmitters: Vec<FileTransmitter>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTransmitter {
    /// The transmitter's `iss`.
    pub issuer: String,
    /// Absent: `jwks_uri` of `<issuer>/.well-known/ssf-configuration`.
    pub jwks_uri: Option<String>,
    /// The `aud` its SETs must carry.
    pub audience: String,
    /// A file, or an environment variable, holding the exact `Authorization` header
    /// value it pushes with.
    pub authorization_file: Option<String>,
    pub authorization_env: Option<String>,
    /// The access-token issuers its events speak for (default: its own issuer).
    pub token_issuers: Option<Vec<String>>,
    pub algorithms: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    pub name: Option<String>,
    pub host: Option<String>,
    pub methods: Option<Vec<String>>,
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    /// A gRPC method, `package.Service/Method` (`*` in the method as a pattern).
    pub grpc: Option<String>,
    /// The MCP operation (`method`, and `name` for tools, prompts and resources), each
    /// exact or a pattern with `*`; the rule's `path` must be an MCP endpoint.
    pub mcp: Option<FileMcpMatch>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMcpMatch {
    pub method: String,
    pub name: Option<String>,
}

/// MCP endpoints (`mcp`): where POSTs name their operation in `Mcp-Method`/`Mcp-Name`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMcp {
    /// Paths of the MCP endpoints (exact).
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// `required` (default) or `when_sent`.
    pub body: Option<String>,
    #[serde(default, deserialize_with = "bytes")]
    pub max_body_bytes: Option<u64>,
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

/// Most problems one file can report: a file in which every line is wrong is not worth
/// reading to the end.
const MAX_ERRORS: usize = 50;

/// Parses the file's text, reporting every problem at once: the YAML parser stops at the
/// first, so the offending key is taken out and the rest read again, until it reads. A
/// missing required member (all are strings) is read as empty, so the checks that follow
/// see the rest of its entry. The file read, without what could not be read, comes with
/// the errors; none when the YAML itself does not parse.
pub fn parse(text: &str) -> (Option<FileConfig>, Vec<ConfigError>) {
    if text.trim().is_empty() {
        return (Some(FileConfig::default()), Vec::new());
    }
    let first = match serde_yaml_ng::from_str::<FileConfig>(text) {
        Ok(file) => return (Some(file), Vec::new()),
        Err(first) => first,
    };
    let mut value: Value = match serde_yaml_ng::from_str(text) {
        Ok(value) => value,
        // Not YAML at all: the parser's one error is all there is.
        Err(_) => return (None, vec![reported(&first)]),
    };
    let first = reported(&first);
    let mut errors = Vec::new();
    let mut tried: Vec<String> = Vec::new();
    let mut next = Some(first);
    while let Some(error) = next.take() {
        // An entry emptied for being of the wrong kind (below) misses its required
        // members: those are filled, not reported again.
        let follow_on = tried.contains(&error.field) && error.message.starts_with("missing field");
        if !follow_on {
            errors.push(error.clone());
        }
        if errors.len() >= MAX_ERRORS || !take_out(&mut value, &error) {
            break;
        }
        tried.push(error.field);
        let again = serde_yaml_ng::to_string(&value)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                serde_yaml_ng::from_str::<FileConfig>(&text).map_err(|e| e.to_string())
            });
        match again {
            Ok(file) => return (Some(file), errors),
            Err(message) => {
                let error = from_message(&message);
                // What was put in its place does not fit either: the same problem again.
                if tried.contains(&error.field) && error.message.starts_with("invalid type") {
                    break;
                }
                let location = locate(text, &segments(&error.field));
                next = Some(error.at(location));
            }
        }
    }
    (None, errors)
}

/// The parser's error as a configuration error: the key it names, at its location.
fn reported(error: &serde_yaml_ng::Error) -> ConfigError {
    let location = error.location().map(|l| (l.line(), l.column()));
    from_message(&error.to_string()).at(location)
}

/// `routes[0]: unknown field `scope`, expected ...` as the key it names and the message.
fn from_message(message: &str) -> ConfigError {
    let message = strip_location(message);
    let (path, rest) = match message.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') => (path, rest),
        _ => ("", message),
    };
    let unknown = rest
        .strip_prefix("unknown field `")
        .and_then(|r| r.split_once('`'))
        .map(|(key, _)| key);
    let field = match (path, unknown) {
        ("", Some(key)) => key.to_owned(),
        (path, Some(key)) => format!("{path}.{key}"),
        (path, None) => path.to_owned(),
    };
    ConfigError::new(field, rest)
}

/// Takes the setting `error` names out of `value` (an unknown or malformed key; an item
/// is blanked, so later items keep their index), or fills a missing required member with
/// an empty string; `false` when nothing can be done.
fn take_out(value: &mut Value, error: &ConfigError) -> bool {
    let path = segments(&error.field);
    let missing = error
        .message
        .strip_prefix("missing field `")
        .and_then(|r| r.split_once('`'))
        .map(|(key, _)| key);
    if let Some(key) = missing {
        return match node_at(value, &path) {
            Some(Value::Mapping(map)) => {
                map.insert(Value::String(key.to_owned()), Value::String(String::new()));
                true
            }
            _ => false,
        };
    }
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    match (last, node_at(value, parents)) {
        (Segment::Key(key), Some(Value::Mapping(map))) => map.remove(key.as_str()).is_some(),
        (Segment::Index(i), Some(Value::Sequence(items))) if *i < items.len() => {
            // An empty entry of the kind the list holds: its required members are then
            // named as missing, and filled.
            items[*i] = if error.message.contains("expected struct") {
                Value::Mapping(serde_yaml_ng::Mapping::new())
            } else {
                Value::String(String::new())
            };
            true
        }
        _ => false,
    }
}

fn node_at<'v>(value: &'v mut Value, path: &[Segment]) -> Option<&'v mut Value> {
    let mut node = value;
    for segment in path {
        node = match (segment, node) {
            (Segment::Key(key), Value::Mapping(map)) => map.get_mut(key.as_str())?,
            (Segment::Index(i), Value::Sequence(items)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(node)
}

fn strip_location(message: &str) -> &str {
    message.find(" at line ").map_or(message, |i| &message[..i])
}

/// Reads a value typed where it is written: a bad one is reported at its own line and
/// key. `read` gets the text, or a bare number as its decimal text.
struct Typed<T>(fn(&str, bool) -> Result<T, String>, &'static str);

impl<'de, T> serde::de::Visitor<'de> for Typed<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.1)
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Option<T>, E> {
        (self.0)(text, false).map(Some).map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Option<T>, E> {
        (self.0)(&n.to_string(), true).map(Some).map_err(E::custom)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
}

/// A duration: text (`60s`, `500ms`, `10m`) or a bare number of seconds.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    d.deserialize_any(Typed(|text, _| parse_duration(text), "a duration like 60s"))
}

/// How often the file is polled: a duration, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    Off,
    Every(Duration),
}

fn poll<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Poll>, D::Error> {
    d.deserialize_any(Typed(
        |text, _| match text.trim() {
            "off" => Ok(Poll::Off),
            text => parse_duration(text).map(Poll::Every),
        },
        "a duration like 500ms, or off",
    ))
}

/// A size in bytes: a number, or text like `64MiB`.
fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_any(Typed(|text, _| parse_bytes(text), "a size like 64MiB"))
}

#[cfg(test)]
mod tests;
