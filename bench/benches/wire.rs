//! One Check over each wire, end to end on loopback, same request, same server: gRPC
//! `Check` (tonic client, HTTP/2) against the HTTP authorization endpoint (reqwest,
//! HTTP/1.1 keep-alive, Envoy `http_service` shape). Both ask for a browser's
//! `GET /api/private` carrying every header of [`Shape::Full`] and an RS256 token, with the
//! token cache on (each iteration a hit), so the difference is the wire and its adapter.

mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use jwt_authz::testkit::{self, Authz, Idp, Shape, allows};

fn wire(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (idp, authz) = rt.block_on(async {
        let idp = Idp::start(vec![testkit::key("rsa-1").jwk]).await;
        let authz = Authz::start_for(&idp, &[]).await;
        (idp, authz)
    });
    let mut claims = testkit::claims(&idp.issuer());
    claims["exp"] = (testkit::now() + 3600).into();
    let token = testkit::mint_with(
        &testkit::key("rsa-1"),
        Algorithm::RS256,
        Some("rsa-1"),
        &claims,
    );
    let mut request = testkit::browser_request("/api/private", None, Shape::Full);
    testkit::set_authorization(&mut request, &format!("Bearer {token}"));
    let http = reqwest::Client::builder()
        .http1_only()
        .build()
        .expect("an HTTP client");
    let url = format!("http://{}/ext-authz/api/private", authz.http);
    let headers: Vec<(String, String)> = testkit::http_mut(&mut request.clone())
        .headers
        .iter()
        .filter(|(k, _)| !k.starts_with(':'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let ask_http = || {
        let mut r = http.get(&url).header("host", "api.example.com");
        for (k, v) in &headers {
            r = r.header(k, v);
        }
        r.send()
    };
    // Both must allow before anything is timed.
    rt.block_on(async {
        assert!(allows(&authz.check(request.clone()).await));
        assert_eq!(ask_http().await.expect("http answers").status(), 200);
    });

    let mut group = c.benchmark_group("wire");
    group.bench_function("grpc_check", |b| {
        b.to_async(&rt)
            .iter(|| async { allows(&authz.check(request.clone()).await) })
    });
    group.bench_function("http_endpoint", |b| {
        b.to_async(&rt).iter(|| async {
            let response = ask_http().await.expect("http answers");
            let ok = response.status() == 200;
            let _ = response.bytes().await;
            ok
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = wire
}
criterion_main!(benches);
