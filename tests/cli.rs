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
        err.contains("jwks-refresh: must be greater than 0"),
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
