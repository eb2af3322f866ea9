//! The Shared Signals receiver (RFC 8935 push of RFC 8417 Security Event Tokens) on its own
//! listener, with the in-memory revocation store: a transmitter that signs real SETs with
//! a key of its JWKS, and the Check decisions they change.

use jsonwebtoken::{Algorithm, Header};
use jwt_authz::testkit::*;
use serde_json::{Value, json};

const RECEIVER_AUD: &str = "https://authz.example/ssf";
const PUSH_AUTH: &str = "Bearer push-secret-1";
const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";

/// The service, trusting `idp` for access tokens and, as the SSF transmitter, for SETs
/// signed by its keys.
struct Setup {
    idp: Idp,
    authz: Authz,
    _config: TempFile,
    _auth: TempFile,
}

async fn setup() -> Setup {
    let idp = Idp::start(vec![key("rsa-1").jwk, key("ec-256").jwk]).await;
    let auth = TempFile::new("ssf-auth", format!("{PUSH_AUTH}\n"));
    let text = format!(
        "issuers:\n  - {{issuer: \"{iss}\", audiences: [\"{AUDIENCE}\"], jwks_uri: \"{jwks}\"}}\n\
         revocation:\n  store: memory\n\
         ssf:\n  listen: 127.0.0.1:0\n  transmitters:\n    - issuer: \"{iss}\"\n      jwks_uri: \"{jwks}\"\n      audience: \"{RECEIVER_AUD}\"\n      authorization_file: \"{auth}\"\n",
        iss = idp.issuer(),
        jwks = idp.jwks_uri(),
        auth = auth.as_str(),
    );
    let config = TempFile::new("ssf.yaml", text);
    let authz = Authz::start(&["--config", config.as_str()]).await;
    authz.wait_serving().await;
    Setup {
        idp,
        authz,
        _config: config,
        _auth: auth,
    }
}

fn set_header(kid: &str, alg: Algorithm) -> Header {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    header.typ = Some("secevent+jwt".to_owned());
    header
}

/// A SET from `iss` carrying `events`, issued now, with a fresh `jti`.
fn set_claims(iss: &str, events: Value) -> Value {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    json!({
        "iss": iss,
        "aud": RECEIVER_AUD,
        "iat": now(),
        "jti": format!("set-{}-{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
        "events": events,
    })
}

fn sign(claims: &Value) -> String {
    let k = key("rsa-1");
    mint_header(&set_header(&k.kid, k.alg), claims, &k.encoding)
}

/// POSTs `body` to the receiver; the status and the JSON body (null when empty).
async fn push(authz: &Authz, auth: Option<&str>, content_type: &str, body: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{}/ssf/events", authz.ssf))
        .header("content-type", content_type)
        .body(body.to_owned());
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
    };
    (status, body)
}

async fn push_set(authz: &Authz, set: &str) -> (u16, Value) {
    push(authz, Some(PUSH_AUTH), "application/secevent+jwt", set).await
}

fn token_for(issuer: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut c = claims(issuer);
    c["iat"] = json!(now() - 5);
    edit(&mut c);
    mint(&key("rsa-1"), &c)
}

fn assert_revoked(response: &jwt_authz::wire::proto::CheckResponse) {
    assert_denied(response, 401, "invalid_token");
    let Decision::Deny { body, .. } = decision(response) else {
        unreachable!()
    };
    assert_eq!(body["description"], "The token has been revoked.");
}

/// Each event the receiver acts on revokes exactly the tokens its subject names, issued
/// before it; tokens of other subjects, and tokens issued after, still pass. The verified
/// token cache does not hide a revocation.
#[tokio::test(flavor = "multi_thread")]
async fn security_events_revoke_what_their_subject_names() {
    let s = setup().await;
    let iss = s.idp.issuer();
    let alice = token_for(&iss, |c| c["sub"] = json!("alice"));
    let bob = token_for(&iss, |c| c["sub"] = json!("bob"));
    let session = token_for(&iss, |c| {
        c["sub"] = json!("carol");
        c["sid"] = json!("session-9");
    });
    let other_session = token_for(&iss, |c| {
        c["sub"] = json!("carol");
        c["sid"] = json!("session-10");
    });
    let by_email = token_for(&iss, |c| {
        c["sub"] = json!("dave");
        c["email"] = json!("dave@example.com");
    });
    let by_jti = token_for(&iss, |c| {
        c["sub"] = json!("erin");
        c["jti"] = json!("token-77");
    });
    for token in [&alice, &bob, &session, &other_session, &by_email, &by_jti] {
        // Twice: the second answer comes from the verified-token cache.
        assert_allowed(&s.authz.check_token(token).await);
        assert_allowed(&s.authz.check_token(token).await);
    }

    // RISC account-disabled, iss_sub subject in the SET's sub_id.
    let mut c = set_claims(
        &iss,
        json!({format!("{RISC}account-disabled"): {"reason": "hijacking"}}),
    );
    c["sub_id"] = json!({"format": "iss_sub", "iss": iss, "sub": "alice"});
    assert_eq!(push_set(&s.authz, &sign(&c)).await, (202, Value::Null));
    assert_revoked(&s.authz.check_token(&alice).await);
    assert_allowed(&s.authz.check_token(&bob).await);

    // CAEP session-revoked, complex subject naming the session.
    let c = set_claims(
        &iss,
        json!({format!("{CAEP}session-revoked"): {
            "subject": {"format": "complex", "session": {"format": "opaque", "id": "session-9"},
                        "user": {"format": "iss_sub", "iss": iss, "sub": "carol"}},
            "event_timestamp": now() - 1
        }}),
    );
    assert_eq!(push_set(&s.authz, &sign(&c)).await.0, 202);
    assert_revoked(&s.authz.check_token(&session).await);
    assert_allowed(&s.authz.check_token(&other_session).await);

    // CAEP credential-change (revoke) by email.
    let c = set_claims(
        &iss,
        json!({format!("{CAEP}credential-change"): {
            "subject": {"format": "email", "email": "dave@example.com"},
            "credential_type": "password", "change_type": "revoke"
        }}),
    );
    assert_eq!(push_set(&s.authz, &sign(&c)).await.0, 202);
    assert_revoked(&s.authz.check_token(&by_email).await);

    // RISC tokens-revoked for one token (jwt_id).
    let c = set_claims(
        &iss,
        json!({format!("{RISC}tokens-revoked"): {
            "subject": {"format": "jwt_id", "iss": iss, "jti": "token-77"}
        }}),
    );
    assert_eq!(push_set(&s.authz, &sign(&c)).await.0, 202);
    assert_revoked(&s.authz.check_token(&by_jti).await);

    // A token issued after the cut-off passes: the subject may sign in again.
    let later = token_for(&iss, |c| {
        c["sub"] = json!("alice");
        c["iat"] = json!(now() + 2);
    });
    assert_allowed(&s.authz.check_token(&later).await);

    let (_, metrics) = scrape(&s.authz, "/metrics").await;
    for line in [
        "jwt_authz_ssf_events_total{event=\"account-disabled\",result=\"applied\"} 1",
        "jwt_authz_ssf_events_total{event=\"session-revoked\",result=\"applied\"} 1",
        "jwt_authz_ssf_events_total{event=\"credential-change\",result=\"applied\"} 1",
        "jwt_authz_ssf_events_total{event=\"tokens-revoked\",result=\"applied\"} 1",
        "jwt_authz_revocations 4",
        "jwt_authz_revocation_store_current{store=\"memory\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

/// What the receiver acknowledges without revoking, and what it refuses, with the RFC
/// 8935 error codes; nothing refused revokes anything.
#[tokio::test(flavor = "multi_thread")]
async fn pushes_are_authorised_and_sets_verified_strictly() {
    let s = setup().await;
    let iss = s.idp.issuer();
    let alice = token_for(&iss, |c| c["sub"] = json!("alice"));
    let disable = |c: &mut Value| {
        c["events"] = json!({format!("{RISC}account-disabled"): {
            "subject": {"format": "iss_sub", "iss": iss, "sub": "alice"}
        }});
    };
    let valid = || {
        let mut c = set_claims(&iss, json!({}));
        disable(&mut c);
        c
    };

    // The stream's verification event, and an event type the receiver does not act on.
    let verification = set_claims(
        &iss,
        json!({"https://schemas.openid.net/secevent/ssf/event-type/verification": {"state": "abc"}}),
    );
    assert_eq!(push_set(&s.authz, &sign(&verification)).await.0, 202);
    let unknown = set_claims(&iss, json!({"https://example.com/event/other": {}}));
    assert_eq!(push_set(&s.authz, &sign(&unknown)).await.0, 202);
    let created = set_claims(
        &iss,
        json!({format!("{CAEP}credential-change"): {
            "subject": {"format": "iss_sub", "iss": iss, "sub": "alice"}, "change_type": "create"
        }}),
    );
    assert_eq!(push_set(&s.authz, &sign(&created)).await.0, 202);

    let k = key("rsa-1");
    let ec = key("ec-256");
    // What, status, err, authorization, content type, body.
    type Case<'a> = (&'a str, u16, &'a str, Option<&'a str>, &'a str, String);
    let mut cases: Vec<Case> = Vec::new();
    let set = sign(&valid());
    cases.push((
        "no authorization",
        401,
        "authentication_failed",
        None,
        "application/secevent+jwt",
        set.clone(),
    ));
    cases.push((
        "wrong authorization",
        401,
        "authentication_failed",
        Some("Bearer push-secret-2"),
        "application/secevent+jwt",
        set.clone(),
    ));
    cases.push((
        "authorization with another case",
        401,
        "authentication_failed",
        Some("bearer push-secret-1"),
        "application/secevent+jwt",
        set.clone(),
    ));
    cases.push((
        "json content type",
        400,
        "invalid_request",
        Some(PUSH_AUTH),
        "application/json",
        set.clone(),
    ));
    cases.push((
        "not a JWS",
        400,
        "invalid_request",
        Some(PUSH_AUTH),
        "application/secevent+jwt",
        "not-a-jws".into(),
    ));
    cases.push((
        "bad signature",
        400,
        "invalid_key",
        Some(PUSH_AUTH),
        "application/secevent+jwt",
        corrupt_signature(&set),
    ));
    let mut other_iss = valid();
    other_iss["iss"] = json!("https://evil.example/");
    cases.push((
        "other issuer",
        400,
        "invalid_issuer",
        Some(PUSH_AUTH),
        "application/secevent+jwt",
        sign(&other_iss),
    ));
    let mut other_aud = valid();
    other_aud["aud"] = json!("https://other.example/ssf");
    cases.push((
        "other audience",
        400,
        "invalid_audience",
        Some(PUSH_AUTH),
        "application/secevent+jwt",
        sign(&other_aud),
    ));
    let mut old = valid();
    old["iat"] = json!(now() - 7200);
    cases.push((
        "older than max_age",
        400,
        "invalid_request",
        Some(PUSH_AUTH),
        "application/secevent+jwt",
        sign(&old),
    ));
    let mut future = valid();
    future["iat"] = json!(now() + 600);
    cases.push((
        "iat in the future",
        400,
        "invalid_request",
        Some(PUSH_AUTH),
        "application/secevent+jwt",
        sign(&future),
    ));
    let mut no_jti = valid();
    no_jti.as_object_mut().unwrap().remove("jti");
    cases.push((
        "no jti",
        400,
        "invalid_request",
        Some(PUSH_AUTH),
        "application/secevent+jwt",
        sign(&no_jti),
    ));
    let mut no_events = valid();
    no_events["events"] = json!({});
    cases.push((
        "empty events",
        400,
        "invalid_request",
        Some(PUSH_AUTH),
        "application/secevent+jwt",
        sign(&no_events),
    ));
    let mut jwt_typ = set_header(&k.kid, k.alg);
    jwt_typ.typ = Some("JWT".into());
    cases.push((
        "typ JWT",
        400,
        "invalid_request",
        Some(PUSH_AUTH),
        "application/secevent+jwt",
        mint_header(&jwt_typ, &valid(), &k.encoding),
    ));
    cases.push((
        "alg none",
        400,
        "invalid_key",
        Some(PUSH_AUTH),
        "application/secevent+jwt",
        forge(
            &json!({"alg": "none", "typ": "secevent+jwt", "kid": k.kid}),
            &valid(),
            b"sig",
        ),
    ));
    cases.push((
        "unknown kid",
        400,
        "invalid_key",
        Some(PUSH_AUTH),
        "application/secevent+jwt",
        mint_header(&set_header("nope", k.alg), &valid(), &k.encoding),
    ));
    cases.push((
        "key of another alg under its kid",
        400,
        "invalid_key",
        Some(PUSH_AUTH),
        "application/secevent+jwt",
        mint_header(&set_header(&k.kid, ec.alg), &valid(), &ec.encoding),
    ));
    let unmapped = set_claims(
        &iss,
        json!({format!("{RISC}account-disabled"): {
            "subject": {"format": "phone_number", "phone_number": "+12065550100"}
        }}),
    );
    cases.push((
        "subject format that names no token",
        400,
        "invalid_request",
        Some(PUSH_AUTH),
        "application/secevent+jwt",
        sign(&unmapped),
    ));
    let unmapped = set_claims(
        &iss,
        json!({format!("{RISC}account-disabled"): {
            "subject": {"format": "iss_sub", "iss": "https://another-idp.example/", "sub": "alice"}
        }}),
    );
    cases.push((
        "iss_sub of an issuer the transmitter does not speak for",
        400,
        "invalid_request",
        Some(PUSH_AUTH),
        "application/secevent+jwt",
        sign(&unmapped),
    ));

    for (what, status, err, auth, content_type, body) in &cases {
        let (got, answer) = push(&s.authz, *auth, content_type, body).await;
        assert_eq!(
            (got, answer["err"].as_str()),
            (*status, Some(*err)),
            "{what}: {answer}"
        );
        assert!(answer["description"].is_string(), "{what}: {answer}");
    }
    assert_allowed(&s.authz.check_token(&alice).await);

    // A SET received twice is refused the second time.
    let once = sign(&valid());
    assert_eq!(push_set(&s.authz, &once).await.0, 202);
    let (status, answer) = push_set(&s.authz, &once).await;
    assert_eq!(
        (status, answer["err"].as_str()),
        (400, Some("invalid_request")),
        "{answer}"
    );
    assert_revoked(&s.authz.check_token(&alice).await);

    // Only POST to the one path.
    let client = reqwest::Client::new();
    let get = client
        .get(format!("http://{}/ssf/events", s.authz.ssf))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    let elsewhere = client
        .post(format!("http://{}/ssf/events/", s.authz.ssf))
        .header("authorization", PUSH_AUTH)
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404);

    let (_, metrics) = scrape(&s.authz, "/metrics").await;
    for line in [
        "jwt_authz_ssf_events_total{event=\"verification\",result=\"applied\"} 1",
        "jwt_authz_ssf_events_total{event=\"other\",result=\"ignored\"} 1",
        "jwt_authz_ssf_events_total{event=\"credential-change\",result=\"ignored\"} 1",
        "jwt_authz_ssf_events_total{event=\"account-disabled\",result=\"unmapped\"} 2",
        "jwt_authz_ssf_events_total{event=\"other\",result=\"unauthorized\"} 3",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

/// A SET the store could not take (here a memory store at `max_entries`) is answered 503
/// and may be pushed again: its `jti` is not spent. An `event_timestamp` after the SET's
/// `iat` is refused, so a replay cannot move a cut-off forward.
#[tokio::test(flavor = "multi_thread")]
async fn a_set_not_applied_can_be_retried() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let iss = idp.issuer();
    let auth = TempFile::new("ssf-auth", PUSH_AUTH);
    let text = format!(
        "issuers:\n  - {{issuer: \"{iss}\", audiences: [\"{AUDIENCE}\"], jwks_uri: \"{jwks}\"}}\n\
         revocation:\n  store: memory\n  max_entries: 1\n\
         ssf:\n  listen: 127.0.0.1:0\n  transmitters:\n    - issuer: \"{iss}\"\n      jwks_uri: \"{jwks}\"\n      audience: \"{RECEIVER_AUD}\"\n      authorization_file: \"{auth}\"\n",
        jwks = idp.jwks_uri(),
        auth = auth.as_str(),
    );
    let config = TempFile::new("ssf-full.yaml", text);
    let authz = Authz::start(&["--config", config.as_str()]).await;
    authz.wait_serving().await;
    let disable = |sub: &str| {
        let mut c = set_claims(&iss, json!({format!("{RISC}account-disabled"): {}}));
        c["sub_id"] = json!({"format": "iss_sub", "iss": iss, "sub": sub});
        sign(&c)
    };
    assert_eq!(push_set(&authz, &disable("alice")).await.0, 202);
    let second = disable("bob");
    for _ in 0..2 {
        let (status, answer) = push_set(&authz, &second).await;
        assert_eq!(
            (status, answer["err"].as_str()),
            (503, Some("unavailable")),
            "{answer}"
        );
    }
    let mut future = set_claims(
        &iss,
        json!({format!("{CAEP}session-revoked"): {
            "subject": {"format": "iss_sub", "iss": iss, "sub": "alice"},
            "event_timestamp": now() + 3600
        }}),
    );
    future["iat"] = json!(now());
    let (status, answer) = push_set(&authz, &sign(&future)).await;
    assert_eq!(
        (status, answer["err"].as_str()),
        (400, Some("invalid_request")),
        "{answer}"
    );
}

/// Transmitters speak for configured issuers only, each with its own push credential.
#[test]
fn transmitter_settings_are_checked_against_the_issuers() {
    let auth = TempFile::new("ssf-auth", PUSH_AUTH);
    let text = format!(
        "issuers:\n  - {{issuer: \"https://idp.example/\", audiences: [\"{AUDIENCE}\"]}}\n\
         revocation: {{store: memory}}\n\
         ssf:\n  listen: 127.0.0.1:0\n  transmitters:\n\
         \x20   - {{issuer: \"https://tx.example/\", audience: a, authorization_file: \"{auth}\", token_issuers: [\"https://elsewhere.example/\"]}}\n\
         \x20   - {{issuer: \"https://tx2.example/\", audience: a, authorization_file: \"{auth}\", token_issuers: [\"https://idp.example/\"]}}\n",
        auth = auth.as_str(),
    );
    let errors = config_errors(&text);
    assert!(
        errors.contains("ssf.transmitters[0].token_issuers: `https://elsewhere.example/` is not a configured issuer"),
        "{errors}"
    );
    assert!(
        errors.contains("ssf.transmitters[1].authorization_file: another transmitter pushes with the same Authorization value"),
        "{errors}"
    );
}

/// A transmitter without `jwks_uri` is found through its
/// `/.well-known/ssf-configuration`, whose `issuer` must be the transmitter's: a document
/// naming another is refused, and no push is accepted (503) until it reads.
#[tokio::test(flavor = "multi_thread")]
async fn transmitter_keys_are_discovered_from_its_ssf_configuration() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    idp.update(|s| {
        s.discovery = true;
        s.discovery_issuer = Some("https://someone-else.example/".into());
    });
    let iss = idp.issuer();
    let auth = TempFile::new("ssf-auth", PUSH_AUTH);
    let text = format!(
        "issuers:\n  - {{issuer: \"{iss}\", audiences: [\"{AUDIENCE}\"], jwks_uri: \"{jwks}\"}}\n\
         revocation:\n  store: memory\n\
         insecure_allow_http: true\n\
         ssf:\n  listen: 127.0.0.1:0\n  transmitters:\n    - issuer: \"{iss}\"\n      audience: \"{RECEIVER_AUD}\"\n      authorization_file: \"{auth}\"\n",
        jwks = idp.jwks_uri(),
        auth = auth.as_str(),
    );
    let config = TempFile::new("ssf-discovery.yaml", text);
    let authz = Authz::start(&["--config", config.as_str()]).await;
    authz.wait_serving().await;
    let alice = token_for(&iss, |c| c["sub"] = json!("alice"));
    let set = || {
        let mut c = set_claims(&iss, json!({format!("{RISC}account-disabled"): {}}));
        c["sub_id"] = json!({"format": "iss_sub", "iss": iss, "sub": "alice"});
        sign(&c)
    };
    let (status, answer) = push_set(&authz, &set()).await;
    assert_eq!(
        (status, answer["err"].as_str()),
        (503, Some("unavailable")),
        "{answer}"
    );
    assert_allowed(&authz.check_token(&alice).await);

    idp.update(|s| s.discovery_issuer = None);
    assert_eq!(push_set(&authz, &set()).await.0, 202);
    assert_revoked(&authz.check_token(&alice).await);
    assert!(idp.hits("/.well-known/ssf-configuration") >= 2);
}
