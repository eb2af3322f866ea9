//! An MCP server built with the official MCP TypeScript SDK behind the shipped
//! `envoy/envoy-mcp.yaml` and jwt-authz, and that SDK's client doing what clients do: a
//! 401 with `resource_metadata`, the RFC 9728 document, a token from the OpenID provider
//! (oidc-provider) for the resource, tool calls allowed and refused per tool, the scope
//! challenge. Requests shaped as SEP-2243 says, with headers and body that disagree, are
//! refused before the server sees them.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use jwt_authz::testkit::*;
use serde_json::{Value, json};

use crate::envoy::{Envoy, TempDir, with_ports};

const SHIPPED: &str = include_str!("../../envoy/envoy-mcp.yaml");

/// The SDK's MCP server (`tests/mcp/server.mjs`), stopped by its own PID on drop.
struct McpServer {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
}

impl McpServer {
    fn start() -> McpServer {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp");
        assert!(
            dir.join("node_modules/@modelcontextprotocol/sdk/package.json")
                .is_file(),
            "{} has no MCP SDK installed (run scripts/install-test-tools.sh)",
            dir.display()
        );
        let mut child = Command::new(node())
            .arg(dir.join("server.mjs"))
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the MCP server");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("listening ").map(|p| p.parse().unwrap()))
            .expect("the MCP server printed its port");
        std::thread::spawn(move || lines.for_each(drop));
        McpServer {
            child,
            _stdin: stdin,
            port,
        }
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the SDK's client against `url` as `client`; one JSON value per step, by name.
async fn sdk_client(url: &str, issuer: &str, client: (&str, &str)) -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp");
    let mut command = tokio::process::Command::new(node());
    command
        .arg(dir.join("client.mjs"))
        .args([url, issuer, client.0, client.1, "mcp mcp:tools mcp:admin"])
        .current_dir(&dir)
        .kill_on_drop(true);
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), command.output())
        .await
        .expect("the MCP client finished within 60 s")
        .expect("run the MCP client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut steps = serde_json::Map::new();
    for line in stdout.lines() {
        let step: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{e}: {line}\n{}", String::from_utf8_lossy(&output.stderr)));
        steps.insert(step["step"].as_str().unwrap().to_owned(), step);
    }
    Value::Object(steps)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sdk_client_calls_tools_one_by_one_through_envoy() {
    let listener = free_port();
    let resource = format!("http://127.0.0.1:{listener}/mcp");
    let provider = OidcProvider::start_for_mcp(&resource).await;
    let server = McpServer::start();
    let config = TempFile::new(
        "mcp-e2e.yaml",
        format!(
            "issuers:\n  - {{issuer: \"{iss}\", audiences: [\"{resource}\"], jwks_uri: \"{jwks}\"}}\n\
             insecure_allow_http: true\n\
             protected_resource:\n  resource: \"{resource}\"\n  resource_name: Test MCP server\n\
             mcp:\n  endpoints: [/mcp]\n\
             routes:\n\
             \x20 - {{path: /mcp, mcp: {{method: tools/call, name: \"admin_*\"}}, scopes: {{all_of: [\"mcp:admin\"]}}}}\n\
             \x20 - {{path: /mcp, mcp: {{method: tools/call}}, scopes: {{all_of: [\"mcp:tools\"]}}}}\n\
             \x20 - {{path: /mcp, scopes: {{all_of: [mcp]}}}}\n",
            iss = provider.issuer(),
            jwks = provider.jwks_uri(),
        ),
    );
    let authz = Authz::start(&["--config", config.as_str()]).await;
    authz.wait_serving().await;
    let admin = free_port();
    let bootstrap = with_ports(
        SHIPPED,
        &[
            (8080, listener),
            (9901, admin),
            (9191, authz.addr.port()),
            (8000, server.port),
        ],
    );
    let envoy = Envoy::run(&bootstrap, listener, admin, TempDir::new("mcp")).await;
    envoy.wait_authz_healthy().await;

    // The RFC 9728 document, through Envoy, answered by jwt-authz.
    let http = reqwest::Client::new();
    let metadata = get_json(&format!(
        "http://127.0.0.1:{listener}/.well-known/oauth-protected-resource/mcp"
    ))
    .await;
    assert_eq!(metadata["resource"], resource.as_str());
    assert_eq!(
        metadata["authorization_servers"],
        json!([provider.issuer()])
    );

    // A client that may hold the tools scopes, not the admin one.
    let limited = sdk_client(&resource, &provider.issuer(), ("mcp-client", "mcp-secret")).await;
    assert_eq!(limited["connect"]["ok"], true, "{limited:#}");
    let first = &limited["connect"]["detail"][0];
    assert_eq!(first["status"], 401, "{limited:#}");
    assert!(
        first["challenge"]
            .as_str()
            .unwrap()
            .contains(&format!("resource_metadata=\"http://127.0.0.1:{listener}/.well-known/oauth-protected-resource/mcp\"")),
        "{limited:#}"
    );
    assert_eq!(
        limited["tools/list"]["detail"],
        json!(["admin_reset", "search"]),
        "{limited:#}"
    );
    assert_eq!(limited["tools/call search"]["ok"], true, "{limited:#}");
    assert_eq!(limited["tools/call search"]["detail"], "results for q");
    assert_eq!(
        limited["tools/call admin_reset"]["ok"], false,
        "{limited:#}"
    );
    let refused = &limited["tools/call admin_reset"]["detail"]["responses"][0];
    assert_eq!(refused["status"], 403, "{limited:#}");
    // The Bearer challenge names only what this tool needs (SEP-2350), and the metadata.
    let challenge = refused["challenge"].as_str().unwrap();
    assert!(
        challenge.starts_with(&format!(
            "Bearer realm=\"jwt-authz\", error=\"insufficient_scope\", scope=\"mcp:admin\", resource_metadata=\"http://127.0.0.1:{listener}/.well-known/oauth-protected-resource/mcp\""
        )),
        "{limited:#}"
    );

    // A client the provider grants every scope: the admin tool too.
    let full = sdk_client(
        &resource,
        &provider.issuer(),
        (BEARER_CLIENT_ID, "bearer-secret"),
    )
    .await;
    assert_eq!(full["tools/call admin_reset"]["ok"], true, "{full:#}");
    assert_eq!(full["tools/call admin_reset"]["detail"], "reset done");

    // Every POST the server answered named its operation in the SEP-2243 headers.
    let seen = get_json(&format!("http://127.0.0.1:{}/seen", server.port)).await;
    let seen = seen.as_array().unwrap();
    assert!(!seen.is_empty());
    for post in seen {
        assert_eq!(post["method"], post["body"], "{post}");
    }
    assert!(seen.iter().any(|p| p["name"] == "admin_reset"));

    // Shaped as SEP-2243 says, with headers that name another tool than the body: refused
    // by jwt-authz, never reaching the server, even with a token for every tool.
    let bearer = provider_token(&provider, &resource).await;
    let before = seen.len();
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "admin_reset", "arguments": {}}});
    for (method, name) in [
        ("tools/call", "search"),
        ("tools/list", ""),
        ("tools/call", "Admin_reset"),
    ] {
        let mut request = http
            .post(&resource)
            .header("authorization", format!("Bearer {bearer}"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-method", method)
            .body(body.to_string());
        if !name.is_empty() {
            request = request.header("mcp-name", name);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "{method} {name:?}");
        let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(answer["code"], "access_denied", "{method} {name:?}");
    }
    let after = get_json(&format!("http://127.0.0.1:{}/seen", server.port)).await;
    let after = after.as_array().unwrap();
    assert_eq!(after.len(), before, "a refused request reached the server");
}

/// An access token from the provider for `resource` with every MCP scope.
async fn provider_token(provider: &OidcProvider, resource: &str) -> String {
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("resource", resource)
        .append_pair("scope", "mcp mcp:tools mcp:admin")
        .finish();
    let response = reqwest::Client::new()
        .post(provider.token_endpoint())
        .basic_auth(BEARER_CLIENT_ID, Some("bearer-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    let response: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    response["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{response}"))
        .to_owned()
}

async fn get_json(url: &str) -> Value {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}
