//! Shared set-up for the criterion benchmarks: one issuer trusting the fixture keys, with no
//! network (the JWKS cache holds fixed keys), tokens minted by the test kit, and modest
//! sample settings.

// Each bench uses a part of this.
#![allow(dead_code)]

use std::sync::Arc;

use jsonwebtoken::Algorithm;
use jwt_authz::config::{Config, FileConfig, ServeArgs};
use jwt_authz::testkit::{self, AUDIENCE, Shape};
use jwt_authz::verify::Verifier;
use jwt_authz::wire::proto::CheckRequest;

pub const ISSUER: &str = "https://issuer.bench.example/";

/// The configuration of a service trusting [`ISSUER`] for RS256, PS256, ES256 and EdDSA.
pub fn config(token_cache: bool) -> Config {
    config_with(token_cache, "{}")
}

/// [`config`] with the configuration file `text` under the flags.
pub fn config_with(token_cache: bool, text: &str) -> Config {
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
    let file: FileConfig = jwt_authz::config::parse_file(text).expect("the bench file parses");
    Config::from_sources(&args, file).expect("the bench configuration is valid")
}

/// A verifier for `config`'s issuer holding the fixture JWKS, parsed once.
pub fn verifier(config: &Config) -> Arc<Verifier> {
    testkit::fixed_verifier(&config.settings.issuers[0], &config.startup.jwks)
}

/// A valid token for [`ISSUER`] signed by fixture key `kid` with `alg`, valid for an hour.
pub fn token(kid: &str, alg: Algorithm) -> String {
    let mut claims = testkit::claims(ISSUER);
    claims["sub"] = "auth0|bench-user".into();
    claims["exp"] = (testkit::now() + 3600).into();
    testkit::mint_with(&testkit::key(kid), alg, Some(kid), &claims)
}

/// A [`token`] (RS256, `rsa-1`) bound to the DPoP key whose thumbprint is `jkt`.
pub fn bound_token(jkt: &str) -> String {
    let mut claims = testkit::claims(ISSUER);
    claims["sub"] = "auth0|bench-user".into();
    claims["exp"] = (testkit::now() + 3600).into();
    claims["cnf"] = serde_json::json!({ "jkt": jkt });
    testkit::mint_with(
        &testkit::key("rsa-1"),
        Algorithm::RS256,
        Some("rsa-1"),
        &claims,
    )
}

/// A browser's full CheckRequest requiring `read:messages`; `token` of `None` sends no
/// `authorization`.
pub fn request(token: Option<&str>) -> CheckRequest {
    let mut request =
        testkit::browser_request("/api/private-scoped", Some("read:messages"), Shape::Full);
    if let Some(token) = token {
        testkit::set_authorization(&mut request, &format!("Bearer {token}"));
    }
    request
}

/// [`request`] with this `authorization` value (another scheme, an opaque token).
pub fn request_with_authorization(value: &str) -> CheckRequest {
    let mut request =
        testkit::browser_request("/api/private-scoped", Some("read:messages"), Shape::Full);
    testkit::set_authorization(&mut request, value);
    request
}

/// A browser's CheckRequest for [`request`]'s route carrying `token`, encoded as Envoy sends
/// it: every header of the browser's call ([`Shape::Full`], about 1.8 KB) or only
/// `authorization`, as with `allowed_headers: [authorization]` ([`Shape::Small`]).
pub fn encoded_request(token: &str, shape: Shape) -> bytes::Bytes {
    use prost::Message;
    let mut request = testkit::browser_request("/api/private-scoped", Some("read:messages"), shape);
    testkit::set_authorization(&mut request, &format!("Bearer {token}"));
    request.encode_to_vec().into()
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
