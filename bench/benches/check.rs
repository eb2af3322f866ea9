//! The whole Check path through the `Authorization` trait, without the network: request
//! decoding is not included, everything after it is (routing, bearer parsing,
//! verification or the token cache, scopes, building the CheckResponse, the decision log
//! call). RS256 tokens; the token cache on (every iteration a hit) and off; and the
//! cheapest Check, a request without `authorization` (an immediate 401), for reference.

mod common;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use jwt_authz::proto::Authorization;
use jwt_authz::service::AuthzService;
use jwt_authz::testkit::allows;

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
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = check
}
criterion_main!(benches);
