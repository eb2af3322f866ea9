//! A DPoP proof names the URL the client addressed, and the service compares it with the
//! origin read by one grammar (a plain name or address and a port): through the shipped
//! Envoy and nginx configurations, a `Host` that a URL parser would read as another
//! origin, path, query or user is refused with `invalid_dpop_proof`, never compared, and
//! reaches no upstream. The same request with a plain `Host` passes, so each refusal is the
//! host's doing.

use jwt_authz::testkit::*;
use serde_json::{Value, json};

use super::differential::{
    Answer, Proc, Service, exchange, start_nginx, start_service, wait_accepting,
};
use super::envoy::{Envoy, TempDir};

/// Every route takes any valid token: what the proof is bound to is the only question.
const RULES: &str = "upstream:\n  strip_authorization: true\nroutes:\n  - { path_prefix: /api }\n";

struct Client {
    key: ProofKey,
    token: String,
}

impl Client {
    fn new(idp: &Idp) -> Client {
        let client = proof_key("ec-256");
        let mut c = claims(&idp.issuer());
        c["cnf"] = json!({"jkt": client.thumbprint()});
        let token = mint(&key("rsa-1"), &c);
        Client { key: client, token }
    }

    /// `GET target` with `Host: host` and a fresh proof for `htu`.
    fn headers(&self, host: &str, htu: &str) -> Vec<(String, String)> {
        vec![
            ("Host".into(), host.into()),
            ("Authorization".into(), format!("DPoP {}", self.token)),
            ("DPoP".into(), self.key.proof("GET", htu, Some(&self.token))),
        ]
    }
}

fn code(answer: &Answer) -> Option<String> {
    let body = answer.body.as_str();
    // nginx answers with the service's body from its own location.
    body.find('{')
        .and_then(|i| serde_json::from_str::<Value>(&body[i..]).ok())
        .and_then(|v| v["code"].as_str().map(str::to_owned))
}

/// Each hostile `Host` with a proof for the URL it would be read as: the proxy refuses
/// it (400) or the service does (401 `invalid_dpop_proof`); never 200.
async fn assert_refused(port: u16, client: &Client, cases: &[(&str, &str, &str)], what: &str) {
    for (host, target, htu) in cases {
        let answer = exchange(port, "GET", target, &client.headers(host, htu)).await;
        let refused_by_proxy = answer.status == 400;
        let refused_by_service =
            answer.status == 401 && code(&answer).as_deref() == Some("invalid_dpop_proof");
        assert!(
            refused_by_proxy || refused_by_service,
            "{what}: Host {host:?} GET {target} with a proof for {htu}: {} {}",
            answer.status,
            answer.body
        );
    }
}

/// The hosts of the issue and their relatives: userinfo, a path, a query or fragment
/// glued to the name, a port that is not one, numeric spellings of an address.
fn hostile(origin: &str) -> Vec<(String, &'static str, String)> {
    vec![
        (
            format!("x@{origin}"),
            "/api/private",
            format!("http://{origin}/api/private"),
        ),
        (
            format!("{origin}?"),
            "/api/admin",
            format!("http://{origin}/"),
        ),
        (
            format!("{origin}#"),
            "/api/admin",
            format!("http://{origin}/"),
        ),
        (
            format!("{origin}?x=1"),
            "/api/admin",
            format!("http://{origin}/"),
        ),
        (
            format!("{origin}/api/private#"),
            "/api/admin",
            format!("http://{origin}/api/private"),
        ),
        (
            format!("{origin}:80/api/private?"),
            "/api/admin",
            format!("http://{origin}/api/private"),
        ),
        (
            format!("{origin}:0080"),
            "/api/private",
            format!("http://{origin}/api/private"),
        ),
        (
            "127.1".into(),
            "/api/private",
            "http://127.0.0.1/api/private".into(),
        ),
        (
            "0x7f.0.0.1".into(),
            "/api/private",
            "http://127.0.0.1/api/private".into(),
        ),
    ]
}

fn borrowed<'a>(cases: &'a [(String, &'static str, String)]) -> Vec<(&'a str, &'a str, &'a str)> {
    cases
        .iter()
        .map(|(h, t, u)| (h.as_str(), *t, u.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_20_hosts_read_as_another_origin_are_refused_through_envoy() {
    let dir = TempDir::new("proofs-envoy");
    let Service { idp, authz, .. } = start_service(&dir, RULES).await;
    let upstream = RecordingUpstream::start().await;
    let envoy = Envoy::start(authz.addr.port(), upstream.addr.port()).await;
    let client = Client::new(&idp);

    let plain = exchange(
        envoy.listener,
        "GET",
        "/api/private",
        &client.headers("other.example.com", "http://other.example.com/api/private"),
    )
    .await;
    assert_eq!(plain.status, 200, "{}", plain.body);
    assert_eq!(upstream.take().len(), 1);

    let cases = hostile("other.example.com");
    assert_refused(envoy.listener, &client, &borrowed(&cases), "envoy").await;
    assert!(
        upstream.take().is_empty(),
        "a refused request reached the upstream"
    );
    authz.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_20_hosts_read_as_another_origin_are_refused_through_nginx() {
    let dir = TempDir::new("proofs-nginx");
    let Service { idp, authz, .. } = start_service(&dir, RULES).await;
    let upstream = RecordingUpstream::start().await;
    let port = free_port();
    let _nginx: Proc = start_nginx(&dir, port, authz.http.port(), upstream.addr.port());
    wait_accepting(port, "nginx", &dir).await;
    let client = Client::new(&idp);

    // nginx forwards the Host as sent, when it is the host nginx routed by.
    let plain = exchange(
        port,
        "GET",
        "/api/admin",
        &client.headers("api.example.com", "http://api.example.com/api/admin"),
    )
    .await;
    assert_eq!(plain.status, 200, "{}", plain.body);
    assert_eq!(upstream.take().len(), 1);

    // The Host in another case, and with a trailing dot, is the host nginx routed by.
    for host in ["API.Example.COM", "api.example.com."] {
        let spelled = exchange(
            port,
            "GET",
            "/api/admin",
            &client.headers(host, "http://api.example.com/api/admin"),
        )
        .await;
        assert_eq!(spelled.status, 200, "{host}: {}", spelled.body);
    }
    assert_eq!(upstream.take().len(), 2);

    let mut cases = hostile("api.example.com");
    // An absolute-form request line: nginx routes by its host, so the Host header (and a
    // proof for it) must not be what the service reads.
    cases.push((
        "api.example.com".into(),
        "http://admin.example.com/api/admin",
        "http://api.example.com/api/admin".into(),
    ));
    assert_refused(port, &client, &borrowed(&cases), "nginx").await;
    assert!(
        upstream.take().is_empty(),
        "a refused request reached the upstream"
    );
    authz.stop().await.unwrap();
}
