//! An MCP endpoint protected per tool: rules on the operation (`Mcp-Method`, `Mcp-Name`),
//! the operation read one way from the headers and the JSON-RPC body Envoy sends
//! (`with_request_body`), and the scope challenge naming what this operation needs.

use jwt_authz::testkit::*;
use jwt_authz::wire::proto::CheckRequest;
use serde_json::{Value, json};

const CONFIG: &str = "\
mcp:
  endpoints: [/mcp]
routes:
  - {path: /mcp, mcp: {method: tools/call, name: \"admin_*\"}, scopes: {all_of: [\"mcp:admin\"]}}
  - {path: /mcp, mcp: {method: tools/call}, scopes: {all_of: [\"mcp:tools\"]}}
  - {path: /mcp, mcp: {method: resources/read, name: \"file:///secret/*\"}, deny: true}
  - {path: /mcp, scopes: {all_of: [\"mcp\"]}}
";

/// The service with `CONFIG`, `mcp_extra` added to its `mcp` block.
async fn serve(idp: &Idp, mcp_extra: &str) -> (Authz, TempFile) {
    let config = CONFIG.replace(
        "  endpoints: [/mcp]\n",
        &format!("  endpoints: [/mcp]\n{mcp_extra}"),
    );
    let text = format!(
        "issuers:\n  - {{issuer: \"{}\", audiences: [\"{AUDIENCE}\"], jwks_uri: \"{}\"}}\n{config}",
        idp.issuer(),
        idp.jwks_uri()
    );
    let config = TempFile::new("mcp.yaml", text);
    let authz = Authz::start(&["--config", config.as_str()]).await;
    authz.wait_serving().await;
    (authz, config)
}

fn bearer(idp: &Idp, scope: &str) -> String {
    let mut c = claims(&idp.issuer());
    c["scope"] = json!(scope);
    format!("Bearer {}", mint(&key("rsa-1"), &c))
}

/// A POST to `/mcp` as an MCP client sends it, through Envoy with `with_request_body`.
fn call(authorization: &str, headers: &[(&str, &str)], body: Option<&Value>) -> CheckRequest {
    let mut request = request_at("/mcp", Some(authorization));
    let http = http_mut(&mut request);
    http.method = "POST".into();
    http.headers
        .insert("content-type".into(), "application/json".into());
    http.headers.insert(
        "accept".into(),
        "application/json, text/event-stream".into(),
    );
    for (name, value) in headers {
        http.headers.insert((*name).into(), (*value).into());
    }
    if let Some(body) = body {
        http.body = body.to_string();
    }
    request
}

fn tool_call(name: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": {}}})
}

#[tokio::test(flavor = "multi_thread")]
async fn tools_are_authorized_one_by_one() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let (authz, _config) = serve(&idp, "").await;
    let tools = bearer(&idp, "mcp mcp:tools");
    let admin = bearer(&idp, "mcp mcp:tools mcp:admin");
    let headers = |name: &'static str| [("mcp-method", "tools/call"), ("mcp-name", name)];

    let search = tool_call("search");
    assert_allowed(
        &authz
            .check(call(&tools, &headers("search"), Some(&search)))
            .await,
    );
    let reset = tool_call("admin_reset");
    let denied = assert_denied(
        &authz
            .check(call(&tools, &headers("admin_reset"), Some(&reset)))
            .await,
        403,
        "insufficient_scope",
    );
    // The challenge names the scopes this operation needs, not every scope of the server.
    assert_eq!(
        denied["www-authenticate"],
        "Bearer realm=\"jwt-authz\", error=\"insufficient_scope\", scope=\"mcp:admin\""
    );
    assert_allowed(
        &authz
            .check(call(&admin, &headers("admin_reset"), Some(&reset)))
            .await,
    );
    // Without the body: refused by default (`body: required`); with `body: when_sent`
    // the headers decide.
    assert_denied(
        &authz
            .check(call(&admin, &headers("admin_reset"), None))
            .await,
        403,
        "access_denied",
    );
    let (lenient, _c) = serve(&idp, "  body: when_sent\n").await;
    assert_allowed(
        &lenient
            .check(call(&admin, &headers("admin_reset"), None))
            .await,
    );
    // Other methods take the endpoint's rule.
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    assert_allowed(
        &authz
            .check(call(
                &bearer(&idp, "mcp"),
                &[("mcp-method", "tools/list")],
                Some(&list),
            ))
            .await,
    );
    let secret = json!({"jsonrpc": "2.0", "id": 2, "method": "resources/read", "params": {"uri": "file:///secret/keys"}});
    assert_denied(
        &authz
            .check(call(
                &admin,
                &[
                    ("mcp-method", "resources/read"),
                    ("mcp-name", "file:///secret/keys"),
                ],
                Some(&secret),
            ))
            .await,
        403,
        "access_denied",
    );
    // A tool name outside ASCII comes Base64-wrapped, and matches as decoded.
    let unicode = tool_call("admin_tööl");
    let response = authz
        .check(call(
            &tools,
            &[
                ("mcp-method", "tools/call"),
                ("mcp-name", "=?base64?YWRtaW5fdMO2w7Zs?="),
            ],
            Some(&unicode),
        ))
        .await;
    assert_denied(&response, 403, "insufficient_scope");
}

/// Every way the headers and the body could name two operations, or none clearly, is
/// refused before any rule decides (403 `access_denied`), whatever the token allows.
#[tokio::test(flavor = "multi_thread")]
async fn headers_and_body_that_disagree_are_refused() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let (authz, _config) = serve(&idp, "").await;
    let everything = bearer(&idp, "mcp mcp:tools mcp:admin");
    let safe = tool_call("search");
    let admin = tool_call("admin_reset");
    let raw = |text: &str| Value::String(text.to_owned());
    // What, the headers, the body.
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Option<Value>);
    let cases: Vec<Case> = vec![
        (
            "no Mcp-Method",
            vec![("mcp-name", "search")],
            Some(safe.clone()),
        ),
        (
            "no Mcp-Name for a tool call",
            vec![("mcp-method", "tools/call")],
            Some(safe.clone()),
        ),
        (
            "the header names a safe tool, the body an admin one",
            vec![("mcp-method", "tools/call"), ("mcp-name", "search")],
            Some(admin.clone()),
        ),
        (
            "the header names another method",
            vec![("mcp-method", "tools/list")],
            Some(admin.clone()),
        ),
        (
            "a name for a method that names nothing",
            vec![("mcp-method", "tools/list"), ("mcp-name", "search")],
            None,
        ),
        (
            "a batch",
            vec![("mcp-method", "tools/call"), ("mcp-name", "search")],
            Some(json!([safe.clone(), admin.clone()])),
        ),
        (
            "an escaped name",
            vec![("mcp-method", "tools/call"), ("mcp-name", "admin_reset")],
            Some(raw(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\u0061dmin_reset"}}"#,
            )),
        ),
        (
            "a repeated name",
            vec![("mcp-method", "tools/call"), ("mcp-name", "search")],
            Some(raw(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","name":"admin_reset"}}"#,
            )),
        ),
        (
            "a body that is not JSON",
            vec![("mcp-method", "tools/call"), ("mcp-name", "search")],
            Some(raw("search")),
        ),
        (
            "a name with a trailing space",
            vec![("mcp-method", "tools/call"), ("mcp-name", "search ")],
            None,
        ),
        (
            "a dotted spelling of Mcp-Name",
            vec![
                ("mcp-method", "tools/call"),
                ("mcp-name", "search"),
                ("mcp.name", "admin_reset"),
            ],
            Some(safe.clone()),
        ),
        (
            "a body the server would decode as UTF-7",
            vec![
                ("mcp-method", "tools/list"),
                ("content-type", "application/json; charset=utf-7"),
            ],
            Some(raw(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","+AG0-ethod":"tools/call","params":{"name":"admin_reset"}}"#,
            )),
        ),
        (
            "a gzip body",
            vec![
                ("mcp-method", "tools/call"),
                ("mcp-name", "search"),
                ("content-encoding", "gzip"),
            ],
            Some(safe.clone()),
        ),
        (
            "members a case-insensitive reader takes for one",
            vec![("mcp-method", "tools/call"), ("mcp-name", "search")],
            Some(raw(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","NAME":"admin_reset"}}"#,
            )),
        ),
        (
            "a body Envoy cut short",
            vec![
                ("mcp-method", "tools/call"),
                ("mcp-name", "search"),
                ("x-envoy-auth-partial-body", "true"),
            ],
            Some(safe.clone()),
        ),
    ];
    for (what, headers, body) in &cases {
        let body = body.as_ref().map(|b| match b {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        });
        let mut request = call(&everything, headers, None);
        if let Some(body) = body {
            http_mut(&mut request).body = body;
        }
        let response = authz.check(request).await;
        assert!(!allows(&response), "{what}: allowed");
        assert_denied(&response, 403, "access_denied");
    }

    // A body over the bound is refused too.
    let long = tool_call(&"s".repeat(100));
    let (small, _c2) = {
        let text = format!(
            "issuers:\n  - {{issuer: \"{}\", audiences: [\"{AUDIENCE}\"], jwks_uri: \"{}\"}}\nmcp:\n  endpoints: [/mcp]\n  max_body_bytes: 64\n",
            idp.issuer(),
            idp.jwks_uri()
        );
        let config = TempFile::new("mcp-small.yaml", text);
        let authz = Authz::start(&["--config", config.as_str()]).await;
        authz.wait_serving().await;
        (authz, config)
    };
    let name = "s".repeat(100);
    let response = small
        .check(call(
            &everything,
            &[("mcp-method", "tools/call"), ("mcp-name", &name)],
            Some(&long),
        ))
        .await;
    assert_denied(&response, 403, "access_denied");
}

/// The endpoint in another case is the endpoint to a server that ignores case: refused,
/// since its operation would go unread.
#[tokio::test(flavor = "multi_thread")]
async fn the_endpoint_in_another_case_is_refused() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let (authz, _config) = serve(&idp, "").await;
    let everything = bearer(&idp, "mcp mcp:tools mcp:admin");
    for path in ["/MCP", "/Mcp/"] {
        let mut request = call(
            &everything,
            &[("mcp-method", "tools/call"), ("mcp-name", "admin_reset")],
            Some(&tool_call("admin_reset")),
        );
        let http = http_mut(&mut request);
        http.path = path.into();
        http.headers.insert(":path".into(), path.into());
        assert_denied(&authz.check(request).await, 403, "access_denied");
    }
}
