//! `jwt-authz explain` runs the server's own decision: over generated requests (bearer,
//! DPoP-bound and certificate-bound tokens, shadow rules, context extensions, refused
//! readings) its answer and the step it names as deciding are the running server's, whose
//! decision log names the step that refused each request.

use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use jwt_authz::testkit::*;
use jwt_authz::wire::proto::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Peer, Request,
};
use jwt_authz::wire::proto::{AttributeContext, AuthorizationClient, CheckRequest, HttpResponse};
use serde_json::{Value, json};

const HOST: &str = "api.example.com";

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jwt-authz"));
    for (key, _) in std::env::vars() {
        if key.starts_with("JWT_AUTHZ_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// The routes every test here explains: anonymous, scoped with a claim condition and a
/// shadow rule beside it, issuer-restricted, DPoP-only, denied.
fn config_text(issuer: &str, jwks_uri: &str) -> String {
    format!(
        r#"issuers:
  - {{issuer: "{issuer}", audiences: ["{AUDIENCE}"], jwks_uri: "{jwks_uri}", dpop: allowed}}
log: {{level: "jwt_authz=debug", format: json, deny_rate: 0}}
routes:
  - {{name: public-next, path_prefix: /api/public, mode: shadow, scopes: {{all_of: [read]}}}}
  - {{name: public, path_prefix: /api/public, allow_anonymous: true}}
  - {{name: admin-next, path_prefix: /api/admin, mode: shadow, scopes: {{all_of: [superuser]}}}}
  - name: admin
    path_prefix: /api/admin
    scopes: {{all_of: [admin]}}
    claims: [{{claim: org.id, equals: acme}}]
  - {{name: orders, path_prefix: /api/orders, methods: [GET], issuers: ["{issuer}"], scopes: {{any_of: [read, admin]}}}}
  - {{name: orders-write, path_prefix: /api/orders, deny: true}}
  - {{name: dpop-only, path_prefix: /api/dpop, dpop: required}}
"#
    )
}

/// One request, as flags for `explain` and as the `CheckRequest` Envoy sends.
#[derive(Debug, Clone, Default)]
struct Case {
    method: &'static str,
    path: &'static str,
    scheme_and_token: Option<(&'static str, String)>,
    proof: Option<String>,
    certificate: Option<String>,
    required_scopes: Option<&'static str>,
}

impl Case {
    fn check_request(&self) -> CheckRequest {
        let mut headers = std::collections::HashMap::new();
        if let Some((scheme, token)) = &self.scheme_and_token {
            headers.insert("authorization".to_owned(), format!("{scheme} {token}"));
        }
        if let Some(proof) = &self.proof {
            headers.insert("dpop".to_owned(), proof.clone());
        }
        CheckRequest {
            attributes: Some(AttributeContext {
                source: self.certificate.as_ref().map(|pem| Peer {
                    certificate: jwt_authz::percent::encode_all(pem),
                    ..Peer::default()
                }),
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: self.method.into(),
                        host: HOST.into(),
                        path: self.path.into(),
                        scheme: "https".into(),
                        headers,
                        ..HttpRequest::default()
                    }),
                    ..Request::default()
                }),
                context_extensions: self
                    .required_scopes
                    .map(|s| [("required_scopes".to_owned(), s.to_owned())].into())
                    .unwrap_or_default(),
                ..AttributeContext::default()
            }),
        }
    }

    /// `explain --json` for this request: its exit code and report.
    fn explain(&self, config: &TempFile, jwks: &TempFile) -> (i32, Value) {
        let mut cmd = bin();
        cmd.args(["explain", "--json", "--config", config.as_str()])
            .args(["--jwks", jwks.as_str(), "--scheme", "https", "--host", HOST])
            .args(["--method", self.method, "--path", self.path]);
        let files: Vec<TempFile> = [
            self.scheme_and_token.as_ref().map(|(_, t)| ("token", t)),
            self.certificate.as_ref().map(|c| ("cert.pem", c)),
        ]
        .into_iter()
        .flatten()
        .map(|(name, text)| TempFile::new(name, text))
        .collect();
        let mut files = files.iter();
        if let Some((scheme, _)) = &self.scheme_and_token {
            cmd.args(["--token-scheme", scheme, "--token-file"])
                .arg(files.next().unwrap().path());
        }
        if self.certificate.is_some() {
            cmd.arg("--peer-certificate")
                .arg(files.next().unwrap().path());
        }
        if let Some(proof) = &self.proof {
            cmd.args(["--header", &format!("dpop: {proof}")]);
        }
        if let Some(scopes) = self.required_scopes {
            cmd.args(["--context-extension", &format!("required_scopes={scopes}")]);
        }
        let out = cmd.output().unwrap();
        let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "explain printed no JSON ({e}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), report)
    }
}

/// The tokens and proofs the generated requests carry, all of one issuer's making.
struct Material {
    issuer: String,
    holder: ProofKey,
    certificate: String,
    other_certificate: String,
}

impl Material {
    fn new(issuer: &str) -> Material {
        Material {
            issuer: issuer.to_owned(),
            holder: proof_key("ec-256"),
            certificate: pem(&b"the client certificate's DER".repeat(8)),
            other_certificate: pem(&b"another certificate's DER".repeat(8)),
        }
    }

    fn token(&self, edit: impl FnOnce(&mut Value)) -> String {
        let mut c = claims(&self.issuer);
        edit(&mut c);
        mint(&key("rsa-1"), &c)
    }

    fn thumbprint(pem: &str) -> String {
        jwt_authz::binding::certificate_thumbprint(&jwt_authz::percent::encode_all(pem)).unwrap()
    }

    /// Request `kind` of the generated family, on `path`.
    fn case(&self, kind: u64, method: &'static str, path: &'static str) -> Case {
        let url = format!("https://{HOST}{}", path.split('?').next().unwrap());
        let bearer = |token: String| Some(("Bearer", token));
        let bound = || self.token(|c| c["cnf"] = json!({"jkt": self.holder.thumbprint()}));
        let certificate_bound =
            || self.token(|c| c["cnf"] = json!({"x5t#S256": Self::thumbprint(&self.certificate)}));
        let mut case = Case {
            method,
            path,
            ..Case::default()
        };
        match kind {
            0 => {}
            1 => case.scheme_and_token = bearer(self.token(|c| c["scope"] = json!("read"))),
            2 => {
                case.scheme_and_token = bearer(self.token(|c| {
                    c["scope"] = json!("admin");
                    c["org"] = json!({"id": "acme"});
                }))
            }
            3 => {
                case.scheme_and_token = bearer(self.token(|c| {
                    c["scope"] = json!("admin superuser");
                    c["org"] = json!({"id": "other"});
                }))
            }
            4 => case.scheme_and_token = bearer(self.token(|c| c["exp"] = json!(now() - 600))),
            5 => case.scheme_and_token = bearer(self.token(|c| c["aud"] = json!("https://other"))),
            6 => case.scheme_and_token = bearer(corrupt_signature(&self.token(|_| {}))),
            7 => case.scheme_and_token = Some(("Bearer", "not-a.jwt".into())),
            8 => {
                case.scheme_and_token =
                    bearer(self.token(|c| c["iss"] = json!("https://unknown.example/")))
            }
            9 => {
                let token = bound();
                case.proof = Some(self.holder.proof(method, &url, Some(&token)));
                case.scheme_and_token = Some(("DPoP", token));
            }
            10 => {
                let token = bound();
                case.proof = Some(
                    self.holder
                        .proof(method, "https://elsewhere/x", Some(&token)),
                );
                case.scheme_and_token = Some(("DPoP", token));
            }
            11 => case.scheme_and_token = bearer(bound()),
            12 => {
                case.scheme_and_token = bearer(certificate_bound());
                case.certificate = Some(self.certificate.clone());
            }
            13 => case.scheme_and_token = bearer(certificate_bound()),
            14 => {
                case.scheme_and_token = bearer(certificate_bound());
                case.certificate = Some(self.other_certificate.clone());
            }
            15 => case.scheme_and_token = bearer(self.token(|c| c["cnf"] = json!({"x5u": "x"}))),
            _ => {
                let token = self.token(|c| c["scope"] = json!("read"));
                case.proof = Some(self.holder.proof(method, &url, Some(&token)));
                case.scheme_and_token = Some(("DPoP", token));
            }
        }
        case
    }
}

/// A PEM block around `der`: the service hashes the DER, the proxy verified the X.509.
fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
}

/// The server binary on a loopback port, its decision log lines read as they come.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    port: u16,
}

impl Server {
    fn start(config: &TempFile) -> Server {
        let port = free_port();
        let mut child = bin()
            .args([
                "serve",
                "--config",
                config.as_str(),
                "--admin-listen",
                "off",
            ])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = stderr_lines(&mut child);
        Server { child, lines, port }
    }

    /// The next decision line's fields (shadow rules' lines skipped).
    fn next_decision(&self) -> Value {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(10))
                .expect("a decision log line");
            let Ok(parsed) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if parsed.get("decision").is_some() && parsed.get("shadow").is_none() {
                return parsed;
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small deterministic generator: the seed is printed, and `DIFFERENTIAL_SEED` repeats a
/// run.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_and_the_server_agree_on_generated_requests() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let config = TempFile::new("explain.yaml", config_text(&idp.issuer(), &idp.jwks_uri()));
    let jwks = TempFile::new(
        "explain-jwks.json",
        json!({"keys": [key("rsa-1").jwk]}).to_string(),
    );
    let server = Server::start(&config);
    wait_until(Duration::from_secs(10), "the server listens", || {
        std::net::TcpStream::connect(("127.0.0.1", server.port)).is_ok()
    })
    .await;
    let channel =
        tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", server.port))
            .unwrap()
            .connect_lazy();
    wait_serving(&channel).await;
    let mut client = AuthorizationClient::new(channel);
    let material = Material::new(&idp.issuer());

    let seed = std::env::var("DIFFERENTIAL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now() | 1);
    let cases: u64 = std::env::var("DIFFERENTIAL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    println!("seed {seed}, {cases} cases");
    let mut rng = Rng(seed);
    const PATHS: [&str; 9] = [
        "/api/public/x",
        "/api/admin/users",
        "/api/admin/%75sers?x=1",
        "/api/public/..;/admin",
        "/api/orders/7",
        "/api/dpop/x",
        "/elsewhere",
        "/api/admin/./users",
        "/api/orders/7?access_token=x",
    ];
    let mut decided_by = std::collections::BTreeSet::new();
    for i in 0..cases {
        // Every kind of token on a route that reads the token, and on one whose scope
        // most lack, then a request refused before any token and one no rule admits (so
        // the family reaches every step asserted below whatever the seed), then at random.
        let case = match i {
            0..17 => material.case(i, "GET", "/api/orders/7"),
            17..34 => material.case(i - 17, "GET", "/api/admin/users"),
            34 => material.case(1, "GET", "/api/public/..;/admin"),
            35 => material.case(1, "GET", "/elsewhere"),
            _ => {
                let kind = rng.next(17);
                let method = ["GET", "POST"][rng.next(2) as usize];
                let path = PATHS[rng.next(PATHS.len() as u64) as usize];
                let mut case = material.case(kind, method, path);
                case.required_scopes =
                    [None, None, Some("read"), Some("admin")][rng.next(4) as usize];
                case
            }
        };

        let response = client
            .check(case.check_request())
            .await
            .unwrap()
            .into_inner();
        let logged = server.next_decision();
        let (exit, report) = case.explain(&config, &jwks);

        let (status, code) = match &response.http_response {
            Some(HttpResponse::OkResponse(_)) => (200, None),
            Some(HttpResponse::DeniedResponse(d) | HttpResponse::ErrorResponse(d)) => (
                d.status.as_ref().map_or(0, |s| s.code),
                response.status.as_ref().map(|s| s.message.clone()),
            ),
            None => (0, None),
        };
        let context =
            format!("case {i} (seed {seed}): {case:?}\nserver log {logged}\nexplain {report:#}");
        assert_eq!(report["status"], json!(status), "{context}");
        assert_eq!(report["code"], json!(code), "{context}");
        assert_eq!(exit, if status == 200 { 0 } else { 1 }, "{context}");
        assert_eq!(
            logged["decision"],
            json!(if status == 200 { "allow" } else { "deny" }),
            "{context}"
        );
        let steps = report["steps"].as_array().unwrap();
        if status == 200 {
            assert!(
                steps
                    .iter()
                    .all(|s| s["result"] != "fail" && s["result"] != "not_evaluated"),
                "{context}"
            );
        } else {
            // The step the server logged as refusing is the one explain shows deciding,
            // with the same code; every step after it was not evaluated.
            assert_eq!(report["decided_by"], logged["step"], "{context}");
            let failed = steps
                .iter()
                .position(|s| s["result"] == "fail")
                .expect(&context);
            assert_eq!(steps[failed]["code"], json!(code), "{context}");
            assert!(
                steps[failed + 1..]
                    .iter()
                    .all(|s| s["result"] == "not_evaluated" || s["result"] == "info"),
                "{context}"
            );
            decided_by.insert(logged["step"].as_str().unwrap_or_default().to_owned());
        }
    }
    // The generated family reaches the token checks, both bindings and the route's checks.
    for step in [
        "token_source",
        "token_exp",
        "token_signature",
        "token_issuer",
        "dpop_binding",
        "certificate_binding",
        "cnf",
        "audience",
        "scopes",
        "unambiguous",
        "action",
    ] {
        assert!(
            decided_by.contains(step),
            "no case decided at {step}: {decided_by:?}"
        );
    }
}

/// The steps of a bound token are shown as they are checked, and the first that fails
/// decides: a DPoP-bound token sent as a bearer token, then with its proof; a
/// certificate-bound token without and with its certificate; a context extension; an
/// expired token, whose signature is still checked first.
#[tokio::test]
async fn explain_shows_binding_context_and_the_deciding_step() {
    let issuer = "https://tenant.example/";
    let config = TempFile::new(
        "explain.yaml",
        config_text(issuer, "https://tenant.example/jwks"),
    );
    let jwks = TempFile::new(
        "explain-jwks.json",
        json!({"keys": [key("rsa-1").jwk]}).to_string(),
    );
    let material = Material::new(issuer);
    let step = |report: &Value, name: &str| -> Value {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no step {name} in {report:#}"))
    };

    let (exit, report) = material
        .case(11, "GET", "/api/orders/1")
        .explain(&config, &jwks);
    assert_eq!(exit, 1);
    assert_eq!(report["decided_by"], "dpop_binding", "{report:#}");
    assert_eq!(step(&report, "dpop_binding")["result"], "fail");
    assert_eq!(step(&report, "dpop_binding")["code"], "invalid_token");
    assert_eq!(step(&report, "certificate_binding")["result"], "pass");
    assert_eq!(step(&report, "scopes")["result"], "not_evaluated");

    let mut case = material.case(9, "GET", "/api/dpop/x");
    let (exit, report) = case.explain(&config, &jwks);
    assert_eq!(exit, 0, "{report:#}");
    for name in ["dpop_binding", "dpop_required", "replay"] {
        assert_eq!(step(&report, name)["result"], "pass", "{name}: {report:#}");
    }
    case.scheme_and_token = Some(("Bearer", case.scheme_and_token.unwrap().1));
    let (exit, report) = case.explain(&config, &jwks);
    assert_eq!((exit, report["code"].clone()), (1, json!("invalid_token")));

    let (exit, report) = material
        .case(13, "GET", "/api/orders/1")
        .explain(&config, &jwks);
    assert_eq!(exit, 1);
    assert_eq!(report["decided_by"], "certificate_binding", "{report:#}");
    assert_eq!(step(&report, "dpop_binding")["result"], "not_evaluated");
    let (exit, report) = material
        .case(12, "GET", "/api/public/x")
        .explain(&config, &jwks);
    assert_eq!(exit, 0, "{report:#}");

    let mut case = material.case(1, "GET", "/api/orders/1");
    case.required_scopes = Some("admin");
    let (exit, report) = case.explain(&config, &jwks);
    assert_eq!(exit, 1);
    assert_eq!(report["decided_by"], "context_scopes", "{report:#}");
    assert_eq!(step(&report, "scopes")["result"], "pass");

    let (exit, report) = material
        .case(4, "GET", "/api/orders/1")
        .explain(&config, &jwks);
    assert_eq!(exit, 1);
    assert_eq!(report["code"], "token_expired");
    assert_eq!(step(&report, "token_signature")["result"], "pass");
    assert_eq!(step(&report, "token_exp")["result"], "fail");
    assert_eq!(step(&report, "audience")["result"], "not_evaluated");

    let (exit, report) = material
        .case(5, "GET", "/api/admin/x")
        .explain(&config, &jwks);
    assert_eq!(exit, 1);
    assert_eq!(step(&report, "audience")["result"], "fail");
    assert_eq!(step(&report, "scopes")["result"], "not_evaluated");
    let shadow = step(&report, "shadow_rule");
    assert!(
        shadow["detail"].as_str().unwrap().contains("would deny"),
        "{shadow}"
    );

    // A configuration or usage error is exit code 64, never a decision.
    let broken = TempFile::new("broken.yaml", "issuers: {}\n");
    let out = bin()
        .args(["explain", "--config", broken.as_str(), "--path", "/"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = bin()
        .args([
            "explain",
            "--config",
            config.as_str(),
            "--path",
            "/",
            "--header",
            "no-colon",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    // A usage error too: a missing flag, an unknown one; `--help` succeeds.
    for args in [
        &["explain", "--config", config.as_str()][..],
        &[
            "explain",
            "--config",
            config.as_str(),
            "--path",
            "/",
            "--colour",
        ][..],
    ] {
        let out = bin().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
    }
    let out = bin().args(["explain", "--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}
