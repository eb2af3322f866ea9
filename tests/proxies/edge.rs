//! Issue 10, the edge: the shipped `envoy/envoy.yaml` in a real Envoy, attacked with every
//! spelling of a protected path we know of and with forged identity headers, while the
//! upstream records each request it receives. The invariant: the upstream never sees a
//! request that any server could read as a protected path unless the service checked it,
//! and never sees an identity header the service did not set.
//!
//! Requests go over a raw socket: an HTTP client library would resolve `..`, decode
//! escapes or refuse a backslash before Envoy ever saw them.

use std::time::Duration;

use jwt_authz::testkit::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::envoy::{Stack, stack, stack_with_config};

/// Envoy's answer to one raw request.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn code(&self) -> Option<String> {
        let body: Value = serde_json::from_str(&self.body).ok()?;
        body["code"].as_str().map(str::to_owned)
    }
}

/// Sends `method target` with `headers` over a fresh connection, bytes as given, and
/// reads Envoy's whole answer.
async fn raw(s: &Stack, method: &str, target: &str, headers: &[(&str, &str)]) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", s.envoy.listener))
        .await
        .unwrap();
    let mut request = format!("{method} {target} HTTP/1.1\r\nhost: api.example.com\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
        .await
        .expect("envoy answered within 10s")
        .unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete answer");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// The most lenient reading any server behind the proxy could make of a request target:
/// query dropped, escapes decoded again and again (double encoding, IIS `%uXXXX`,
/// overlong UTF-8 for `.` and `/`), `\` read as `/`, `;parameters` and surrounding
/// whitespace dropped from each segment, case ignored, dot segments resolved and empty
/// segments merged.
fn lenient(target: &str) -> String {
    let mut path = target
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_owned();
    for _ in 0..4 {
        let decoded = decode_once(&path);
        if decoded == path {
            break;
        }
        path = decoded;
    }
    let mut segments: Vec<String> = Vec::new();
    for segment in path.replace('\\', "/").split('/') {
        let segment = segment.split(';').next().unwrap_or_default();
        let segment = segment
            .trim_matches(|c: char| c.is_whitespace() || c.is_control())
            .to_lowercase();
        match segment.as_str() {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    format!("/{}", segments.join("/"))
}

fn decode_once(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = |from: usize, n: usize| {
            path.get(from..from + n)
                .and_then(|h| u32::from_str_radix(h, 16).ok())
        };
        if bytes[i] == b'%' {
            if matches!(bytes.get(i + 1), Some(b'u' | b'U'))
                && let Some(c) = hex(i + 2, 4).and_then(char::from_u32)
            {
                out.extend_from_slice(c.to_string().as_bytes());
                i += 6;
                continue;
            }
            if let Some(b) = hex(i + 1, 2) {
                out.push(b as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    // Overlong UTF-8 forms of `.` and `/`, which old decoders accepted.
    let mut text = String::from_utf8_lossy(&out).into_owned();
    for (overlong, plain) in [
        (&[0xc0u8, 0xae][..], "."),
        (&[0xc0, 0xaf][..], "/"),
        (&[0xe0, 0x80, 0xae][..], "."),
        (&[0xe0, 0x80, 0xaf][..], "/"),
    ] {
        let mut replaced = Vec::new();
        let mut rest = out.as_slice();
        while let Some(at) = rest.windows(overlong.len()).position(|w| w == overlong) {
            replaced.extend_from_slice(&rest[..at]);
            replaced.extend_from_slice(plain.as_bytes());
            rest = &rest[at + overlong.len()..];
        }
        replaced.extend_from_slice(rest);
        out = replaced;
        text = String::from_utf8_lossy(&out).into_owned();
    }
    text
}

#[test]
fn the_lenient_reading_sees_through_each_disguise() {
    for (target, reading) in [
        ("/api/public/../private-scoped", "/api/private-scoped"),
        ("/api/public/..;/private-scoped", "/api/private-scoped"),
        (
            "/api/public/%252e%252e/private-scoped",
            "/api/private-scoped",
        ),
        (
            "/api/public/%u002e%u002e/private-scoped",
            "/api/private-scoped",
        ),
        (
            "/api/public/%c0%ae%c0%ae/private-scoped",
            "/api/private-scoped",
        ),
        ("/api/public/..%c0%afprivate-scoped", "/api/private-scoped"),
        ("/api/public\\..\\PRIVATE", "/api/private"),
        ("//api/public/./x?y=/../z", "/api/public/x"),
        ("/api/public/%09../private", "/api/private"),
    ] {
        assert_eq!(lenient(target), reading, "{target}");
    }
}

fn under(reading: &str, prefix: &str) -> bool {
    reading == prefix || reading.starts_with(&format!("{prefix}/"))
}

/// What the shipped file does with one spelling: Envoy's status, and the target the
/// upstream received (`None`: nothing reached it).
struct Case {
    target: &'static str,
    status: u16,
    forwarded: Option<&'static str>,
}

const fn case(target: &'static str, status: u16, forwarded: Option<&'static str>) -> Case {
    Case {
        target,
        status,
        forwarded,
    }
}

/// Without a token. 401: normalised onto a checked route, refused by the service. 400:
/// refused by Envoy's normalisation (escaped slash or backslash, fragment, NUL, a space, no
/// leading `/`). 403: refused by the shipped file's first route (`;`, double or malformed
/// encoding, escaped controls, overlong UTF-8). 200: normalised onto the public route,
/// and the upstream got the normalised path.
const WITHOUT_TOKEN: &[Case] = &[
    case("/api/public/../private-scoped", 401, None),
    case("/api/public/..%2fprivate-scoped", 400, None),
    case("/api/public/..%2Fprivate-scoped", 400, None),
    case("/api/public%2f..%2fprivate-scoped", 400, None),
    case("/api/public/%2e%2e/private-scoped", 401, None),
    case("/api/public/%2E%2e/private-scoped", 401, None),
    case("/api/public/.%2e/private-scoped", 401, None),
    case("/api/public/%2e./private-scoped", 401, None),
    case("/api/public/%2e%2e%2fprivate-scoped", 400, None),
    case("/api/public/..;/private-scoped", 401, None),
    case("/api/public/...;/private-scoped", 403, None),
    case("/api/public;/private-scoped", 403, None),
    case("/api/private-scoped;x", 403, None),
    case("/api/public/%2e%2e%3b/private-scoped", 403, None),
    case(
        "/api/public/.;/private-scoped",
        200,
        Some("/api/public/private-scoped"),
    ),
    case("/api/public/./x", 200, Some("/api/public/x")),
    case("/api/%70ublic/x", 200, Some("/api/public/x")),
    case(
        "/api/private-scoped/../public/x",
        200,
        Some("/api/public/x"),
    ),
    case("/api/public/x/..", 200, Some("/api/public/")),
    case(
        "/api/public?next=/../private",
        200,
        Some("/api/public?next=/../private"),
    ),
    case("//api/private", 401, None),
    case("/api//private", 401, None),
    case("/./api/private", 401, None),
    case("/api/public-admin", 401, None),
    case("/api/publicx/../private", 401, None),
    case("/API/PRIVATE", 401, None),
    case("/API/PUBLIC/x", 401, None),
    case("/Api/Public/../Private-Scoped", 401, None),
    case("/api/public/%252e%252e/private-scoped", 403, None),
    case("/api/public/%252f..%252fprivate-scoped", 403, None),
    case("/api/public/..\\private-scoped", 401, None),
    case("/api/public\\..\\private-scoped", 401, None),
    case("/api/public/%5c..%5cprivate-scoped", 400, None),
    case("/api/public/..%5Cprivate-scoped", 400, None),
    case("/api/public/%u002e%u002e/private-scoped", 403, None),
    case("/api/public/%c0%ae%c0%ae/private-scoped", 403, None),
    case("/api/public/..%c0%afprivate-scoped", 403, None),
    case("/api/public/%e0%80%ae%e0%80%ae/private-scoped", 403, None),
    case("/api/public/%09../private", 403, None),
    case("/api/public/a%", 403, None),
    case("/api/public/..%00/private", 400, None),
    case("/api/public/x#/../../private", 400, None),
    case("/api/public/x/../../private-scoped", 401, None),
    case("/api/public/%2e%2e/%2e%2e/api/private-scoped", 401, None),
    case("/api/public/..", 401, None),
    case(
        "http://api.example.com/api/public/../private-scoped",
        401,
        None,
    ),
    case("api/public", 400, None),
];

/// With a valid token that lacks `read:messages`: every spelling of the scoped route is
/// refused, with the JSON code given (403 `insufficient_scope` from the service,
/// `access_denied` from the shipped file's first route), or by Envoy's normalisation (400).
const WITHOUT_SCOPE: &[(&str, u16, Option<&str>)] = &[
    (
        "/api/public/../private-scoped",
        403,
        Some("insufficient_scope"),
    ),
    (
        "/api/private/../private-scoped",
        403,
        Some("insufficient_scope"),
    ),
    (
        "/api/private/%2e%2e/private-scoped",
        403,
        Some("insufficient_scope"),
    ),
    (
        "/api/private/..;/private-scoped",
        403,
        Some("insufficient_scope"),
    ),
    (
        "/api/public/..\\private-scoped",
        403,
        Some("insufficient_scope"),
    ),
    ("/API/PRIVATE-SCOPED", 403, Some("insufficient_scope")),
    ("/api/Private-Scoped/x", 403, Some("insufficient_scope")),
    ("/api/private%2dscoped", 403, Some("insufficient_scope")),
    ("//api//private-scoped/", 403, Some("insufficient_scope")),
    ("/api/private-scoped;x", 403, Some("access_denied")),
    ("/api/private-scoped/%252e", 403, Some("access_denied")),
    ("/api/private-scoped%2f", 400, None),
];

#[tokio::test(flavor = "multi_thread")]
async fn no_spelling_of_a_protected_path_reaches_the_upstream_unchecked() {
    let s = stack(&[]).await;
    let mut failures = Vec::new();
    for c in WITHOUT_TOKEN {
        let answer = raw(&s, "GET", c.target, &[]).await;
        let seen = s.upstream.take();
        let forwarded = seen.first().map(|f| f.target.as_str());
        if (answer.status, forwarded) != (c.status, c.forwarded) || seen.len() > 1 {
            failures.push(format!(
                "{}: {} upstream {:?}, expected {} {:?}",
                c.target, answer.status, forwarded, c.status, c.forwarded
            ));
        }
        if answer.status == 401 {
            assert_eq!(
                answer.code().as_deref(),
                Some("authorization_header_missing")
            );
        }
        // The invariant, whatever the expected table says: what reached the upstream
        // unchecked is the public route in every reading.
        for f in &seen {
            let reading = lenient(&f.target);
            assert!(
                under(&reading, "/api/public"),
                "{} reached the upstream as {} (read as {reading})",
                c.target,
                f.target
            );
            assert!(f.values("x-jwt-sub").is_empty());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let plain = s.token("openid");
    for &(target, status, code) in WITHOUT_SCOPE {
        let answer = raw(&s, "GET", target, &[("authorization", &plain)]).await;
        let seen = s.upstream.take();
        if (answer.status, answer.code().as_deref(), seen.len()) != (status, code, 0) {
            failures.push(format!(
                "{target} with a token: {} {:?}, upstream {:?}, expected {status} {code:?}",
                answer.status,
                answer.code(),
                seen.first().map(|f| &f.target)
            ));
        }
        for f in &seen {
            assert!(
                !under(&lenient(&f.target), "/api/private-scoped"),
                "{target}"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Controls: the upstream does record what passes, so "nothing reached it" above is
    // an observation, not a blind spot.
    let answer = raw(&s, "GET", "/api/private", &[("authorization", &plain)]).await;
    assert_eq!(answer.status, 200);
    let seen = s.upstream.take();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/api/private");
    assert_eq!(seen[0].values("x-jwt-sub"), ["auth0|user-1"]);
    let scoped = s.token("read:messages");
    let answer = raw(
        &s,
        "GET",
        "/API/Private-Scoped",
        &[("authorization", &scoped)],
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(s.upstream.take()[0].target, "/API/Private-Scoped");
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_headers_reach_the_upstream_only_from_the_service() {
    let s = stack(&[]).await;
    let token = s.token("read:messages");

    // Envoy refuses any header with an underscore, token or not, checked route or not.
    for (path, auth) in [
        ("/api/private", Some(token.as_str())),
        ("/api/public", None),
        ("/api/private", None),
    ] {
        let mut headers = vec![("x_jwt_sub", "attacker")];
        headers.extend(auth.map(|t| ("authorization", t)));
        let answer = raw(&s, "GET", path, &headers).await;
        assert_eq!(answer.status, 400, "{path}");
        assert!(s.upstream.take().is_empty(), "{path}");
    }

    // A forged x-jwt-sub next to a valid token: the upstream sees only the verified one.
    let answer = raw(
        &s,
        "GET",
        "/api/private-scoped",
        &[
            ("authorization", &token),
            ("x-jwt-sub", "attacker"),
            ("X-JWT-SUB", "attacker"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200);
    let seen = s.upstream.take();
    assert_eq!(seen[0].values("x-jwt-sub"), ["auth0|user-1"]);

    // The public route is never checked: Envoy itself drops the header there.
    let answer = raw(&s, "GET", "/api/public/x", &[("x-jwt-sub", "attacker")]).await;
    assert_eq!(answer.status, 200);
    assert!(s.upstream.take()[0].values("x-jwt-sub").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn stripped_tokens_never_reach_the_upstream_on_any_checked_route() {
    let s = stack_with_config(|idp| {
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
  forward_payload_header: x-jwt-payload
  strip_authorization: true
"#,
            issuer = idp.issuer(),
            jwks = idp.jwks_uri(),
        )
    })
    .await;
    let mut c = claims(&s.idp.issuer());
    c["sub"] = "someone-else".into();
    let forged = format!("Bearer {}", corrupt_signature(&mint(&key("rsa-1"), &c)));
    let valid = s.token("read:messages");

    // A forged token on an anonymous route: allowed (the route needs none), never
    // verified, and removed before the upstream, with every identity header.
    let answer = raw(
        &s,
        "GET",
        "/open/docs",
        &[
            ("authorization", &forged),
            ("x-jwt-sub", "attacker"),
            ("x-jwt-payload", "e30"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200);
    let seen = s.upstream.take();
    assert_eq!(seen.len(), 1);
    for name in ["authorization", "x-jwt-sub", "x-jwt-payload"] {
        assert!(
            seen[0].values(name).is_empty(),
            "{name} reached the upstream"
        );
    }

    // The same forged token on a checked route is refused.
    let answer = raw(&s, "GET", "/api/messages", &[("authorization", &forged)]).await;
    assert_eq!(
        (answer.status, answer.code().as_deref()),
        (401, Some("invalid_token"))
    );
    assert!(s.upstream.take().is_empty());

    // A valid token: identity headers set, the token itself stripped.
    let answer = raw(&s, "GET", "/api/messages", &[("authorization", &valid)]).await;
    assert_eq!(answer.status, 200);
    let seen = s.upstream.take();
    assert!(seen[0].values("authorization").is_empty());
    assert_eq!(seen[0].values("x-jwt-sub"), ["auth0|user-1"]);
    assert_eq!(seen[0].values("x-jwt-payload").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_answers_cors_preflights_before_ext_authz() {
    let s = stack(&[]).await;
    let preflight = |origin: &'static str| {
        [
            ("origin", origin),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "authorization"),
        ]
    };

    // The browser app's origin: answered by Envoy with the CORS headers, no token needed,
    // nothing sent upstream.
    let answer = raw(
        &s,
        "OPTIONS",
        "/api/private-scoped",
        &preflight("http://localhost:3000"),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    assert!(
        answer
            .header("access-control-allow-headers")
            .is_some_and(|h| h.contains("authorization"))
    );
    assert!(s.upstream.take().is_empty());
    assert_eq!(s.envoy.stat("http.ingress.ext_authz.ok").await, 0);

    // Any other origin: answered too, without CORS headers (the browser refuses), and
    // still nothing upstream.
    let answer = raw(
        &s,
        "OPTIONS",
        "/api/private-scoped",
        &preflight("https://evil.example"),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("access-control-allow-origin"), None);
    assert!(s.upstream.take().is_empty());

    // A plain OPTIONS (no preflight headers) is an ordinary request: it needs a token.
    let answer = raw(&s, "OPTIONS", "/api/private", &[]).await;
    assert_eq!(answer.status, 401);

    // The app can read a denial: CORS headers are added to ext_authz's 401 too.
    let answer = raw(
        &s,
        "GET",
        "/api/private",
        &[("origin", "http://localhost:3000")],
    )
    .await;
    assert_eq!(answer.status, 401);
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    assert!(s.upstream.take().is_empty());
}
