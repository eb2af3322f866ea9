//! Issue 19, each example seen and its family, with the exact answer: over gRPC (Istio's
//! shape: the raw path and every header), over the HTTP endpoint, and through the shipped
//! nginx and Envoy files in front of a recording upstream that must never see them.

use jwt_authz::testkit::*;
use jwt_authz::wire::proto::CheckRequest;
use jwt_authz::wire::proto::HttpResponse;
use serde_json::Value;

use super::differential::{
    Service, exchange, istio_check, start_nginx, start_service, wait_accepting,
};
use super::envoy::{Envoy, TempDir};

/// The demo's shape (`default_action: authenticated`), preflights allowed, every token
/// source, and the token stripped upstream.
const CONFIG: &str = r#"
token_sources:
  - { header: authorization, scheme: Bearer }
  - { cookie: access_token }
  - { header: x-api-token }
  - { query: access_token }
default_action: authenticated
cors_preflight: allow
routes:
  - path_prefix: /api/public
    allow_anonymous: true
  - path_prefix: /api/private-scoped
    scopes: { all_of: [read:messages] }
  - methods: [DELETE]
    path: /api/items/{id}
    scopes: { all_of: [delete:items] }
  - path_prefix: /admin
    scopes: { all_of: [admin] }
  - path_prefix: /internal
    deny: true
upstream:
  strip_authorization: true
"#;

/// One example: the request and the answer every entry must give.
struct Example {
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
    status: u16,
    code: Option<&'static str>,
}

fn example(
    method: &'static str,
    target: &str,
    headers: &[(&str, &str)],
    status: u16,
    code: Option<&'static str>,
) -> Example {
    Example {
        method,
        target: target.to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        status,
        code,
    }
}

/// The families of the issue, with a token that grants no scope (`plain`).
fn examples(plain: &str) -> Vec<Example> {
    let bearer = format!("Bearer {plain}");
    let auth = [("authorization", bearer.as_str())];
    let denied = Some("access_denied");
    let mut all = Vec::new();
    // Dot segments padded or disguised, from a public prefix, with and without a token.
    for dots in [
        "..%20",
        "%20..",
        "..%20%20",
        "..%09",
        "..%c2%a0",
        "..%c2%85",
        "..%e3%80%80",
        "..%e2%80%83",
        "%ef%bc%8e%ef%bc%8e",
        "%c0%ae%c0%ae",
        "%e0%80%ae%e0%80%ae",
        "..%c0%af",
        "..%3b",
        "..%3Bx=1",
        "..;",
        "..+",
        "...",
        "%2e%2e",
        "..%252f",
    ] {
        for target in ["private-scoped", "admin"] {
            let path = format!("/api/public/{dots}/{target}");
            all.push(example("GET", &path, &[], 403, denied));
            all.push(example("GET", &path, &auth, 403, denied));
        }
    }
    // Near misses under `default_action: authenticated`.
    for path in [
        "/api/private-scoped%20",
        "/api/private-scoped.",
        "/api/private-scoped%c2%a0",
        "/internal%c2%a0/x",
        "/internal%20",
        "/internal./flush",
        "/admin%09",
        "/ADMIN",
        "/PRIVAT~1/x",
        "/admin::$INDEX_ALLOCATION/x",
        "/admin%3A%24I30/x",
        "/api/%70rivate-scoped",
        "/api/items/5?x=1#&_method=DELETE",
    ] {
        all.push(example("GET", path, &auth, 403, denied));
    }
    // Method overrides: every value of every spelling, the query, a form body.
    let json = ("content-type", "application/json");
    for headers in [
        vec![("X-HTTP-Method-Override", "DELETE, POST")],
        vec![
            ("X-HTTP-Method-Override", "POST"),
            ("X-Method-Override", "DELETE"),
        ],
        vec![("X-HTTP-Method", "delete")],
        vec![
            ("X-HTTP-Method-Override", "POST"),
            ("X-HTTP-Method-Override", "DELETE"),
        ],
    ] {
        let mut h = vec![auth[0], json];
        h.extend(headers);
        all.push(example("POST", "/api/items/5", &h, 403, denied));
    }
    for query in [
        "?_method=DELETE",
        "?.method=DELETE",
        "?x=1&_method%00=delete",
    ] {
        let path = format!("/api/items/5{query}");
        all.push(example("POST", &path, &[auth[0], json], 403, denied));
    }
    for form in [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        all.push(example(
            "POST",
            "/api/items/5",
            &[auth[0], ("content-type", form)],
            403,
            denied,
        ));
    }
    // Without an override, the same POST is decided as a POST.
    all.push(example("POST", "/api/items/5", &[auth[0], json], 200, None));
    all.push(example(
        "DELETE",
        "/api/items/5",
        &auth,
        403,
        Some("insufficient_scope"),
    ));
    // Preflights never pass a deny rule, and never with an override.
    let preflight = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "POST"),
    ];
    all.push(example(
        "OPTIONS",
        "/internal/flush",
        &preflight,
        403,
        denied,
    ));
    all.push(example(
        "OPTIONS",
        "/api/private-scoped",
        &preflight,
        200,
        None,
    ));
    let overridden = [
        preflight[0],
        preflight[1],
        ("x-http-method-override", "DELETE"),
    ];
    all.push(example("OPTIONS", "/api/items/5", &overridden, 403, denied));
    // Token copies that would escape the strip, on every route.
    let unremovable = Some("invalid_header");
    for route in ["/api/private", "/api/public", "/internal/x"] {
        for cookie in [
            "access%5Ftoken=a.b.c",
            "access.token=a.b.c",
            "Access_Token=a.b.c",
        ] {
            let h = [auth[0], ("cookie", cookie)];
            all.push(example("GET", route, &h, 401, unremovable));
        }
    }
    all.push(example(
        "GET",
        "/api/private",
        &[auth[0], ("x_api_token", plain)],
        401,
        unremovable,
    ));
    for query in [
        "?x=1;access_token=a.b.c",
        "?access_token[]=a.b.c",
        "?ACCESS_TOKEN=a.b.c",
    ] {
        let path = format!("/api/private{query}");
        all.push(example("GET", &path, &auth, 401, unremovable));
    }
    // Dotted header names PHP reads as ones the decision reads or sets.
    for name in [
        "x.jwt.sub",
        "X.HTTP.Method.Override",
        "x-http.method-override",
        "x.api.token",
    ] {
        all.push(example(
            "GET",
            "/api/private",
            &[auth[0], (name, "DELETE")],
            403,
            denied,
        ));
    }
    all
}

/// The gRPC Check of `example`, as Istio's sidecar sends it.
fn check_request(example: &Example) -> CheckRequest {
    istio_check(example.method, &example.target, &example.headers)
}

/// Status and JSON `code` of a raw HTTP/1.1 request to `port`.
async fn raw(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(String, String)],
) -> (u16, Option<String>) {
    let answer = exchange(port, method, target, headers).await;
    let body = answer.body.as_str();
    // nginx `auth_request` answers with the service's body from its own location.
    let code = body
        .find('{')
        .and_then(|i| serde_json::from_str::<Value>(&body[i..]).ok())
        .and_then(|v| v["code"].as_str().map(str::to_owned));
    (answer.status, code)
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_19_examples_get_their_answer_over_grpc_and_the_http_endpoint() {
    let dir = TempDir::new("canonical");
    let Service {
        idp: _idp,
        authz,
        plain,
    } = start_service(&dir, CONFIG).await;
    for e in examples(&plain) {
        let what = format!("{} {} {:?}", e.method, e.target, e.headers);
        let response = authz.check(check_request(&e)).await;
        match e.code {
            None => {
                assert_allowed(&response);
            }
            Some(code) => {
                assert_denied(&response, i32::from(e.status), code);
            }
        }
        // The HTTP endpoint cannot strip a query: same answers, over Envoy's prefix. A
        // `#` in the called target never reaches it (the HTTP parser drops a fragment, and
        // Envoy sends none); through nginx's X-Original-URI it does, below.
        if e.target.contains('#') {
            continue;
        }
        let (status, code) = raw(
            authz.http.port(),
            e.method,
            &format!("/ext-authz{}", e.target),
            &e.headers,
        )
        .await;
        assert_eq!(
            (status, code.as_deref()),
            (e.status, e.code),
            "http endpoint: {what}"
        );
    }

    // A query copy of the token: removed by Envoy over gRPC, refused over HTTP on every
    // route, whichever source carried the token.
    let bearer = format!("Bearer {plain}");
    for route in ["/api/private", "/api/public"] {
        let target = format!("{route}?access_token={plain}");
        let e = example("GET", &target, &[("authorization", &bearer)], 200, None);
        let response = authz.check(check_request(&e)).await;
        assert_allowed(&response);
        let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
            panic!("an ok response")
        };
        assert_eq!(ok.query_parameters_to_remove, ["access_token"], "{target}");
        let (status, code) = raw(
            authz.http.port(),
            "GET",
            &format!("/ext-authz{target}"),
            &e.headers,
        )
        .await;
        assert_eq!(
            (status, code.as_deref()),
            (401, Some("invalid_header")),
            "{target}"
        );
    }
    // Token headers leave in every spelling.
    let e = example(
        "GET",
        "/api/private",
        &[("authorization", &bearer)],
        200,
        None,
    );
    let response = authz.check(check_request(&e)).await;
    let Decision::Allow { remove, .. } = decision(&response) else {
        panic!("allowed expected")
    };
    for spelling in [
        "authorization",
        "x-api-token",
        "x_api_token",
        "x-api_token",
        "x_api-token",
    ] {
        assert!(
            remove.iter().any(|r| r == spelling),
            "{spelling} not removed: {remove:?}"
        );
    }
    authz.stop().await.unwrap();
}

/// The default deny: a preflight for a path no rule matches is refused too.
#[tokio::test(flavor = "multi_thread")]
async fn issue_19_preflights_never_pass_the_default_deny() {
    let dir = TempDir::new("canonical-deny");
    let deny = CONFIG.replace("default_action: authenticated", "default_action: deny");
    let Service { authz, .. } = start_service(&dir, &deny).await;
    let preflight = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "GET"),
    ];
    for (path, status) in [
        ("/unmatched", 403),
        ("/internal/flush", 403),
        ("/api/private-scoped/x", 200),
    ] {
        let e = example("OPTIONS", path, &preflight, status, None);
        let response = authz.check(check_request(&e)).await;
        assert_eq!(allows(&response), status == 200, "{path}");
    }
    authz.stop().await.unwrap();
}

/// Through the shipped nginx and Envoy files: the examples never reach the upstream.
#[tokio::test(flavor = "multi_thread")]
async fn issue_19_examples_never_reach_the_upstream_through_the_shipped_proxies() {
    let dir = TempDir::new("canonical-proxies");
    let Service {
        idp: _idp,
        authz,
        plain,
    } = start_service(&dir, CONFIG).await;
    let upstream = RecordingUpstream::start().await;
    let envoy = Envoy::start(authz.addr.port(), upstream.addr.port()).await;
    let nginx_dir = TempDir::new("canonical-nginx");
    let nginx_port = free_port();
    let _nginx = start_nginx(
        &nginx_dir,
        nginx_port,
        authz.http.port(),
        upstream.addr.port(),
    );
    wait_accepting(nginx_port, "nginx", &nginx_dir).await;
    for e in examples(&plain).iter().filter(|e| e.status != 200) {
        for (via, port) in [
            ("envoy/envoy.yaml", envoy.listener),
            ("nginx/nginx.conf", nginx_port),
        ] {
            // nginx drops a header spelled with `_` or `.` (Envoy refuses the first and
            // sends the second to the service): the rest of that request may pass.
            if via.starts_with("nginx") && e.headers.iter().any(|(k, _)| k.contains(['_', '.'])) {
                continue;
            }
            let before = upstream.requests().len();
            let (status, _) = raw(port, e.method, &e.target, &e.headers).await;
            let reached = upstream.requests();
            if status >= 400 {
                assert_eq!(
                    reached.len(),
                    before,
                    "{via}: {} {} reached the upstream",
                    e.method,
                    e.target
                );
                continue;
            }
            // Envoy resolves some spellings itself (`..;` and `%2e%2e` are dot segments to
            // it) and forwards the resolved path, which the service then decided: it must
            // not be a protected one.
            let forwarded = reached
                .last()
                .expect("an allowed request reached the upstream");
            let path = forwarded.path().to_ascii_lowercase();
            assert!(
                via.starts_with("envoy")
                    && !["/admin", "/internal", "/api/private-scoped"]
                        .iter()
                        .any(|p| path.starts_with(p)),
                "{via}: {} {} {:?} answered {status}, upstream saw {}",
                e.method,
                e.target,
                e.headers,
                forwarded.target
            );
        }
    }
    // A client's X-Forwarded-Host never reaches the upstream.
    let bearer = format!("Bearer {plain}");
    for port in [envoy.listener, nginx_port] {
        let headers = vec![
            ("authorization".to_owned(), bearer.clone()),
            (
                "x-forwarded-host".to_owned(),
                "admin.example.com".to_owned(),
            ),
            ("x-original-url".to_owned(), "/admin".to_owned()),
        ];
        let (status, _) = raw(port, "GET", "/api/private", &headers).await;
        assert_eq!(status, 200);
        let seen = upstream.requests();
        let last = seen.last().unwrap();
        assert!(last.values("x-original-url").is_empty(), "{last:?}");
        assert!(
            last.values("x-forwarded-host")
                .iter()
                .all(|v| *v != "admin.example.com"),
            "{last:?}"
        );
    }
    authz.stop().await.unwrap();
}
