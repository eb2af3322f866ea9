//! The HTTP authorization endpoint behind a real nginx (`auth_request`) and a real Envoy
//! (`http_service`, `envoy/envoy-http-service.yaml`), each request also asked over gRPC
//! `Check`: status, JSON code and the headers the upstream sees must agree on every path.
//! Traefik's `forwardAuth` headers are sent straight to the endpoint (no Traefik here).
//! A missing nginx or Envoy fails these tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jwt_authz::testkit::*;
use jwt_authz::wire::proto::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use jwt_authz::wire::proto::{AttributeContext, CheckRequest};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const ENVOY_HTTP: &str = include_str!("../../envoy/envoy-http-service.yaml");

/// Upstream headers compared between the paths.
const WATCHED: [&str; 4] = ["x-jwt-sub", "x-jwt-scope", "authorization", "cookie"];

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "jwt-authz-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process stopped by its own PID.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(jwt_authz::wire::httpd::serve(
        listener,
        jwt_authz::wire::httpd::HttpLimits::default(),
        jwt_authz::demo::issuer::echo,
        std::future::pending(),
    ));
    addr
}

fn nginx_binary() -> PathBuf {
    let path = std::env::var_os("NGINX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"));
    assert!(
        path.is_file(),
        "{} not found (set $NGINX or run scripts/install-test-tools.sh)",
        path.display()
    );
    path
}

const NGINX_CONF: &str = include_str!("../../nginx/nginx.conf");

/// The shipped file with each shipped port swapped (each must appear).
fn with_ports(text: &str, ports: &[(u16, u16)]) -> String {
    let mut out = text.to_owned();
    for (from, to) in ports {
        let needles = [
            (format!("port_value: {from} "), format!("port_value: {to} ")),
            (format!("127.0.0.1:{from}"), format!("127.0.0.1:{to}")),
        ];
        assert!(
            needles.iter().any(|(n, _)| out.contains(n.as_str())),
            "port {from} not in the shipped file"
        );
        for (n, r) in needles {
            out = out.replace(&n, &r);
        }
    }
    out
}

/// nginx running `nginx/nginx.conf` on a free loopback port: not a daemon, one
/// process, prefix, pid and logs in `dir`.
fn start_nginx(dir: &TempDir, authz_http: SocketAddr, upstream: SocketAddr) -> (Proc, u16) {
    start_nginx_on(free_port(), dir, authz_http, upstream)
}

/// [`start_nginx`] on `port`.
fn start_nginx_on(
    port: u16,
    dir: &TempDir,
    authz_http: SocketAddr,
    upstream: SocketAddr,
) -> (Proc, u16) {
    let conf = with_ports(
        NGINX_CONF,
        &[
            (8080, port),
            (9193, authz_http.port()),
            (8000, upstream.port()),
        ],
    );
    std::fs::write(dir.0.join("nginx.conf"), conf).unwrap();
    let child = Command::new(nginx_binary())
        .arg("-p")
        .arg(&dir.0)
        .arg("-c")
        .arg(dir.0.join("nginx.conf"))
        .arg("-e")
        .arg(dir.0.join("error.log"))
        .args(["-g", "daemon off; master_process off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    (Proc(child), port)
}

fn start_envoy(dir: &TempDir, authz_http: SocketAddr, upstream: SocketAddr) -> (Proc, u16, u16) {
    let (listener, admin) = (free_port(), free_port());
    let text = with_ports(
        ENVOY_HTTP,
        &[
            (8080, listener),
            (9901, admin),
            (9193, authz_http.port()),
            (8000, upstream.port()),
        ],
    );
    let config = dir.0.join("envoy.yaml");
    std::fs::write(&config, text).unwrap();
    let log = std::fs::File::create(dir.0.join("envoy.log")).unwrap();
    let child = Command::new(tool("ENVOY", "venv/bin/envoy"))
        .arg("-c")
        .arg(&config)
        .args(jwt_authz::demo::envoy::ENVOY_FLAGS)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start envoy");
    (Proc(child), listener, admin)
}

/// One request as the client sends it.
#[derive(Clone)]
struct Case {
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
}

/// What the client and the upstream saw.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    code: Option<String>,
    challenge: Option<String>,
    upstream: Vec<(String, String)>,
}

/// The gRPC path: Check, then the allow's mutations applied to the client's headers as
/// Envoy applies them.
async fn via_grpc(authz: &Authz, case: &Case) -> Seen {
    let mut headers: HashMap<String, String> = HashMap::new();
    for (k, v) in &case.headers {
        headers
            .entry(k.to_ascii_lowercase())
            .and_modify(|old| {
                old.push(',');
                old.push_str(v);
            })
            .or_insert_with(|| v.clone());
    }
    let request = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: case.method.into(),
                    path: case.path.into(),
                    host: "api.example.com".into(),
                    headers: headers.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let response = authz.check(request).await;
    match decision(&response) {
        Decision::Allow {
            headers: set,
            remove,
        } => {
            headers.extend(set);
            for r in remove {
                headers.remove(&r);
            }
            Seen {
                status: 200,
                code: None,
                challenge: None,
                upstream: watched(|k| headers.get(k).cloned()),
            }
        }
        Decision::Deny {
            http,
            code,
            headers,
            ..
        } => Seen {
            status: http as u16,
            code: Some(code),
            challenge: headers.get("www-authenticate").cloned(),
            upstream: Vec::new(),
        },
    }
}

fn watched(get: impl Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    WATCHED
        .iter()
        .filter_map(|k| get(k).map(|v| ((*k).to_owned(), v)))
        .collect()
}

/// Through a proxy on `port`: the echo upstream reports what it received.
async fn via_proxy(http: &reqwest::Client, port: u16, case: &Case) -> Seen {
    let mut request = http.request(
        case.method.parse().unwrap(),
        format!("http://127.0.0.1:{port}{}", case.path),
    );
    for (k, v) in &case.headers {
        request = request.header(*k, v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status == 200 {
        let h = &body["headers"];
        Seen {
            status,
            code: None,
            challenge,
            upstream: watched(|k| h.get(k).and_then(Value::as_str).map(str::to_owned)),
        }
    } else {
        assert_eq!(
            body.as_object().map(|o| o.len()),
            Some(2),
            "deny body: {body}"
        );
        Seen {
            status,
            code: body["code"].as_str().map(str::to_owned),
            challenge,
            upstream: Vec::new(),
        }
    }
}

fn config_file(dir: &TempDir, idp: &Idp) -> PathBuf {
    let path = dir.0.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            r#"
issuers:
  - issuer: {issuer}
    audiences: ["{AUDIENCE}"]
    jwks_uri: {jwks}
token_sources:
  - {{ header: authorization, scheme: Bearer }}
  - {{ cookie: access_token }}
default_action: authenticated
routes:
  - path_prefix: /api/public
    allow_anonymous: true
  - path_prefix: /api/private-scoped
    scopes: {{ all_of: [read:messages] }}
upstream:
  claims_to_headers:
    - {{ claim: sub, header: x-jwt-sub }}
    - {{ claim: scope, header: x-jwt-scope }}
  strip_authorization: true
"#,
            issuer = idp.issuer(),
            jwks = idp.jwks_uri(),
        ),
    )
    .unwrap();
    path
}

fn token(idp: &Idp, scope: &str) -> String {
    let mut c = claims(&idp.issuer());
    c["scope"] = json!(scope);
    mint(&key("rsa-1"), &c)
}

fn cases(idp: &Idp) -> Vec<(Case, Seen)> {
    let (plain, scoped) = (token(idp, "openid"), token(idp, "read:messages"));
    let bearer = |t: &str| ("authorization", format!("Bearer {t}"));
    let case = |method, path, headers| Case {
        method,
        path,
        headers,
    };
    let seen = |status, code: Option<&str>, upstream: &[(&str, &str)]| Seen {
        status,
        code: code.map(str::to_owned),
        challenge: None,
        upstream: upstream
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
    };
    let missing = Seen {
        challenge: Some("Bearer realm=\"jwt-authz\"".into()),
        ..seen(401, Some("authorization_header_missing"), &[])
    };
    let sub = ("x-jwt-sub", "auth0|user-1");
    vec![
        (case("GET", "/api/private", vec![]), missing),
        (
            case("GET", "/api/private?page=2", vec![bearer(&plain)]),
            seen(200, None, &[sub, ("x-jwt-scope", "openid")]),
        ),
        (
            case("POST", "/api/private-scoped", vec![bearer(&plain)]),
            seen(403, Some("insufficient_scope"), &[]),
        ),
        (
            case(
                "GET",
                "/api/private-scoped",
                vec![("cookie", format!("theme=dark; access_token={scoped}"))],
            ),
            seen(
                200,
                None,
                &[
                    sub,
                    ("x-jwt-scope", "read:messages"),
                    ("cookie", "theme=dark"),
                ],
            ),
        ),
        (
            case(
                "GET",
                "/api/public",
                vec![("x-jwt-sub", "forged".into()), bearer("forged.token.x")],
            ),
            seen(200, None, &[]),
        ),
        (
            case(
                "GET",
                "/api/private",
                vec![bearer(&plain), ("cookie", format!("access_token={scoped}"))],
            ),
            seen(401, Some("invalid_header"), &[]),
        ),
        (
            case(
                "GET",
                "/api/private",
                vec![(
                    "cookie",
                    format!("access_token={plain}; access_token={plain}"),
                )],
            ),
            seen(401, Some("invalid_header"), &[]),
        ),
        (
            case(
                "GET",
                "/api/private",
                vec![bearer(&corrupt_signature(&plain))],
            ),
            seen(401, Some("invalid_token"), &[]),
        ),
        (
            // Outside the path grammar: refused by the service, however the proxy
            // normalises (Envoy resolves `..;` itself, but leaves `..%20`).
            case("GET", "/api/public/..%20/private-scoped", vec![]),
            seen(403, Some("access_denied"), &[]),
        ),
    ]
}

/// Compares `proxy` with gRPC and with the expectation, case by case.
async fn assert_same_as_grpc(authz: &Authz, idp: &Idp, name: &str, proxy: u16) {
    let http = reqwest::Client::new();
    for (case, expected) in cases(idp) {
        let grpc = via_grpc(authz, &case).await;
        let through = via_proxy(&http, proxy, &case).await;
        let what = format!("{name} {} {}", case.method, case.path);
        assert_eq!(
            (grpc.status, &grpc.code, &grpc.upstream),
            (expected.status, &expected.code, &expected.upstream),
            "grpc: {what}"
        );
        assert_eq!(
            (through.status, &through.code, &through.upstream),
            (grpc.status, &grpc.code, &grpc.upstream),
            "{what}"
        );
        if expected.challenge.is_some() {
            assert_eq!(through.challenge, expected.challenge, "{what}");
        }
        if grpc.status == 401 {
            assert!(
                through.challenge.is_some_and(|c| c.starts_with("Bearer ")),
                "{what}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_auth_request_answers_like_grpc_check() {
    let dir = TempDir::new("nginx");
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let config = config_file(&dir, &idp);
    let authz = Authz::start(&["--config", config.to_str().unwrap()]).await;
    authz.wait_serving().await;
    let upstream = start_upstream().await;
    let (_nginx, port) = start_nginx(&dir, authz.http, upstream);
    wait_listening(port, || {
        std::fs::read_to_string(dir.0.join("error.log")).unwrap_or_default()
    })
    .await;
    assert_same_as_grpc(&authz, &idp, "nginx", port).await;

    // A client cannot pick the URI that is checked: nginx overwrites X-Original-URI and
    // drops a client's X-Forwarded-Uri (a contradiction the service would refuse anyway).
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/private");
    let r = http
        .get(&url)
        .header("x-original-uri", "/api/public")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(&url)
        .header("x-forwarded-uri", "/api/public")
        .header("x-forwarded-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_http_service_answers_like_grpc_check() {
    let dir = TempDir::new("envoy-http");
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let config = config_file(&dir, &idp);
    let authz = Authz::start(&["--config", config.to_str().unwrap()]).await;
    authz.wait_serving().await;
    let upstream = start_upstream().await;
    let (_envoy, port, _admin) = start_envoy(&dir, authz.http, upstream);
    wait_listening(port, || {
        std::fs::read_to_string(dir.0.join("envoy.log")).unwrap_or_default()
    })
    .await;
    assert_same_as_grpc(&authz, &idp, "envoy http_service", port).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn traefik_forward_auth_headers_decide_for_the_forwarded_uri() {
    let dir = TempDir::new("traefik");
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let config = config_file(&dir, &idp);
    let authz = Authz::start(&["--config", config.to_str().unwrap()]).await;
    authz.wait_serving().await;
    let http = reqwest::Client::new();
    let plain = format!("Bearer {}", token(&idp, "openid"));
    let ask = |called: &'static str, headers: Vec<(&'static str, String)>| {
        let mut r = http.get(format!("http://{}{called}", authz.http));
        for (k, v) in headers {
            r = r.header(k, v);
        }
        r.send()
    };
    let fwd = |method: &str, uri: &str| {
        vec![
            ("x-forwarded-method", method.to_owned()),
            ("x-forwarded-proto", "https".to_owned()),
            ("x-forwarded-host", "app.example.com".to_owned()),
            ("x-forwarded-uri", uri.to_owned()),
        ]
    };
    // Decided for the forwarded URI, whatever path was called.
    let r = ask("/whatever", fwd("GET", "/api/public")).await.unwrap();
    assert_eq!(r.status(), 200);
    let mut h = fwd("GET", "/api/private-scoped");
    h.push(("authorization", plain.clone()));
    let r = ask("/ext-authz/api/public", h).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()["x-jwt-authz-body"],
        r#"{"code":"insufficient_scope","description":"You don't have access to this resource."}"#
    );
    let mut h = fwd("GET", "/api/private");
    h.push(("authorization", plain.clone()));
    let r = ask("/", h).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-jwt-sub"], "auth0|user-1");
    // The token header goes, and so does every other spelling of the claim headers.
    let removed: Vec<&str> = r.headers()["x-envoy-auth-headers-to-remove"]
        .to_str()
        .unwrap()
        .split(',')
        .collect();
    for name in ["authorization", "x_jwt_sub", "x-jwt_sub", "x_jwt-sub"] {
        assert!(removed.contains(&name), "{name}: {removed:?}");
    }
    assert!(!removed.contains(&"x-jwt-sub"), "{removed:?}");

    // Missing or contradictory originals are refused, never guessed.
    let access_denied =
        |body: &str| serde_json::from_str::<Value>(body).unwrap()["code"] == "access_denied";
    for headers in [
        vec![],
        vec![("x-forwarded-uri", "/api/public".to_owned())],
        [
            fwd("GET", "/api/public"),
            vec![("x-forwarded-uri", "/api/private".to_owned())],
        ]
        .concat(),
        [
            fwd("GET", "/api/public"),
            vec![("x-original-uri", "/api/private".to_owned())],
        ]
        .concat(),
        fwd("GET", "https://app.example.com/api/public"),
        fwd("GET", "//evil.example/api/public"),
    ] {
        let r = ask("/whatever", headers).await.unwrap();
        assert_eq!(r.status(), 403);
        assert!(access_denied(&r.text().await.unwrap()));
    }
}

/// A query token cannot be stripped by an HTTP-endpoint proxy: with `strip_authorization`,
/// it is refused there, while gRPC removes the parameter through Envoy.
#[tokio::test(flavor = "multi_thread")]
async fn query_tokens_are_refused_where_they_cannot_be_stripped() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let dir = TempDir::new("query");
    let path = dir.0.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "issuers: [{{ issuer: {}, audiences: [\"{AUDIENCE}\"], jwks_uri: {} }}]\ntoken_sources: [{{ query: access_token }}]\nupstream: {{ strip_authorization: true }}\n",
            idp.issuer(),
            idp.jwks_uri()
        ),
    )
    .unwrap();
    let authz = Authz::start(&["--config", path.to_str().unwrap()]).await;
    authz.wait_serving().await;
    let t = token(&idp, "openid");
    let uri = format!("/api/private?a=1&access_token={t}");
    let r = reqwest::Client::new()
        .get(format!("http://{}/", authz.http))
        .header("x-forwarded-uri", &uri)
        .header("x-forwarded-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let mut request = request(None, None);
    http_mut(&mut request).path = uri;
    let response = authz.check(request).await;
    assert_allowed(&response);
    let Some(jwt_authz::wire::proto::HttpResponse::OkResponse(ok)) = response.http_response else {
        panic!("allow expected")
    };
    assert_eq!(ok.query_parameters_to_remove, ["access_token"]);
}

/// Waits (bounded) until a proxy answers on `port`.
async fn wait_listening(port: u16, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "proxy did not listen on {port}: {}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// DPoP through nginx `auth_request`: the proof reaches the service with the subrequest,
/// `htu` is compared with the public base URL (nginx forwards no port), a replay is
/// refused, and neither the token nor the proof reaches the upstream.
#[tokio::test(flavor = "multi_thread")]
async fn nginx_auth_request_checks_dpop_proofs() {
    let dir = TempDir::new("nginx-dpop");
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let port = free_port();
    let path = dir.0.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "issuers:\n  - {{issuer: \"{}\", audiences: [\"{AUDIENCE}\"], jwks_uri: \"{}\"}}\ndpop:\n  public_base_url: http://127.0.0.1:{port}\nupstream:\n  strip_authorization: true\n",
            idp.issuer(),
            idp.jwks_uri()
        ),
    )
    .unwrap();
    let authz = Authz::start(&["--config", path.to_str().unwrap()]).await;
    authz.wait_serving().await;
    let upstream = start_upstream().await;
    let (_nginx, port) = start_nginx_on(port, &dir, authz.http, upstream);
    wait_listening(port, || {
        std::fs::read_to_string(dir.0.join("error.log")).unwrap_or_default()
    })
    .await;
    let client = proof_key("ec-256");
    let mut c = claims(&idp.issuer());
    c["cnf"] = serde_json::json!({"jkt": client.thumbprint()});
    let token = mint(&key("rsa-1"), &c);
    let url = format!("http://127.0.0.1:{port}/api/private");
    let proof = client.proof("GET", &url, Some(&token));
    let http = reqwest::Client::new();
    let send = |proof: String| {
        http.get(&url)
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof)
            .send()
    };
    let allowed = send(proof.clone()).await.unwrap();
    assert_eq!(allowed.status(), 200);
    let echoed: Value = serde_json::from_str(&allowed.text().await.unwrap()).unwrap();
    let headers = echoed["headers"].to_string().to_ascii_lowercase();
    assert!(
        !headers.contains("dpop"),
        "proof reached the upstream: {echoed}"
    );
    assert!(
        !headers.contains(&token.to_ascii_lowercase()),
        "token reached the upstream"
    );
    let replayed = send(proof).await.unwrap();
    assert_eq!(replayed.status(), 401);
    let challenge = replayed.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("DPoP realm=\"jwt-authz\", error=\"invalid_dpop_proof\""),
        "{challenge}"
    );
    let elsewhere = client.proof("GET", "http://127.0.0.1:1/api/private", Some(&token));
    assert_eq!(send(elsewhere).await.unwrap().status(), 401);
}
