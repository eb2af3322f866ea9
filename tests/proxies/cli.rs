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

fn temp_file(name: &str, text: &str) -> jwt_authz::testkit::TempFile {
    jwt_authz::testkit::TempFile::new(name, text)
}

/// Every problem of a file is reported in one run: keys the YAML parser refuses (unknown,
/// wrongly typed, with their line and column) and values the checks refuse, together.
#[test]
fn check_config_reports_every_problem_at_once() {
    let file = jwt_authz::testkit::TempFile::new(
        "many.yaml",
        "listen: nope\nissuers:\n  - issuer: https://a.example/\n    audiences: [x]\n    dpop: maybe\n    colour: blue\n  - {issuer: \"https://b.example/\", audiences: [y], leeway: soon}\nroutes:\n  - name: one\n    path_prefix: /x\n    scope: {all_of: [a]}\n  - {path: /y, mode: audit}\ndefault_action: maybe\nlog: {level: info, formt: json}\njwks: {refresh: soon}\n",
    );
    let out = bin().arg("check-config").arg(file.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "many.yaml: line 6, column 5: issuers[0].colour: unknown field `colour`",
        "many.yaml: line 7, column 52: issuers[1].leeway: `soon` is not a duration",
        "many.yaml: line 11, column 5: routes[0].scope: unknown field `scope`",
        "many.yaml: line 14, column 20: log.formt: unknown field `formt`",
        "many.yaml: line 15, column 8: jwks.refresh: `soon` is not a duration",
        "jwt-authz: listen: `nope` is not an address",
        "jwt-authz: issuers[0].dpop: `maybe` is not off, allowed or required",
        "jwt-authz: routes[1].mode: `audit` is not enforce or shadow",
        "jwt-authz: default_action: `maybe` is not deny or authenticated",
    ] {
        assert!(err.contains(expected), "{expected}\n{err}");
    }
    assert_eq!(err.lines().count(), 9, "{err}");
}

/// The shipped example configurations pass `check-config` as they are.
#[test]
fn shipped_examples_pass_check_config() {
    for (file, rules) in [("examples/mcp.yaml", 4), ("examples/grpc.yaml", 5)] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let out = bin().arg("check-config").arg(&path).output().unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("{rules} route rule(s)")),
            "{file}: {stdout}"
        );
    }
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
fn check_config_names_bad_route_policy_keys() {
    let path = temp_file(
        "policy.yaml",
        "issuers:\n  - issuer: https://t.auth0.com/\n    audiences: [a]\ndefault_action: maybe\nroutes:\n  - path: /x\n    issuers: [https://other.example/]\n    claims: [{claim: org.id, matches: '('}]\n    mode: audit\n",
    );
    let out = bin().arg("check-config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "jwt-authz: default_action: `maybe` is not deny or authenticated",
        "jwt-authz: routes[0].issuers[0]: `https://other.example/` is not a configured issuer",
        "jwt-authz: routes[0].claims[0].matches: `(` is not a valid pattern",
        "jwt-authz: routes[0].mode: `audit` is not enforce or shadow",
    ] {
        assert!(err.contains(expected), "{expected}\n{err}");
    }
    let _ = std::fs::remove_file(path);
}

/// `explain` prints each step and the exact response, offline, and never the token.
#[test]
fn explain_walks_through_a_decision_without_printing_the_token() {
    use jwt_authz::testkit::{FIXTURES, claims, key, mint};
    let issuer = "https://tenant.example/";
    let config = temp_file(
        "explain.yaml",
        &format!(
            "issuers:\n  - {{issuer: \"{issuer}\", audiences: [\"https://api.example.com\"], jwks_uri: \"https://tenant.example/jwks\"}}\nroutes:\n  - {{name: public, path_prefix: /api/public, allow_anonymous: true}}\n  - name: admin\n    path_prefix: /api/admin\n    scopes: {{all_of: [admin]}}\n    claims: [{{claim: org.id, equals: acme}}]\n"
        ),
    );
    let mut c = claims(issuer);
    c["org"] = serde_json::json!({"id": "acme"});
    let token = mint(&key("rsa-1"), &c);
    let token_file = temp_file("explain.token", &token);
    let jwks = format!("{FIXTURES}/jwks.json");
    let run = |path: &str, with_token: bool, exit: i32| {
        let mut cmd = bin();
        cmd.args(["explain", "--config"]).arg(&config).args([
            "--jwks",
            &jwks,
            "--host",
            "api.example.com",
            "--path",
            path,
        ]);
        if with_token {
            cmd.arg("--token-file").arg(&token_file);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            out.status.code(),
            Some(exit),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };

    let text = run("/api/admin/%75sers?x=1", true, 1);
    for line in [
        "request: GET api.example.com /api/admin/%75sers (query not shown)",
        "path: /api/admin/users",
        "rule: admin: token required (the first enforcing rule matching: path_prefix /api/admin)",
        "  token source: pass (header authorization, scheme Bearer: ",
        "  signature: pass",
        "  exp: pass",
        "  aud: pass (issuer accepts https://api.example.com)",
        "  scopes: FAIL (insufficient scope: insufficient_scope)  <- decided",
        "  claim org.id equals: not evaluated",
        "response: 403 insufficient_scope",
        "  www-authenticate: Bearer realm=\"jwt-authz\", error=\"insufficient_scope\", scope=\"admin\"",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !text.contains(&token) && !text.contains(signature),
        "{text}"
    );

    let text = run("/api/public/..;/admin", true, 1);
    assert!(
        text.contains("path: refused (path parameter in path)"),
        "{text}"
    );
    assert!(text.contains("response: 403 access_denied"), "{text}");
    assert!(!text.contains(signature), "{text}");

    let text = run("/api/public/x", false, 0);
    assert!(
        text.contains("rule: public: anonymous (no token needed)"),
        "{text}"
    );
    assert!(text.contains("response: allow"), "{text}");
    assert!(
        text.contains("upstream header removed: x-jwt-sub"),
        "{text}"
    );
    for path in [config, token_file] {
        let _ = std::fs::remove_file(path);
    }
}

/// SIGHUP re-reads the file (here with polling off, so only the signal can do it): a valid
/// version is swapped in, an invalid one is refused with each problem named.
#[test]
fn sighup_reloads_the_configuration_file() {
    use std::time::Duration;
    let base = "config_poll: off\nlisten: 127.0.0.1:0\nadmin_listen: off\nlog: {format: json}\nissuers:\n  - {issuer: \"http://127.0.0.1:9/\", audiences: [a]}\n";
    let path = temp_file("sighup.yaml", base);
    let mut child = bin()
        .args(["serve", "--config"])
        .arg(&path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = jwt_authz::testkit::stderr_lines(&mut child);
    let wait_for = |needle: &str| -> String {
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    };
    let hangup = || {
        let status = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    wait_for("jwt-authz listening");

    std::fs::write(
        &path,
        format!("{base}routes:\n  - {{path_prefix: /api, deny: true}}\n"),
    )
    .unwrap();
    hangup();
    let line = wait_for("configuration reloaded");
    assert!(line.contains("\"rules\":1"), "{line}");
    assert!(line.contains("\"trigger\":\"SIGHUP\""), "{line}");

    std::fs::write(&path, format!("{base}routes:\n  - {{path: nope}}\n")).unwrap();
    hangup();
    let line = wait_for("configuration reload refused");
    assert!(
        line.contains("routes[0].path: `nope` must start with `/`"),
        "{line}"
    );

    // A setting bound at start-up is named, and the rest still reloads.
    std::fs::write(
        &path,
        base.replace("listen: 127.0.0.1:0", "listen: 127.0.0.1:1")
            + "http_listen: 127.0.0.1:2\nhttp_server: {max_connections: 5}\n",
    )
    .unwrap();
    hangup();
    for setting in ["listen", "http_listen", "http_server"] {
        let line = wait_for("changes only on restart");
        assert!(
            line.contains(&format!("\"setting\":\"{setting}\"")),
            "{setting}: {line}"
        );
    }
    let line = wait_for("configuration reloaded");
    assert!(line.contains("\"rules\":0"), "{line}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let _ = std::fs::remove_file(path);
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
