//! Proxyless gRPC (gRFC A92): a gRPC server calls Check itself, with `header_map`, `path`,
//! `POST` and `HTTP/2` only: no host, scheme, id, query or context extensions. `grpc`
//! rules decide by service and method, a host-bound policy fails closed, DPoP needs the
//! configured public URL, and certificate-bound tokens use the peer certificate.

use jwt_authz::testkit::*;
use serde_json::json;

const ORDERS_GET: &str = "/shop.v1.Orders/GetOrder";

fn metadata(authorization: &str) -> Vec<(&str, &str)> {
    vec![
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("user-agent", "grpc-java-netty/1.72.0"),
        ("grpc-accept-encoding", "gzip"),
        ("authorization", authorization),
    ]
}

fn token(idp: &Idp, scope: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut c = claims(&idp.issuer());
    c["scope"] = json!(scope);
    edit(&mut c);
    mint(&key("rsa-1"), &c)
}

async fn serve(idp: &Idp, extra: &str) -> (Authz, TempFile) {
    let text = format!(
        "issuers:\n  - {{issuer: \"{}\", audiences: [\"{AUDIENCE}\"], jwks_uri: \"{}\", dpop: allowed}}\n\
         routes:\n  - {{grpc: \"shop.v1.Orders/Get*\", scopes: {{all_of: [\"orders:read\"]}}}}\n  - {{grpc: \"shop.v1.Orders/*\", scopes: {{all_of: [\"orders:write\"]}}}}\n  - {{grpc: \"grpc.health.v1.Health/Check\", allow_anonymous: true}}\n{extra}",
        idp.issuer(),
        idp.jwks_uri()
    );
    let config = TempFile::new("proxyless.yaml", text);
    let authz = Authz::start(&["--config", config.as_str()]).await;
    authz.wait_serving().await;
    (authz, config)
}

/// `grpc` rules decide a proxyless call by its method; the denial is the HTTP status the
/// gRPC server maps to UNAUTHENTICATED or PERMISSION_DENIED.
#[tokio::test(flavor = "multi_thread")]
async fn proxyless_calls_are_decided_by_grpc_rules() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let (authz, _config) = serve(&idp, "").await;
    let reader = format!("Bearer {}", token(&idp, "orders:read", |_| {}));
    let check = |path: &str, authorization: &str| {
        authz.check(proxyless_request(path, &metadata(authorization), None))
    };
    assert_allowed(&check(ORDERS_GET, &reader).await);
    assert_allowed(&check("/shop.v1.Orders/GetOrderItems", &reader).await);
    let denied = assert_denied(
        &check("/shop.v1.Orders/CancelOrder", &reader).await,
        403,
        "insufficient_scope",
    );
    // The challenge names what this method needs.
    assert!(
        denied["www-authenticate"].contains("scope=\"orders:write\""),
        "{denied:?}"
    );
    assert_denied(
        &check(ORDERS_GET, "Bearer garbage").await,
        401,
        "invalid_header",
    );
    let anonymous = authz
        .check(proxyless_request(
            "/grpc.health.v1.Health/Check",
            &[("content-type", "application/grpc")],
            None,
        ))
        .await;
    assert_allowed(&anonymous);
    let missing = authz
        .check(proxyless_request(
            ORDERS_GET,
            &[("content-type", "application/grpc")],
            None,
        ))
        .await;
    let headers = assert_denied(&missing, 401, "authorization_header_missing");
    // A gRPC caller's denial carries the description as its message, and no content
    // type that would replace `application/grpc`.
    assert!(!headers.contains_key("content-type"), "{headers:?}");
    let Decision::Deny { body, .. } = decision(&missing) else {
        unreachable!()
    };
    assert_eq!(body, json!("Authorization header is expected"));
    // A `grpc` rule takes every method: a server dispatches on the path alone.
    let mut put = proxyless_request("/shop.v1.Orders/CancelOrder", &metadata(&reader), None);
    put.attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http
        .as_mut()
        .unwrap()
        .method = "PUT".into();
    assert_denied(&authz.check(put).await, 403, "insufficient_scope");
    // Methods only case tells apart, and paths outside the canonical grammar, are refused
    // (an escape of an unreserved character reads as the character, as for any path).
    for path in [
        "/shop.v1.Orders/getorder",
        "/shop.v1.Orders//GetOrder",
        "/shop.v1.Orders/Get%2fOrder",
        "/shop.v1.Orders/../Orders/GetOrder",
    ] {
        let response = check(path, &reader).await;
        assert!(!allows(&response), "{path} allowed");
    }
}

/// Without a host, a policy with a host-bound rule cannot say which rules apply: every
/// call is refused. DPoP needs `dpop.public_base_url` to know the `htu` (the request says
/// neither scheme nor host); certificate-bound tokens use the peer certificate.
#[tokio::test(flavor = "multi_thread")]
async fn what_a_proxyless_call_cannot_say_fails_closed() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let reader = format!("Bearer {}", token(&idp, "orders:read", |_| {}));

    let (hosted, _c) = serve(
        &idp,
        "  - {host: admin.example.com, path_prefix: /, deny: true}\n",
    )
    .await;
    let response = hosted
        .check(proxyless_request(ORDERS_GET, &metadata(&reader), None))
        .await;
    assert_denied(&response, 403, "access_denied");

    let (authz, _c) = serve(&idp, "").await;
    let holder = proof_key("ec-256");
    let bound = token(&idp, "orders:read", |c| {
        c["cnf"] = json!({"jkt": holder.thumbprint()});
    });
    let dpop = format!("DPoP {bound}");
    let sign = || {
        holder.proof(
            "POST",
            "https://orders.internal/shop.v1.Orders/GetOrder",
            Some(&bound),
        )
    };
    let proof = sign();
    let mut with_proof = metadata(&dpop);
    with_proof.push(("dpop", &proof));
    let response = authz
        .check(proxyless_request(ORDERS_GET, &with_proof, None))
        .await;
    assert_denied(&response, 401, "invalid_dpop_proof");

    let (public, _c) = serve(
        &idp,
        "dpop: {public_base_url: \"https://orders.internal\"}\n",
    )
    .await;
    // A proof made after this replica started: one issued before its replay store was
    // complete is refused (on a loaded machine the start can take longer than the skew).
    let proof = sign();
    let mut with_proof = metadata(&dpop);
    with_proof.push(("dpop", &proof));
    let response = public
        .check(proxyless_request(ORDERS_GET, &with_proof, None))
        .await;
    assert_allowed(&response);

    let dir = std::env::temp_dir().join(format!("jwt-authz-proxyless-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = client_certificate(&dir);
    let bound = token(&idp, "orders:read", |c| {
        c["cnf"] = json!({"x5t#S256": certificate_thumbprint(&cert.der)});
    });
    let bearer = format!("Bearer {bound}");
    let with_cert = authz
        .check(proxyless_request(
            ORDERS_GET,
            &metadata(&bearer),
            Some(&cert.cert_pem),
        ))
        .await;
    assert_allowed(&with_cert);
    let without = authz
        .check(proxyless_request(ORDERS_GET, &metadata(&bearer), None))
        .await;
    assert_denied(&without, 401, "invalid_token");
    std::fs::remove_dir_all(dir).unwrap();
}
