//! Identity headers nobody can forge, at the gRPC level: every header the service sets is
//! removed in each spelling an upstream could confuse with it (`x_jwt_sub` for
//! `x-jwt-sub`), on allowed, anonymous and preflight answers alike, so it holds behind
//! proxies that pass underscores through. With `strip_authorization`, `authorization`
//! never goes upstream, whatever the route.

use jwt_authz::testkit::*;
use jwt_authz::wire::proto::CheckRequest;

/// Issue 10: the service's config with an anonymous route, CORS preflights allowed, two
/// claim headers (one configured with `_`), the payload header and a stripped token.
async fn setup() -> (Idp, Authz) {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let path = TempFile::new(
        "identity.yaml",
        format!(
            r#"
issuers:
  - issuer: {issuer}
    audiences: ["{AUDIENCE}"]
    jwks_uri: {jwks}
cors_preflight: allow
routes:
  - path_prefix: /open
    allow_anonymous: true
  - path_prefix: /api
upstream:
  claims_to_headers:
    - {{claim: sub, header: x-jwt-sub}}
    - {{claim: email, header: x_user_email}}
  forward_payload_header: x-jwt-payload
  strip_authorization: true
"#,
            issuer = idp.issuer(),
            jwks = idp.jwks_uri(),
        ),
    );
    let authz = Authz::start(&["--config", path.to_str().unwrap()]).await;
    authz.wait_serving().await;
    let _ = std::fs::remove_file(&path);
    (idp, authz)
}

/// `method path`, carrying the forged identity headers a client behind a lenient proxy
/// could send, and `authorization` when given.
fn forged(method: &str, path: &str, authorization: Option<&str>) -> CheckRequest {
    let mut req = request(authorization, None);
    let http = http_mut(&mut req);
    http.method = method.into();
    http.path = path.into();
    for (name, value) in [
        (":method", method),
        (":path", path),
        ("x_jwt_sub", "attacker"),
        ("x-jwt_sub", "attacker"),
        ("x-user-email", "attacker@example.com"),
        ("x_jwt_payload", "e30"),
    ] {
        http.headers.insert(name.into(), value.into());
    }
    req
}

/// Every spelling of the configured headers but the ones set.
const CONFUSABLE: [&str; 9] = [
    "x_jwt-sub",
    "x-jwt_sub",
    "x_jwt_sub",
    "x-user_email",
    "x_user-email",
    "x-user-email",
    "x_jwt-payload",
    "x-jwt_payload",
    "x_jwt_payload",
];

fn allowed(response: &jwt_authz::wire::proto::CheckResponse) -> (Vec<String>, Vec<String>) {
    match decision(response) {
        Decision::Allow { headers, remove } => (headers.into_keys().collect(), remove),
        other => panic!("expected an allow: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_spellings_are_removed_next_to_a_verified_token() {
    let (idp, authz) = setup().await;
    let mut c = claims(&idp.issuer());
    c["email"] = "user@example.com".into();
    let token = format!("Bearer {}", mint(&key("rsa-1"), &c));
    let response = authz
        .check(forged("GET", "/api/messages", Some(&token)))
        .await;
    let (mut set, remove) = allowed(&response);
    set.sort();
    assert_eq!(set, ["x-jwt-payload", "x-jwt-sub", "x_user_email"]);
    for spelling in CONFUSABLE.iter().chain(&["authorization"]) {
        assert!(remove.iter().any(|r| r == spelling), "{spelling} kept");
    }
    for name in &set {
        assert!(!remove.contains(name), "{name} set and removed");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_routes_remove_every_spelling_and_the_token() {
    let (_idp, authz) = setup().await;
    // A forged token on an anonymous route is never verified, and never forwarded.
    let response = authz
        .check(forged(
            "GET",
            "/open/docs",
            Some("Bearer forged.token.value"),
        ))
        .await;
    let (set, remove) = allowed(&response);
    assert!(set.is_empty(), "{set:?}");
    for spelling in CONFUSABLE.iter().chain(&[
        "x-jwt-sub",
        "x_user_email",
        "x-jwt-payload",
        "authorization",
    ]) {
        assert!(remove.iter().any(|r| r == spelling), "{spelling} kept");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn preflights_remove_every_spelling_and_the_token() {
    let (_idp, authz) = setup().await;
    let mut req = forged(
        "OPTIONS",
        "/api/messages",
        Some("Bearer forged.token.value"),
    );
    let http = http_mut(&mut req);
    http.headers
        .insert("origin".into(), "https://app.example.com".into());
    http.headers
        .insert("access-control-request-method".into(), "DELETE".into());
    let (set, remove) = allowed(&authz.check(req).await);
    assert!(set.is_empty(), "{set:?}");
    for spelling in CONFUSABLE.iter().chain(&[
        "x-jwt-sub",
        "x_user_email",
        "x-jwt-payload",
        "authorization",
    ]) {
        assert!(remove.iter().any(|r| r == spelling), "{spelling} kept");
    }
    // The same OPTIONS without the preflight headers needs a token.
    let plain = forged("OPTIONS", "/api/messages", None);
    assert_denied(
        &authz.check(plain).await,
        401,
        "authorization_header_missing",
    );
}
