//! Traces seen from outside. The `jwt-authz` binary (with `tracing` on) and a real Envoy
//! (the shipped `envoy/envoy.yaml`, ports swapped only, tracing with its own OpenTelemetry
//! tracer) export to an OTLP/gRPC receiver built on the official protobuf definitions
//! (`tests/otlp/receiver.py`: PyPI opentelemetry-proto served by grpcio). The tests read
//! the spans as the receiver decoded them: one trace holds Envoy's request span, its
//! ext_authz call, the service's Check under that call and the JWKS fetch the Check
//! waited on; no exported attribute holds the token, its signature, a claim value or the
//! query string; decision log lines name their span.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jwt_authz::testkit::*;
use jwt_authz::wire::proto::{AuthorizationClient, CheckRequest};
use serde_json::{Value, json};

use super::differential::Proc;
use super::envoy::{Envoy, TempDir};

/// The OTLP receiver: every span it was sent, as JSON.
struct Receiver {
    port: u16,
    spans: Arc<Mutex<Vec<Value>>>,
    _proc: Proc,
}

impl Receiver {
    fn start() -> Receiver {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp/receiver.py");
        let mut child = Command::new(tool("UPSTREAM_PYTHON", "venv/bin/python"))
            .arg(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the OTLP receiver (scripts/install-test-tools.sh installs its Python)");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines
            .next()
            .and_then(Result::ok)
            .expect("the OTLP receiver printed nothing: is opentelemetry-proto installed?");
        let port = first
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the receiver: {first}"));
        let spans = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&spans);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let span: Value = serde_json::from_str(&line).expect("receiver line is JSON");
                sink.lock().unwrap().push(span);
            }
        });
        Receiver {
            port,
            spans,
            _proc: Proc(child),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spans(&self) -> Vec<Value> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits (bounded) for a span `found` picks, and returns it.
    async fn wait_for(&self, what: &str, found: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(span) = self.spans().into_iter().find(|s| found(s)) {
                return span;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} span within 30s; received:\n{}",
                serde_json::to_string_pretty(&self.spans()).unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The `jwt-authz` binary serving `config` with `env`, its JSON log lines collected.
struct Service {
    grpc: u16,
    http: u16,
    admin: u16,
    log: Arc<Mutex<Vec<String>>>,
    _proc: Proc,
    _config: TempFile,
}

impl Service {
    async fn start(config: String, env: &[(&str, &str)]) -> Service {
        let config = TempFile::new("traces.yaml", config);
        let (grpc, admin, http) = (free_port(), free_port(), free_port());
        let mut command = Command::new(env!("CARGO_BIN_EXE_jwt-authz"));
        command
            .args(["serve", "--config", config.as_str()])
            .args(["--listen", &format!("127.0.0.1:{grpc}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .args(["--http-listen", &format!("127.0.0.1:{http}")])
            .args([
                "--log-format",
                "json",
                "--log-level",
                "info,jwt_authz=debug",
            ])
            .args(["--log-deny-rate", "0"])
            // Batches leave every 100 ms rather than every 5 s (the SDK's own variable).
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start jwt-authz");
        let lines = stderr_lines(&mut child);
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines {
                sink.lock().unwrap().push(line);
            }
        });
        let service = Service {
            grpc,
            http,
            admin,
            log,
            _proc: Proc(child),
            _config: config,
        };
        let ready = format!("http://127.0.0.1:{admin}/readyz");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(&ready).await
                && r.status() == 200
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "jwt-authz not ready within 30s:\n{}",
                service.log.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        service
    }

    /// The decision log lines, parsed.
    fn decisions(&self) -> Vec<Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l.get("decision").is_some())
            .collect()
    }

    /// The text exposition of `/metrics`.
    async fn metrics(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one sample of `/metrics` (0 when absent).
    async fn metric(&self, series: &str) -> u64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0, |v| v.parse().unwrap())
    }

    async fn client(&self) -> AuthorizationClient<tonic::transport::Channel> {
        let channel =
            tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", self.grpc))
                .unwrap()
                .connect()
                .await
                .unwrap();
        AuthorizationClient::new(channel)
    }
}

/// The service trusting `idp`, its JWKS URL carrying a query that must never be exported.
fn config(idp: &Idp, tracing: &str) -> String {
    format!(
        "issuers:\n  - issuer: \"{}\"\n    audiences: [\"{AUDIENCE}\"]\n    jwks_uri: \"{}?key=jwks-query-marker-4e1a\"\n\
         insecure_allow_http: true\njwks: {{cooldown: 1ms}}\n{tracing}",
        idp.issuer(),
        idp.jwks_uri()
    )
}

fn attr<'v>(span: &'v Value, name: &str) -> &'v Value {
    &span["attributes"][name]
}

fn is_check(span: &Value) -> bool {
    span["service"] == "jwt-authz" && span["kind"] == 2 && span["name"].as_str().is_some()
}

/// Fails when any string an exported span carries (the service's and Envoy's: its name,
/// attribute values, events, status and resource) holds one of `secrets`.
fn assert_never_exported(spans: &[Value], secrets: &[&str]) {
    let mut exported = Vec::new();
    for span in spans {
        for part in ["name", "attributes", "events", "status", "resource"] {
            exported.push(span[part].to_string());
        }
    }
    for secret in secrets {
        assert!(
            exported.iter().all(|s| !s.contains(secret)),
            "{secret} was exported: {exported:?}"
        );
    }
}

/// Done means: a trace through Envoy → jwt-authz → JWKS fetch, seen in the receiver.
#[tokio::test(flavor = "multi_thread")]
async fn one_trace_holds_envoy_the_check_and_the_jwks_fetch_it_waited_on() {
    let receiver = Receiver::start();
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let service = Service::start(
        config(
            &idp,
            &format!("tracing:\n  endpoint: \"{}\"\n", receiver.endpoint()),
        ),
        &[],
    )
    .await;
    let upstream = RecordingUpstream::start().await;
    let envoy =
        Envoy::start_with_collector(service.grpc, upstream.addr.port(), receiver.port).await;

    // A key the service has not loaded yet: the Check waits for a JWKS refetch.
    idp.update(|s| s.keys.push(key("rsa-2").jwk));
    let mut c = claims(&idp.issuer());
    c["sub"] = json!("subject-marker-5f1d");
    c["scope"] = json!("scope-marker-7a2c");
    let token = mint(&key("rsa-2"), &c);
    let signature = token.rsplit('.').next().unwrap().to_owned();
    let http = reqwest::Client::new();
    let response = http
        .get(envoy.url("/api/private?api_key=query-marker-91be"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", envoy.log());

    let check = receiver
        .wait_for("Check", |s| {
            is_check(s) && attr(s, "jwt_authz.decision") == "allow"
        })
        .await;
    assert_eq!(check["name"], "envoy.service.auth.v3.Authorization/Check");
    assert_eq!(attr(&check, "jwt_authz.wire"), "grpc");
    assert_eq!(attr(&check, "rpc.system"), "grpc");
    assert_eq!(attr(&check, "http.request.method"), "GET");
    assert_eq!(attr(&check, "http.response.status_code"), 200);
    assert_eq!(attr(&check, "jwt_authz.issuer"), idp.issuer().as_str());
    assert_eq!(attr(&check, "jwt_authz.rule"), "default");
    assert_eq!(attr(&check, "url.path"), "/api/private");
    assert_eq!(check["resource"]["service.name"], "jwt-authz");
    let trace = check["trace_id"].as_str().unwrap().to_owned();

    // Its parent is Envoy's span for the ext_authz call, in Envoy's trace of the request.
    let call = receiver
        .wait_for("Envoy's ext_authz call", |s| {
            s["service"] == "envoy" && s["span_id"] == check["parent_span_id"]
        })
        .await;
    assert_eq!(call["trace_id"], trace.as_str());
    assert!(
        call["name"]
            .as_str()
            .unwrap()
            .contains("Authorization.Check"),
        "{call}"
    );
    let ingress = receiver
        .wait_for("Envoy's request", |s| {
            s["service"] == "envoy" && s["span_id"] == call["parent_span_id"]
        })
        .await;
    assert_eq!(ingress["trace_id"], trace.as_str());
    // Envoy's own span names the path, never the query.
    assert_eq!(attr(&ingress, "url.path"), "/api/private", "{ingress}");
    let url = attr(&ingress, "http.url").as_str().unwrap_or_default();
    assert!(!url.contains("/api") && !url.contains('?'), "{ingress}");

    // The JWKS fetch the Check waited on is its child.
    let fetch = receiver
        .wait_for("jwks.fetch", |s| {
            s["name"] == "jwks.fetch" && s["parent_span_id"] == check["span_id"]
        })
        .await;
    assert_eq!(fetch["trace_id"], trace.as_str());
    assert_eq!(attr(&fetch, "jwt_authz.keys"), 2);
    assert_eq!(attr(&fetch, "jwt_authz.issuer"), idp.issuer().as_str());

    // A denial: its code and status, and the decision log line names its span.
    let response = http.get(envoy.url("/api/private")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let denied = receiver
        .wait_for("denied Check", |s| {
            is_check(s) && attr(s, "jwt_authz.decision") == "deny"
        })
        .await;
    assert_eq!(
        attr(&denied, "jwt_authz.code"),
        "authorization_header_missing"
    );
    assert_eq!(attr(&denied, "http.response.status_code"), 401);
    assert_eq!(attr(&denied, "jwt_authz.step"), "token_source");
    let logged = service
        .decisions()
        .into_iter()
        .find(|l| l["decision"] == "deny")
        .expect("a denial log line");
    assert_eq!(logged["trace_id"], denied["trace_id"]);
    assert_eq!(logged["span_id"], denied["span_id"]);
    let allowed = service
        .decisions()
        .into_iter()
        .find(|l| l["decision"] == "allow")
        .expect("an allow log line (debug)");
    assert_eq!(allowed["trace_id"], trace.as_str());

    // The exporter's counts.
    assert!(
        service
            .metric("jwt_authz_trace_exports_total{result=\"ok\"}")
            .await
            > 0
    );
    let exported = service.metric("jwt_authz_trace_spans_exported_total").await;
    assert!(exported >= 3);
    assert!(service.metric("jwt_authz_trace_spans_ended_total").await >= exported);
    assert_eq!(
        service
            .metric("jwt_authz_trace_exports_total{result=\"failed\"}")
            .await,
        0
    );

    // Nothing the service or Envoy exported holds the token, its signature, a claim value or the
    // query string.
    assert_never_exported(
        &receiver.spans(),
        &[
            token.as_str(),
            signature.as_str(),
            "subject-marker-5f1d",
            "scope-marker-7a2c",
            "query-marker-91be",
            "api_key",
            "jwks-query-marker-4e1a",
        ],
    );
}

/// The trace context comes from the call's own headers first, else from the request's;
/// a malformed or repeated `traceparent` starts a trace of the service's own; the HTTP
/// endpoint reads its request's.
#[tokio::test(flavor = "multi_thread")]
async fn the_callers_trace_context_is_read_one_way() {
    let receiver = Receiver::start();
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let service = Service::start(
        config(&idp, "tracing: {}\n"),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint())],
    )
    .await;
    let mut client = service.client().await;
    let parent = |trace: &str, span: &str| format!("00-{trace}-{span}-01");
    let (t1, s1) = ("11111111111111111111111111111111", "1111111111111111");
    let (t2, s2) = ("22222222222222222222222222222222", "2222222222222222");

    let with_header = |path: &str, value: &str| {
        let mut request: CheckRequest = request_at(path, None);
        http_mut(&mut request)
            .headers
            .insert("traceparent".into(), value.into());
        request
    };
    // Both: the call's metadata wins, with its tracestate.
    let mut call = tonic::Request::new(with_header("/both", &parent(t2, s2)));
    call.metadata_mut()
        .insert("traceparent", parent(t1, s1).parse().unwrap());
    call.metadata_mut()
        .insert("tracestate", "vendor=abc,other=x".parse().unwrap());
    client.check(call).await.unwrap();
    // The request's only.
    client
        .check(with_header("/request-only", &parent(t2, s2)))
        .await
        .unwrap();
    // Malformed (upper-case hex) and repeated (Envoy joins repeats with a comma).
    client
        .check(with_header(
            "/upper",
            &parent(&t2.to_uppercase(), "ABCDEF0123456789"),
        ))
        .await
        .unwrap();
    let twice = format!("{},{}", parent(t2, s2), parent(t1, s1));
    client.check(with_header("/twice", &twice)).await.unwrap();
    // A malformed one in the call is not replaced by the request's.
    let mut call = tonic::Request::new(with_header("/bad-call", &parent(t2, s2)));
    call.metadata_mut()
        .insert("traceparent", "00-zz-zz-01".parse().unwrap());
    client.check(call).await.unwrap();
    // The HTTP endpoint: its request's header.
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/http", service.http))
        .header("traceparent", parent(t1, s1))
        .send()
        .await
        .unwrap();
    // Refused (no forwarded original request): a decision all the same.
    assert_eq!(response.status(), 403);

    let checks = |n: usize| {
        let receiver = &receiver;
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let spans: Vec<Value> = receiver.spans().into_iter().filter(is_check).collect();
                if spans.len() >= n {
                    return spans;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} Check spans: {spans:?}",
                    spans.len()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let spans = checks(6).await;
    assert_eq!(spans.len(), 6, "{spans:?}");
    let ids: Vec<(String, String)> = spans
        .iter()
        .map(|s| {
            (
                s["trace_id"].as_str().unwrap().to_owned(),
                s["parent_span_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // Spans arrive in the order they ended, which is the order sent.
    assert_eq!(ids[0], (t1.to_owned(), s1.to_owned()), "metadata first");
    assert_eq!(spans[0]["trace_state"], "vendor=abc,other=x");
    assert_eq!(ids[1], (t2.to_owned(), s2.to_owned()), "the request's");
    for (i, (trace, parent)) in ids[2..5].iter().enumerate() {
        assert!(
            parent.is_empty(),
            "case {i}: a parent from a bad traceparent"
        );
        assert!(trace != t1 && trace != t2, "case {i}: {trace}");
    }
    assert_eq!(
        ids[5],
        (t1.to_owned(), s1.to_owned()),
        "the HTTP endpoint's"
    );
    assert_eq!(attr(&spans[5], "jwt_authz.wire"), "http");
    assert_eq!(spans[5]["name"], "jwt-authz authorize");
    assert_eq!(attr(&spans[5], "jwt_authz.decision"), "deny");
}

/// Parent-based sampling at ratio 0 (the standard variables): a request without a
/// sampled parent leaves no span; one whose caller sampled it does.
#[tokio::test(flavor = "multi_thread")]
async fn sampling_follows_the_caller_and_the_ratio() {
    let receiver = Receiver::start();
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let service = Service::start(
        config(&idp, ""),
        &[
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &receiver.endpoint()),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
            ("OTEL_SERVICE_NAME", "authz-edge"),
        ],
    )
    .await;
    let mut client = service.client().await;
    for _ in 0..20 {
        client.check(request_at("/unsampled", None)).await.unwrap();
    }
    let unsampled_parent = "00-33333333333333333333333333333333-3333333333333333-00";
    let mut call = tonic::Request::new(request_at("/parent-unsampled", None));
    call.metadata_mut()
        .insert("traceparent", unsampled_parent.parse().unwrap());
    client.check(call).await.unwrap();
    // The request's own sampled traceparent (the client's choice) is not followed.
    let mut chosen = request_at("/client-chosen", None);
    http_mut(&mut chosen).headers.insert(
        "traceparent".into(),
        "00-55555555555555555555555555555555-5555555555555555-01".into(),
    );
    client.check(chosen).await.unwrap();
    let sampled_parent = "00-44444444444444444444444444444444-4444444444444444-01";
    let mut call = tonic::Request::new(request_at("/sampled", None));
    call.metadata_mut()
        .insert("traceparent", sampled_parent.parse().unwrap());
    client.check(call).await.unwrap();
    let sampled = receiver
        .wait_for("sampled Check", |s| s["service"] == "authz-edge")
        .await;
    assert_eq!(sampled["trace_id"], "44444444444444444444444444444444");
    // The unsampled Checks ended before it, so they would have been exported with it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.spans().len(), 1, "{:?}", receiver.spans());
    // Unsampled, the decision log line still names the trace (for the proxy's logs).
    let lines = service.decisions();
    assert!(
        lines
            .iter()
            .any(|l| l["trace_id"] == "33333333333333333333333333333333"),
        "{lines:?}"
    );
}

/// Bad tracing settings stop the service at start-up with the setting named.
#[test]
fn bad_tracing_settings_are_refused_at_start() {
    let dir = TempDir::new("traces-config");
    let file = dir.path().join("config.yaml");
    std::fs::write(
        &file,
        "issuers:\n  - issuer: https://issuer.example.com/\n    audiences: [api]\ntracing:\n  sampling_ratio: 2\n",
    )
    .unwrap();
    let run = |env: &[(&str, &str)], file: &Path| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_jwt-authz"));
        command.args(["check-config"]).arg(file);
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().unwrap()
    };
    let output = run(&[], &file);
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("tracing.sampling_ratio"), "{stderr}");
    std::fs::write(
        &file,
        "issuers:\n  - issuer: https://issuer.example.com/\n    audiences: [api]\n",
    )
    .unwrap();
    let output = run(&[("OTEL_TRACES_EXPORTER", "zipkin")], &file);
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("OTEL_TRACES_EXPORTER"), "{stderr}");
    let output = run(&[], &file);
    assert!(output.status.success());
}

/// Through the shipped `envoy/envoy-http-service.yaml` (the HTTP endpoint): the service's
/// span is the child of Envoy's authorization call, in the trace the client started.
#[tokio::test(flavor = "multi_thread")]
async fn the_http_endpoint_continues_envoys_trace() {
    let receiver = Receiver::start();
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let service = Service::start(
        config(
            &idp,
            &format!("tracing:\n  endpoint: \"{}\"\n", receiver.endpoint()),
        ),
        &[],
    )
    .await;
    let upstream = RecordingUpstream::start().await;
    let (listener, admin) = (free_port(), free_port());
    let bootstrap = super::envoy::with_ports(
        include_str!("../../envoy/envoy-http-service.yaml"),
        &[
            (8080, listener),
            (9901, admin),
            (9193, service.http),
            (8000, upstream.addr.port()),
            (4317, receiver.port),
        ],
    );
    let envoy = Envoy::run(&bootstrap, listener, admin, TempDir::new("traces-http")).await;
    let client_trace = "5555555555555555555555555555aaaa";
    let response = reqwest::Client::new()
        .get(envoy.url("/api/private?api_key=http-query-marker-2b7d"))
        .header(
            "authorization",
            format!("Bearer {}", mint(&key("rsa-1"), &claims(&idp.issuer()))),
        )
        .header(
            "traceparent",
            format!("00-{client_trace}-5555555555555555-01"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", envoy.log());
    let check = receiver
        .wait_for("HTTP endpoint Check", |s| {
            is_check(s) && attr(s, "jwt_authz.wire") == "http"
        })
        .await;
    assert_eq!(check["trace_id"], client_trace, "{check}");
    assert_eq!(attr(&check, "jwt_authz.decision"), "allow");
    let call = receiver
        .wait_for("Envoy's authorization call", |s| {
            s["service"] == "envoy" && s["span_id"] == check["parent_span_id"]
        })
        .await;
    assert_eq!(call["trace_id"], client_trace);
    receiver
        .wait_for("Envoy's request", |s| {
            s["service"] == "envoy" && s["span_id"] == call["parent_span_id"]
        })
        .await;
    assert_never_exported(&receiver.spans(), &["http-query-marker-2b7d"]);
}

/// The work a Check waits on is its child: an introspection call (the loopback endpoint
/// answers), a Redis round trip of the DPoP replay store (a real Redis). Their spans say
/// what happened and carry no token or secret.
#[tokio::test(flavor = "multi_thread")]
async fn introspection_calls_and_redis_round_trips_are_child_spans() {
    let receiver = Receiver::start();
    let redis = RedisServer::start();
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let iss = idp.issuer();
    let answer = json!({
        "active": true, "iss": iss, "aud": AUDIENCE, "exp": now() + 300, "iat": now(),
        "sub": "introspected-subject-3c9e", "scope": "read:messages",
    })
    .to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/introspect", listener.local_addr().unwrap());
    tokio::spawn(jwt_authz::wire::httpd::serve(
        listener,
        jwt_authz::wire::httpd::HttpLimits::default(),
        move |_| {
            http::Response::builder()
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(
                    answer.clone(),
                )))
                .unwrap()
        },
        std::future::pending(),
    ));
    let secret = TempFile::new("introspection-secret", "client-secret-marker-8d0f");
    let service = Service::start(
        format!(
            "issuers:\n  - issuer: \"{iss}\"\n    audiences: [\"{AUDIENCE}\"]\n    jwks_uri: \"{jwks}\"\n    introspection:\n      endpoint: \"{endpoint}\"\n      client_id: rs\n      client_secret_file: \"{secret}\"\n\
             insecure_allow_http: true\ndpop:\n  replay_store: {redis}\ntracing:\n  endpoint: \"{otlp}\"\n",
            jwks = idp.jwks_uri(),
            secret = secret.as_str(),
            redis = redis.url(),
            otlp = receiver.endpoint(),
        ),
        &[],
    )
    .await;
    let mut client = service.client().await;

    let opaque = "opaque-token-marker-61aa";
    let response = client
        .check(request(Some(&format!("Bearer {opaque}")), None))
        .await
        .unwrap()
        .into_inner();
    assert_allowed(&response);
    let check = receiver
        .wait_for("opaque Check", |s| {
            is_check(s) && attr(s, "jwt_authz.decision") == "allow"
        })
        .await;
    let call = receiver
        .wait_for("introspection", |s| {
            s["name"] == "introspection" && s["parent_span_id"] == check["span_id"]
        })
        .await;
    assert_eq!(call["kind"], 3, "a client span");
    assert_eq!(attr(&call, "jwt_authz.result"), "active");
    assert_eq!(attr(&call, "jwt_authz.issuer"), iss.as_str());

    let proof_key = proof_key("ec-256");
    let mut c = claims(&iss);
    c["cnf"] = json!({"jkt": proof_key.thumbprint()});
    let token = mint(&key("rsa-1"), &c);
    let proof = proof_key.proof("GET", URL, Some(&token));
    let mut request = with_proofs(&format!("DPoP {token}"), &[&proof]);
    http_mut(&mut request).scheme = "http".into();
    let response = client.check(request).await.unwrap().into_inner();
    assert_allowed(&response);
    let round_trip = receiver
        .wait_for("redis", |s| s["name"] == "redis SET")
        .await;
    let parent = receiver
        .wait_for("its Check", |s| {
            is_check(s) && s["span_id"] == round_trip["parent_span_id"]
        })
        .await;
    assert_eq!(parent["trace_id"], round_trip["trace_id"]);
    assert_eq!(attr(&round_trip, "db.system.name"), "redis");
    assert_eq!(attr(&round_trip, "jwt_authz.result"), "first_use");

    assert_never_exported(
        &receiver.spans(),
        &[
            opaque,
            "introspected-subject-3c9e",
            "client-secret-marker-8d0f",
            token.as_str(),
            proof.as_str(),
        ],
    );
}

/// A Check the caller gave up on (its stream reset while the Check waited for a JWKS
/// fetch) ends its span as cancelled; the fetch it started is still its child.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_check_ends_its_span_as_cancelled() {
    let receiver = Receiver::start();
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let service = Service::start(
        config(
            &idp,
            &format!("tracing:\n  endpoint: \"{}\"\n", receiver.endpoint()),
        ),
        &[],
    )
    .await;
    // The next fetch (for a kid not loaded) answers after a second.
    idp.update(|s| {
        s.keys.push(key("rsa-2").jwk);
        s.delay = Duration::from_secs(1);
    });
    let token = mint(&key("rsa-2"), &claims(&idp.issuer()));
    let mut client = service.client().await;
    let gave_up = tokio::time::timeout(
        Duration::from_millis(200),
        client.check(request(Some(&format!("Bearer {token}")), None)),
    )
    .await;
    assert!(
        gave_up.is_err(),
        "the Check answered before the fetch: {gave_up:?}"
    );
    let cancelled = receiver
        .wait_for("cancelled Check", |s| {
            is_check(s) && attr(s, "jwt_authz.decision") == "cancelled"
        })
        .await;
    assert_eq!(cancelled["status"]["code"], 2, "error status: {cancelled}");
    let fetch = receiver
        .wait_for("the fetch it started", |s| {
            s["name"] == "jwks.fetch" && s["parent_span_id"] == cancelled["span_id"]
        })
        .await;
    assert_eq!(fetch["trace_id"], cancelled["trace_id"]);
}

/// A collector that is not there costs spans, never a Check: Checks answer, the failed
/// exports are counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_collector_costs_spans_not_checks() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let closed = free_port();
    let service = Service::start(
        config(
            &idp,
            &format!("tracing:\n  endpoint: \"http://127.0.0.1:{closed}\"\n"),
        ),
        &[],
    )
    .await;
    let mut client = service.client().await;
    let token = format!("Bearer {}", mint(&key("rsa-1"), &claims(&idp.issuer())));
    for _ in 0..20 {
        let started = Instant::now();
        let response = client.check(request(Some(&token), None)).await.unwrap();
        assert_allowed(response.get_ref());
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while service
        .metric("jwt_authz_trace_exports_total{result=\"failed\"}")
        .await
        == 0
    {
        assert!(Instant::now() < deadline, "no failed export counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        service.metric("jwt_authz_trace_spans_exported_total").await,
        0
    );
}

/// With traces off, decision log lines carry no trace ids and the exporter's counters stay
/// at 0.
#[tokio::test(flavor = "multi_thread")]
async fn traces_off_leave_no_trace_ids() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let service = Service::start(config(&idp, ""), &[]).await;
    let mut client = service.client().await;
    let mut call = tonic::Request::new(request_at("/off", None));
    call.metadata_mut().insert(
        "traceparent",
        "00-66666666666666666666666666666666-6666666666666666-01"
            .parse()
            .unwrap(),
    );
    client.check(call).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        if let Some(line) = service.decisions().into_iter().next() {
            break line;
        }
        assert!(Instant::now() < deadline, "no decision line");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        line.get("trace_id").is_none() && line.get("span_id").is_none(),
        "{line}"
    );
    let text = service.metrics().await;
    assert!(
        text.contains("jwt_authz_trace_exports_total{result=\"ok\"} 0\n"),
        "{text}"
    );
    assert!(text.contains("jwt_authz_trace_exports_total{result=\"failed\"} 0\n"));
    assert!(text.contains("jwt_authz_trace_spans_exported_total 0\n"));
}

/// Metrics lead to traces: a real Prometheus (exemplar storage on) scrapes the service in
/// OpenMetrics, and the latency bucket of a sampled Check carries its trace id.
#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_stores_the_trace_of_a_latency_bucket() {
    let receiver = Receiver::start();
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let service = Service::start(
        config(
            &idp,
            &format!("tracing:\n  endpoint: \"{}\"\n", receiver.endpoint()),
        ),
        &[],
    )
    .await;
    let prometheus = super::monitoring::Prometheus::start(
        &format!("127.0.0.1:{}", service.admin),
        None,
        &["--enable-feature=exemplar-storage"],
    );
    let mut client = service.client().await;
    // A trace the client chose (the request's traceparent) never becomes an exemplar.
    let chosen = "88888888888888888888888888880001";
    let mut request = request_at("/chosen", None);
    http_mut(&mut request).headers.insert(
        "traceparent".into(),
        format!("00-{chosen}-8888888888888888-01"),
    );
    client.check(request).await.unwrap();
    let trace = "77777777777777777777777777770001";
    let started = Instant::now();
    let exemplar = loop {
        let mut call = tonic::Request::new(request_at("/exemplar", None));
        call.metadata_mut().insert(
            "traceparent",
            format!("00-{trace}-7777777777777777-01").parse().unwrap(),
        );
        client.check(call).await.unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let exemplars = prometheus
            .api(&format!(
                "/api/v1/query_exemplars?query=jwt_authz_check_duration_seconds_bucket&start={}&end={}",
                now - 600,
                now + 60
            ))
            .await;
        let all: Vec<Value> = exemplars
            .as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|s| s["exemplars"].as_array().cloned().unwrap_or_default())
            .collect();
        assert!(
            all.iter().all(|e| e["labels"]["trace_id"] != chosen),
            "a client-chosen trace became an exemplar: {all:?}"
        );
        if let Some(found) = all.iter().find(|e| e["labels"]["trace_id"] == trace) {
            break found.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no exemplar with the trace: {exemplars:?}\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // The exemplar names the Check's own span (not the caller's), exported to the
    // collector.
    assert_ne!(exemplar["labels"]["span_id"], "7777777777777777");
    receiver
        .wait_for("the exemplar's Check", |s| {
            is_check(s) && s["trace_id"] == trace && s["span_id"] == exemplar["labels"]["span_id"]
        })
        .await;
}
