//! Bearer parsing and token verification through `Verifier::verify` with keys parsed once
//! (the JWKS cache holds fixed keys), for RS256, PS256, ES256 and EdDSA. No token cache:
//! every iteration pays for the header and payload decoding, the signature and the claims.

mod common;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use jwt_authz::token_source::AccessToken;
use jwt_authz::verify::TokenFacts;

fn bearer(c: &mut Criterion) {
    let header = format!("Bearer {}", common::token("rsa-1", Algorithm::RS256));
    c.bench_function("bearer/parse_rs256_header", |b| {
        b.iter(|| AccessToken::parse(black_box(header.as_bytes()), 8192).map(|t| t.as_str().len()))
    });
    let values: [&[u8]; 1] = [header.as_bytes()];
    c.bench_function("bearer/from_header_values", |b| {
        b.iter(|| AccessToken::from_header_values(black_box(values), 8192).is_ok())
    });
}

fn verify(c: &mut Criterion) {
    let config = common::config(false);
    let verifier = common::verifier(&config);
    let rt = common::runtime();
    let mut group = c.benchmark_group("verify");
    for (name, kid, alg) in [
        ("rs256", "rsa-1", Algorithm::RS256),
        ("ps256", "rsa-2", Algorithm::PS256),
        ("es256", "ec-256", Algorithm::ES256),
        ("eddsa", "ed-1", Algorithm::EdDSA),
    ] {
        let header = format!("Bearer {}", common::token(kid, alg));
        let token = AccessToken::parse(header.as_bytes(), 8192).expect("a bearer header");
        let mut facts = TokenFacts::default();
        rt.block_on(verifier.verify(token, &mut facts))
            .unwrap_or_else(|e| panic!("{name} token must verify: {e}"));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut facts = TokenFacts::default();
                rt.block_on(verifier.verify(black_box(token), &mut facts))
                    .is_ok()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bearer, verify
}
criterion_main!(benches);
