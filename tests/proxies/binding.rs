//! Sender-constrained tokens and RFC 9728 metadata through a real Envoy running the shipped
//! `envoy/envoy.yaml`: the DPoP header reaches the service, the proof's `htu` is compared
//! with what the client addressed, both challenges reach the client, and the metadata is
//! Envoy's local reply to an unauthenticated GET.

use jwt_authz::testkit::*;
use serde_json::{Value, json};

use super::envoy::{Stack, stack_with_config};

async fn dpop_stack() -> Stack {
    stack_with_config(|idp| {
        format!(
            "issuers:\n  - {{issuer: \"{}\", audiences: [\"{AUDIENCE}\"], jwks_uri: \"{}\"}}\nprotected_resource:\n  resource: https://api.example.com\nupstream:\n  strip_authorization: true\n  claims_to_headers:\n    - {{claim: sub, header: x-jwt-sub}}\nroutes:\n  - {{ path_prefix: /api/public, allow_anonymous: true }}\n  - {{ path_prefix: /api, scopes: {{ all_of: [read:messages] }} }}\n",
            idp.issuer(),
            idp.jwks_uri()
        )
    })
    .await
}

fn bound_token(s: &Stack, client: &ProofKey) -> String {
    let mut c = claims(&s.idp.issuer());
    c["cnf"] = json!({"jkt": client.thumbprint()});
    mint(&key("rsa-1"), &c)
}

#[tokio::test(flavor = "multi_thread")]
async fn dpop_through_envoy() {
    let s = dpop_stack().await;
    let client = proof_key("ec-256");
    let token = bound_token(&s, &client);
    let authorization = format!("DPoP {token}");
    // What the client addressed: Envoy reports this scheme and host to the service.
    let url = s.envoy.url("/api/private");
    let proof = client.proof("GET", &url, Some(&token));
    let (status, body, _) = s
        .get(
            "/api/private?page=1",
            &[("authorization", &authorization), ("dpop", &proof)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let seen = s.upstream.take();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].values("x-jwt-sub"), ["auth0|user-1"]);
    assert!(seen[0].values("authorization").is_empty(), "token stripped");
    assert!(seen[0].values("dpop").is_empty(), "proof stripped with it");

    // Replayed: refused with a DPoP challenge, and nothing reaches the upstream.
    let (status, body, headers) = s
        .get(
            "/api/private",
            &[("authorization", &authorization), ("dpop", &proof)],
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_dpop_proof"))
    );
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("DPoP realm=\"jwt-authz\", error=\"invalid_dpop_proof\""),
        "{challenge}"
    );
    // A proof for the URL behind the proxy, not the one the client used, is refused.
    let internal = client.proof(
        "GET",
        &format!("http://127.0.0.1:{}/api/private", s.upstream.addr.port()),
        Some(&token),
    );
    let (status, body, _) = s
        .get(
            "/api/private",
            &[("authorization", &authorization), ("dpop", &internal)],
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_dpop_proof"))
    );
    // The bound token as a bearer token.
    let (status, body, _) = s
        .get(
            "/api/private",
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_token"))
    );
    assert!(s.upstream.take().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn challenges_and_resource_metadata_through_envoy() {
    let s = dpop_stack().await;
    let metadata = "https://api.example.com/.well-known/oauth-protected-resource";
    let (status, _, headers) = s.get("/api/private", &[]).await;
    assert_eq!(status, 401);
    let challenges: Vec<&str> = headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        challenges,
        [
            format!("Bearer realm=\"jwt-authz\", resource_metadata=\"{metadata}\""),
            format!(
                "DPoP realm=\"jwt-authz\", algs=\"ES256 ES384 EdDSA RS256 PS256\", resource_metadata=\"{metadata}\""
            ),
        ],
        "both challenges, as two header lines"
    );
    let (status, body, headers) = s.get("/.well-known/oauth-protected-resource", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["resource"], "https://api.example.com");
    assert_eq!(body["authorization_servers"], json!([s.idp.issuer()]));
    assert_eq!(body["scopes_supported"], json!(["read:messages"]));
    assert!(
        s.upstream.take().is_empty(),
        "answered by Envoy, not forwarded"
    );
    let (status, body, _): (u16, Value, _) = s
        .send("POST", "/.well-known/oauth-protected-resource", &[])
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("access_denied"))
    );
}
