//! Sender-constrained tokens over the real gRPC API: DPoP-bound tokens (RFC 9449) with
//! their proofs, certificate-bound tokens (RFC 8705) with the client certificate Envoy
//! forwards, and the RFC 9728 metadata the Check serves and every 401 names.

use jwt_authz::testkit::*;
use jwt_authz::wire::proto::{CheckRequest, CheckResponse, HttpResponse};
use serde_json::{Value, json};

const METADATA: &str = "https://api.example.com/.well-known/oauth-protected-resource";

struct Bound {
    idp: Idp,
    authz: Authz,
    client: ProofKey,
}

impl Bound {
    /// The service trusting one issuer (`dpop` its mode) with the given extra file text.
    async fn start(dpop: &str, extra: &str) -> Bound {
        let idp = Idp::start(vec![key("rsa-1").jwk]).await;
        let text = format!(
            "issuers:\n  - {{issuer: \"{}\", audiences: [\"{AUDIENCE}\"], jwks_uri: \"{}\", dpop: {dpop}}}\nprotected_resource:\n  resource: https://api.example.com\n{extra}",
            idp.issuer(),
            idp.jwks_uri(),
        );
        let path = TempFile::new("binding.yaml", text);
        let authz = Authz::start(&["--config", path.to_str().unwrap()]).await;
        authz.wait_serving().await;
        Bound {
            idp,
            authz,
            client: proof_key("ec-256"),
        }
    }

    /// A token of the issuer with `cnf` (or none).
    fn token(&self, cnf: Option<Value>) -> String {
        let mut c = claims(&self.idp.issuer());
        if let Some(cnf) = cnf {
            c["cnf"] = cnf;
        }
        mint(&key("rsa-1"), &c)
    }

    fn bound_token(&self) -> String {
        self.token(Some(json!({"jkt": self.client.thumbprint()})))
    }

    async fn check(&self, request: CheckRequest) -> CheckResponse {
        self.authz.check(request).await
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Every `www-authenticate` value of a denial, in order.
fn challenges(response: &CheckResponse) -> Vec<String> {
    let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
        panic!("not a denial: {response:?}");
    };
    denied
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .filter(|h| h.key == "www-authenticate")
        .map(|h| h.value.clone())
        .collect()
}

#[tokio::test]
async fn dpop_bound_token_with_a_fresh_proof_is_allowed_and_a_replay_is_not() {
    let b = Bound::start("allowed", "").await;
    let token = b.bound_token();
    let dpop = format!("DPoP {token}");
    let proof = b.client.proof("GET", URL, Some(&token));
    assert_allowed(&b.check(with_proofs(&dpop, &[&proof])).await);
    // The token is cached now; the proof is still checked, and used once only.
    let replayed = b.check(with_proofs(&dpop, &[&proof])).await;
    assert_denied(&replayed, 401, "invalid_dpop_proof");
    let challenge = challenges(&replayed);
    assert_eq!(challenge.len(), 1, "{challenge:?}");
    assert!(
        challenge[0].starts_with("DPoP realm=\"jwt-authz\", error=\"invalid_dpop_proof\""),
        "{challenge:?}"
    );
    assert!(challenge[0].contains("algs=\"ES256 ES384 EdDSA RS256 PS256\""));
    assert!(challenge[0].contains(&format!("resource_metadata=\"{METADATA}\"")));
    let fresh = b.client.proof("GET", URL, Some(&token));
    assert_allowed(&b.check(with_proofs(&dpop, &[&fresh])).await);
    // The scheme is case-insensitive, like Bearer.
    let lower = format!("dpop {token}");
    let fresh = b.client.proof("GET", URL, Some(&token));
    assert_allowed(&b.check(with_proofs(&lower, &[&fresh])).await);
    b.authz.stop().await.unwrap();
}

/// Each hostile proof over the wire, on a token that is cached and valid: every one is a
/// 401 `invalid_dpop_proof`, and none uses up a `jti`.
#[tokio::test]
async fn hostile_proofs_are_refused() {
    let b = Bound::start("allowed", "").await;
    let token = b.bound_token();
    let dpop = format!("DPoP {token}");
    let key = &b.client;
    let claims = |edit: &dyn Fn(&mut Value)| {
        let mut c = proof_claims("GET", URL, Some(&token));
        edit(&mut c);
        c
    };
    let header = |edit: &dyn Fn(&mut Value)| {
        let mut h = key.header();
        edit(&mut h);
        h
    };
    let now = now();
    let hs256 = {
        let h = header(&|h| h["alg"] = json!("HS256"));
        let input = format!(
            "{}.{}",
            b64(&serde_json::to_vec(&h).unwrap()),
            b64(&serde_json::to_vec(&claims(&|_| {})).unwrap())
        );
        let secret = jsonwebtoken::EncodingKey::from_secret(b"secret").unwrap();
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &secret, jsonwebtoken::Algorithm::HS256)
                .unwrap();
        format!("{input}.{signature}")
    };
    let other_key = {
        let other = proof_key("ed-1");
        let h = header(&|h| h["alg"] = json!("EdDSA"));
        other.sign(&h, &claims(&|_| {}))
    };
    let cases: Vec<(&str, String)> = vec![
        ("another method", key.proof("POST", URL, Some(&token))),
        (
            "another URL",
            key.proof("GET", "http://api.example.com/api/other", Some(&token)),
        ),
        (
            "another host",
            key.proof("GET", "http://evil.example.com/api/private", Some(&token)),
        ),
        (
            "stale iat",
            key.sign(&key.header(), &claims(&|c| c["iat"] = json!(now - 600))),
        ),
        (
            "future iat",
            key.sign(&key.header(), &claims(&|c| c["iat"] = json!(now + 600))),
        ),
        (
            "no ath",
            key.sign(
                &key.header(),
                &claims(&|c| {
                    c.as_object_mut().unwrap().remove("ath");
                }),
            ),
        ),
        (
            "wrong ath",
            key.proof("GET", URL, Some("another.access.token")),
        ),
        ("HS256", hs256),
        ("signed by a key other than its jwk", other_key),
        (
            "private jwk",
            key.sign(
                &header(&|h| h["jwk"]["d"] = json!("AAAA")),
                &claims(&|_| {}),
            ),
        ),
        (
            "typ JWT",
            key.sign(&header(&|h| h["typ"] = json!("JWT")), &claims(&|_| {})),
        ),
        (
            "proof key is not the bound key",
            proof_key("ed-1").proof("GET", URL, Some(&token)),
        ),
        ("not a JWS", "not-a-proof".into()),
    ];
    for (case, proof) in &cases {
        let response = b.check(with_proofs(&dpop, &[proof])).await;
        assert_denied(&response, 401, "invalid_dpop_proof");
        assert!(
            challenges(&response)[0].starts_with("DPoP "),
            "{case}: {:?}",
            challenges(&response)
        );
    }
    let (a, c) = (
        key.proof("GET", URL, Some(&token)),
        key.proof("GET", URL, Some(&token)),
    );
    assert_denied(
        &b.check(with_proofs(&dpop, &[&a, &c])).await,
        401,
        "invalid_dpop_proof",
    );
    assert_denied(
        &b.check(with_proofs(&dpop, &[])).await,
        401,
        "invalid_dpop_proof",
    );
    // None of the refused proofs consumed anything: the two valid ones still work.
    assert_allowed(&b.check(with_proofs(&dpop, &[&a])).await);
    assert_allowed(&b.check(with_proofs(&dpop, &[&c])).await);
    let (_, metrics) = scrape(&b.authz, "/metrics").await;
    assert!(metrics.contains("code=\"invalid_dpop_proof\""), "{metrics}");
    b.authz.stop().await.unwrap();
}

#[tokio::test]
async fn bound_tokens_and_schemes_must_agree() {
    let b = Bound::start("allowed", "").await;
    let bound = b.bound_token();
    // RFC 9449 §7.2: a DPoP-bound token as a bearer token, even with a valid proof.
    let proof = b.client.proof("GET", URL, Some(&bound));
    let as_bearer = b
        .check(with_proofs(&format!("Bearer {bound}"), &[&proof]))
        .await;
    assert_denied(&as_bearer, 401, "invalid_token");
    let challenge = challenges(&as_bearer);
    assert_eq!(challenge.len(), 1);
    assert!(challenge[0].starts_with("DPoP realm=\"jwt-authz\", error=\"invalid_token\""));
    // The DPoP scheme with a token that is not bound to any key.
    let plain = b.token(None);
    let proof = b.client.proof("GET", URL, Some(&plain));
    assert_denied(
        &b.check(with_proofs(&format!("DPoP {plain}"), &[&proof]))
            .await,
        401,
        "invalid_token",
    );
    // A plain bearer token still passes where DPoP is only allowed.
    assert_allowed(&b.check_token_plain(&plain).await);
    // A `cnf` this service cannot check is refused, not ignored.
    let jwk_bound = b.token(Some(json!({"jwk": b.client.jwk})));
    assert_denied(&b.authz.check_token(&jwk_bound).await, 401, "invalid_token");
    b.authz.stop().await.unwrap();
}

impl Bound {
    async fn check_token_plain(&self, token: &str) -> CheckResponse {
        self.authz.check_token(token).await
    }
}

#[tokio::test]
async fn required_and_off_modes() {
    let required = Bound::start(
        "required",
        "routes:\n  - { path_prefix: /api, scopes: { all_of: [read:messages] } }\n",
    )
    .await;
    let plain = required.token(None);
    let response = required.authz.check_token(&plain).await;
    assert_denied(&response, 401, "invalid_token");
    assert!(
        challenges(&response)[0].starts_with("DPoP realm=\"jwt-authz\", error=\"invalid_token\"")
    );
    let bound = required.bound_token();
    let proof = required.client.proof("GET", URL, Some(&bound));
    assert_allowed(
        &required
            .check(with_proofs(&format!("DPoP {bound}"), &[&proof]))
            .await,
    );
    required.authz.stop().await.unwrap();

    let off = Bound::start("off", "").await;
    let bound = off.bound_token();
    let proof = off.client.proof("GET", URL, Some(&bound));
    assert_denied(
        &off.check(with_proofs(&format!("DPoP {bound}"), &[&proof]))
            .await,
        401,
        "invalid_header",
    );
    // Unusable as a bearer token too: its binding is never ignored.
    assert_denied(&off.authz.check_token(&bound).await, 401, "invalid_token");
    let missing = off.authz.check(request(None, None)).await;
    assert_denied(&missing, 401, "authorization_header_missing");
    assert_eq!(
        challenges(&missing),
        [format!(
            "Bearer realm=\"jwt-authz\", resource_metadata=\"{METADATA}\""
        )],
        "no DPoP challenge where no issuer accepts DPoP"
    );
    off.authz.stop().await.unwrap();
}

#[tokio::test]
async fn a_route_can_require_dpop() {
    let b = Bound::start(
        "allowed",
        "routes:\n  - { path_prefix: /api/private, dpop: required }\n  - { path_prefix: /, scopes: { all_of: [read:messages] } }\n",
    )
    .await;
    let plain = b.token(None);
    assert_denied(&b.authz.check_token(&plain).await, 401, "invalid_token");
    let bound = b.bound_token();
    let proof = b.client.proof("GET", URL, Some(&bound));
    assert_allowed(
        &b.check(with_proofs(&format!("DPoP {bound}"), &[&proof]))
            .await,
    );
    let mut elsewhere = request(Some(&format!("Bearer {plain}")), None);
    http_mut(&mut elsewhere).path = "/other".into();
    assert_allowed(&b.check(elsewhere).await);
    b.authz.stop().await.unwrap();
}

#[tokio::test]
async fn missing_token_gets_bearer_and_dpop_challenges() {
    let b = Bound::start("allowed", "").await;
    let response = b.authz.check(request(None, None)).await;
    assert_denied(&response, 401, "authorization_header_missing");
    assert_eq!(
        challenges(&response),
        [
            format!("Bearer realm=\"jwt-authz\", resource_metadata=\"{METADATA}\""),
            format!(
                "DPoP realm=\"jwt-authz\", algs=\"ES256 ES384 EdDSA RS256 PS256\", resource_metadata=\"{METADATA}\""
            ),
        ]
    );
    b.authz.stop().await.unwrap();
}

/// A PEM certificate block around `der` (the service hashes the DER; it does not parse
/// X.509, which the proxy verified).
fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

#[tokio::test]
async fn certificate_bound_token_needs_its_certificate() {
    let b = Bound::start("allowed", "").await;
    let der = b"a client certificate's DER bytes".repeat(8);
    let other = b"another client certificate".repeat(8);
    let token = b.token(Some(json!({"x5t#S256": certificate_thumbprint(&der)})));
    assert_allowed(&b.check(with_certificate(&token, Some(&pem(&der)))).await);
    // Cached now: the certificate is still checked on every request.
    assert_denied(
        &b.check(with_certificate(&token, None)).await,
        401,
        "invalid_token",
    );
    let wrong = b.check(with_certificate(&token, Some(&pem(&other)))).await;
    assert_denied(&wrong, 401, "invalid_token");
    assert!(
        challenges(&wrong)[0].starts_with("Bearer realm=\"jwt-authz\", error=\"invalid_token\"")
    );
    let chain = format!("{}{}", pem(&der), pem(&other));
    assert_denied(
        &b.check(with_certificate(&token, Some(&chain))).await,
        401,
        "invalid_token",
    );
    assert_allowed(&b.check(with_certificate(&token, Some(&pem(&der)))).await);
    // A token bound to no certificate does not care whether one was presented.
    let plain = b.token(None);
    assert_allowed(&b.check(with_certificate(&plain, Some(&pem(&other)))).await);
    b.authz.stop().await.unwrap();
}

#[tokio::test]
async fn resource_metadata_is_served_without_a_token() {
    let b = Bound::start(
        "allowed",
        "  resource_name: Example API\nroutes:\n  - { path_prefix: /api, scopes: { any_of: [read:messages, write:messages] } }\n",
    )
    .await;
    let mut get = request(None, None);
    http_mut(&mut get).path = "/.well-known/oauth-protected-resource".into();
    let response = b.check(get).await;
    let Some(HttpResponse::DeniedResponse(answer)) = &response.http_response else {
        panic!("the metadata is a direct response: {response:?}");
    };
    assert_eq!(answer.status.as_ref().unwrap().code, 200);
    assert_ne!(response.status.as_ref().unwrap().code, 0, "not forwarded");
    let doc: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(doc["resource"], "https://api.example.com");
    assert_eq!(doc["resource_name"], "Example API");
    assert_eq!(doc["authorization_servers"], json!([b.idp.issuer()]));
    assert_eq!(
        doc["scopes_supported"],
        json!(["read:messages", "write:messages"])
    );
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    assert_eq!(
        doc["dpop_signing_alg_values_supported"],
        json!(["ES256", "ES384", "EdDSA", "RS256", "PS256"])
    );
    // The same document on the admin port, for proxies that cannot take it from a Check.
    let (status, body) = scrape(&b.authz, "/.well-known/oauth-protected-resource").await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), doc);
    // Only GET and HEAD of that exact path; anything else goes through the policy.
    let mut post = request(None, None);
    let http = http_mut(&mut post);
    http.path = "/.well-known/oauth-protected-resource".into();
    http.method = "POST".into();
    assert_denied(&b.check(post).await, 403, "access_denied");
    b.authz.stop().await.unwrap();
}
