//! The shipped Prometheus rules (`monitoring/rules.yml`): valid for the real `promtool`,
//! their unit tests pass (each alert fires on the series that should raise it), and every
//! metric they read is one the running service exposes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use jwt_authz::testkit::*;

fn promtool() -> PathBuf {
    let path = std::env::var_os("PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/promtool"));
    assert!(
        path.is_file(),
        "{} is missing: install Debian's prometheus package (scripts/install-test-tools.sh)",
        path.display()
    );
    path
}

fn run(args: &[&str]) -> (bool, String) {
    let mut command = Command::new(promtool());
    command
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring"));
    super::deploy::run(command)
}

#[test]
fn the_rules_pass_promtool_and_their_unit_tests() {
    let (ok, text) = run(&["check", "rules", "rules.yml"]);
    assert!(ok, "{text}");
    assert!(text.contains("SUCCESS: 16 rules found"), "{text}");
    let (ok, text) = run(&["test", "rules", "rules_test.yml"]);
    assert!(ok, "{text}");
}

/// Every `jwt_authz_*` series the rules read is one a running service exposes (with the
/// replay store, revocations and introspection configured, which add their own).
#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_rules_read_is_exposed() {
    let rules =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring/rules.yml"))
            .unwrap();
    let read: BTreeSet<String> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("jwt_authz_"))
        .map(|w| {
            ["_bucket", "_count", "_sum"]
                .iter()
                .fold(w.to_owned(), |w, s| {
                    w.strip_suffix(s).map(str::to_owned).unwrap_or(w)
                })
        })
        .collect();
    assert!(read.len() >= 10, "{read:?}");
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let secret = TempFile::new("secret", "s");
    let push = TempFile::new("ssf-push", "Bearer push-credential");
    let config = TempFile::new(
        "monitoring.yaml",
        format!(
            "issuers:\n  - issuer: \"{iss}\"\n    audiences: [\"{AUDIENCE}\"]\n    jwks_uri: \"{jwks}\"\n    introspection:\n      endpoint: \"http://127.0.0.1:9/introspect\"\n      client_id: rs\n      client_secret_file: \"{secret}\"\n\
             insecure_allow_http: true\nrevocation: {{store: memory}}\n\
             routes:\n  - {{name: \"shadow \\\"quoted\\\"\", path_prefix: /api, mode: shadow, scopes: {{all_of: [read]}}}}\n\
             ssf:\n  listen: 127.0.0.1:0\n  transmitters:\n    - issuer: \"{iss}\"\n      jwks_uri: \"{jwks}\"\n      audience: receiver\n      authorization_file: \"{push}\"\n",
            iss = idp.issuer(),
            jwks = idp.jwks_uri(),
            secret = secret.as_str(),
            push = push.as_str(),
        ),
    );
    let authz = Authz::start(&["--config", config.as_str()]).await;
    authz.wait_serving().await;
    let (_, metrics) = scrape(&authz, "/metrics").await;
    let exposed: BTreeSet<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("# TYPE "))
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    for name in &read {
        assert!(
            exposed.contains(name.as_str()),
            "{name} is not exposed:\n{metrics}"
        );
    }
    // Every family, as OpenMetrics, read by a strict parser (the Python prometheus_client's
    // OpenMetrics parser, which refuses what the grammar does not allow).
    let open = reqwest::Client::new()
        .get(format!("http://{}/metrics", authz.admin))
        .header("accept", "application/openmetrics-text;version=1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(
        open.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let open = open.text().await.unwrap();
    for family in [
        "jwt_authz_shadow_decisions",
        "jwt_authz_ssf_events",
        "jwt_authz_revocations",
    ] {
        assert!(
            open.contains(&format!("# TYPE {family}")),
            "{family}:\n{open}"
        );
    }
    let parser = "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\nfamilies = list(parse(sys.stdin.read()))\nprint(len(families))\n";
    let mut python = Command::new(tool("UPSTREAM_PYTHON", "venv/bin/python"))
        .args(["-c", parser])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python with prometheus_client (scripts/install-test-tools.sh)");
    use std::io::Write as _;
    python
        .stdin
        .take()
        .unwrap()
        .write_all(open.as_bytes())
        .unwrap();
    let output = python.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the OpenMetrics exposition does not parse: {}\n{open}",
        String::from_utf8_lossy(&output.stderr)
    );
    let families: usize = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    assert_eq!(families, exposed.len(), "{open}");
}

/// Every query of the shipped Grafana dashboard is valid PromQL for the real `promtool`,
/// reads only recording rules `rules.yml` defines and metrics the service exposes.
#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_query_is_valid_and_reads_what_exists() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("grafana-dashboard.json")).unwrap())
            .unwrap();
    let queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(queries.len() >= 13, "{queries:?}");
    // As recording rules, the queries are parsed and checked by promtool.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, query) in queries.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(query).unwrap()
        ));
    }
    let file = TempFile::new("dashboard-rules.yml", rules);
    let mut command = Command::new(promtool());
    command.args(["check", "rules"]).arg(file.path());
    let (ok, text) = super::deploy::run(command);
    assert!(ok, "{text}");
    let rules_text = std::fs::read_to_string(dir.join("rules.yml")).unwrap();
    for query in &queries {
        for word in query.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
            if word.starts_with("jwt_authz:") {
                assert!(
                    rules_text.contains(&format!("record: {word}")),
                    "{word} is no recording rule of rules.yml"
                );
            }
        }
    }
}

/// A real Prometheus scraping a running service with the shipped rules (evaluated every
/// second here): every recording rule gives series, and a JWKS outage and a refused
/// reload raise their alerts.
#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_evaluates_the_rules_on_the_service() {
    let idp = Idp::start(vec![key("rsa-1").jwk]).await;
    let good = format!(
        "issuers:\n  - {{issuer: \"{}\", audiences: [\"{AUDIENCE}\"], jwks_uri: \"{}\"}}\njwks: {{refresh: 1s, cooldown: 1s, timeout: 1s}}\n",
        idp.issuer(),
        idp.jwks_uri()
    );
    let config = TempFile::new("prometheus-service.yaml", &good);
    let authz = Authz::start(&[
        "--config",
        config.as_str(),
        "--config-poll",
        "200ms",
        "--config-settle",
        "200ms",
    ])
    .await;
    authz.wait_serving().await;

    let rules =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring/rules.yml"))
            .unwrap()
            .replace("interval: 30s", "interval: 1s");
    let prometheus = Prometheus::start(&authz.admin.to_string(), Some(&rules), &[]);
    let log = || prometheus.log();

    // Traffic: allows and denials.
    let token = mint(&key("rsa-1"), &claims(&idp.issuer()));
    for _ in 0..20 {
        assert_allowed(&authz.check_token(&token).await);
        assert_denied(
            &authz.check(request(None, None)).await,
            401,
            "authorization_header_missing",
        );
    }
    // Prometheus has the counters before they move: an increase needs a sample before it.
    let started = std::time::Instant::now();
    while prometheus
        .query("jwt_authz_config_reloads_total{result=\"failure\"}")
        .await
        .is_none_or(|r| r.is_empty())
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "prometheus never scraped the service\n{}",
            log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    // A refused reload, and an identity provider that stops answering.
    config.write("issuers: [not, a, list, of, issuers]\n");
    idp.update(|s| s.status = 500);

    let started = std::time::Instant::now();
    let mut missing: Vec<&str> = Vec::new();
    while started.elapsed() < std::time::Duration::from_secs(60) {
        missing.clear();
        for expr in [
            "jwt_authz:decisions:rate5m{decision=\"deny\",code=\"authorization_header_missing\"}",
            "jwt_authz:decisions:rate5m{decision=\"allow\",code=\"ok\"}",
            "jwt_authz:deny_ratio:rate5m",
            "jwt_authz:check_duration_seconds:p50",
            "jwt_authz:check_duration_seconds:p99",
            "jwt_authz:token_cache_hit_ratio:rate5m",
            "jwt_authz:check_within_5ms_ratio:rate5m",
            "ALERTS{alertname=\"JwtAuthzJwksFetchFailing\",alertstate=\"firing\"}",
            "ALERTS{alertname=\"JwtAuthzConfigReloadFailed\",alertstate=\"firing\"}",
        ] {
            if prometheus.query(expr).await.is_none_or(|r| r.is_empty()) {
                missing.push(expr);
            }
        }
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let (_, metrics) = scrape(&authz, "/metrics").await;
    assert!(
        missing.is_empty(),
        "no series for {missing:?}\n{}\n{metrics}",
        log()
    );
}

/// A real Prometheus (Debian's, 2.42) on a free loopback port, scraping one target every
/// second; stopped by its PID and its directory removed on drop.
pub(super) struct Prometheus {
    child: std::process::Child,
    dir: PathBuf,
    port: u16,
    client: reqwest::Client,
}

impl Prometheus {
    /// Scrapes `target` (`host:port`) with `rules` (a rule file's text) evaluated every
    /// second, and `flags` (`--enable-feature=...`).
    pub(super) fn start(target: &str, rules: Option<&str>, flags: &[&str]) -> Prometheus {
        let binary = PathBuf::from("/usr/bin/prometheus");
        assert!(
            binary.is_file(),
            "/usr/bin/prometheus is missing: install Debian's prometheus package"
        );
        let dir = std::env::temp_dir().join(format!(
            "jwt-authz-prometheus-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let rule_files = match rules {
            Some(rules) => {
                std::fs::write(dir.join("rules.yml"), rules).unwrap();
                "rule_files: [rules.yml]\n"
            }
            None => "",
        };
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n{rule_files}scrape_configs:\n  - job_name: jwt-authz\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(&binary)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(flags)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            dir,
            port,
            client: reqwest::Client::new(),
        }
    }

    pub(super) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `data` of an HTTP API answer to `path` (with its query), `None` until it answers.
    pub(super) async fn api(&self, path: &str) -> Option<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let response = self.client.get(url).send().await.ok()?;
        let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
        Some(body["data"].clone())
    }

    /// The result of an instant query.
    pub(super) async fn query(&self, expr: &str) -> Option<Vec<serde_json::Value>> {
        let expr = url::form_urlencoded::byte_serialize(expr.as_bytes()).collect::<String>();
        self.api(&format!("/api/v1/query?query={expr}")).await?["result"]
            .as_array()
            .cloned()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
