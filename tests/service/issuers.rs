//! Several issuers from the configuration file, RFC 9068 access-token typing, and the
//! claims forwarded as dynamic metadata, over the real gRPC API.

use jsonwebtoken::{Algorithm, Header};
use jwt_authz::testkit::*;
use jwt_authz::wire::proto::HttpResponse;
use prost_types::value::Kind;
use serde_json::json;

fn write_config(name: &str, text: &str) -> TempFile {
    TempFile::new(&format!("{name}.yaml"), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_from_each_configured_issuer_verify_with_their_own_keys() {
    let a = Idp::start(vec![key("rsa-1").jwk]).await;
    let b = Idp::start(vec![key("ec-256").jwk]).await;
    let path = write_config(
        "two",
        &format!(
            "issuers:\n  - issuer: {}\n    audiences: [\"{AUDIENCE}\"]\n    jwks_uri: {}\n  - issuer: {}\n    audiences: [other-api]\n    jwks_uri: {}\n    algorithms: [ES256]\n",
            a.issuer(),
            a.jwks_uri(),
            b.issuer(),
            b.jwks_uri()
        ),
    );
    let authz = Authz::start(&["--config", path.to_str().unwrap()]).await;
    authz.wait_serving().await;

    assert_allowed(
        &authz
            .check_token(&mint(&key("rsa-1"), &claims(&a.issuer())))
            .await,
    );
    let mut cb = claims(&b.issuer());
    cb["aud"] = json!("other-api");
    assert_allowed(&authz.check_token(&mint(&key("ec-256"), &cb)).await);

    // Each issuer has its own audiences and algorithms.
    assert_denied(
        &authz
            .check_token(&mint(&key("ec-256"), &claims(&b.issuer())))
            .await,
        401,
        "invalid_claims",
    );
    let mut ca = claims(&a.issuer());
    ca["aud"] = json!("other-api");
    assert_denied(
        &authz.check_token(&mint(&key("rsa-1"), &ca)).await,
        401,
        "invalid_claims",
    );
    // B's key cannot vouch for A's issuer: A's JWKS has no such kid.
    let cross = mint(&key("ec-256"), &claims(&a.issuer()));
    assert_denied(&authz.check_token(&cross).await, 401, "invalid_header");

    // An unknown issuer is refused before any fetch.
    let (ha, hb) = (a.jwks_hits(), b.jwks_hits());
    let stranger = mint(&key("rsa-1"), &claims("https://stranger.example/"));
    assert_denied(&authz.check_token(&stranger).await, 401, "invalid_claims");
    assert_eq!((a.jwks_hits(), b.jwks_hits()), (ha, hb));
    let _ = std::fs::remove_file(path);
}

#[tokio::test(flavor = "multi_thread")]
async fn issuer_requiring_at_jwt_refuses_id_tokens() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(&idp, &["--require-access-token-type"]).await;
    let c = claims(&idp.issuer());
    let rsa = key("rsa-1");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    header.typ = Some("at+jwt".into());
    assert_allowed(
        &authz
            .check_token(&mint_header(&header, &c, &rsa.encoding))
            .await,
    );
    header.typ = Some("JWT".into());
    let id_token = mint_header(&header, &c, &rsa.encoding);
    assert_denied(&authz.check_token(&id_token).await, 401, "invalid_claims");
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_claims_are_sent_as_dynamic_metadata() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let path = write_config(
        "meta",
        &format!(
            "issuers:\n  - issuer: {}\n    audiences: [\"{AUDIENCE}\"]\n    jwks_uri: {}\nupstream:\n  metadata_claims: [sub, scope, org]\n",
            idp.issuer(),
            idp.jwks_uri()
        ),
    );
    let authz = Authz::start(&["--config", path.to_str().unwrap()]).await;
    authz.wait_serving().await;
    let mut c = claims(&idp.issuer());
    c["org"] = json!({"id": 7});
    let response = authz.check_token(&mint(&key("rsa-1"), &c)).await;
    assert_allowed(&response);
    let metadata = response.dynamic_metadata.expect("dynamic metadata");
    assert_eq!(
        metadata.fields["sub"].kind,
        Some(Kind::StringValue("auth0|user-1".into()))
    );
    assert_eq!(
        metadata.fields["scope"].kind,
        Some(Kind::StringValue("openid read:messages".into()))
    );
    assert!(matches!(
        metadata.fields["org"].kind,
        Some(Kind::StructValue(_))
    ));
    // The deprecated ok_response.dynamic_metadata stays unset: it would override this one.
    let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
        panic!()
    };
    #[allow(deprecated)]
    let deprecated = &ok.dynamic_metadata;
    assert!(deprecated.is_none());
    // Denials carry no metadata.
    assert!(
        authz
            .check(request(None, None))
            .await
            .dynamic_metadata
            .is_none()
    );
    let _ = std::fs::remove_file(path);
}
