//! The real `grpcurl` 1.8.6 (reflection v1alpha only) against the running server, with no
//! proto files: what an operator types to poke at the service.

use std::process::Command;

use jwt_authz::testkit::*;

fn grpcurl(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(tool("GRPCURL", "bin/grpcurl"))
        .args(args)
        .output()
        .expect("run grpcurl");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_lists_and_describes_through_reflection() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(&idp, &[]).await;
    let addr = authz.addr.to_string();
    let (ok, out, err) = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || grpcurl(&["-plaintext", &addr, "list"])
    })
    .await
    .unwrap();
    assert!(ok, "grpcurl list failed: {err}");
    for service in [
        "envoy.service.auth.v3.Authorization",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            out.lines().any(|l| l == service),
            "{service} missing from:\n{out}"
        );
    }
    let (ok, out, err) = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || {
            grpcurl(&[
                "-plaintext",
                &addr,
                "describe",
                "envoy.service.auth.v3.CheckResponse",
            ])
        }
    })
    .await
    .unwrap();
    assert!(ok, "grpcurl describe failed: {err}");
    assert!(out.contains("error_response = 5"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_check_allows_and_denies() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(&idp, &[]).await;
    let addr = authz.addr.to_string();
    let token = mint(&key("rsa-1"), &claims(&idp.issuer()));
    let body = |auth: &str, scopes: &str| {
        serde_json::json!({
            "attributes": {
                "request": {"http": {"method": "GET", "path": "/api/private",
                    "headers": {"authorization": auth}}},
                "contextExtensions": {"required_scopes": scopes}
            }
        })
        .to_string()
    };
    let run = |data: String| {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            grpcurl(&[
                "-plaintext",
                "-d",
                &data,
                &addr,
                "envoy.service.auth.v3.Authorization/Check",
            ])
        })
    };
    let (ok, out, err) = run(body(&format!("Bearer {token}"), "read:messages"))
        .await
        .unwrap();
    assert!(ok, "{err}");
    let allow: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        allow["okResponse"]["headers"][0]["header"]["key"],
        "x-jwt-sub"
    );
    assert_eq!(
        allow["okResponse"]["headers"][0]["header"]["value"],
        "auth0|user-1"
    );

    let (ok, out, err) = run(body(&format!("Bearer {token}"), "admin"))
        .await
        .unwrap();
    assert!(ok, "{err}");
    let deny: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(deny["status"]["code"], 7);
    assert_eq!(deny["deniedResponse"]["status"]["code"], "Forbidden");
    let body: serde_json::Value =
        serde_json::from_str(deny["deniedResponse"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["code"], "insufficient_scope");
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_health_check_reports_serving() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(&idp, &[]).await;
    let addr = authz.addr.to_string();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        grpcurl(&["-plaintext", &addr, "grpc.health.v1.Health/Check"])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("\"SERVING\""), "{out}");
}
