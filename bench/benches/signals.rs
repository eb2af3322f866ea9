//! What a token's life after issue costs a Check, without the network: a cache-hit Check
//! (RS256, the full browser request) with no revocation store, with an empty one, and
//! with 100,000 revocations in force (none covering the token, which carries every
//! identifier a revocation can name, so each lookup is made); and an opaque token whose
//! introspection answer is cached (the endpoint, on loopback, is asked once before the
//! timing).

mod common;

use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use jwt_authz::introspection::{ClientAuth, IntrospectionConfig, Secret};
use jwt_authz::replay::ReplayStore;
use jwt_authz::revocation::{Kind, Revocation, RevocationSettings, RevocationStore};
use jwt_authz::service::AuthzService;
use jwt_authz::testkit::{self, allows};
use jwt_authz::wire::proto::Authorization;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn token_with_every_identifier() -> String {
    let mut claims = testkit::claims(common::ISSUER);
    claims["sub"] = "auth0|bench-user".into();
    claims["exp"] = (testkit::now() + 3600).into();
    claims["jti"] = "bench-jti".into();
    claims["sid"] = "bench-session".into();
    claims["azp"] = "bench-client".into();
    claims["email"] = "bench@example.com".into();
    testkit::mint_with(
        &testkit::key("rsa-1"),
        Algorithm::RS256,
        Some("rsa-1"),
        &claims,
    )
}

/// A store with `n` revocations of `common::ISSUER`'s tokens, spread over the five kinds.
fn store_with(rt: &tokio::runtime::Runtime, n: usize) -> Arc<RevocationStore> {
    let store = RevocationStore::memory(RevocationSettings {
        max_token_lifetime: Duration::from_secs(24 * 3600),
        max_entries: 1_000_000,
    });
    let now_ms = testkit::now() * 1000;
    for i in 0..n {
        let kind = Kind::ALL[i % Kind::ALL.len()];
        let r = Revocation {
            kind,
            issuer: common::ISSUER.into(),
            value: format!("revoked-{i}"),
            cutoff_ms: now_ms,
            expires_ms: store.cutoff_expiry(now_ms),
        };
        rt.block_on(store.revoke(r, now_ms)).expect("stored");
    }
    store
}

/// A loopback introspection endpoint answering every call with `answer`.
fn endpoint(rt: &tokio::runtime::Runtime, answer: String) -> String {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/introspect", listener.local_addr().unwrap());
    rt.spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = stream.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    url
}

fn signals(c: &mut Criterion) {
    let rt = common::runtime();
    let mut group = c.benchmark_group("signals");
    let token = token_with_every_identifier();
    let request = common::request(Some(&token));
    for (name, revocations) in [
        ("rs256_cache_hit_no_revocation_store", None),
        (
            "rs256_cache_hit_revocations_empty",
            Some(store_with(&rt, 0)),
        ),
        (
            "rs256_cache_hit_revocations_100k",
            Some(store_with(&rt, 100_000)),
        ),
    ] {
        let config = common::config(true);
        let replay = Arc::new(ReplayStore::memory(1_000));
        let service = AuthzService::from_config(&config, common::verifier(&config), replay)
            .with_revocations(revocations);
        let first = rt
            .block_on(service.check(tonic::Request::new(request.clone())))
            .expect("Check answers");
        assert!(allows(first.get_ref()), "{name}: {first:?}");
        group.bench_function(name, |b| {
            b.iter_batched(
                || tonic::Request::new(request.clone()),
                |r| rt.block_on(service.check(r)).map(|r| allows(r.get_ref())),
                BatchSize::SmallInput,
            )
        });
    }

    // The revocation check alone, on the token's identifiers, as a cache hit makes it.
    let now_ms = testkit::now() * 1000;
    let ids = jwt_authz::revocation::TokenIds {
        jti: Some("bench-jti"),
        sid: Some("bench-session"),
        client_id: Some("bench-client"),
        email: Some("bench@example.com"),
        iat: Some(testkit::now() - 5),
    };
    let revocable = jwt_authz::revocation::RevocableToken {
        iss: common::ISSUER,
        sub: Some("auth0|bench-user"),
        ids,
        exp: testkit::now() + 3600,
        leeway_ms: 60_000,
    };
    for (name, n) in [
        ("revocation_check_empty", 0),
        ("revocation_check_100k", 100_000),
    ] {
        let store = store_with(&rt, n);
        assert!(store.check(&revocable, now_ms).is_ok());
        group.bench_function(name, |b| {
            b.iter(|| {
                store
                    .check(std::hint::black_box(&revocable), now_ms)
                    .is_ok()
            })
        });
    }

    let answer = serde_json::json!({
        "active": true, "iss": common::ISSUER, "aud": testkit::AUDIENCE, "sub": "auth0|bench-user",
        "scope": "openid read:messages", "iat": testkit::now(), "exp": testkit::now() + 3600,
        "client_id": "bench-client"
    })
    .to_string();
    let url = endpoint(&rt, answer);
    let mut config = common::config(true);
    config.settings.issuers[0].introspection = Some(IntrospectionConfig {
        endpoint: Some(url.parse().unwrap()),
        client_id: "bench".into(),
        client_secret: Secret::new("bench-secret".into()),
        client_auth: ClientAuth::Basic,
        timeout: Duration::from_secs(2),
        cache_max: Duration::from_secs(3600),
        negative_cache: Duration::from_secs(10),
        max_concurrent: 16,
        opaque_tokens: true,
        jwts: false,
    });
    let replay = Arc::new(ReplayStore::memory(1_000));
    let service = AuthzService::from_config(&config, common::verifier(&config), replay);
    let opaque =
        common::request_with_authorization("Bearer 2YotnFZFEjr1zCsicMWpAA-opaque-bench-token");
    let first = rt
        .block_on(service.check(tonic::Request::new(opaque.clone())))
        .expect("Check answers");
    assert!(allows(first.get_ref()), "opaque: {first:?}");
    group.bench_function("opaque_introspection_cache_hit", |b| {
        b.iter_batched(
            || tonic::Request::new(opaque.clone()),
            |r| rt.block_on(service.check(r)).map(|r| allows(r.get_ref())),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = signals
}
criterion_main!(benches);
