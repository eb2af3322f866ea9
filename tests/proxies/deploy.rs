//! The deployment files that cannot run here (no Docker engine, no cluster) are still
//! checked: they parse, reuse the tested Envoy bootstrap, and carry the settings that make
//! ext_authz work (gRPC port protocol, explicit timeout, probes, fail closed). Every shipped
//! Envoy bootstrap passes `envoy --mode validate`.

use jwt_authz::config::{Config, ServeArgs, parse_file};
use serde_yaml_ng::Value;

use super::envoy::TempDir;
use super::mtls::{with_tls_dir, write_envoy_tls};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn docs(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn compose_reuses_the_tested_envoy_bootstrap() {
    let compose = &docs("docker-compose.yml")[0];
    let envoy = &compose["services"]["envoy"];
    let volumes: Vec<&str> = envoy["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        volumes.iter().any(|v| v.starts_with("./envoy/envoy.yaml:")),
        "{volumes:?}"
    );
    let authz = &compose["services"]["jwt-authz"];
    assert_eq!(authz["network_mode"], "service:envoy");
    let command: Vec<&str> = authz["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(command[..2], ["demo", "--no-envoy"]);
    // The demo command line in compose is one the binary accepts.
    let mut argv = vec!["jwt-authz"];
    argv.extend(&command);
    assert!(<jwt_authz::config::Cli as clap::Parser>::try_parse_from(argv).is_ok());
}

#[test]
fn kubernetes_service_declares_grpc_and_probes() {
    let docs = docs("envoy/istio/jwt-authz.yaml");
    let service = kind(&docs, "Service");
    let grpc = service["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["port"] == 9191)
        .expect("port 9191");
    assert_eq!(grpc["appProtocol"], "grpc");
    let deployment = kind(&docs, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["ports"][0]["name"], "grpc");
    assert_eq!(container["ports"][0]["containerPort"], 9191);
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(container["resources"]["requests"]["cpu"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert!(
        pod["topologySpreadConstraints"]
            .as_sequence()
            .unwrap()
            .len()
            >= 2
    );
    // The config directory is mounted whole: a subPath mount never sees the symlink swap
    // by which Kubernetes updates a ConfigMap.
    let mount = &container["volumeMounts"][0];
    assert_eq!(mount["mountPath"], "/etc/jwt-authz");
    assert!(mount.get("subPath").is_none());
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"],
        kind(&docs, "ConfigMap")["metadata"]["name"]
    );
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args, ["serve", "--config", "/etc/jwt-authz/config.yaml"]);
    let hpa = kind(&docs, "HorizontalPodAutoscaler");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "jwt-authz");
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);
    let pdb = kind(&docs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["selector"], deployment["spec"]["selector"]);
}

/// The Kubernetes version whose schemas the manifests are validated against.
const KUBERNETES_VERSION: &str = "1.33.0";

/// Runs kubernetes-validate (PyPI, installed into `.tools/venv` by
/// `scripts/install-test-tools.sh`) in strict mode: unknown fields are errors.
fn kubernetes_validate(path: &std::path::Path) -> (bool, String) {
    let tool = jwt_authz::testkit::tool("KUBERNETES_VALIDATE", "venv/bin/kubernetes-validate");
    let mut command = std::process::Command::new(tool);
    command
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .arg(path);
    run(command)
}

/// Whether `command` succeeded, and everything it printed.
pub(super) fn run(mut command: std::process::Command) -> (bool, String) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} does not run: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn kubernetes_manifests_validate_against_pinned_schemas() {
    let path = std::path::Path::new(ROOT).join("envoy/istio/jwt-authz.yaml");
    let (ok, text) = kubernetes_validate(&path);
    assert!(ok, "{text}");
    let documents = docs("envoy/istio/jwt-authz.yaml").len();
    let passed = text
        .lines()
        .filter(|l| l.contains(" passed for resource "))
        .count();
    assert_eq!(
        passed, documents,
        "every document has a schema and passes:\n{text}"
    );
    assert!(!text.contains("WARN") && !text.contains("ERROR"), "{text}");

    // The validator is live: a wrong type and an unknown field are caught.
    let broken = std::fs::read_to_string(&path)
        .unwrap()
        .replace("minReplicas: 2", "minReplicas: two")
        .replace(
            "readOnlyRootFilesystem: true",
            "readOnlyRootFilesystem: true\n            readOnlyRootFileSystem: true",
        );
    let dir = std::env::temp_dir().join(format!("jwt-authz-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken_path = dir.join("broken.yaml");
    std::fs::write(&broken_path, broken).unwrap();
    let (ok, text) = kubernetes_validate(&broken_path);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!ok, "a broken manifest passed:\n{text}");
    assert!(
        text.contains("horizontalpodautoscaler") && text.contains("deployment"),
        "{text}"
    );
}

/// Runs `envoy --mode validate` on a bootstrap: Envoy builds every listener, filter,
/// cluster and TLS context from it (reading the files it names) without binding a port.
fn envoy_validate(path: &std::path::Path) -> (bool, String) {
    let mut command =
        std::process::Command::new(jwt_authz::testkit::tool("ENVOY", "venv/bin/envoy"));
    command
        .args(["--mode", "validate", "-l", "error", "-c"])
        .arg(path);
    run(command)
}

#[test]
fn shipped_envoy_bootstraps_pass_envoy_validate() {
    for file in [
        "envoy/envoy.yaml",
        "envoy/envoy-http-service.yaml",
        "envoy/envoy-grpc.yaml",
        "envoy/envoy-mcp.yaml",
    ] {
        let (ok, text) = envoy_validate(&std::path::Path::new(ROOT).join(file));
        assert!(ok, "{file}: {text}");
    }

    // envoy/envoy-mtls.yaml reads its certificates from /etc/envoy/tls/: validated with
    // that directory swapped for one holding a generated PKI, and nothing else changed.
    let dir = TempDir::new("validate-mtls");
    let pki = jwt_authz::testkit::generate_pki(&dir.path().join("pki"));
    let tls = write_envoy_tls(&dir, &pki);
    let shipped = std::fs::read_to_string(format!("{ROOT}/envoy/envoy-mtls.yaml")).unwrap();
    let with_certs = dir.path().join("envoy-mtls.yaml");
    std::fs::write(&with_certs, with_tls_dir(&shipped, &tls)).unwrap();
    let (ok, text) = envoy_validate(&with_certs);
    assert!(ok, "envoy/envoy-mtls.yaml: {text}");

    // The validator is live: the TLS files are read, so a missing CA file is caught.
    std::fs::remove_file(std::path::Path::new(&tls).join("clients-ca.pem")).unwrap();
    let (ok, text) = envoy_validate(&with_certs);
    assert!(!ok, "validated without its clients' CA: {text}");
    assert!(text.contains("clients-ca.pem"), "{text}");
}

#[test]
fn kubernetes_config_map_passes_check_config() {
    let docs = docs("envoy/istio/jwt-authz.yaml");
    let text = kind(&docs, "ConfigMap")["data"]["config.yaml"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = std::env::temp_dir().join(format!("jwt-authz-cm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.yaml");
    std::fs::write(&file, text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_jwt-authz"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn kubernetes_config_map_holds_a_valid_config() {
    let docs = docs("envoy/istio/jwt-authz.yaml");
    let text = kind(&docs, "ConfigMap")["data"]["config.yaml"]
        .as_str()
        .unwrap()
        .to_owned();
    let file = parse_file(&text).unwrap();
    let config = Config::from_sources(&ServeArgs::default(), file).unwrap();
    assert_eq!(config.settings.issuers.len(), 1);
    assert!(!config.settings.policy.rules().is_empty());
    assert!(config.settings.policy.settings().cors_preflight);
}

#[test]
fn istio_normalises_paths_and_checks_every_path() {
    let mesh = docs("envoy/istio/mesh-config.yaml");
    let normalization = find_key(&mesh[0], "pathNormalization").expect("pathNormalization");
    assert_eq!(normalization["normalization"], "DECODE_AND_MERGE_SLASHES");
    let policy = &docs("envoy/istio/authorization-policy.yaml")[0];
    // One empty rule: every request is checked, public paths included, so no spelling
    // the mesh leaves alone skips the service's path grammar (issue 19).
    let rules = policy["spec"]["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1);
    assert!(rules[0].as_mapping().unwrap().is_empty(), "{:?}", rules[0]);
}

#[test]
fn istio_provider_has_an_explicit_timeout_and_fails_closed() {
    let mesh = docs("envoy/istio/mesh-config.yaml");
    let provider = find_key(&mesh[0], "envoyExtAuthzGrpc").expect("provider");
    assert!(
        provider["timeout"].is_string(),
        "Istio's default timeout is 600s"
    );
    assert_eq!(provider["port"], 9191);
    assert_ne!(provider["failOpen"], true);
    let policy = &docs("envoy/istio/authorization-policy.yaml")[0];
    assert_eq!(policy["spec"]["action"], "CUSTOM");
    assert_eq!(policy["spec"]["provider"]["name"], provider_name(&mesh[0]));
}

fn provider_name(doc: &Value) -> String {
    let providers = find_key(doc, "extensionProviders").unwrap();
    providers[0]["name"].as_str().unwrap().to_owned()
}

fn find_key<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    match value {
        Value::Mapping(map) => map
            .get(key)
            .or_else(|| map.values().find_map(|v| find_key(v, key))),
        Value::Sequence(items) => items.iter().find_map(|v| find_key(v, key)),
        _ => None,
    }
}

/// The benchmark's ext_authz bootstrap is `envoy/envoy.yaml` except for what makes it a
/// benchmark: `@…@` port placeholders, a loopback listener, no access log, one route that
/// Envoy answers itself with the check settings of `/api/private-scoped`, and no upstream
/// cluster. Any other edit to either file fails here, so the bench measures what ships.
#[test]
fn bench_ext_authz_bootstrap_is_the_shipped_one() {
    let mut expected = docs("envoy/envoy.yaml").remove(0);
    let listener = &mut expected["static_resources"]["listeners"][0];
    listener["address"]["socket_address"]["address"] = "127.0.0.1".into();
    let hcm = &mut listener["filter_chains"][0]["filters"][0]["typed_config"];
    hcm.as_mapping_mut()
        .unwrap()
        .remove("access_log")
        .expect("the shipped listener logs access");
    // Nor does it trace: the peers it is compared with are measured without tracing.
    hcm.as_mapping_mut()
        .unwrap()
        .remove("tracing")
        .expect("the shipped listener traces");
    let routes = &mut hcm["route_config"]["virtual_hosts"][0]["routes"];
    let scoped = routes
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["match"]["path_separated_prefix"] == "/api/private-scoped")
        .expect("a /api/private-scoped route")["typed_per_filter_config"]
        .clone();
    let mut route: Value = serde_yaml_ng::from_str(
        "{match: {prefix: /}, direct_response: {status: 200, body: {inline_string: \"ok\\n\"}}}",
    )
    .unwrap();
    route["typed_per_filter_config"] = scoped;
    *routes = Value::Sequence(vec![route]);
    expected["static_resources"]["clusters"]
        .as_sequence_mut()
        .unwrap()
        .retain(|c| c["name"] == "jwt_authz");

    // bench/run.sh substitutes the ports; the shipped ones make the rest comparable.
    let text = std::fs::read_to_string(format!("{ROOT}/bench/envoy-ext-authz.yaml"))
        .unwrap()
        .replace("@ADMIN_PORT@", "9901")
        .replace("@LISTEN_PORT@", "8080")
        .replace("@AUTHZ_PORT@", "9191");
    let bench: Value = serde_yaml_ng::from_str(&text).unwrap();
    assert!(
        bench == expected,
        "bench/envoy-ext-authz.yaml drifted from envoy/envoy.yaml:\n--- bench\n{}\n--- expected\n{}",
        serde_yaml_ng::to_string(&bench).unwrap(),
        serde_yaml_ng::to_string(&expected).unwrap(),
    );
}
