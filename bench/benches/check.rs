//! The whole Check path through the `Authorization` trait, without the network: request
//! decoding is not included, everything after it is (routing, bearer parsing,
//! verification or the token cache, scopes, building the CheckResponse, the decision log
//! call). RS256 tokens; the token cache on (every iteration a hit) and off; and the
//! cheapest Check, a request without `authorization` (an immediate 401), for reference.
//! `rs256_cache_off_encoded` is the uncached Check on the server's path (the encoded full
//! request through the byte reader), and `rs256_verify_alone` the verification it contains,
//! so that what an uncached Check adds to the signature is measured in one run.
//! DPoP: the same RS256 token bound to a client key, cached, with a fresh proof per
//! iteration (signed outside the timing), so the difference to `rs256_cache_hit` is what
//! proof verification and the replay store cost.
//!
//! `envoy_request`: a cache-hit Check from the encoded request to the encoded response,
//! decoding included, for the full browser request (about 1.8 KB) and the small one Envoy
//! sends with `allowed_headers: [authorization]` (837 bytes): `prost_*` decodes with
//! prost and calls `Authorization::check`, as tonic's generated server does; `lean_*` is
//! the server's path, `AuthzService::check_encoded` (the byte reader, then the same
//! decision). `decode_prost_*` and `decode_lean_*` are the two readings alone.

mod common;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use jwt_authz::service::AuthzService;
use jwt_authz::testkit::{self, Shape, allows};
use jwt_authz::token_source::AccessToken;
use jwt_authz::verify::TokenFacts;
use jwt_authz::wire::proto::{Authorization, CheckRequest};
use prost::Message;
use std::hint::black_box;

fn check(c: &mut Criterion) {
    let rt = common::runtime();
    let token = common::token("rsa-1", Algorithm::RS256);
    let with_token = common::request(Some(&token));
    let without_token = common::request(None);
    let mut group = c.benchmark_group("check");
    for (name, cache, request) in [
        ("rs256_cache_hit", true, &with_token),
        ("rs256_cache_off", false, &with_token),
        ("no_authorization_401", false, &without_token),
    ] {
        let config = common::config(cache);
        let replay = std::sync::Arc::new(jwt_authz::replay::ReplayStore::memory(1_000_000));
        let service = AuthzService::from_config(&config, common::verifier(&config), replay);
        // One call first: it must answer as expected, and it fills the cache.
        let first = rt
            .block_on(service.check(tonic::Request::new(request.clone())))
            .expect("Check answers");
        assert_eq!(
            allows(first.get_ref()),
            name != "no_authorization_401",
            "{name}"
        );
        group.bench_function(name, |b| {
            b.iter_batched(
                || tonic::Request::new(request.clone()),
                |r| rt.block_on(service.check(r)).map(|r| allows(r.get_ref())),
                BatchSize::SmallInput,
            )
        });
    }
    let config = common::config(false);
    let replay = std::sync::Arc::new(jwt_authz::replay::ReplayStore::memory(1_000));
    let verifier = common::verifier(&config);
    let service = AuthzService::from_config(&config, std::sync::Arc::clone(&verifier), replay);
    let encoded = common::encoded_request(&token, Shape::Full);
    let first = rt
        .block_on(service.check_encoded(&encoded, None))
        .expect("Check answers");
    assert!(allows(&first), "rs256_cache_off_encoded");
    group.bench_function("rs256_cache_off_encoded", |b| {
        b.iter(|| {
            rt.block_on(service.check_encoded(black_box(&encoded), None))
                .map(|r| allows(&r))
        })
    });
    let header = format!("Bearer {token}");
    let bearer = AccessToken::parse(header.as_bytes(), 8192).expect("a bearer header");
    group.bench_function("rs256_verify_alone", |b| {
        b.iter(|| {
            let mut facts = TokenFacts::default();
            rt.block_on(verifier.verify(black_box(bearer), &mut facts))
                .is_ok()
        })
    });
    for (name, kid) in [
        ("dpop_es256_proof_cache_hit", "ec-256"),
        ("dpop_eddsa_proof_cache_hit", "ed-1"),
    ] {
        let client = testkit::proof_key(kid);
        let token = common::bound_token(&client.thumbprint());
        let mut request = common::request(None);
        testkit::set_authorization(&mut request, &format!("DPoP {token}"));
        let url = "https://api.example.com/api/private-scoped";
        let with_proof = |proof: String| {
            let mut r = request.clone();
            testkit::http_mut(&mut r)
                .headers
                .insert("dpop".into(), proof);
            tonic::Request::new(r)
        };
        let config = common::config(true);
        // One key sends every proof: no per-key quota, so each iteration is an allow.
        let replay = std::sync::Arc::new(
            jwt_authz::replay::ReplayStore::memory(10_000_000).with_holder_quota(10_000_000),
        );
        let service = AuthzService::from_config(&config, common::verifier(&config), replay);
        let first = rt
            .block_on(service.check(with_proof(client.proof("GET", url, Some(&token)))))
            .expect("Check answers");
        assert!(allows(first.get_ref()), "{name}: {first:?}");
        group.bench_function(name, |b| {
            b.iter_batched(
                || with_proof(client.proof("GET", url, Some(&token))),
                |r| rt.block_on(service.check(r)).map(|r| allows(r.get_ref())),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn envoy_request(c: &mut Criterion) {
    let rt = common::runtime();
    let token = common::token("rsa-1", Algorithm::RS256);
    let config = common::config(true);
    let replay = std::sync::Arc::new(jwt_authz::replay::ReplayStore::memory(1_000));
    let service = AuthzService::from_config(&config, common::verifier(&config), replay);
    let mut out = Vec::with_capacity(8192);
    let mut group = c.benchmark_group("envoy_request");
    for (name, shape) in [("full", Shape::Full), ("small", Shape::Small)] {
        let request = common::encoded_request(&token, shape);
        let prost = || {
            let decoded = CheckRequest::decode(request.clone()).expect("the request decodes");
            rt.block_on(service.check(tonic::Request::new(decoded)))
                .expect("Check answers")
                .into_inner()
        };
        assert!(allows(&prost()), "{name}: allowed, and now cached");
        println!("envoy_request/{name}: {} bytes", request.len());
        let lean = || {
            rt.block_on(service.check_encoded(&request, None))
                .expect("Check answers")
        };
        assert_eq!(lean(), prost(), "{name}: the same answer both ways");
        group.bench_function(format!("prost_{name}"), |b| {
            b.iter(|| {
                out.clear();
                prost().encode(&mut out).expect("the buffer grows");
            })
        });
        group.bench_function(format!("lean_{name}"), |b| {
            b.iter(|| {
                out.clear();
                lean().encode(&mut out).expect("the buffer grows");
            })
        });
        group.bench_function(format!("decode_prost_{name}"), |b| {
            b.iter(|| CheckRequest::decode(request.clone()).expect("the request decodes"))
        });
        group.bench_function(format!("decode_lean_{name}"), |b| {
            b.iter(|| {
                jwt_authz::wire::grpc::decode(&request)
                    .expect("the request reads")
                    .headers
                    .len()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = check, envoy_request
}
criterion_main!(benches);
