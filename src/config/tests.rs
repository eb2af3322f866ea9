use super::*;
use crate::binding::dpop::DpopMode;
use crate::jwks::JwksSource;
use crate::policy::{Action, DefaultAction, Mode, PathParameters, ScopeRule, TokenRule};
use crate::token_source::TokenSource;
use crate::upstream::UpstreamConfig;
use clap::Parser;
use jsonwebtoken::Algorithm;
use std::time::Duration;

/// The field each error names (the text before its first `:`, after the location).
fn fields_of(errors: &[String]) -> Vec<&str> {
    errors
        .iter()
        .map(|e| match e.strip_prefix("line ") {
            Some(rest) => rest.split(": ").nth(1).unwrap_or(""),
            None => e.split(':').next().unwrap_or(""),
        })
        .collect()
}

fn from_flags(extra: &[&str]) -> Result<Config, ConfigErrors> {
    from(extra, "")
}

fn from(extra: &[&str], yaml: &str) -> Result<Config, ConfigErrors> {
    let mut argv = vec!["jwt-authz", "serve"];
    argv.extend_from_slice(extra);
    let cli = Cli::try_parse_from(argv).expect("flags parse");
    let Command::Serve(serve) = cli.command else {
        panic!("serve expected")
    };
    Config::load_bytes(&serve, yaml.as_bytes())
}

#[test]
fn minimal_flags_give_defaults() {
    let config = from_flags(&[
        "--issuer",
        "https://t.auth0.com/",
        "--audience",
        "https://api",
    ])
    .unwrap();
    assert_eq!(config.startup.listen, "0.0.0.0:9191".parse().unwrap());
    assert_eq!(
        config.startup.admin_listen,
        Some("0.0.0.0:9192".parse().unwrap())
    );
    let issuer = &config.settings.issuers[0];
    assert_eq!(issuer.issuer, "https://t.auth0.com/");
    assert_eq!(issuer.algorithms, vec![Algorithm::RS256]);
    assert_eq!(issuer.leeway, Duration::from_secs(60));
    assert_eq!(issuer.jwks, JwksSource::Discover);
    assert_eq!(config.startup.jwks.refresh, Duration::from_secs(600));
    assert_eq!(config.startup.jwks.cooldown, Duration::from_secs(5));
    assert_eq!(
        config.settings.scope_claims,
        ["scope", "scp", "permissions"]
    );
    assert!(config.startup.token_cache.enabled);
    assert_eq!(config.settings.upstream, UpstreamConfig::default());
    assert!(config.settings.policy.rules().is_empty());
}

#[test]
fn every_error_is_reported_at_once() {
    let errors = from_flags(&[
        "--listen",
        "nope",
        "--algorithms",
        "HS256",
        "--leeway",
        "5 parsecs",
    ])
    .unwrap_err()
    .lines();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors.iter().any(|e| e.starts_with("listen:")));
    assert!(errors.iter().any(|e| e.starts_with("leeway:")));
    assert!(errors.iter().any(|e| e.starts_with("issuer: required")));
    assert!(errors.iter().any(|e| e.starts_with("issuer: --audience")));
}

#[test]
fn flags_override_the_file_and_file_overrides_defaults() {
    let yaml = "listen: 127.0.0.1:7000\nrealm: file\njwks: {cooldown: 9s}\nissuers:\n  - issuer: https://a.example/\n    audiences: [x]\n";
    let config = from(&["--realm", "flag"], yaml).unwrap();
    assert_eq!(config.startup.listen, "127.0.0.1:7000".parse().unwrap());
    assert_eq!(config.settings.realm, "flag");
    assert_eq!(config.startup.jwks.cooldown, Duration::from_secs(9));
    // --issuer replaces the file's issuers.
    let config = from(&["--issuer", "https://b.example/", "--audience", "y"], yaml).unwrap();
    assert_eq!(config.settings.issuers.len(), 1);
    assert_eq!(config.settings.issuers[0].issuer, "https://b.example/");
}

#[test]
fn several_issuers_with_their_own_settings() {
    let yaml = r#"
leeway: 30s
issuers:
  - issuer: https://a.example/
    audiences: [api]
  - issuer: https://b.example/realms/x
    audiences: [api, other]
    jwks_uri: https://b.example/certs
    algorithms: [ES256, EdDSA]
    leeway: 5s
    require_access_token_type: true
"#;
    let config = from(&[], yaml).unwrap();
    assert_eq!(config.settings.issuers.len(), 2);
    assert_eq!(config.settings.issuers[0].leeway, Duration::from_secs(30));
    let b = &config.settings.issuers[1];
    assert_eq!(b.leeway, Duration::from_secs(5));
    assert_eq!(b.algorithms, vec![Algorithm::ES256, Algorithm::EdDSA]);
    assert!(b.require_access_token_type);
    assert_eq!(
        b.jwks,
        JwksSource::Uri("https://b.example/certs".parse().unwrap())
    );
}

#[test]
fn issuer_errors_name_their_index() {
    let yaml = "issuers:\n  - issuer: https://a.example/\n    audiences: []\n  - issuer: http://b.example/\n    audiences: [x]\n    algorithms: [none]\n";
    let errors = from(&[], yaml).unwrap_err().lines();
    assert!(
        errors.contains(&"issuers[0].audiences: at least one is required".to_owned()),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("issuers[1].issuer: `http://b.example/` must use https")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("issuers[1].algorithms: `none` is never allowed")),
        "{errors:?}"
    );
}

#[test]
fn duplicate_issuers_are_refused() {
    let yaml = "issuers:\n  - {issuer: https://a.example/, audiences: [x]}\n  - {issuer: https://a.example/, audiences: [y]}\n";
    let errors = from(&[], yaml).unwrap_err().lines();
    assert_eq!(
        errors,
        ["issuers[1].issuer: `https://a.example/` is listed twice"]
    );
}

#[test]
fn routes_become_rules_in_order() {
    let yaml = r#"
issuers: [{issuer: https://a.example/, audiences: [x]}]
routes:
  - path: /api/public
    allow_anonymous: true
  - name: read-message
    methods: [get]
    host: api.example.com
    path: /api/messages/{id}
    scopes: { all_of: [read:messages] }
  - path_prefix: /admin
    scopes: { any_of: [admin, root] }
  - path_prefix: /internal
    deny: true
"#;
    let config = from(&[], yaml).unwrap();
    let rules = config.settings.policy.rules();
    assert_eq!(rules.len(), 4);
    assert_eq!(rules[0].name, "routes[0]");
    assert_eq!(rules[0].action, Action::Anonymous);
    assert_eq!(rules[1].name, "read-message");
    assert_eq!(rules[1].methods, ["GET"]);
    assert_eq!(
        rules[1].action,
        Action::Token(TokenRule::scopes(ScopeRule::AllOf(vec![
            "read:messages".into()
        ])))
    );
    assert_eq!(
        rules[2].action,
        Action::Token(TokenRule::scopes(ScopeRule::AnyOf(vec![
            "admin".into(),
            "root".into()
        ])))
    );
    assert_eq!(rules[3].action, Action::Deny);
}

#[test]
fn route_errors_name_the_route_and_field() {
    let yaml = r#"
issuers: [{issuer: https://a.example/, audiences: [x]}]
routes:
  - path: api/x
  - path: /a
    path_prefix: /b
  - path: /c
    allow_anonymous: true
    deny: true
  - path: /d
    scopes: {}
  - host: "https://h"
"#;
    let errors = from(&[], yaml).unwrap_err().lines();
    assert_eq!(errors.len(), 5, "{errors:?}");
    assert!(errors[0].starts_with("routes[0].path: `api/x` must start with `/`"));
    assert!(errors[1].starts_with("routes[1].path: give one of `path`, `path_prefix` and `grpc`"));
    assert!(errors[2].starts_with("routes[2].allow_anonymous:"));
    assert!(errors[3].starts_with("routes[3].scopes:"));
    assert!(errors[4].starts_with("routes[4].host:"));
}

#[test]
fn upstream_headers_are_checked() {
    let yaml = r#"
issuers: [{issuer: https://a.example/, audiences: [x]}]
upstream:
  claims_to_headers:
    - {claim: sub, header: X-User}
    - {claim: email, header: ":path"}
    - {claim: org, header: x-user}
  forward_payload_header: x-jwt-payload
  strip_authorization: true
  metadata_claims: [sub]
"#;
    let errors = from(&[], yaml).unwrap_err().lines();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("upstream.claims_to_headers[1].header"));
    assert!(errors[1].contains("`x-user` is mapped twice"));
    let ok = yaml
        .replace("    - {claim: email, header: \":path\"}\n", "")
        .replace("x-user}", "x-org}");
    let config = from(&[], &ok).unwrap();
    assert_eq!(
        config.settings.upstream.claim_headers[0].header.name(),
        "x-user"
    );
    assert_eq!(
        config
            .settings
            .upstream
            .forward_payload_header
            .as_ref()
            .map(|h| h.name()),
        Some("x-jwt-payload")
    );
    assert!(config.settings.upstream.strip_authorization);
}

#[test]
fn headers_one_upstream_could_confuse_are_refused() {
    let yaml = r#"
issuers: [{issuer: https://a.example/, audiences: [x]}]
upstream:
  claims_to_headers:
    - {claim: sub, header: x-user-id}
    - {claim: uid, header: x_user-id}
    - {claim: len, header: content_length}
    - {claim: many, header: a-b-c-d-e-f-g-h}
  forward_payload_header: x_user_id
"#;
    let errors = from(&[], yaml).unwrap_err().lines();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors[0].starts_with("upstream.claims_to_headers[1].header"));
    assert!(errors[0].contains("`x_user-id` and `x-user-id` are one header"));
    assert!(errors[1].starts_with("upstream.claims_to_headers[2].header"));
    assert!(errors[1].contains("cannot carry a claim"));
    assert!(errors[2].starts_with("upstream.claims_to_headers[3].header"));
    assert!(errors[3].starts_with("upstream.forward_payload_header"));
}

#[test]
fn admin_port_can_be_turned_off() {
    let config = from_flags(&[
        "--issuer",
        "https://t/",
        "--audience",
        "a",
        "--admin-listen",
        "off",
    ])
    .unwrap();
    assert_eq!(config.startup.admin_listen, None);
}

#[test]
fn route_policy_keys_are_parsed() {
    let yaml = r#"
issuers:
  - {issuer: https://a.example/, audiences: [x]}
  - {issuer: https://b.example/, audiences: [y]}
default_action: authenticated
cors_preflight: allow
path_parameters: strip
routes:
  - name: admin
    path_prefix: /api/admin
    scopes: { all_of: [read:messages] }
    issuers: [https://b.example/]
    audiences: [https://admin.example]
    cors_preflight: deny
    mode: shadow
    claims:
      - { claim: org.id, equals: acme }
      - { claim: groups, contains: admin }
      - { claim: amr, contains_any: [mfa, hwk] }
      - { claim: email_verified, equals: true }
      - { claim: sub, matches: '^auth0\|[0-9a-f]{24}$' }
      - { claim: act, present: false }
"#;
    let config = from(&[], yaml).unwrap();
    let policy = &config.settings.policy;
    assert_eq!(policy.default_action(), DefaultAction::Authenticated);
    assert!(policy.settings().cors_preflight);
    assert_eq!(policy.settings().path_parameters, PathParameters::Strip);
    let rule = &policy.rules()[0];
    assert_eq!(rule.mode, Mode::Shadow);
    assert_eq!(rule.cors_preflight, Some(false));
    let Action::Token(token) = &rule.action else {
        panic!("token rule expected")
    };
    assert_eq!(token.issuers, ["https://b.example/"]);
    assert_eq!(
        token.audiences.as_deref(),
        Some(&["https://admin.example".to_owned()][..])
    );
    let operators: Vec<&str> = token.conditions.iter().map(|c| c.operator()).collect();
    assert_eq!(
        operators,
        [
            "equals",
            "contains",
            "contains_any",
            "equals",
            "matches",
            "absent"
        ]
    );
    assert_eq!(policy.conditions().count(), 6);
}

#[test]
fn route_policy_errors_name_their_field() {
    let yaml = r#"
issuers: [{issuer: https://a.example/, audiences: [x]}]
default_action: allow
cors_preflight: yes-please
path_parameters: keep
routes:
  - path: /a
    issuers: [https://unknown.example/]
  - path: /b
    audiences: []
  - path: /c
    mode: audit
  - path: /d
    cors_preflight: maybe
  - path: /e
    claims:
      - { claim: org.id }
      - { claim: org.id, equals: a, contains: b }
      - { claim: "", present: true }
      - { claim: x, equals: [1, 2] }
      - { claim: x, matches: "(" }
      - { claim: x, contains_any: [] }
  - path: /f
    allow_anonymous: true
    claims: [{ claim: x, present: true }]
  - name: twice
    path: /g
  - name: twice
    path: /h
  - path: /a/../b
"#;
    let errors = from(&[], yaml).unwrap_err().lines();
    let fields = fields_of(&errors);
    assert_eq!(
        fields,
        [
            "default_action",
            "cors_preflight",
            "path_parameters",
            "routes[0].issuers[0]",
            "routes[1].audiences",
            "routes[2].mode",
            "routes[3].cors_preflight",
            "routes[4].claims[0]",
            "routes[4].claims[1]",
            "routes[4].claims[2].claim",
            "routes[4].claims[3].equals",
            "routes[4].claims[4].matches",
            "routes[4].claims[5].contains_any",
            "routes[5].allow_anonymous",
            "routes[7].name",
            "routes[8].path",
        ],
        "{errors:#?}"
    );
    assert!(
        errors[3].contains("is not a configured issuer"),
        "{}",
        errors[3]
    );
}

#[test]
fn token_sources_default_to_the_bearer_header_and_http_listen_to_off() {
    let config = from_flags(&["--issuer", "https://t.auth0.com/", "--audience", "a"]).unwrap();
    assert_eq!(
        config.settings.token_sources,
        [TokenSource::authorization()]
    );
    assert_eq!(config.startup.http_listen, None);
    assert_eq!(config.settings.upstream.token_headers, ["authorization"]);
    let config = from_flags(&[
        "--issuer",
        "https://t.auth0.com/",
        "--audience",
        "a",
        "--http-listen",
        "127.0.0.1:9193",
    ])
    .unwrap();
    assert_eq!(
        config.startup.http_listen,
        Some("127.0.0.1:9193".parse().unwrap())
    );
}

#[test]
fn token_sources_are_read_in_order() {
    let yaml = r#"
token_sources:
  - { header: Authorization, scheme: bearer }
  - { cookie: access_token }
  - { header: X-Api-Token }
  - { query: access_token }
"#;
    let config = from(
        &["--issuer", "https://t.auth0.com/", "--audience", "a"],
        yaml,
    )
    .unwrap();
    assert_eq!(
        config.settings.token_sources,
        [
            TokenSource::Header {
                name: "authorization".into(),
                scheme: Some("bearer".into())
            },
            TokenSource::Cookie("access_token".into()),
            TokenSource::Header {
                name: "x-api-token".into(),
                scheme: None
            },
            TokenSource::Query("access_token".into()),
        ]
    );
    // Each token header in every `-`/`_` spelling, removed upstream when stripped.
    assert_eq!(
        config.settings.upstream.token_headers,
        [
            "authorization",
            "x-api-token",
            "x_api-token",
            "x-api_token",
            "x_api_token"
        ]
    );
}

#[test]
fn bad_token_sources_name_their_field_path() {
    let yaml = r#"
http_listen: nowhere
token_sources:
  - { header: authorization, scheme: Bearer }
  - { cookie: "bad name" }
  - { query: "a&b" }
  - { header: x-a, cookie: b }
  - { cookie: c, scheme: Bearer }
  - { header: authorization, scheme: Bearer }
  - { header: x-jwt-sub }
  - { header: "x y" }
"#;
    let errors = from(
        &["--issuer", "https://t.auth0.com/", "--audience", "a"],
        yaml,
    )
    .unwrap_err()
    .lines();
    let fields = fields_of(&errors);
    assert_eq!(
        fields,
        [
            "http_listen",
            "token_sources[1].cookie",
            "token_sources[2].query",
            "token_sources[3]",
            "token_sources[4].scheme",
            "token_sources[5]",
            "token_sources[7].header",
            "token_sources",
        ],
        "{errors:?}"
    );
    let empty = from(
        &["--issuer", "https://t.auth0.com/", "--audience", "a"],
        "token_sources: []\n",
    );
    assert_eq!(
        empty.unwrap_err().lines(),
        ["token_sources: list at least one source"]
    );
}

const ISSUER_FLAGS: [&str; 4] = [
    "--issuer",
    "https://t.auth0.com/",
    "--audience",
    "https://api",
];

#[test]
fn dpop_and_resource_metadata_defaults() {
    let config = from_flags(&ISSUER_FLAGS).unwrap();
    assert_eq!(config.settings.issuers[0].dpop, DpopMode::Allowed);
    assert_eq!(config.settings.dpop.max_age, Duration::from_secs(60));
    assert_eq!(config.settings.dpop.clock_skew, Duration::from_secs(5));
    assert_eq!(config.settings.dpop.algs(), "ES256 ES384 EdDSA RS256 PS256");
    assert_eq!(config.settings.dpop.public_base_url, None);
    assert_eq!(
        config.startup.replay_store,
        ReplayStoreConfig::Memory {
            max_entries: 1_000_000
        }
    );
    assert!(config.settings.resources.is_empty());
}

#[test]
fn dpop_settings_are_read_from_the_file() {
    let config = from(
        &[],
        r#"
issuers:
  - { issuer: "https://a/", audiences: [api], dpop: required }
  - { issuer: "https://b/", audiences: [api], dpop: "off" }
dpop:
  algorithms: [ES256]
  max_age: 2m
  clock_skew: 1s
  public_base_url: https://api.example.com/v1
  replay_store: redis://:secret@redis.internal:6379/2
  replay_store_timeout: 100ms
protected_resource:
  resource: https://api.example.com/v1
  resource_name: Example
routes:
  - { path_prefix: /pay, dpop: required, scopes: { all_of: [pay] } }
"#,
    )
    .unwrap();
    assert_eq!(config.settings.issuers[0].dpop, DpopMode::Required);
    assert_eq!(config.settings.issuers[1].dpop, DpopMode::Off);
    assert_eq!(config.settings.dpop.algorithms, [Algorithm::ES256]);
    assert_eq!(config.settings.dpop.max_age, Duration::from_secs(120));
    assert_eq!(
        config
            .settings
            .dpop
            .public_base_url
            .as_ref()
            .map(url::Url::as_str),
        Some("https://api.example.com/v1")
    );
    assert_eq!(
        config.startup.replay_store,
        ReplayStoreConfig::Redis {
            url: "redis://:secret@redis.internal:6379/2".into(),
            timeout: Duration::from_millis(100),
        }
    );
    let printed = format!("{:?}", config.startup.replay_store);
    assert!(!printed.contains("secret"), "{printed}");
    let Action::Token(rule) = &config.settings.policy.rules()[0].action else {
        panic!("a token rule")
    };
    assert!(rule.dpop_required);
    let metadata = config.settings.resources.get(0).unwrap().metadata.clone();
    assert_eq!(metadata.path, "/.well-known/oauth-protected-resource/v1");
    let doc: serde_json::Value = serde_json::from_str(&metadata.body).unwrap();
    assert_eq!(doc["resource"], "https://api.example.com/v1");
    assert_eq!(
        doc["authorization_servers"],
        serde_json::json!(["https://a/", "https://b/"])
    );
    assert_eq!(doc["scopes_supported"], serde_json::json!(["pay"]));
    assert_eq!(
        doc["dpop_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    assert_eq!(doc["dpop_bound_access_tokens_required"], false);
}

#[test]
fn dpop_errors_name_their_field() {
    let errors = from(
        &[],
        r#"
issuers:
  - { issuer: "https://a/", audiences: [api], dpop: sometimes }
dpop:
  algorithms: [HS256]
  max_age: 0s
  public_base_url: http://api.example.com
  replay_store: "memcached://cache:11211"
  replay_max_entries: 0
protected_resource:
  resource: https://api.example.com/?x=1
routes:
  - { path_prefix: /a, dpop: allowed }
  - { path_prefix: /b, allow_anonymous: true, dpop: required }
"#,
    )
    .unwrap_err()
    .lines();
    for field in [
        "issuers[0].dpop:",
        "dpop.algorithms:",
        "dpop.max_age:",
        "dpop.public_base_url:",
        "dpop.replay_store:",
        "dpop.replay_max_entries:",
        "routes[0].dpop:",
        "routes[1].allow_anonymous:",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(field)),
            "{field} in {errors:?}"
        );
    }
    let with_password = from(
        &ISSUER_FLAGS,
        "dpop:\n  replay_store: 'mysql://root:hunter2@db/x'\n",
    )
    .unwrap_err()
    .lines();
    assert!(
        with_password.iter().all(|e| !e.contains("hunter2")),
        "{with_password:?}"
    );
}

#[test]
fn http_listener_limits_are_read_with_defaults_and_bad_ones_are_named() {
    let args = ["--issuer", "https://t.auth0.com/", "--audience", "a"];
    let config = from(&args, "{}").unwrap();
    assert_eq!(
        config.startup.http_limits,
        crate::wire::httpd::HttpLimits::default()
    );
    let config = from(
        &args,
        "http_server: { header_read_timeout: 2s, idle_timeout: 30s, max_header_bytes: 32768, max_connections: 10, drain_timeout: 500ms }",
    )
    .unwrap();
    let limits = config.startup.http_limits;
    assert_eq!(limits.header_read_timeout, Duration::from_secs(2));
    assert_eq!(limits.idle_timeout, Duration::from_secs(30));
    assert_eq!(
        (limits.max_header_bytes, limits.max_connections),
        (32768, 10)
    );
    assert_eq!(limits.drain_timeout, Duration::from_millis(500));
    let errors = from(
        &args,
        "http_server: { header_read_timeout: 0s, idle_timeout: soon, max_connections: 0 }",
    )
    .unwrap_err()
    .lines();
    let mut fields = fields_of(&errors);
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "http_server.header_read_timeout",
            "http_server.idle_timeout",
            "http_server.max_connections"
        ],
        "{errors:?}"
    );
    // An unknown key is an error, not a silently ignored limit.
    let typo = parse_file("http_server: { max_conections: 5 }")
        .unwrap_err()
        .to_string();
    assert!(typo.contains("max_conections"), "{typo}");
}

#[test]
fn the_cache_byte_budget_the_per_key_quota_and_the_settle_interval_are_read() {
    let args = ["--issuer", "https://t.auth0.com/", "--audience", "a"];
    let config = from(&args, "{}").unwrap();
    assert_eq!(config.startup.token_cache.max_bytes, 64 << 20);
    assert_eq!(config.startup.replay_max_per_key, 10_000);
    assert_eq!(config.startup.config_settle, Duration::from_secs(2));
    let config = from(
        &args,
        "token_cache: {max_bytes: 512KiB}\ndpop: {replay_max_per_key: 5}\nconfig_settle: 250ms\n",
    )
    .unwrap();
    assert_eq!(config.startup.token_cache.max_bytes, 512 << 10);
    assert_eq!(config.startup.replay_max_per_key, 5);
    assert_eq!(config.startup.config_settle, Duration::from_millis(250));
    let flags = [
        "--issuer",
        "https://t.auth0.com/",
        "--audience",
        "a",
        "--token-cache-max-bytes",
        "1048576",
    ];
    assert_eq!(
        from(&flags, "token_cache: {max_bytes: 2GiB}\n")
            .unwrap()
            .startup
            .token_cache
            .max_bytes,
        1 << 20
    );
    let errors = from(
        &args,
        "token_cache: {max_bytes: 64MB}\ndpop: {replay_max_per_key: 0}\nconfig_settle: soon\n",
    )
    .unwrap_err()
    .lines();
    for field in [
        "token_cache.max_bytes",
        "dpop.replay_max_per_key",
        "config_settle",
    ] {
        assert!(fields_of(&errors).contains(&field), "{field} in {errors:?}");
    }
    for bad in ["0", "-1", "1.5MiB", "MiB", "99999999999GiB", " "] {
        assert!(super::values::parse_bytes(bad).is_err(), "{bad}");
    }
}
