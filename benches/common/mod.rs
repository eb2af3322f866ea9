//! Shared set-up for the criterion benchmarks: one issuer trusting the fixture keys (no
//! network: the JWKS cache holds fixed keys), tokens signed with those keys, and a
//! CheckRequest shaped like Envoy's.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use jwt_authz::config::{Config, FileConfig, ServeArgs};
use jwt_authz::jwks::{JwksCache, KeySet};
use jwt_authz::proto::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use jwt_authz::proto::{AttributeContext, CheckRequest};
use jwt_authz::verify::{Issuer, Verifier};
use serde_json::json;

pub const ISSUER: &str = "https://issuer.bench.example/";
pub const AUDIENCE: &str = "https://api.example.com";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// The configuration of a service trusting [`ISSUER`] for RS256, PS256, ES256 and EdDSA.
pub fn config(token_cache: bool) -> Config {
    let args = ServeArgs {
        issuer: Some(ISSUER.into()),
        audiences: vec![AUDIENCE.into()],
        jwks_uri: Some(format!("{ISSUER}jwks.json")),
        algorithms: ["RS256", "PS256", "ES256", "EdDSA"]
            .map(String::from)
            .to_vec(),
        admin_listen: Some("off".into()),
        token_cache: Some(token_cache),
        ..ServeArgs::default()
    };
    Config::from_sources(&args, FileConfig::default()).expect("the bench configuration is valid")
}

/// A verifier for `config`'s issuer holding the fixture JWKS, parsed once.
pub fn verifier(config: &Config) -> Arc<Verifier> {
    let jwks = std::fs::read(format!("{FIXTURES}/jwks.json")).expect("fixture JWKS");
    let (keys, _) = KeySet::parse(&jwks).expect("the fixture JWKS parses");
    let issuer = config.issuers[0].clone();
    let cache = JwksCache::with_fixed_keys(&issuer, &config.jwks, keys).expect("fixed keys");
    Arc::new(Verifier::new(vec![Issuer {
        config: issuer,
        jwks: cache,
    }]))
}

/// A valid token for [`ISSUER`] signed by fixture key `kid` with `alg`.
pub fn token(kid: &str, alg: Algorithm) -> String {
    let file = match kid {
        "rsa-1" => "rsa1.pem",
        "rsa-2" => "rsa2.pem",
        "ec-256" => "ec256.pem",
        "ed-1" => "ed25519.pem",
        other => panic!("no fixture key {other}"),
    };
    let pem = std::fs::read(format!("{FIXTURES}/{file}")).expect("fixture key");
    let key = match alg {
        Algorithm::RS256 | Algorithm::PS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        _ => EncodingKey::from_ec_pem(&pem),
    }
    .expect("fixture key parses");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    let claims = json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "auth0|bench-user",
        "iat": now,
        "exp": now + 3600,
        "scope": "openid read:messages",
    });
    jsonwebtoken::encode(&header, &claims, &key).expect("signing works")
}

/// A CheckRequest as Envoy sends it with every header (about 1.6 KB with an RS256 token),
/// requiring `read:messages`; `token` of `None` sends no `authorization`.
pub fn request(token: Option<&str>) -> CheckRequest {
    let mut headers: HashMap<String, String> = [
        (":authority", "api.example.com"),
        (":method", "GET"),
        (":path", "/api/private-scoped"),
        (":scheme", "https"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"),
        ("accept", "application/json, text/plain, */*"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("accept-language", "en-US,en;q=0.9,de;q=0.8"),
        ("origin", "https://app.example.com"),
        ("referer", "https://app.example.com/messages?folder=inbox"),
        ("sec-fetch-dest", "empty"),
        ("sec-fetch-mode", "cors"),
        ("sec-fetch-site", "same-site"),
        ("cookie", "_ga=GA1.1.1234567890.1700000000; _ga_XYZ=GS1.1.1700000000.1.1.1700000100.0.0.0; theme=dark; consent=analytics%3Dfalse"),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "5f0e8c3a-9b1d-4c8e-a7f2-3d6b1e9c0a42"),
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if let Some(token) = token {
        headers.insert("authorization".into(), format!("Bearer {token}"));
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                time: None,
                http: Some(HttpRequest {
                    id: "1844674407370955161".into(),
                    method: "GET".into(),
                    headers,
                    path: "/api/private-scoped".into(),
                    host: "api.example.com".into(),
                    scheme: "https".into(),
                    protocol: "HTTP/1.1".into(),
                    ..Default::default()
                }),
            }),
            context_extensions: HashMap::from([(
                "required_scopes".to_owned(),
                "read:messages".to_owned(),
            )]),
            ..Default::default()
        }),
    }
}

/// A runtime to drive the async APIs from criterion's synchronous closures.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Modest sample settings, so `cargo bench` finishes in a few minutes.
pub fn criterion() -> criterion::Criterion {
    criterion::Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3))
        .sample_size(50)
}
