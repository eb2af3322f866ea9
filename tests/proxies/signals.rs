//! A token's whole life through real Envoys: an opaque token from the certified OpenID
//! provider (oidc-provider), introspected, then revoked from the command line and by a
//! Security Event Token, on two replicas sharing a real Redis, each behind the shipped
//! Envoy configuration.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, Header};
use jwt_authz::testkit::*;
use serde_json::{Value, json};

use crate::envoy::Envoy;

const PUSH_AUTH: &str = "Bearer transmitter-secret";
const RECEIVER_AUD: &str = "https://authz.example/ssf";

async fn get(envoy: &Envoy, token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(envoy.url("/api/private"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Waits (at most 1 s) until `envoy` answers 401 "revoked" for `token`; how long it took.
async fn until_revoked(envoy: &Envoy, token: &str) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = get(envoy, token).await;
        if status == 401 {
            assert_eq!(
                body,
                json!({"code": "invalid_token", "description": "The token has been revoked."})
            );
            return started.elapsed();
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "not revoked within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn opaque_tokens_are_revoked_on_every_replica_through_envoy() {
    let redis = RedisServer::start();
    let provider = OidcProvider::start().await;
    // The transmitter signs its SETs with a key of its own JWKS.
    let transmitter = Idp::start(vec![key("ec-256").jwk]).await;
    let secret = TempFile::new("introspection-secret", INTROSPECTION_CLIENT.1);
    let push_auth = TempFile::new("push-auth", PUSH_AUTH);
    let text = format!(
        "issuers:\n  - issuer: \"{iss}\"\n    audiences: [\"{OPAQUE_RESOURCE}\"]\n    jwks_uri: \"{jwks}\"\n    introspection:\n      client_id: {client}\n      client_secret_file: \"{secret}\"\n\
         insecure_allow_http: true\n\
         revocation:\n  store: {redis}\n  max_lag: 1s\n\
         ssf:\n  listen: 127.0.0.1:0\n  transmitters:\n    - issuer: \"{tx}\"\n      jwks_uri: \"{tx_jwks}\"\n      audience: \"{RECEIVER_AUD}\"\n      authorization_file: \"{auth}\"\n      token_issuers: [\"{iss}\"]\n",
        iss = provider.issuer(),
        jwks = provider.jwks_uri(),
        client = INTROSPECTION_CLIENT.0,
        secret = secret.as_str(),
        redis = redis.url(),
        tx = transmitter.issuer(),
        tx_jwks = transmitter.jwks_uri(),
        auth = push_auth.as_str(),
    );
    let config = TempFile::new("signals.yaml", text);
    let flags = ["--config", config.as_str()];
    let (one, two) = (Authz::start(&flags).await, Authz::start(&flags).await);
    one.wait_serving().await;
    two.wait_serving().await;
    let upstream = RecordingUpstream::start().await;
    let envoy_one = Envoy::start(one.addr.port(), upstream.addr.port()).await;
    let envoy_two = Envoy::start(two.addr.port(), upstream.addr.port()).await;

    // Allowed through both, by introspection.
    let first = provider.opaque_token("read:messages").await;
    for envoy in [&envoy_one, &envoy_two] {
        let (status, body) = get(envoy, &first).await;
        assert_eq!(status, 200, "{body}");
    }

    // Revoked from the command line (the client the token was issued to): both refuse it
    // within a second, though each holds an active introspection answer for it.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_jwt-authz"))
        .args([
            "revoke",
            "--config",
            config.as_str(),
            "--client-id",
            BEARER_CLIENT_ID,
            "--issuer",
            &provider.issuer(),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let cli = until_revoked(&envoy_one, &first)
        .await
        .max(until_revoked(&envoy_two, &first).await);

    // A token issued after the cut-off (whole seconds later) is allowed again ...
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = provider.opaque_token("read:messages").await;
    for envoy in [&envoy_one, &envoy_two] {
        assert_eq!(get(envoy, &second).await.0, 200);
    }

    // ... until the identity provider's signal, pushed to one replica, disables the
    // account (the subject of a client_credentials token is its client).
    let k = key("ec-256");
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(k.kid.clone());
    header.typ = Some("secevent+jwt".into());
    let set = mint_header(
        &header,
        &json!({
            "iss": transmitter.issuer(),
            "aud": RECEIVER_AUD,
            "iat": now(),
            "jti": "set-account-disabled-1",
            "sub_id": {"format": "iss_sub", "iss": provider.issuer(), "sub": BEARER_CLIENT_ID},
            "events": {"https://schemas.openid.net/secevent/risc/event-type/account-disabled": {}}
        }),
        &k.encoding,
    );
    let pushed = reqwest::Client::new()
        .post(format!("http://{}/ssf/events", one.ssf))
        .header("authorization", PUSH_AUTH)
        .header("content-type", "application/secevent+jwt")
        .body(set)
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 202);
    let signal = until_revoked(&envoy_two, &second)
        .await
        .max(until_revoked(&envoy_one, &second).await);
    eprintln!("revoked on both replicas: command line {cli:?}, security event {signal:?}");
    let (_, metrics) = scrape(&two, "/metrics").await;
    assert!(metrics.contains("jwt_authz_revocations 2"), "{metrics}");
}
