//! A real gRPC service (tonic's health and reflection services) behind the shipped
//! `envoy/envoy-grpc.yaml`, protected by `grpc:` route rules, called by the real
//! `grpcurl`: a refused call is the gRPC status a client understands (UNAUTHENTICATED,
//! PERMISSION_DENIED, UNAVAILABLE) with the description as its message.

use std::process::Command;

use jwt_authz::testkit::*;
use serde_json::json;
use tokio::net::TcpListener;

use crate::envoy::{Envoy, TempDir, with_ports};

const SHIPPED: &str = include_str!("../../envoy/envoy-grpc.yaml");

/// grpcurl's exit status, standard output and error.
async fn grpcurl(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let output = Command::new(tool("GRPCURL", "bin/grpcurl"))
            .args(&args)
            .output()
            .expect("run grpcurl");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// A gRPC server on loopback with the health service (SERVING) and reflection.
async fn grpc_upstream() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(reflection)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_callers_get_grpc_statuses_through_envoy() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let config = TempFile::new(
        "grpc-services.yaml",
        format!(
            "issuers:\n  - {{issuer: \"{}\", audiences: [\"{AUDIENCE}\"], jwks_uri: \"{}\"}}\n\
             routes:\n  - {{grpc: \"grpc.reflection.v1alpha.ServerReflection/*\", allow_anonymous: true}}\n  - {{grpc: \"grpc.health.v1.Health/Check\", scopes: {{all_of: [\"health:read\"]}}}}\n  - {{grpc: \"grpc.health.v1.Health/*\", deny: true}}\n",
            idp.issuer(),
            idp.jwks_uri()
        ),
    );
    let authz = Authz::start(&["--config", config.as_str()]).await;
    authz.wait_serving().await;
    let upstream = grpc_upstream().await;
    let (listener, admin) = (free_port(), free_port());
    let bootstrap = with_ports(
        SHIPPED,
        &[
            (8080, listener),
            (9901, admin),
            (9191, authz.addr.port()),
            (50051, upstream.port()),
        ],
    );
    let envoy = Envoy::run(&bootstrap, listener, admin, TempDir::new("grpc")).await;
    envoy.wait_authz_healthy().await;
    let target = format!("127.0.0.1:{listener}");
    let call = |authorization: Option<String>, method: &str| {
        let mut args = vec!["-plaintext".to_owned()];
        if let Some(value) = authorization {
            args.extend(["-H".to_owned(), format!("authorization: {value}")]);
        }
        args.extend([target.clone(), method.to_owned()]);
        grpcurl(args)
    };
    let token = |scope: &str| {
        let mut c = claims(&idp.issuer());
        c["scope"] = json!(scope);
        Some(format!("Bearer {}", mint(&key("rsa-1"), &c)))
    };

    let (ok, out, err) = call(token("health:read"), "grpc.health.v1.Health/Check").await;
    assert!(ok, "allowed call failed: {err}");
    assert!(out.contains("\"status\": \"SERVING\""), "{out}");

    for (authorization, method, status, message) in [
        (
            None,
            "grpc.health.v1.Health/Check",
            "Unauthenticated",
            "Authorization header is expected",
        ),
        (
            Some("Bearer not-a-token".to_owned()),
            "grpc.health.v1.Health/Check",
            "Unauthenticated",
            "Unable to parse authentication token.",
        ),
        (
            token("other"),
            "grpc.health.v1.Health/Check",
            "PermissionDenied",
            "You don't have access to this resource.",
        ),
        (
            token("health:read"),
            "grpc.health.v1.Health/Watch",
            "PermissionDenied",
            "This resource is not accessible.",
        ),
    ] {
        let (ok, out, err) = call(authorization, method).await;
        assert!(!ok, "{method} allowed: {out}");
        assert!(err.contains(&format!("Code: {status}")), "{method}: {err}");
        assert!(
            err.contains(&format!("Message: {message}")),
            "{method}: {err}"
        );
    }

    // The service stopped: Envoy's own failure, status_on_error 503, is UNAVAILABLE
    // (grpcurl meets it first on its reflection call, which is checked too).
    authz.stop().await.unwrap();
    let (ok, _, err) = call(token("health:read"), "grpc.health.v1.Health/Check").await;
    assert!(!ok);
    assert!(
        err.contains("code = Unavailable") || err.contains("Code: Unavailable"),
        "{err}"
    );
}
