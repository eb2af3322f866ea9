//! Opaque access tokens judged by RFC 7662 introspection: the certified OpenID provider
//! (oidc-provider) issuing opaque tokens and answering introspection, and a loopback
//! introspection endpoint that misbehaves on purpose (slow, down, 500, bodies that are not
//! an introspection answer) to show every fault fails closed with its documented code.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jwt_authz::testkit::*;
use jwt_authz::wire::proto::CheckResponse;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The service trusting `provider` for JWTs and, through introspection as `client`
/// (`client_secret_basic` or `client_secret_post`), for opaque tokens.
async fn serve_for(
    provider: &OidcProvider,
    client: &str,
    auth: &str,
    secret: &TempFile,
    extra: &str,
) -> (Authz, TempFile) {
    let text = format!(
        "issuers:\n  - issuer: \"{iss}\"\n    audiences: [\"{OPAQUE_RESOURCE}\", \"{AUDIENCE}\"]\n    jwks_uri: \"{jwks}\"\n    dpop: allowed\n    introspection:\n      client_id: {client}\n      client_secret_file: \"{secret}\"\n      client_auth: {auth}\n      cache_max: 1s\n      negative_cache: 1s\n{extra}\
         insecure_allow_http: true\n\
         routes:\n  - {{path_prefix: /admin, scopes: {{all_of: [admin]}}}}\n  - {{path_prefix: /, scopes: {{all_of: [\"read:messages\"]}}}}\n",
        iss = provider.issuer(),
        jwks = provider.jwks_uri(),
        secret = secret.as_str(),
    );
    let config = TempFile::new("introspection.yaml", text);
    let authz = Authz::start(&["--config", config.as_str()]).await;
    authz.wait_serving().await;
    (authz, config)
}

async fn check_path(authz: &Authz, token: &str, path: &str) -> CheckResponse {
    authz
        .check(request_at(path, Some(&format!("Bearer {token}"))))
        .await
}

/// Opaque tokens from a real authorization server are allowed by their introspection
/// answer's scopes, refused when inactive (unknown, or revoked at the source once the
/// cached answer lapses), bound to their DPoP key when the answer says so; JWTs from the
/// same issuer are still verified by signature, never introspected.
#[tokio::test(flavor = "multi_thread")]
async fn opaque_tokens_of_a_real_provider_are_introspected() {
    let provider = OidcProvider::start().await;
    let secret = TempFile::new(
        "introspection-secret",
        format!("{}\n", INTROSPECTION_CLIENT.1),
    );
    let (authz, _config) = serve_for(
        &provider,
        INTROSPECTION_CLIENT.0,
        "client_secret_basic",
        &secret,
        "",
    )
    .await;

    let opaque = provider.opaque_token("read:messages").await;
    assert!(!opaque.contains('.'), "an opaque token: {opaque}");
    let headers = assert_allowed(&check_path(&authz, &opaque, "/messages").await);
    assert!(headers.is_empty() || !headers.values().any(|v| v.contains(&opaque)));
    // The second answer comes from the cache: one call for both.
    assert_allowed(&check_path(&authz, &opaque, "/messages").await);
    assert_denied(
        &check_path(&authz, &opaque, "/admin/users").await,
        403,
        "insufficient_scope",
    );
    let (_, metrics) = scrape(&authz, "/metrics").await;
    let value = |prefix: &str, suffix: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix) && l.contains(suffix))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("{prefix}..{suffix} in\n{metrics}"))
            .to_owned()
    };
    assert_eq!(
        value("jwt_authz_introspection_calls_total{", "result=\"active\"}"),
        "1"
    );
    assert_eq!(value("jwt_authz_introspection_cache_hits_total{", "}"), "2");

    // Unknown to the provider: inactive.
    assert_denied(
        &check_path(&authz, "not-a-token-the-provider-issued", "/messages").await,
        401,
        "invalid_token",
    );
    // A JWT of the same issuer: verified by signature as before.
    let jwt = provider.bearer_token("read:messages").await;
    assert_allowed(&check_path(&authz, &jwt, "/messages").await);

    // Revoked at the source: refused once the cached answer (1 s) lapses.
    let revoked = provider.opaque_token("read:messages").await;
    assert_allowed(&check_path(&authz, &revoked, "/messages").await);
    provider.revoke_at_source(&revoked).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_denied(
        &check_path(&authz, &revoked, "/messages").await,
        401,
        "invalid_token",
    );

    // DPoP-bound opaque token: its answer's cnf.jkt binds it.
    let key = proof_key("ec-256");
    let bound = provider.opaque_dpop_token(&key, "read:messages").await;
    assert_denied(
        &check_path(&authz, &bound, "/messages").await,
        401,
        "invalid_token",
    );
    let proof = key.proof("GET", URL, Some(&bound));
    assert_allowed(
        &authz
            .check(with_proofs(&format!("DPoP {bound}"), &[&proof]))
            .await,
    );

    // client_secret_post authenticates too; a wrong secret is the provider's 401: 503.
    let (post, _c) = serve_for(
        &provider,
        "jwt-authz-post",
        "client_secret_post",
        &secret,
        "",
    )
    .await;
    assert_allowed(&check_path(&post, &opaque, "/messages").await);
    let wrong = TempFile::new("wrong-secret", "not-the-secret");
    let (refused, _c) = serve_for(
        &provider,
        INTROSPECTION_CLIENT.0,
        "client_secret_basic",
        &wrong,
        "",
    )
    .await;
    assert_denied(
        &check_path(&refused, &opaque, "/messages").await,
        503,
        "introspection_unavailable",
    );
    // The secret never reaches a log line or the metrics.
    let (_, metrics) = scrape(&refused, "/metrics").await;
    assert!(!metrics.contains(INTROSPECTION_CLIENT.1));
}

/// What the loopback endpoint answers next.
#[derive(Clone)]
enum Answer {
    Json(u16, String),
    Slow(Duration, String),
    /// Closes the connection without answering.
    Hang,
}

/// A loopback introspection endpoint answering what the test sets, counting calls and
/// keeping the last request body.
struct Endpoint {
    url: String,
    answer: Arc<Mutex<Answer>>,
    calls: Arc<AtomicUsize>,
    last: Arc<Mutex<String>>,
}

impl Endpoint {
    async fn start() -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/introspect", listener.local_addr().unwrap());
        let answer = Arc::new(Mutex::new(Answer::Json(200, "{\"active\":false}".into())));
        let calls = Arc::new(AtomicUsize::new(0));
        let last = Arc::new(Mutex::new(String::new()));
        let (a, c, l) = (answer.clone(), calls.clone(), last.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (a, c, l) = (a.clone(), c.clone(), l.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // The head, then the body by its content-length.
                    loop {
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text[..end]
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase()
                                        .strip_prefix("content-length:")
                                        .map(|v| v.trim().parse::<usize>().unwrap())
                                })
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + length {
                                *l.lock().unwrap() = text;
                                break;
                            }
                        }
                    }
                    c.fetch_add(1, Ordering::SeqCst);
                    let answer = a.lock().unwrap().clone();
                    let (status, body) = match answer {
                        Answer::Hang => return,
                        Answer::Slow(delay, body) => {
                            tokio::time::sleep(delay).await;
                            (200, body)
                        }
                        Answer::Json(status, body) => (status, body),
                    };
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(body.as_bytes()).await;
                });
            }
        });
        Endpoint {
            url,
            answer,
            calls,
            last,
        }
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }
}

/// Every fault of the endpoint is a 503 `introspection_unavailable`, never cached, never
/// an allow; an inactive answer is a 401; an active answer is held to the token rules;
/// concurrent requests with one token make one call; the client authenticates as
/// configured and the secret never travels in a URL.
#[tokio::test(flavor = "multi_thread")]
async fn every_introspection_fault_fails_closed_with_its_code() {
    let endpoint = Endpoint::start().await;
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let iss = idp.issuer();
    let secret = TempFile::new("secret", "s3cret&=");
    let text = format!(
        "issuers:\n  - issuer: \"{iss}\"\n    audiences: [\"{AUDIENCE}\"]\n    jwks_uri: \"{jwks}\"\n    introspection:\n      endpoint: \"{url}\"\n      client_id: \"rs:1\"\n      client_secret_file: \"{secret}\"\n      timeout: 300ms\n      cache_max: 10s\n      negative_cache: 10s\n      max_concurrent: 2\n\
         insecure_allow_http: true\n",
        jwks = idp.jwks_uri(),
        url = endpoint.url,
        secret = secret.as_str(),
    );
    let config = TempFile::new("faults.yaml", text);
    let authz = Authz::start(&["--config", config.as_str()]).await;
    authz.wait_serving().await;

    let active = |extra: Value| {
        let mut answer = json!({"active": true, "iss": iss, "aud": AUDIENCE, "exp": now() + 300, "iat": now(), "sub": "u", "scope": "read:messages"});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                answer.as_object_mut().unwrap().remove(k);
            } else {
                answer[k] = v.clone();
            }
        }
        answer.to_string()
    };
    let mut n = 0;
    let mut fresh = || {
        n += 1;
        format!("opaque-token-{n}")
    };
    let faults: Vec<(&str, Answer)> = vec![
        ("500", Answer::Json(500, "{\"active\":true}".into())),
        (
            "401",
            Answer::Json(401, "{\"error\":\"invalid_client\"}".into()),
        ),
        (
            "malformed JSON",
            Answer::Json(200, "{\"active\": tru".into()),
        ),
        (
            "not an object",
            Answer::Json(200, "[{\"active\":true}]".into()),
        ),
        (
            "active a string",
            Answer::Json(200, "{\"active\":\"true\"}".into()),
        ),
        (
            "active a number",
            Answer::Json(200, "{\"active\":1}".into()),
        ),
        (
            "active missing",
            Answer::Json(200, "{\"sub\":\"u\"}".into()),
        ),
        (
            "active twice",
            Answer::Json(200, "{\"active\":false,\"active\":true}".into()),
        ),
        (
            "too large",
            Answer::Json(
                200,
                format!("{{\"active\":true,\"pad\":\"{}\"}}", "x".repeat(70_000)),
            ),
        ),
        (
            "slower than the timeout",
            Answer::Slow(Duration::from_millis(800), active(json!({}))),
        ),
        ("connection closed", Answer::Hang),
    ];
    for (what, answer) in faults {
        endpoint.set(answer);
        let token = fresh();
        let response = authz.check_token(&token).await;
        assert_denied(&response, 503, "introspection_unavailable");
        let _ = what;
        // Never cached: the next request asks again and gets the endpoint's new answer.
        endpoint.set(Answer::Json(200, active(json!({}))));
        assert_allowed(&authz.check_token(&token).await);
    }

    // Inactive, and answers that fail the token rules.
    let rules: Vec<(Value, i32, &str)> = vec![
        (json!({"active": false}), 401, "invalid_token"),
        (json!({"exp": null}), 401, "invalid_claims"),
        (json!({"exp": now() - 3600}), 401, "token_expired"),
        (json!({"nbf": now() + 3600}), 401, "invalid_claims"),
        (
            json!({"iss": "https://other.example/"}),
            401,
            "invalid_claims",
        ),
        (
            json!({"aud": "https://other.example/"}),
            401,
            "invalid_claims",
        ),
        (json!({"aud": null}), 401, "invalid_claims"),
        (json!({"cnf": {"x5t#S256": "abc"}}), 401, "invalid_token"),
        // Not an access token: a refresh token's answer, Keycloak's typ.
        (
            json!({"token_type": "refresh_token"}),
            401,
            "invalid_claims",
        ),
        (json!({"token_type": 1}), 401, "invalid_claims"),
        (json!({"typ": "Refresh"}), 401, "invalid_claims"),
        // A DPoP token type without the key it is bound to.
        (json!({"token_type": "DPoP"}), 401, "invalid_token"),
    ];
    for (edit, status, code) in rules {
        let body = if edit.get("active") == Some(&json!(false)) {
            edit.to_string()
        } else {
            active(edit.clone())
        };
        endpoint.set(Answer::Json(200, body));
        assert_denied(&authz.check_token(&fresh()).await, status, code);
    }
    // Bearer in any case, Keycloak's typ Bearer: access tokens.
    endpoint.set(Answer::Json(
        200,
        active(json!({"token_type": "bearer", "typ": "Bearer"})),
    ));
    assert_allowed(&authz.check_token(&fresh()).await);
    // An answer without iss is the answering issuer's.
    endpoint.set(Answer::Json(200, active(json!({"iss": null}))));
    assert_allowed(&authz.check_token(&fresh()).await);

    // The client authenticated with client_secret_basic, each part form-encoded (RFC 6749
    // §2.3.1); the token went in the body, never the URL.
    let sent = endpoint.last.lock().unwrap().clone();
    let expected = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "rs%3A1:s3cret%26%3D",
    );
    assert!(sent.starts_with("POST /introspect HTTP/1.1\r\n"), "{sent}");
    assert!(
        sent.to_ascii_lowercase().contains(&format!(
            "authorization: basic {}",
            expected.to_ascii_lowercase()
        )),
        "{sent}"
    );
    assert!(sent.contains("token=opaque-token-"), "{sent}");

    // Single flight: 20 requests with one token, one call.
    endpoint.set(Answer::Slow(Duration::from_millis(150), active(json!({}))));
    let token = fresh();
    let before = endpoint.calls.load(Ordering::SeqCst);
    let started = Instant::now();
    let checks: Vec<_> = (0..20)
        .map(|_| {
            let mut client = authz.client.clone();
            let request = request(Some(&format!("Bearer {token}")), None);
            tokio::spawn(async move { client.check(request).await.unwrap().into_inner() })
        })
        .collect();
    for check in checks {
        assert_allowed(&check.await.unwrap());
    }
    assert_eq!(
        endpoint.calls.load(Ordering::SeqCst) - before,
        1,
        "one call for one token"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // A JWT of the issuer is verified by signature and never introspected.
    let before = endpoint.calls.load(Ordering::SeqCst);
    assert_allowed(&authz.check_token(&mint(&key("rsa-1"), &claims(&iss))).await);
    assert_eq!(endpoint.calls.load(Ordering::SeqCst), before);

    let (_, metrics) = scrape(&authz, "/metrics").await;
    assert!(
        metrics.contains(
            "jwt_authz_decisions_total{decision=\"deny\",code=\"introspection_unavailable\"} 11"
        ),
        "{metrics}"
    );
}

/// `jwts: true`: the issuer's JWTs are introspected too after they verify, cached or not,
/// so a JWT the authorization server revoked stops working; its endpoint down is a 503.
#[tokio::test(flavor = "multi_thread")]
async fn jwts_are_introspected_when_the_issuer_asks() {
    let endpoint = Endpoint::start().await;
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let iss = idp.issuer();
    let secret = TempFile::new("secret", "s");
    let text = format!(
        "issuers:\n  - issuer: \"{iss}\"\n    audiences: [\"{AUDIENCE}\"]\n    jwks_uri: \"{jwks}\"\n    introspection:\n      endpoint: \"{url}\"\n      client_id: rs\n      client_secret_file: \"{secret}\"\n      client_auth: client_secret_post\n      timeout: 300ms\n      cache_max: 1s\n      negative_cache: 1s\n      jwts: true\n      opaque_tokens: false\n\
         insecure_allow_http: true\n",
        jwks = idp.jwks_uri(),
        url = endpoint.url,
        secret = secret.as_str(),
    );
    let config = TempFile::new("jwts.yaml", text);
    let authz = Authz::start(&["--config", config.as_str()]).await;
    authz.wait_serving().await;
    let jwt = mint(&key("rsa-1"), &claims(&iss));
    endpoint.set(Answer::Json(
        200,
        json!({"active": true, "iss": iss}).to_string(),
    ));
    assert_allowed(&authz.check_token(&jwt).await);
    // The answer's iss, when present, must be the token's.
    let other = mint(&key("rsa-1"), &{
        let mut c = claims(&iss);
        c["sub"] = json!("other");
        c
    });
    endpoint.set(Answer::Json(
        200,
        json!({"active": true, "iss": "https://evil.example/"}).to_string(),
    ));
    assert_denied(&authz.check_token(&other).await, 401, "invalid_claims");
    // Revoked at the source: refused once the cached answer lapses, though the
    // verified-token cache still holds the JWT.
    endpoint.set(Answer::Json(200, "{\"active\":false}".into()));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_denied(&authz.check_token(&jwt).await, 401, "invalid_token");
    let sent = endpoint.last.lock().unwrap().clone();
    assert!(
        sent.contains("client_id=rs") && sent.contains("client_secret=s"),
        "{sent}"
    );
    assert!(
        !sent.to_ascii_lowercase().contains("authorization: basic"),
        "{sent}"
    );
    // Unreachable: 503, never an allow.
    let fresh = mint(&key("rsa-1"), &{
        let mut c = claims(&iss);
        c["sub"] = json!("fresh");
        c
    });
    endpoint.set(Answer::Hang);
    assert_denied(
        &authz.check_token(&fresh).await,
        503,
        "introspection_unavailable",
    );
    // opaque_tokens: false: a token that is not a JWS is not sent anywhere.
    let calls = endpoint.calls.load(Ordering::SeqCst);
    assert_denied(
        &authz.check_token("opaque-value").await,
        401,
        "invalid_header",
    );
    assert_eq!(endpoint.calls.load(Ordering::SeqCst), calls);
}
