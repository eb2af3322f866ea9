//! Route decisions over the real gRPC API, from a configuration file: every spelling of a
//! protected path either reaches its rule or is refused, the default denies, claim
//! conditions, per-route issuers and audiences, CORS preflights, shadow rules, and a
//! cached token re-checked on each route it is used on.

use jwt_authz::wire::proto::CheckRequest;

use jwt_authz::testkit::*;
use serde_json::{Value, json};

/// Two identity providers (A signs RS256 with `rsa-1`, B signs ES256 with `ec-256`) and a
/// service whose file names both and carries the route table below.
struct Routes {
    a: Idp,
    b: Idp,
    authz: Authz,
}

fn write_config(name: &str, text: &str) -> TempFile {
    TempFile::new(&format!("{name}.yaml"), text)
}

const ROUTES: &str = r#"
upstream:
  claims_to_headers:
    - { claim: sub, header: x-jwt-sub }
  strip_authorization: true
routes:
  - { name: public, path_prefix: /api/public, allow_anonymous: true }
  - { name: admin, path_prefix: /api/admin, scopes: { all_of: [admin] } }
  - { name: internal, path_prefix: /internal, deny: true }
  - { name: exact, methods: [GET], path: /api/exact, scopes: { all_of: [exact] } }
  - { name: hosted, host: api.example.com, path_prefix: /hosted, scopes: { all_of: [hosted] } }
  - name: org
    path_prefix: /api/org
    claims:
      - { claim: org.id, equals: acme }
      - { claim: groups, contains: admin }
      - { claim: amr, contains_any: [mfa, hwk] }
      - { claim: email_verified, equals: true }
      - { claim: sub, matches: '^auth0\|[0-9a-f]{24}$' }
      - { claim: act, present: false }
  - { name: b-only, path_prefix: /api/b, issuers: [ISSUER_B] }
  - { name: special, path_prefix: /api/special, audiences: [special-api] }
  - { name: new-read-rule, path_prefix: /api/read, scopes: { all_of: [read:all] }, mode: shadow }
  - { name: dpop-next, path_prefix: /api/read/dpop, dpop: required, mode: shadow }
  - { name: read, path_prefix: /api/read, scopes: { all_of: [read:messages] } }
  - { name: no-preflight, path_prefix: /api/closed, cors_preflight: deny }
"#;

impl Routes {
    /// The service with the route table; `preflight` sets the top-level `cors_preflight`.
    async fn start(preflight: &str) -> Routes {
        let a = Idp::start(vec![key("rsa-1").jwk]).await;
        let b = Idp::start(vec![key("ec-256").jwk]).await;
        let issuers = format!(
            "issuers:\n  - {{issuer: \"{}\", audiences: [\"{AUDIENCE}\"], jwks_uri: \"{}\"}}\n  - {{issuer: \"{}\", audiences: [other-api], jwks_uri: \"{}\", algorithms: [ES256]}}\n",
            a.issuer(),
            a.jwks_uri(),
            b.issuer(),
            b.jwks_uri()
        );
        let text = format!(
            "{issuers}cors_preflight: {preflight}\n{}",
            ROUTES.replace("ISSUER_B", &b.issuer())
        );
        let path = write_config(&format!("{}", a.addr.port()), &text);
        let authz = Authz::start(&["--config", path.to_str().unwrap()]).await;
        authz.wait_serving().await;
        Routes { a, b, authz }
    }

    /// A token of issuer A with `scope` and the given extra claims.
    fn token(&self, scope: &str, extra: Value) -> String {
        let mut c = claims(&self.a.issuer());
        c["scope"] = json!(scope);
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        mint(&key("rsa-1"), &c)
    }

    async fn check(&self, method: &str, host: &str, path: &str, token: Option<&str>) -> Decision {
        let bearer = token.map(|t| format!("Bearer {t}"));
        self.check_with(method, host, path, bearer.as_deref(), &[])
            .await
    }

    async fn check_with(
        &self,
        method: &str,
        host: &str,
        path: &str,
        authorization: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Decision {
        let request = to(method, host, path, authorization, headers);
        decision(&self.authz.check(request).await)
    }
}

/// A curl-like request for `method host path`, as Envoy forwards it.
fn to(
    method: &str,
    host: &str,
    path: &str,
    authorization: Option<&str>,
    headers: &[(&str, &str)],
) -> CheckRequest {
    let mut request = request(authorization, None);
    let http = http_mut(&mut request);
    http.method = method.into();
    http.host = host.into();
    http.path = path.into();
    http.headers.insert(":method".into(), method.into());
    http.headers.insert(":authority".into(), host.into());
    http.headers.insert(":path".into(), path.into());
    for (name, value) in headers {
        http.headers.insert((*name).into(), (*value).into());
    }
    request
}

fn denied(d: &Decision) -> Option<(i32, &str)> {
    match d {
        Decision::Deny { http, code, .. } => Some((*http, code.as_str())),
        Decision::Allow { .. } => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_spelling_of_a_protected_path_falls_through_to_any_valid_token() {
    let r = Routes::start("allow").await;
    let plain = r.token("openid", json!({}));
    let ambiguous = Some((403, "access_denied"));
    let scope = Some((403, "insufficient_scope"));
    for (method, host, path, expected) in [
        ("GET", "h", "/api/admin", scope),
        ("GET", "h", "/api/admin/", scope),
        // Decoded, `/api/admin`; as sent (Express, Rails), no rule: refused.
        ("GET", "h", "/api/%61dmin", ambiguous),
        ("GET", "h", "/api/%61%64%6d%69%6e/users", ambiguous),
        // An escape inside the protected prefix reads one way: the rule's answer.
        ("GET", "h", "/api/admin/%75sers", scope),
        ("GET", "h", "/api/admin;x=1", ambiguous),
        ("GET", "h", "/api/admin/;x", ambiguous),
        ("GET", "h", "/API/ADMIN", ambiguous),
        ("GET", "h", "/Api/Admin/users", ambiguous),
        ("GET", "h", "/internal", ambiguous),
        ("GET", "h", "/internal;x", ambiguous),
        ("GET", "h", "/INTERNAL/x", ambiguous),
        ("GET", "h", "/api/exact", scope),
        ("GET", "h", "/api/exact/", scope),
        ("GET", "h", "/api/exact/?q=1", scope),
        ("HEAD", "h", "/api/exact", scope),
        ("head", "h", "/api/exact", scope),
        ("GET", "api.example.com", "/hosted/x", scope),
        ("GET", "api.example.com.", "/hosted/x", scope),
        ("GET", "API.EXAMPLE.COM:443", "/hosted/x", scope),
        ("GET", "api.example.com.:8443", "/hosted/x", scope),
        ("GET", "api.example.com..", "/hosted/x", ambiguous),
        ("GET", "h", "/unlisted", ambiguous),
        ("POST", "h", "/api/exact", ambiguous),
    ] {
        let d = r.check(method, host, path, Some(&plain)).await;
        assert_eq!(denied(&d), expected, "{method} {host} {path}: {d:?}");
    }
    // `/internal` is refused by its deny rule, `/unlisted` by the default: both 403.
    // The scoped tokens pass where their scope is required, in every normal spelling.
    let admin = r.token("admin", json!({}));
    for path in ["/api/admin", "/api/admin/%78", "/api/admin/?a=b"] {
        assert!(
            allows(
                &r.authz
                    .check(to("GET", "h", path, Some(&format!("Bearer {admin}")), &[]))
                    .await
            ),
            "{path}"
        );
    }
    let hosted = r.token("hosted", json!({}));
    let d = r
        .check("GET", "Api.Example.Com.", "/hosted", Some(&hosted))
        .await;
    assert!(matches!(d, Decision::Allow { .. }), "{d:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dot_segments_encodings_and_parameters_never_pass_an_anonymous_rule() {
    let r = Routes::start("allow").await;
    for path in [
        "/api/public/../admin",
        "/api/public/..;/admin",
        "/api/public/.;/admin",
        "/api/public/..;x=1/admin",
        "/api/public/%2e%2e/admin",
        "/api/public/%2E%2e;/admin",
        "/api/public/.%2e/admin",
        "/api/public/..%2fadmin",
        "/api/public/%2f..%2fadmin",
        "/api/public/%5c..%5cadmin",
        "/api/public/%252e%252e/admin",
        "/api/public/%00",
        "/api/public\\..\\admin",
        "/api/public//admin",
        "//api/public",
        "/api/public/./x",
        "/api/public;jsessionid=1",
        // A fragment: Go's ParseRequestURI reads past a `#`.
        "/api/public#/../admin",
    ] {
        let d = r.check("GET", "h", path, None).await;
        assert_eq!(denied(&d), Some((403, "access_denied")), "{path}: {d:?}");
    }
    // The query string is cut by hand: never part of the match.
    for path in ["/api/public", "/api/public/x?next=/api/admin"] {
        let d = r.check("GET", "h", path, None).await;
        let Decision::Allow { remove, .. } = d else {
            panic!("{path}: {d:?}")
        };
        // Anonymous: identity headers and the (unverified) authorization are removed.
        assert!(remove.contains(&"x-jwt-sub".to_owned()), "{remove:?}");
        assert!(remove.contains(&"authorization".to_owned()), "{remove:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn claim_conditions_must_all_hold() {
    let r = Routes::start("allow").await;
    let good = json!({
        "sub": "auth0|0123456789abcdef01234567",
        "org": {"id": "acme"},
        "groups": ["dev", "admin"],
        "amr": ["pwd", "mfa"],
        "email_verified": true,
    });
    let token = r.token("openid", good.clone());
    let d = r.check("GET", "h", "/api/org/x", Some(&token)).await;
    assert!(matches!(d, Decision::Allow { .. }), "{d:?}");
    let violations = [
        ("org", json!({"id": "evil-corp-secret"})),
        ("org", json!({"id": ["acme"]})),
        ("groups", json!(["dev"])),
        ("groups", json!("dev administrators")),
        ("amr", json!(["pwd"])),
        ("email_verified", json!("true")),
        ("sub", json!("auth0|0123456789abcdef01234567x")),
        ("act", json!({"sub": "impersonator"})),
    ];
    for (claim, value) in violations {
        let mut claims = good.clone();
        claims[claim] = value.clone();
        let token = r.token("openid", claims);
        let d = r.check("GET", "h", "/api/org", Some(&token)).await;
        assert_eq!(
            denied(&d),
            Some((403, "insufficient_claims")),
            "{claim}={value}"
        );
        let Decision::Deny { body, headers, .. } = d else {
            unreachable!()
        };
        // The description never echoes a claim value.
        let text = format!("{body}{headers:?}");
        for secret in ["evil-corp-secret", "impersonator", "administrators"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    // A missing claim fails `equals`, `contains` and `matches` alike.
    for claim in ["org", "groups", "amr", "email_verified"] {
        let mut claims = good.clone();
        claims.as_object_mut().unwrap().remove(claim);
        let d = r
            .check("GET", "h", "/api/org", Some(&r.token("openid", claims)))
            .await;
        assert_eq!(denied(&d), Some((403, "insufficient_claims")), "{claim}");
    }
    // Nested duplicate members are refused outright, before any condition is read.
    let forged = sign_raw(
        &key("rsa-1"),
        jsonwebtoken::Algorithm::RS256,
        br#"{"alg":"RS256","kid":"rsa-1"}"#,
        format!(
            r#"{{"iss":"{}","aud":"{AUDIENCE}","exp":{},"org":{{"id":"acme","id":"evil"}}}}"#,
            r.a.issuer(),
            now() + 300
        )
        .as_bytes(),
    );
    let d = r.check("GET", "h", "/api/org", Some(&forged)).await;
    assert_eq!(denied(&d), Some((401, "invalid_header")), "{d:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_admit_their_own_issuers_and_audiences() {
    let r = Routes::start("allow").await;
    let from_a = r.token("openid", json!({}));
    let mut b_claims = claims(&r.b.issuer());
    b_claims["aud"] = json!("other-api");
    let from_b = mint(&key("ec-256"), &b_claims);
    let d = r.check("GET", "h", "/api/b", Some(&from_a)).await;
    assert_eq!(denied(&d), Some((401, "invalid_claims")), "{d:?}");
    let d = r.check("GET", "h", "/api/b/x", Some(&from_b)).await;
    assert!(matches!(d, Decision::Allow { .. }), "{d:?}");

    // `audiences` replaces the issuer's on its route only.
    let special = r.token("read:messages", json!({"aud": "special-api"}));
    for (path, token, expected) in [
        ("/api/special", &special, None),
        ("/api/special", &from_a, Some((401, "invalid_claims"))),
        ("/api/read", &special, Some((401, "invalid_claims"))),
        ("/api/special", &special, None),
    ] {
        let d = r.check("GET", "h", path, Some(token)).await;
        assert_eq!(denied(&d), expected, "{path}: {d:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_token_is_rechecked_on_each_route_in_either_order() {
    let r = Routes::start("allow").await;
    for order in [["/api/read", "/api/admin"], ["/api/admin", "/api/read"]] {
        // A fresh token per order, so the first use is the one that fills the cache.
        let token = r.token("read:messages", json!({"jti": order[0]}));
        for _ in 0..2 {
            for path in order {
                let d = r.check("GET", "h", path, Some(&token)).await;
                let expected = (path == "/api/admin").then_some((403, "insufficient_scope"));
                assert_eq!(denied(&d), expected, "{order:?} {path}");
            }
        }
        let org = r.check("GET", "h", "/api/org", Some(&token)).await;
        assert_eq!(denied(&org), Some((403, "insufficient_claims")));
    }
    let (_, text) = scrape(&r.authz, "/metrics").await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("jwt_authz_token_cache_hits_total ") && !l.ends_with(" 0")),
        "the cache must have answered: {text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflights_pass_without_a_token_only_where_allowed() {
    let r = Routes::start("allow").await;
    let preflight = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "GET"),
    ];
    let d = r
        .check_with(
            "OPTIONS",
            "h",
            "/api/read",
            Some("Bearer forged.token.value"),
            &preflight,
        )
        .await;
    let Decision::Allow { headers, remove } = d else {
        panic!("{d:?}")
    };
    assert!(headers.is_empty(), "{headers:?}");
    assert!(
        remove.contains(&"x-jwt-sub".to_owned()) && remove.contains(&"authorization".to_owned())
    );
    // A rule may keep its preflights behind a token.
    let d = r
        .check_with("OPTIONS", "h", "/api/closed", None, &preflight)
        .await;
    assert_eq!(
        denied(&d),
        Some((401, "authorization_header_missing")),
        "{d:?}"
    );
    // Not a preflight without Origin: an OPTIONS request like any other (no rule: default).
    let d = r
        .check_with(
            "OPTIONS",
            "h",
            "/api/read",
            None,
            &[("access-control-request-method", "GET")],
        )
        .await;
    assert_eq!(
        denied(&d),
        Some((401, "authorization_header_missing")),
        "{d:?}"
    );
    // Ambiguous paths are refused for preflights too.
    let d = r
        .check_with("OPTIONS", "h", "/api/read/../admin", None, &preflight)
        .await;
    assert_eq!(denied(&d), Some((403, "access_denied")), "{d:?}");

    // Off unless configured.
    let off = Routes::start("deny").await;
    let d = off
        .check_with("OPTIONS", "h", "/api/read", None, &preflight)
        .await;
    assert_eq!(
        denied(&d),
        Some((401, "authorization_header_missing")),
        "{d:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shadow_rules_are_counted_but_do_not_decide() {
    let r = Routes::start("allow").await;
    let token = r.token("read:messages", json!({}));
    for _ in 0..3 {
        let d = r.check("GET", "h", "/api/read/inbox", Some(&token)).await;
        assert!(matches!(d, Decision::Allow { .. }), "{d:?}");
    }
    let full = r.token("read:messages read:all", json!({}));
    let d = r.check("GET", "h", "/api/read", Some(&full)).await;
    assert!(matches!(d, Decision::Allow { .. }), "{d:?}");
    // A shadow rule requiring DPoP reports the bearer request it would refuse.
    let d = r.check("GET", "h", "/api/read/dpop/x", Some(&full)).await;
    assert!(matches!(d, Decision::Allow { .. }), "{d:?}");
    let (_, text) = scrape(&r.authz, "/metrics").await;
    for line in [
        r#"jwt_authz_shadow_decisions_total{rule="dpop-next",decision="deny",code="invalid_token"} 1"#,
        r#"jwt_authz_shadow_decisions_total{rule="new-read-rule",decision="deny",code="insufficient_scope"} 3"#,
        r#"jwt_authz_shadow_decisions_total{rule="new-read-rule",decision="allow",code="ok"} 2"#,
        r#"jwt_authz_decisions_total{decision="allow",code="ok"} 5"#,
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn method_overrides_that_select_another_rule_are_refused() {
    let r = Routes::start("allow").await;
    let token = r.token("exact", json!({}));
    let bearer = format!("Bearer {token}");
    let d = r
        .check_with(
            "GET",
            "h",
            "/api/exact",
            Some(&bearer),
            &[("x-http-method-override", "GET")],
        )
        .await;
    assert!(matches!(d, Decision::Allow { .. }), "{d:?}");
    for header in [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ] {
        let d = r
            .check_with("POST", "h", "/api/exact", Some(&bearer), &[(header, "GET")])
            .await;
        assert_eq!(denied(&d), Some((403, "access_denied")), "{header}: {d:?}");
    }
}
