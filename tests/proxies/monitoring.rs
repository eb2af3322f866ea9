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
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring");
    let output = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn the_rules_pass_promtool_and_their_unit_tests() {
    let (ok, text) = run(&["check", "rules", "rules.yml"]);
    assert!(ok, "{text}");
    assert!(text.contains("SUCCESS: 15 rules found"), "{text}");
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
    let config = TempFile::new(
        "monitoring.yaml",
        format!(
            "issuers:\n  - issuer: \"{}\"\n    audiences: [\"{AUDIENCE}\"]\n    jwks_uri: \"{}\"\n    introspection:\n      endpoint: \"http://127.0.0.1:9/introspect\"\n      client_id: rs\n      client_secret_file: \"{}\"\n\
             insecure_allow_http: true\nrevocation: {{store: memory}}\n",
            idp.issuer(),
            idp.jwks_uri(),
            secret.as_str()
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
    let output = Command::new(promtool())
        .args(["check", "rules"])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
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
