//! The `jwt-authz` binary itself: configuration errors stop start-up with one line per
//! problem and exit code 64; a good configuration serves and stops cleanly on SIGTERM.

use std::process::{Command, Stdio};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jwt-authz"));
    // Flags only: keep the developer's environment out of the test.
    for (key, _) in std::env::vars() {
        if key.starts_with("JWT_AUTHZ_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

#[test]
fn missing_issuer_and_audience_are_named() {
    let out = bin().arg("serve").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("jwt-authz: issuer: required"), "{err}");
    let out = bin()
        .args(["serve", "--issuer", "https://t.auth0.com/"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("jwt-authz: audience: at least one is required"),
        "{err}"
    );
}

#[test]
fn bad_values_name_the_option() {
    let out = bin()
        .args([
            "serve",
            "--issuer",
            "ftp://x/",
            "--audience",
            "a",
            "--algorithms",
            "none",
            "--jwks-refresh",
            "0s",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("issuer: scheme `ftp` is not supported"),
        "{err}"
    );
    assert!(err.contains("algorithms: `none` is never allowed"), "{err}");
    assert!(
        err.contains("jwks.refresh: must be greater than 0"),
        "{err}"
    );
}

#[test]
fn env_twins_configure_the_service() {
    let out = bin()
        .arg("serve")
        .env("JWT_AUTHZ_ISSUER", "https://t.auth0.com/")
        .env("JWT_AUTHZ_AUDIENCE", "a")
        .env("JWT_AUTHZ_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("jwt-authz: listen:"), "{err}");
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    // Port 0: the kernel picks a free one. The issuer is unreachable; the server still
    // starts (NOT_SERVING) and must exit 0 on SIGTERM.
    let mut child = bin()
        .args([
            "serve",
            "--issuer",
            "http://127.0.0.1:9/",
            "--audience",
            "a",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    use std::io::BufRead;
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "server exited before listening"
        );
        if line.contains("jwt-authz listening") {
            break;
        }
    }
    let log: serde_json::Value = serde_json::from_str(line.trim()).expect("JSON log line");
    assert_eq!(log["level"], "INFO");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("jwt-authz-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_config_accepts_a_good_file() {
    let path = temp_file(
        "good.yaml",
        "issuers:\n  - issuer: https://t.auth0.com/\n    audiences: [https://api.example.com]\nroutes:\n  - path: /api/public\n    allow_anonymous: true\n",
    );
    let out = bin().arg("check-config").arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ok (1 issuer(s), 1 route rule(s), 1 claim header(s))"),
        "{stdout}"
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn check_config_names_line_and_field_of_a_typo() {
    let path = temp_file(
        "typo.yaml",
        "issuers:\n  - issuer: https://t.auth0.com/\n    audiences: [a]\nroutes:\n  - path: /x\n    scope: {all_of: [a]}\n",
    );
    let out = bin().arg("check-config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 6, column 5: routes[0]: unknown field `scope`")
            || err.contains("line 6, column 5:"),
        "{err}"
    );
    assert!(err.contains("unknown field `scope`"), "{err}");
    let _ = std::fs::remove_file(path);
}

#[test]
fn check_config_reports_every_semantic_error() {
    let path = temp_file(
        "bad.yaml",
        "issuers:\n  - issuer: http://idp.example.com/\n    audiences: []\nroutes:\n  - path: nope\n",
    );
    let out = bin().arg("check-config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("jwt-authz: issuers[0].issuer: `http://idp.example.com/` must use https"),
        "{err}"
    );
    assert!(
        err.contains("jwt-authz: issuers[0].audiences: at least one is required"),
        "{err}"
    );
    assert!(
        err.contains("jwt-authz: routes[0].path: `nope` must start with `/`"),
        "{err}"
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn check_config_on_a_missing_file_names_it() {
    let out = bin()
        .args(["check-config", "/nonexistent/jwt-authz.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config: cannot read /nonexistent/jwt-authz.yaml"),
        "{err}"
    );
}

#[test]
fn secrets_in_urls_never_reach_the_log() {
    let closed = jwt_authz::testkit::unused_addr();
    let mut child = bin()
        .args([
            "serve",
            "--issuer",
            &format!("http://admin:hunter2@{closed}/"),
            "--jwks-uri",
            &format!("http://user:hunter2@{closed}/jwks.json?api_key=s3cret"),
            "--audience",
            "a",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    use std::io::BufRead;
    while !log.contains("JWKS fetch failed") {
        let read = stderr.read_line(&mut log).unwrap();
        assert!(read > 0, "server exited before the fetch failed:\n{log}");
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !log.contains("hunter2") && !log.contains("s3cret") && !log.contains("api_key"),
        "{log}"
    );
    assert!(
        log.contains(&format!("GET http://{closed}/jwks.json")),
        "{log}"
    );
}
