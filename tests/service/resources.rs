//! Several protected resources in one deployment (`protected_resources`), each for its host
//! and path prefix: each with its RFC 9728 document, named in its own challenges, and
//! accepting only tokens for it (RFC 8707 audience).

use jwt_authz::testkit::*;
use jwt_authz::wire::proto::{CheckRequest, CheckResponse, HttpResponse};
use serde_json::{Value, json};

const MCP: &str = "https://a.example.com/mcp";
const API: &str = "https://b.example.com/api";

async fn serve(idp: &Idp) -> (Authz, TempFile) {
    let text = format!(
        "issuers:\n  - {{issuer: \"{}\", audiences: [\"{MCP}\", \"{API}\"], jwks_uri: \"{}\"}}\n\
         protected_resources:\n\
         \x20 - {{resource: \"{MCP}\", host: a.example.com, resource_name: Tools}}\n\
         \x20 - {{resource: \"{API}\", host: b.example.com}}\n",
        idp.issuer(),
        idp.jwks_uri()
    );
    let config = TempFile::new("resources.yaml", text);
    let authz = Authz::start(&["--config", config.as_str()]).await;
    authz.wait_serving().await;
    (authz, config)
}

fn at(host: &str, path: &str, token: Option<&str>) -> CheckRequest {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut request = request_at(path, bearer.as_deref());
    let http = http_mut(&mut request);
    http.host = host.into();
    http.headers.insert(":authority".into(), host.into());
    request
}

fn token_for(idp: &Idp, audience: &str) -> String {
    let mut c = claims(&idp.issuer());
    c["aud"] = json!(audience);
    mint(&key("rsa-1"), &c)
}

/// The RFC 9728 document the service answers itself.
fn document(response: &CheckResponse) -> Value {
    let Some(HttpResponse::DeniedResponse(d)) = &response.http_response else {
        panic!("no document: {response:?}");
    };
    assert_eq!(d.status.as_ref().unwrap().code, 200);
    serde_json::from_str(&d.body).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_resource_is_discoverable_and_takes_its_own_tokens() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let (authz, _config) = serve(&idp).await;

    // Each document at its well-known path, naming its resource.
    let a = document(
        &authz
            .check(at(
                "a.example.com",
                "/.well-known/oauth-protected-resource/mcp",
                None,
            ))
            .await,
    );
    assert_eq!(a["resource"], MCP);
    assert_eq!(a["resource_name"], "Tools");
    let b = document(
        &authz
            .check(at(
                "b.example.com",
                "/.well-known/oauth-protected-resource/api",
                None,
            ))
            .await,
    );
    assert_eq!(b["resource"], API);
    assert_eq!(b["authorization_servers"], json!([idp.issuer()]));

    // Each challenge names the document of the resource the request was for.
    for (host, path, resource) in [
        (
            "a.example.com",
            "/mcp",
            "https://a.example.com/.well-known/oauth-protected-resource/mcp",
        ),
        (
            "b.example.com",
            "/api/orders",
            "https://b.example.com/.well-known/oauth-protected-resource/api",
        ),
    ] {
        let headers = assert_denied(
            &authz.check(at(host, path, None)).await,
            401,
            "authorization_header_missing",
        );
        assert!(
            headers["www-authenticate"].contains(&format!("resource_metadata=\"{resource}\"")),
            "{host}{path}: {headers:?}"
        );
    }

    // A token is for one resource: accepted there, refused on the other.
    let for_mcp = token_for(&idp, MCP);
    let for_api = token_for(&idp, API);
    assert_allowed(
        &authz
            .check(at("a.example.com", "/mcp", Some(&for_mcp)))
            .await,
    );
    assert_allowed(
        &authz
            .check(at("b.example.com", "/api/orders", Some(&for_api)))
            .await,
    );
    assert_denied(
        &authz
            .check(at("b.example.com", "/api/orders", Some(&for_mcp)))
            .await,
        401,
        "invalid_claims",
    );
    assert_denied(
        &authz
            .check(at("a.example.com", "/mcp", Some(&for_api)))
            .await,
        401,
        "invalid_claims",
    );
    // A request for no resource is refused: which audience it needs cannot be told.
    assert_denied(
        &authz
            .check(at("c.example.com", "/mcp", Some(&for_mcp)))
            .await,
        403,
        "access_denied",
    );
    assert_denied(
        &authz
            .check(at("a.example.com", "/other", Some(&for_mcp)))
            .await,
        403,
        "access_denied",
    );
}

/// `protected_resources` entries name configured issuers only, and the one-resource keys
/// stay apart.
#[test]
fn resource_settings_are_checked() {
    let text = format!(
        "issuers:\n  - {{issuer: \"https://idp.example/\", audiences: [\"{MCP}\"]}}\n\
         protected_resources:\n  - {{resource: \"{MCP}\", authorization_servers: [\"https://other.example/\"]}}\n\
         protected_resource: {{resource: \"{MCP}\"}}\n"
    );
    let errors = config_errors(&text);
    assert!(errors.contains("protected_resources: give `protected_resource` (one) or `protected_resources` (several), not both"), "{errors}");
}

/// One entry is enforced as several are; the host defaults to the resource URL's; a
/// request whose readings could pick two resources, or with no host where resources have
/// one, is for none; each document is served on its own host.
#[tokio::test(flavor = "multi_thread")]
async fn one_resource_is_enforced_and_its_readings_are_one() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let text = format!(
        "issuers:\n  - {{issuer: \"{}\", audiences: [\"{MCP}\", \"{API}\"], jwks_uri: \"{}\"}}\n\
         protected_resources:\n  - {{resource: \"{MCP}\"}}\n",
        idp.issuer(),
        idp.jwks_uri()
    );
    let config = TempFile::new("one-resource.yaml", text);
    let authz = Authz::start(&["--config", config.as_str()]).await;
    authz.wait_serving().await;
    let for_mcp = token_for(&idp, MCP);
    let for_api = token_for(&idp, API);
    assert_allowed(
        &authz
            .check(at("a.example.com", "/mcp", Some(&for_mcp)))
            .await,
    );
    // The audience of the one resource is enforced.
    assert_denied(
        &authz
            .check(at("a.example.com", "/mcp", Some(&for_api)))
            .await,
        401,
        "invalid_claims",
    );
    // Its host defaults to the URL's: another host is for no resource.
    assert_denied(
        &authz
            .check(at("evil.example.com", "/mcp", Some(&for_mcp)))
            .await,
        403,
        "access_denied",
    );
    assert_denied(
        &authz.check(at("", "/mcp", Some(&for_mcp))).await,
        403,
        "access_denied",
    );

    // Two resources on one host, one inside the other's path: a spelling that one reading
    // puts under /mcp and another not is for none.
    let text = format!(
        "issuers:\n  - {{issuer: \"{}\", audiences: [\"{MCP}\", \"https://a.example.com/\"], jwks_uri: \"{}\"}}\n\
         protected_resources:\n  - {{resource: \"{MCP}\"}}\n  - {{resource: \"https://a.example.com/\"}}\n",
        idp.issuer(),
        idp.jwks_uri()
    );
    let config = TempFile::new("nested-resources.yaml", text);
    let nested = Authz::start(&["--config", config.as_str()]).await;
    nested.wait_serving().await;
    let for_root = token_for(&idp, "https://a.example.com/");
    assert_allowed(
        &nested
            .check(at("a.example.com", "/mcp", Some(&for_mcp)))
            .await,
    );
    assert_allowed(
        &nested
            .check(at("a.example.com", "/other", Some(&for_root)))
            .await,
    );
    for path in ["/MCP", "/%6dcp"] {
        let response = nested
            .check(at("a.example.com", path, Some(&for_root)))
            .await;
        assert!(!allows(&response), "{path} allowed");
    }
}

/// Empty lists are refused (they would turn a check off), and two resources one request
/// could not tell apart.
#[test]
fn resource_lists_are_refused_empty_and_twins_refused() {
    let text = format!(
        "issuers:\n  - {{issuer: \"https://idp.example/\", audiences: [\"{MCP}\"]}}\n\
         protected_resources:\n  - {{resource: \"{MCP}\", audiences: []}}\n  - {{resource: \"https://a.example.com:8443/mcp\"}}\n"
    );
    let errors = config_errors(&text);
    assert!(
        errors.contains("protected_resources[0].audiences: must not be empty"),
        "{errors}"
    );
    assert!(
        errors.contains(
            "protected_resources[1].resource: another resource has the same host and document path"
        ),
        "{errors}"
    );
}
