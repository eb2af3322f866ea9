//! The Check RPC over a real socket against a real HTTP JWKS: every row of the bearer and
//! verification tables, scopes, claim headers and raw headers.

use jsonwebtoken::Algorithm;
use jwt_authz::testkit::*;
use serde_json::json;

async fn setup() -> (Idp, Authz) {
    let idp = Idp::start(vec![key("rsa-1").jwk, key("ec-256").jwk]).await;
    let authz = Authz::start_for(&idp, &[]).await;
    (idp, authz)
}

#[tokio::test(flavor = "multi_thread")]
#[allow(deprecated)]
async fn valid_token_is_allowed_with_sub_header() {
    let (idp, authz) = setup().await;
    let token = mint(&key("rsa-1"), &claims(&idp.issuer()));
    let response = authz.check_token(&token).await;
    let headers = assert_allowed(&response);
    assert_eq!(
        headers.get("x-jwt-sub").map(String::as_str),
        Some("auth0|user-1")
    );
    // The header is set with overwrite semantics and `append` left unset.
    let Some(jwt_authz::wire::proto::HttpResponse::OkResponse(ok)) = &response.http_response else {
        panic!()
    };
    assert_eq!(ok.headers[0].append, None);
    assert_eq!(ok.headers[0].append_action, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_without_sub_strips_the_inbound_header() {
    let (idp, authz) = setup().await;
    let mut c = claims(&idp.issuer());
    c.as_object_mut().unwrap().remove("sub");
    match decision(&authz.check_token(&mint(&key("rsa-1"), &c)).await) {
        Decision::Allow { headers, remove } => {
            assert!(headers.is_empty());
            assert_eq!(remove, ["x-jwt-sub", "x_jwt-sub", "x-jwt_sub", "x_jwt_sub"]);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_header_is_401_with_a_challenge() {
    let (_idp, authz) = setup().await;
    let response = authz.check(request(None, None)).await;
    let headers = assert_denied(&response, 401, "authorization_header_missing");
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"jwt-authz\"");
    let Decision::Deny { body, .. } = decision(&response) else {
        panic!()
    };
    assert_eq!(
        body,
        json!({"code": "authorization_header_missing", "description": "Authorization header is expected"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_table_rows_are_invalid_header() {
    let (idp, authz) = setup().await;
    let token = mint(&key("rsa-1"), &claims(&idp.issuer()));
    let cases = [
        format!("Basic {token}"),
        "Bearer".to_owned(),
        "Bearer   ".to_owned(),
        format!("Bearer {token} extra"),
        format!("Bearer {token},Bearer {token}"),
        format!("Token {token}"),
    ];
    for value in &cases {
        let response = authz.check(request(Some(value), None)).await;
        let headers = assert_denied(&response, 401, "invalid_header");
        assert!(headers["www-authenticate"].contains("error=\"invalid_token\""));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lowercase_bearer_still_works() {
    let (idp, authz) = setup().await;
    let token = mint(&key("rsa-1"), &claims(&idp.issuer()));
    assert_allowed(
        &authz
            .check(request(Some(&format!("bearer {token}")), None))
            .await,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn undecodable_tokens_are_invalid_header() {
    let (idp, authz) = setup().await;
    let token = mint(&key("rsa-1"), &claims(&idp.issuer()));
    let parts: Vec<&str> = token.split('.').collect();
    let cases = [
        "abc".to_owned(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{token}.extra"),
        format!("!!!.{}.{}", parts[1], parts[2]),
        format!("{}.%%%.{}", parts[0], parts[2]),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}", "bm90IGpzb24", parts[1], parts[2]),
        format!(".{}.{}", parts[1], parts[2]),
    ];
    for token in &cases {
        assert_denied(&authz.check_token(token).await, 401, "invalid_header");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_truncation_of_a_valid_token_is_rejected() {
    let (idp, authz) = setup().await;
    let token = mint(&key("rsa-1"), &claims(&idp.issuer()));
    for len in (1..token.len()).step_by(7) {
        let response = authz.check_token(&token[..len]).await;
        assert!(
            matches!(decision(&response), Decision::Deny { http: 401, .. }),
            "truncation to {len} was not a 401"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn disallowed_algorithms_are_invalid_header() {
    let (idp, authz) = setup().await;
    let c = claims(&idp.issuer());
    // ES256 is a real key in the JWKS, but only RS256 is allowed by default.
    let es = mint(&key("ec-256"), &c);
    assert_denied(&authz.check_token(&es).await, 401, "invalid_header");
    for alg in ["none", "None", "NONE", "nOnE"] {
        let token = forge(&json!({"alg": alg, "kid": "rsa-1"}), &c, b"");
        assert_denied(&authz.check_token(&token).await, 401, "invalid_header");
        let token = format!("{}.", &token[..token.len() - 1]);
        assert_denied(&authz.check_token(&token).await, 401, "invalid_header");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hs256_signed_with_the_public_key_is_refused() {
    let (idp, authz) = setup().await;
    let c = claims(&idp.issuer());
    // The classic confusion: HMAC keyed with the RSA public key's bytes.
    let n = key("rsa-1").jwk["n"].as_str().unwrap().to_owned();
    let secret = jsonwebtoken::EncodingKey::from_secret(n.as_bytes()).unwrap();
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let token = mint_header(&header, &c, &secret);
    assert_denied(&authz.check_token(&token).await, 401, "invalid_header");
}

#[tokio::test(flavor = "multi_thread")]
async fn key_of_another_type_is_never_used() {
    let idp = Idp::start(vec![key("rsa-1").jwk, key("ec-256").jwk]).await;
    let authz = Authz::start_for(&idp, &["--algorithms", "RS256,ES256"]).await;
    let c = claims(&idp.issuer());
    // Signed by the EC key but naming the RSA key's kid.
    let token = mint_with(&key("ec-256"), Algorithm::ES256, Some("rsa-1"), &c);
    assert_denied(&authz.check_token(&token).await, 401, "invalid_header");
    assert_allowed(&authz.check_token(&mint(&key("ec-256"), &c)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_signature_is_invalid_token() {
    let (idp, authz) = setup().await;
    let c = claims(&idp.issuer());
    // Signed by rsa-2, which is not in the JWKS, under rsa-1's kid.
    let token = mint_with(&key("rsa-2"), Algorithm::RS256, Some("rsa-1"), &c);
    let headers = assert_denied(&authz.check_token(&token).await, 401, "invalid_token");
    assert!(headers["www-authenticate"].contains("error=\"invalid_token\""));
    // A flipped byte in the signature.
    let mut good = mint(&key("rsa-1"), &c).into_bytes();
    let last = good.len() - 5;
    good[last] = if good[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(good).unwrap();
    assert_denied(&authz.check_token(&flipped).await, 401, "invalid_token");
    // A payload swapped under a valid signature.
    let mut other = c.clone();
    other["sub"] = json!("admin");
    let forged = mint(&key("rsa-1"), &other);
    let valid = mint(&key("rsa-1"), &c);
    let (v, f): (Vec<&str>, Vec<&str>) = (valid.split('.').collect(), forged.split('.').collect());
    let spliced = format!("{}.{}.{}", v[0], f[1], v[2]);
    assert_denied(&authz.check_token(&spliced).await, 401, "invalid_token");
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_token_is_token_expired() {
    let (idp, authz) = setup().await;
    let mut c = claims(&idp.issuer());
    c["exp"] = json!(now() - 61 - 5);
    let headers = assert_denied(
        &authz.check_token(&mint(&key("rsa-1"), &c)).await,
        401,
        "token_expired",
    );
    assert!(headers["www-authenticate"].contains("error=\"invalid_token\""));
    // Within the 60 s leeway it still passes.
    c["exp"] = json!(now() - 30);
    assert_allowed(&authz.check_token(&mint(&key("rsa-1"), &c)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn claim_failures_are_invalid_claims() {
    let (idp, authz) = setup().await;
    let base = claims(&idp.issuer());
    let mut cases = Vec::new();
    let mut c = base.clone();
    c["iss"] = json!("https://evil.example/");
    cases.push(("wrong iss", c));
    let mut c = base.clone();
    c["aud"] = json!("https://other.example.com");
    cases.push(("wrong aud", c));
    let mut c = base.clone();
    c["nbf"] = json!(now() + 3600);
    cases.push(("nbf ahead", c));
    let mut c = base.clone();
    c.as_object_mut().unwrap().remove("exp");
    cases.push(("no exp", c));
    let mut c = base.clone();
    c.as_object_mut().unwrap().remove("aud");
    cases.push(("no aud", c));
    let mut c = base.clone();
    c.as_object_mut().unwrap().remove("iss");
    cases.push(("no iss", c));
    let mut c = base.clone();
    c["exp"] = json!(format!("{}", now() + 300));
    cases.push(("exp as string", c));
    for (name, c) in cases {
        let response = authz.check_token(&mint(&key("rsa-1"), &c)).await;
        match decision(&response) {
            Decision::Deny {
                http: 401, code, ..
            } => assert_eq!(code, "invalid_claims", "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn audience_array_matches_any_entry() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(&idp, &["--audience", "https://second.example.com"]).await;
    let mut c = claims(&idp.issuer());
    c["aud"] = json!(["https://unrelated", "https://second.example.com"]);
    assert_allowed(&authz.check_token(&mint(&key("rsa-1"), &c)).await);
    c["aud"] = json!(["https://unrelated"]);
    assert_denied(
        &authz.check_token(&mint(&key("rsa-1"), &c)).await,
        401,
        "invalid_claims",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_scope_is_403_and_names_the_scope() {
    let (idp, authz) = setup().await;
    let token = mint(&key("rsa-1"), &claims(&idp.issuer()));
    let auth = format!("Bearer {token}");
    assert_allowed(
        &authz
            .check(request(Some(&auth), Some("read:messages")))
            .await,
    );
    let response = authz
        .check(request(Some(&auth), Some("read:messages write:messages")))
        .await;
    let headers = assert_denied(&response, 403, "insufficient_scope");
    assert_eq!(
        headers["www-authenticate"],
        "Bearer realm=\"jwt-authz\", error=\"insufficient_scope\", scope=\"read:messages write:messages\""
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scopes_are_read_from_scp_and_permissions() {
    let (idp, authz) = setup().await;
    let mut c = claims(&idp.issuer());
    c.as_object_mut().unwrap().remove("scope");
    c["scp"] = json!(["read:messages"]);
    c["permissions"] = json!(["delete:messages"]);
    let auth = format!("Bearer {}", mint(&key("rsa-1"), &c));
    assert_allowed(
        &authz
            .check(request(Some(&auth), Some("read:messages delete:messages")))
            .await,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_supported_algorithm_verifies_when_allowed() {
    let idp = Idp::start(vec![
        key("rsa-2").jwk,
        key("ec-256").jwk,
        key("ec-384").jwk,
        key("ed-1").jwk,
    ])
    .await;
    let algs = "RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,EdDSA";
    let authz = Authz::start_for(&idp, &["--algorithms", algs]).await;
    let c = claims(&idp.issuer());
    let rsa = key("rsa-2");
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ] {
        let token = mint_with(&rsa, alg, Some("rsa-2"), &c);
        assert_allowed(&authz.check_token(&token).await);
    }
    for kid in ["ec-256", "ec-384", "ed-1"] {
        assert_allowed(&authz.check_token(&mint(&key(kid), &c)).await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn token_without_kid_uses_the_only_fitting_key() {
    let idp = Idp::start(vec![key("rsa-1").jwk, key("ec-256").jwk]).await;
    let authz = Authz::start_for(&idp, &["--algorithms", "RS256,ES256"]).await;
    let c = claims(&idp.issuer());
    assert_allowed(
        &authz
            .check_token(&mint_with(&key("rsa-1"), Algorithm::RS256, None, &c))
            .await,
    );
    // A second RSA key makes a kid-less RS256 token ambiguous.
    idp.update(|s| s.keys.push(key("rsa-2").jwk));
    let hits = idp.jwks_hits();
    let authz2 = Authz::start_for(&idp, &["--algorithms", "RS256,ES256"]).await;
    let token = mint_with(&key("rsa-1"), Algorithm::RS256, None, &c);
    assert_denied(&authz2.check_token(&token).await, 401, "invalid_header");
    // A kid-less token never triggers a fetch of its own.
    assert_eq!(
        idp.jwks_hits(),
        hits + 1,
        "only the second server's initial load"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn key_material_in_the_token_header_is_ignored() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let authz = Authz::start_for(&idp, &[]).await;
    let attacker = Idp::start(vec![key("rsa-2").jwk]).await;
    let c = claims(&idp.issuer());
    let rsa2 = key("rsa-2");
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("rsa-2".into());
    header.jku = Some(attacker.jwks_uri());
    header.x5u = Some(attacker.jwks_uri());
    header.jwk = Some(serde_json::from_value(rsa2.jwk.clone()).unwrap());
    let token = mint_header(&header, &c, &rsa2.encoding);
    assert_denied(&authz.check_token(&token).await, 401, "invalid_header");
    assert_eq!(attacker.jwks_hits(), 0, "jku/x5u must never be fetched");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_critical_header_is_refused() {
    let (idp, authz) = setup().await;
    let c = claims(&idp.issuer());
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    header.crit = Some(vec!["exp-ext".into()]);
    header.extras.insert("exp-ext", json!(true));
    let token = mint_header(&header, &c, &key("rsa-1").encoding);
    assert_denied(&authz.check_token(&token).await, 401, "invalid_header");
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_header_map_is_read_and_duplicates_refused() {
    let (idp, authz) = setup().await;
    let token = format!("Bearer {}", mint(&key("rsa-1"), &claims(&idp.issuer())));
    assert_allowed(&authz.check(raw_request(&[token.as_bytes()])).await);
    let twice = raw_request(&[token.as_bytes(), token.as_bytes()]);
    assert_denied(&authz.check(twice).await, 401, "invalid_header");
    assert_denied(
        &authz.check(raw_request(&[])).await,
        401,
        "authorization_header_missing",
    );
    assert_denied(
        &authz.check(raw_request(&[b"Bearer \xff\xfe"])).await,
        401,
        "invalid_header",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_check_request_is_denied_not_an_error() {
    let (_idp, authz) = setup().await;
    let response = authz
        .check(jwt_authz::wire::proto::CheckRequest::default())
        .await;
    // No path is no request in origin form: refused before any token is looked for.
    assert_denied(&response, 403, "access_denied");
}

/// The server reads Check's request bytes itself (the lean reader): the answer is the one
/// for prost's decoding of the same bytes, and bytes prost refuses are refused as tonic
/// refuses an undecodable message.
#[tokio::test(flavor = "multi_thread")]
async fn encoded_requests_are_answered_as_decoded_ones() {
    use prost::Message;
    let (idp, authz) = setup().await;
    let token = mint(&key("rsa-1"), &claims(&idp.issuer()));
    let mut request = browser_request("/api/private", None, Shape::Full);
    set_authorization(&mut request, &format!("Bearer {token}"));
    let typed = authz.check(request.clone()).await;
    let encoded = authz
        .call_encoded(CHECK_PATH, request.encode_to_vec().into())
        .await
        .expect("Check answers");
    assert_eq!(encoded, typed);
    assert_allowed(&encoded);

    // The same request with one more header, `authorization` again in a later map entry:
    // prost keeps the last value of a repeated key, and so does the server.
    let mut bytes = request.encode_to_vec();
    let http = http_mut(&mut request);
    http.headers.clear();
    http.headers
        .insert("authorization".into(), "Bearer not-a-token".into());
    bytes.extend(request.encode_to_vec());
    let response = authz
        .call_encoded(CHECK_PATH, bytes.into())
        .await
        .expect("Check answers");
    assert_denied(&response, 401, "invalid_header");

    // `method` not UTF-8.
    let not_utf8 = bytes::Bytes::from_static(b"\x0a\x09\x22\x07\x12\x05\x12\x03G\xffT");
    let status = authz
        .call_encoded(CHECK_PATH, not_utf8)
        .await
        .expect_err("undecodable");
    assert_eq!(status.code(), tonic::Code::Internal);
    assert!(
        status
            .message()
            .starts_with("failed to decode Protobuf message"),
        "{status:?}"
    );
    let status = authz
        .call_encoded(
            "/envoy.service.auth.v3.Authorization/Other",
            bytes::Bytes::new(),
        )
        .await
        .expect_err("no such method");
    assert_eq!(status.code(), tonic::Code::Unimplemented);
}
