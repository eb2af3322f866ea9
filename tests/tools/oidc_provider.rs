//! The test OpenID provider (oidc-provider on Node.js) issues the three kinds of access token
//! the tests rely on, and the service accepts each of them from its holder only: real
//! tokens from a standard authorization server, not only the test kit's own.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_authz::testkit::*;
use serde_json::Value;

/// The decoded header and payload of a compact JWT.
fn decode(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut part = || {
        let bytes = URL_SAFE_NO_PAD
            .decode(parts.next().expect("a JWT has three parts"))
            .expect("base64url");
        serde_json::from_slice::<Value>(&bytes).expect("JSON")
    };
    let header = part();
    let payload = part();
    assert_eq!(token.split('.').count(), 3, "a JWS has three parts");
    (header, payload)
}

fn assert_access_token(provider: &OidcProvider, token: &str, scope: &str) -> Value {
    let (header, payload) = decode(token);
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(header["alg"], "RS256", "{header}");
    assert_eq!(payload["iss"], provider.issuer().as_str(), "{payload}");
    assert_eq!(payload["aud"], AUDIENCE, "{payload}");
    assert_eq!(payload["scope"], scope, "{payload}");
    payload
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("jwt-authz-oidc-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn oidc_provider_issues_bearer_dpop_and_certificate_bound_tokens() {
    let provider = OidcProvider::start().await;
    assert_eq!(provider.jwks_uri(), format!("{}/jwks", provider.issuer()));

    let bearer = provider.bearer_token("read:messages admin").await;
    let payload = assert_access_token(&provider, &bearer, "read:messages admin");
    assert!(payload.get("cnf").is_none(), "{payload}");

    let key = proof_key("ec-256");
    let dpop = provider.dpop_token(&key, "read:messages").await;
    let payload = assert_access_token(&provider, &dpop, "read:messages");
    assert_eq!(
        payload["cnf"]["jkt"],
        key.thumbprint().as_str(),
        "{payload}"
    );

    let dir = temp_dir("self-signed");
    let cert = client_certificate(&dir);
    let mtls = provider.mtls_token(&cert.cert_pem, "admin").await;
    let payload = assert_access_token(&provider, &mtls, "admin");
    assert_eq!(
        payload["cnf"]["x5t#S256"],
        certificate_thumbprint(&cert.der).as_str(),
        "{payload}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn oidc_provider_binds_tokens_to_certificates_from_the_test_pki() {
    let provider = OidcProvider::start().await;
    let dir = temp_dir("pki");
    let pki = generate_pki(&dir);
    assert_ne!(pki.client.der, pki.other_client.der);
    for cert in [&pki.client, &pki.other_client] {
        let token = provider.mtls_token(&cert.cert_pem, "read:messages").await;
        let (_, payload) = decode(&token);
        assert_eq!(payload["cnf"]["x5t#S256"], cert.thumbprint().as_str());
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn oidc_provider_demanding_a_dpop_nonce_still_issues_a_bound_token() {
    let provider = OidcProvider::start_requiring_dpop_nonce().await;
    let key = proof_key("ec-256");

    let refused = provider.dpop_token_response(&key, "admin", None).await;
    assert_eq!(refused.status, 400, "{refused:?}");
    assert_eq!(refused.body["error"], "use_dpop_nonce", "{refused:?}");
    assert!(refused.dpop_nonce.is_some(), "{refused:?}");

    let token = provider.dpop_token(&key, "admin").await;
    let (_, payload) = decode(&token);
    assert_eq!(payload["cnf"]["jkt"], key.thumbprint().as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_token_from_the_oidc_provider_is_allowed() {
    let provider = OidcProvider::start().await;
    let authz = Authz::start_trusting(
        &provider.issuer(),
        &provider.jwks_uri(),
        &["--require-access-token-type"],
    )
    .await;
    authz.wait_serving().await;

    let token = provider.bearer_token("read:messages").await;
    assert_allowed(&authz.check_token(&token).await);
    assert_denied(
        &authz.check_token(&corrupt_signature(&token)).await,
        401,
        "invalid_token",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dpop_and_certificate_bound_tokens_from_the_oidc_provider() {
    let provider = OidcProvider::start().await;
    let authz = Authz::start_trusting(
        &provider.issuer(),
        &provider.jwks_uri(),
        &["--require-access-token-type"],
    )
    .await;
    authz.wait_serving().await;

    let client = proof_key("ec-256");
    let token = provider.dpop_token(&client, "read:messages").await;
    let dpop = format!("DPoP {token}");
    let proof = client.proof("GET", URL, Some(&token));
    assert_allowed(&authz.check(with_proofs(&dpop, &[&proof])).await);
    assert_denied(
        &authz.check(with_proofs(&dpop, &[&proof])).await,
        401,
        "invalid_dpop_proof",
    );
    let thief = proof_key("ed-1");
    let stolen = thief.proof("GET", URL, Some(&token));
    assert_denied(
        &authz.check(with_proofs(&dpop, &[&stolen])).await,
        401,
        "invalid_dpop_proof",
    );
    assert_denied(&authz.check_token(&token).await, 401, "invalid_token");

    let dir = temp_dir("bound");
    let pki = generate_pki(&dir);
    let bound = provider
        .mtls_token(&pki.client.cert_pem, "read:messages")
        .await;
    assert_allowed(
        &authz
            .check(with_certificate(&bound, Some(&pki.client.cert_pem)))
            .await,
    );
    assert_denied(
        &authz
            .check(with_certificate(&bound, Some(&pki.other_client.cert_pem)))
            .await,
        401,
        "invalid_token",
    );
    assert_denied(
        &authz.check(with_certificate(&bound, None)).await,
        401,
        "invalid_token",
    );
    std::fs::remove_dir_all(dir).unwrap();
}
