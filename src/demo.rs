//! `jwt-authz demo`: everything needed to see the service protect an API, on loopback,
//! with no account anywhere. A development issuer, the Check service trusting it, an echo
//! upstream and, when an `envoy` binary is found, Envoy running `envoy/envoy.yaml`.
//! Ctrl-C stops all of it.

pub mod envoy;
pub mod issuer;

use std::net::SocketAddr;
use std::process::Stdio;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Config, DemoArgs, ServeArgs};
pub use envoy::{EnvoyPorts, bootstrap_with_ports, find_envoy};
pub use issuer::{DEMO_AUDIENCE, DemoIssuer};

/// Runs the demo until Ctrl-C or SIGTERM.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let interrupted = crate::server::shutdown_signal();
    let issuer_listener = bind(args.issuer_listen, "issuer-listen").await?;
    let upstream_listener = bind(args.upstream_listen, "upstream-listen").await?;
    let grpc_listener = bind(args.listen, "listen").await?;
    let http_listener = bind(args.http_listen, "http-listen").await?;
    let issuer_addr = loopback_view(issuer_listener.local_addr()?);
    let upstream_addr = upstream_listener.local_addr()?;
    let issuer = std::sync::Arc::new(DemoIssuer::generate(format!("http://{issuer_addr}/"))?);

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let handler_issuer = std::sync::Arc::clone(&issuer);
    tokio::spawn(crate::wire::httpd::serve(
        issuer_listener,
        crate::wire::httpd::HttpLimits::default(),
        move |req| handler_issuer.handle(req),
        stopped(stop_rx.clone()),
    ));
    tokio::spawn(crate::wire::httpd::serve(
        upstream_listener,
        crate::wire::httpd::HttpLimits::default(),
        issuer::echo,
        stopped(stop_rx.clone()),
    ));

    let mut file = match &args.config {
        Some(path) => crate::config::read_file(path).map_err(|e| anyhow::anyhow!("{e}"))?,
        // The routes of envoy/envoy.yaml, for the HTTP endpoint, which gets no context
        // extensions; through Envoy, its own per-route settings still win.
        None => crate::config::parse_file(DEMO_ROUTES).map_err(anyhow::Error::msg)?,
    };
    // CORS preflights carry no token. Envoy's CORS filter answers them before ext_authz;
    // behind a proxy without one, this lets them through with identity headers removed.
    // A `cors_preflight` in the given file wins.
    file.cors_preflight.get_or_insert_with(|| "allow".into());
    let serve_args = ServeArgs {
        issuer: Some(issuer.issuer.clone()),
        audiences: vec![DEMO_AUDIENCE.into()],
        admin_listen: Some("off".into()),
        jwks_cooldown: Some("1s".into()),
        log_level: Some(args.log_level.clone()),
        ..ServeArgs::default()
    };
    let config = Config::from_sources(&serve_args, file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = loopback_view(http_listener.local_addr()?);
    let listeners = crate::server::Listeners {
        grpc: grpc_listener,
        admin: None,
        http: Some(http_listener),
        ssf: None,
    };
    let server = tokio::spawn(crate::server::serve_all(
        config,
        listeners,
        stopped(stop_rx.clone()),
    ));

    let scratch = Scratch::new()?;
    let mut envoy_child = None;
    let mut listener_port = None;
    if !args.no_envoy {
        match find_envoy(args.envoy.as_deref()) {
            Some(binary) => {
                let ports = EnvoyPorts {
                    listener: args.envoy_port,
                    admin: args.envoy_admin_port,
                    authz: grpc_addr.port(),
                    upstream: upstream_addr.port(),
                    // No collector runs in the demo: Envoy's spans are dropped.
                    collector: EnvoyPorts::SHIPPED.collector,
                };
                envoy_child = Some(start_envoy(&binary, &args, ports, &scratch).await?);
                listener_port = Some(ports.listener);
            }
            None => eprintln!(
                "(no `envoy` on the PATH: starting without Envoy; pass --envoy PATH to use one)\n"
            ),
        }
    }

    print_instructions(&issuer, grpc_addr, http_addr, issuer_addr, listener_port)?;

    interrupted.await;
    let _ = stop_tx.send(true);
    if let Some(mut child) = envoy_child {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    drop(scratch);
    server.await.context("check service task")??;
    Ok(())
}

/// Route rules matching `envoy/envoy.yaml`'s routes.
const DEMO_ROUTES: &str = "\
default_action: authenticated
routes:
  - path_prefix: /api/public
    allow_anonymous: true
  - path_prefix: /api/private-scoped
    scopes: { all_of: [read:messages] }
";

/// The demo's own temporary folder, removed when dropped (on Ctrl-C and on every error
/// path), so the demo leaves nothing behind.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("jwt-authz-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn bind(addr: SocketAddr, option: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("{option}: cannot bind {addr}"))
}

/// An address clients on this machine can use: wildcard binds are reached on loopback.
fn loopback_view(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

async fn start_envoy(
    binary: &std::path::Path,
    args: &DemoArgs,
    ports: EnvoyPorts,
    scratch: &Scratch,
) -> anyhow::Result<tokio::process::Child> {
    let text = std::fs::read_to_string(&args.envoy_config)
        .with_context(|| format!("envoy-config: cannot read {}", args.envoy_config.display()))?;
    let bootstrap = bootstrap_with_ports(&text, ports).map_err(anyhow::Error::msg)?;
    let path = scratch.0.join("envoy.yaml");
    std::fs::write(&path, bootstrap)?;
    let child = tokio::process::Command::new(binary)
        .arg("-c")
        .arg(&path)
        .args([
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "-l",
            "warning",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("envoy: cannot start {}", binary.display()))?;
    Ok(child)
}

fn print_instructions(
    issuer: &DemoIssuer,
    grpc: SocketAddr,
    http: SocketAddr,
    issuer_addr: SocketAddr,
    listener_port: Option<u16>,
) -> anyhow::Result<()> {
    let scoped = issuer.token("demo-user", "read:messages")?;
    let plain = issuer.token("demo-user", "")?;
    let grpc = loopback_view(grpc);
    println!("jwt-authz demo is running. Ctrl-C stops everything.\n");
    println!(
        "  issuer    {}   (JWKS, discovery, /token?scope=...)",
        issuer.issuer
    );
    println!("  check     {grpc}   (envoy.service.auth.v3.Authorization, gRPC)");
    println!("  http      {http}   (the same decision over HTTP)");
    println!();
    println!("TOKEN_SCOPED={scoped}");
    println!("TOKEN_PLAIN={plain}");
    println!();
    if let Some(port) = listener_port {
        println!("Through Envoy (listener 127.0.0.1:{port}):");
        println!("  curl -i localhost:{port}/api/public");
        println!("  curl -i localhost:{port}/api/private");
        println!(
            "  curl -i -H \"Authorization: Bearer $TOKEN_PLAIN\" localhost:{port}/api/private"
        );
        println!(
            "  curl -i -H \"Authorization: Bearer $TOKEN_PLAIN\" localhost:{port}/api/private-scoped"
        );
        println!(
            "  curl -i -H \"Authorization: Bearer $TOKEN_SCOPED\" localhost:{port}/api/private-scoped"
        );
        println!();
    }
    println!("Through the HTTP endpoint, with curl alone (as Envoy's http_service asks it):");
    let base = format!("{http}/ext-authz");
    for (headers, path, expect) in [
        ("", "/api/public", "200, no token needed"),
        ("", "/api/private", "401 authorization_header_missing"),
        (
            "-H \"Authorization: Bearer $TOKEN_PLAIN\" ",
            "/api/private-scoped",
            "403 insufficient_scope",
        ),
        (
            "-H \"Authorization: Bearer $TOKEN_SCOPED\" ",
            "/api/private-scoped",
            "200, x-jwt-sub in the answer",
        ),
    ] {
        println!("  curl -i {headers}{base}{path}   # {expect}");
    }
    println!(
        "  curl -i -H \"X-Forwarded-Method: GET\" -H \"X-Forwarded-Uri: /api/private\" -H \"Authorization: Bearer $TOKEN_PLAIN\" {http}/   # 200, as Traefik's forwardAuth asks"
    );
    println!();
    println!("Straight to the Check service:");
    println!(
        "  grpcurl -plaintext -d '{{\"attributes\":{{\"request\":{{\"http\":{{\"path\":\"/api/private\",\"headers\":{{\"authorization\":\"Bearer '$TOKEN_SCOPED'\"}}}}}},\"contextExtensions\":{{\"required_scopes\":\"read:messages\"}}}}}}' {grpc} envoy.service.auth.v3.Authorization/Check"
    );
    println!("A fresh token:");
    println!("  curl -s 'http://{issuer_addr}/token?scope=read:messages'");
    Ok(())
}
