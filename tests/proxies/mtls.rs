//! Certificate-bound access tokens (RFC 8705) through a real Envoy running the shipped
//! `envoy/envoy-mtls.yaml` (certificate directory and ports swapped only): the tokens come
//! from the real OpenID provider, the certificates from a CA made for the test, and every
//! request is HTTPS with (or without) a client certificate. A token is accepted only over
//! a connection made with the certificate it is bound to, also once it is cached, and a
//! client without a certificate gets no HTTP answer at all.

use jwt_authz::testkit::*;
use serde_json::Value;

use super::envoy::{Envoy, TempDir, with_ports};

const SHIPPED: &str = include_str!("../../envoy/envoy-mtls.yaml");
/// How the shipped bootstrap names each file it reads its certificates from.
const SHIPPED_TLS_FILE: &str = "filename: /etc/envoy/tls/";

/// The OpenID provider, the service trusting it, the recording upstream and Envoy in front
/// of them, with the PKI Envoy's listener uses.
struct MtlsStack {
    provider: OidcProvider,
    authz: Authz,
    upstream: RecordingUpstream,
    envoy: Envoy,
    pki: Pki,
}

/// `envoy/envoy-mtls.yaml` reading its certificates from `tls` (which ends in `/`).
pub fn with_tls_dir(text: &str, tls: &str) -> String {
    assert_eq!(
        text.matches(SHIPPED_TLS_FILE).count(),
        3,
        "envoy-mtls.yaml reads server.pem, server-key.pem and clients-ca.pem: `{SHIPPED_TLS_FILE}`"
    );
    text.replace(SHIPPED_TLS_FILE, &format!("filename: {tls}"))
}

/// Writes the listener's files as the shipped bootstrap names them into `dir/tls/`:
/// the server certificate and key, and the CA as the clients' CA. Returns that directory
/// with a trailing `/`.
pub fn write_envoy_tls(dir: &TempDir, pki: &Pki) -> String {
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    std::fs::write(tls.join("server.pem"), &pki.server.cert_pem).unwrap();
    std::fs::write(tls.join("server-key.pem"), &pki.server.key_pem).unwrap();
    std::fs::write(tls.join("clients-ca.pem"), &pki.ca_pem).unwrap();
    format!("{}/", tls.display())
}

async fn mtls_stack() -> MtlsStack {
    let provider = OidcProvider::start().await;
    let authz = Authz::start_trusting(
        &provider.issuer(),
        &provider.jwks_uri(),
        &["--require-access-token-type"],
    )
    .await;
    authz.wait_serving().await;
    let upstream = RecordingUpstream::start().await;

    let dir = TempDir::new("e2e-mtls");
    let pki = generate_pki(&dir.path().join("pki"));
    let tls = write_envoy_tls(&dir, &pki);
    let (listener, admin) = (free_port(), free_port());
    let bootstrap = with_ports(
        &with_tls_dir(SHIPPED, &tls),
        &[
            (8443, listener),
            (9901, admin),
            (9191, authz.addr.port()),
            (8000, upstream.addr.port()),
        ],
    );
    let envoy = Envoy::run(&bootstrap, listener, admin, dir).await;
    MtlsStack {
        provider,
        authz,
        upstream,
        envoy,
        pki,
    }
}

/// What the client saw: status, JSON body and headers.
struct Answer {
    status: u16,
    body: Value,
    headers: reqwest::header::HeaderMap,
}

impl MtlsStack {
    /// An HTTPS client that trusts only the test CA and presents `cert`, if any. Each
    /// client has its own connections, so each presents its own certificate.
    fn client(&self, cert: Option<&Certificate>) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.pki.ca_pem.as_bytes()).unwrap();
        let mut builder = reqwest::Client::builder().tls_certs_only([ca]);
        if let Some(cert) = cert {
            let pem = format!("{}{}", cert.cert_pem, cert.key_pem);
            builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        builder.build().unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.envoy.listener)
    }

    /// `GET path` with `Authorization: Bearer <token>` through `client`.
    async fn get(&self, client: &reqwest::Client, token: &str) -> Answer {
        let response = client
            .get(self.url("/api/messages"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("request through envoy: {e:?}\n{}", self.envoy.log()));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            body,
            headers,
        }
    }

    /// The service's `jwt_authz_token_cache_hits_total`.
    async fn cache_hits(&self) -> u64 {
        let text = reqwest::get(format!("http://{}/metrics", self.authz.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("jwt_authz_token_cache_hits_total "))
            .and_then(|v| v.trim().parse().ok())
            .expect("the service reports token cache hits")
    }

    /// Asserts the upstream received exactly one request since the last call, the one sent.
    fn assert_forwarded_once(&self) {
        let seen = self.upstream.take();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].path(), "/api/messages");
    }

    /// Asserts `answer` is the refusal of a token bound to another certificate, and that
    /// nothing reached the upstream.
    fn assert_wrong_certificate(&self, answer: &Answer) {
        assert_eq!(
            (answer.status, answer.body["code"].as_str()),
            (401, Some("invalid_token")),
            "{}",
            answer.body
        );
        let challenge = answer.headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert!(self.upstream.take().is_empty(), "refused, yet forwarded");
    }
}

/// The claims of a JWT, unverified (the service verifies; this only reads what was issued).
fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, part)
        .expect("the payload is base64url");
    serde_json::from_slice(&bytes).expect("the payload is JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_bound_token_passes_only_with_its_certificate() {
    let s = mtls_stack().await;
    let token = s
        .provider
        .mtls_token(&s.pki.client.cert_pem, "read:messages")
        .await;
    assert_eq!(
        payload(&token)["cnf"]["x5t#S256"],
        s.pki.client.thumbprint().as_str(),
        "the provider bound the token to the client's certificate"
    );
    let own = s.client(Some(&s.pki.client));
    let other = s.client(Some(&s.pki.other_client));

    let answer = s.get(&own, &token).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    s.assert_forwarded_once();

    // Same CA, same subject, another key: a thief with a certificate of their own.
    let answer = s.get(&other, &token).await;
    s.assert_wrong_certificate(&answer);

    // Once verified the token is cached; the certificate is still checked every time.
    let hits = s.cache_hits().await;
    for _ in 0..2 {
        let answer = s.get(&own, &token).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        s.assert_forwarded_once();
    }
    let answer = s.get(&other, &token).await;
    s.assert_wrong_certificate(&answer);
    assert!(
        s.cache_hits().await >= hits + 3,
        "the repeated checks were answered from the token cache"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_pass_and_clients_without_a_certificate_get_no_answer() {
    let s = mtls_stack().await;
    // A token without `cnf` is a bearer token, whatever certificate the client shows.
    let bearer = s.provider.bearer_token("read:messages").await;
    let answer = s.get(&s.client(Some(&s.pki.other_client)), &bearer).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    s.assert_forwarded_once();

    // No client certificate: the TLS handshake fails, so there is no HTTP answer at all,
    // with a bound token or a bearer one.
    let token = s
        .provider
        .mtls_token(&s.pki.client.cert_pem, "read:messages")
        .await;
    let anonymous = s.client(None);
    for token in [&token, &bearer] {
        let result = anonymous
            .get(s.url("/api/messages"))
            .bearer_auth(token)
            .send()
            .await;
        assert!(
            result.is_err(),
            "a client without a certificate got an answer: {result:?}"
        );
    }
    assert!(s.upstream.take().is_empty());
    assert!(
        s.envoy
            .stat(&format!(
                "listener.127.0.0.1_{}.ssl.fail_verify_no_cert",
                s.envoy.listener
            ))
            .await
            >= 2,
        "envoy refused the handshakes for the missing certificate: {}",
        s.envoy.log()
    );
}
