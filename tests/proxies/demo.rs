//! `jwt-authz demo`, the README's first command: run as a user would, with a real Envoy,
//! then the printed tokens are used through Envoy and Ctrl-C stops everything.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jwt_authz::testkit::{free_port, tool};

#[tokio::test(flavor = "multi_thread")]
async fn demo_protects_an_api_through_envoy_and_stops_on_ctrl_c() {
    let (grpc, issuer, upstream, listener, admin) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let tmp = scratch("envoy");
    let mut child = Command::new(env!("CARGO_BIN_EXE_jwt-authz"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("TMPDIR", &tmp)
        .args(["demo", "--envoy"])
        .arg(tool("ENVOY", "venv/bin/envoy"))
        .args([
            "--listen",
            &format!("127.0.0.1:{grpc}"),
            "--issuer-listen",
            &format!("127.0.0.1:{issuer}"),
            "--upstream-listen",
            &format!("127.0.0.1:{upstream}"),
            "--envoy-port",
            &listener.to_string(),
            "--envoy-admin-port",
            &admin.to_string(),
            "--http-listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (mut scoped, mut plain) = (String::new(), String::new());
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 {
        if let Some(t) = line.trim().strip_prefix("TOKEN_SCOPED=") {
            scoped = t.to_owned();
        }
        if let Some(t) = line.trim().strip_prefix("TOKEN_PLAIN=") {
            plain = t.to_owned();
        }
        if line.starts_with("A fresh token:") {
            break;
        }
        line.clear();
    }
    assert!(
        !scoped.is_empty() && !plain.is_empty(),
        "demo printed no tokens"
    );

    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://127.0.0.1:{listener}{path}");
    let get = |path: &'static str, token: Option<String>| {
        let mut r = http.get(url(path));
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        r.send()
    };
    // Envoy needs a moment to find the service healthy; bounded wait on the printed route.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = get("/api/private-scoped", Some(scoped.clone())).await;
        if response.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "demo never answered 200 through Envoy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get("/api/public", None).await.unwrap().status(), 200);
    assert_eq!(get("/api/private", None).await.unwrap().status(), 401);
    assert_eq!(
        get("/api/private", Some(plain.clone()))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("/api/private-scoped", Some(plain))
            .await
            .unwrap()
            .status(),
        403
    );

    // The token endpoint mints working tokens too.
    let body = http
        .get(format!(
            "http://127.0.0.1:{issuer}/token?scope=read:messages"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let fresh: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = fresh["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        get("/api/private-scoped", Some(token))
            .await
            .unwrap()
            .status(),
        200
    );

    // Ctrl-C stops the demo and the Envoy it started.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "demo exited with {exit}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", listener)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "Envoy still listening after the demo stopped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_left_nothing(&tmp);
}

/// A fresh, empty folder the demo gets as its TMPDIR.
fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "jwt-authz-demo-test-{tag}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The demo removed every temporary file it wrote (its rendered Envoy config included).
fn assert_left_nothing(tmp: &std::path::Path) {
    let left: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "the demo left {left:?}");
    std::fs::remove_dir(tmp).unwrap();
}

/// On a machine with no Envoy and no grpcurl, the curl commands the demo prints work as
/// printed, each with the status its comment announces; then Ctrl-C leaves nothing behind.
#[tokio::test(flavor = "multi_thread")]
async fn demo_without_envoy_prints_curl_commands_that_work() {
    let tmp = scratch("curl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_jwt-authz"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("TMPDIR", &tmp)
        // No Envoy to find: an empty PATH hides any, and --no-envoy skips .tools/.
        .env("PATH", "/nonexistent")
        .args(["demo", "--no-envoy"])
        .args([
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--http-listen",
            &format!("127.0.0.1:{}", free_port()),
            "--issuer-listen",
            &format!("127.0.0.1:{}", free_port()),
            "--upstream-listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut env = Vec::new();
    let mut commands = Vec::new();
    let mut in_http = false;
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 {
        let text = line.trim().to_owned();
        line.clear();
        if let Some((k, v)) = text.split_once('=')
            && k.starts_with("TOKEN_")
        {
            env.push((k.to_owned(), v.to_owned()));
        }
        if text.starts_with("Through the HTTP endpoint") {
            in_http = true;
        } else if text.is_empty() {
            in_http = false;
        } else if in_http {
            commands.push(text.clone());
        }
        if text.starts_with("A fresh token:") {
            break;
        }
    }
    assert_eq!(env.len(), 2, "demo printed no tokens");
    assert!(
        commands.len() >= 4,
        "demo printed no curl commands: {commands:?}"
    );
    for command in &commands {
        let (curl, expect) = command
            .split_once(" # ")
            .expect("each command names its status");
        let status = expect.trim()[..3].to_owned();
        let output = Command::new("bash")
            .arg("-c")
            .arg(format!("{curl} -s -o /dev/null -w '%{{http_code}}'"))
            .envs(env.iter().cloned())
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout), status, "{command}");
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    assert_left_nothing(&tmp);
}
