//! Wiring: builds the issuers' caches and the gRPC services, binds, serves the admin port,
//! and drains on SIGTERM/SIGINT so in-flight checks finish.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use http::StatusCode;

use crate::config::{Config, ReplayStoreConfig, RevocationStoreConfig};
use crate::metrics::{Exposition, Metrics};
use crate::readiness::Readiness;
use crate::reload::{IssuerKeys, LiveAuthz, Reloader};
use crate::replay::ReplayStore;
use crate::revocation::RevocationStore;
use crate::revocation::redis::RedisRevocations;
use crate::service::AuthzService;
use crate::wire::grpc::CheckServer;
use crate::wire::httpd;
use crate::wire::proto::FILE_DESCRIPTOR_SET;

/// Binds `config.startup.listen` (and `config.startup.admin_listen`, `config.startup.http_listen`) and serves until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = shutdown_signal();
    let listener = TcpListener::bind(config.startup.listen)
        .await
        .with_context(|| format!("listen: cannot bind {}", config.startup.listen))?;
    let admin = match config.startup.admin_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("admin_listen: cannot bind {addr}"))?,
        ),
        None => None,
    };
    let http = match config.startup.http_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("http_listen: cannot bind {addr}"))?,
        ),
        None => None,
    };
    let ssf = match &config.startup.ssf {
        Some(ssf) => Some(
            TcpListener::bind(ssf.listen)
                .await
                .with_context(|| format!("ssf.listen: cannot bind {}", ssf.listen))?,
        ),
        None => None,
    };
    let listeners = Listeners {
        grpc: listener,
        admin,
        http,
        ssf,
    };
    let exporter = match &config.startup.tracing {
        Some(traces) => Some(crate::otel::start(traces).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let served = serve_all(config, listeners, shutdown).await;
    if let Some(exporter) = exporter {
        exporter.shutdown().await;
    }
    served
}

/// The sockets a service answers on, bound before it starts.
pub struct Listeners {
    /// gRPC: Check, health, reflection.
    pub grpc: TcpListener,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub admin: Option<TcpListener>,
    /// The HTTP authorization endpoint (nginx, Traefik, Envoy `http_service`).
    pub http: Option<TcpListener>,
    /// The Shared Signals push endpoint, used when the configuration has an `ssf` block.
    pub ssf: Option<TcpListener>,
}

/// Serves every listener of `listeners` until `shutdown` completes, then drains.
pub async fn serve_all(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let Listeners {
        grpc: listener,
        admin,
        http,
        ssf: ssf_listener,
    } = listeners;
    let local: SocketAddr = listener.local_addr()?;
    let keys = IssuerKeys::build(&config, &mut None)?;
    let verifier = Arc::new(keys.verifier(&config));

    let (reporter, health) = tonic_health::server::health_reporter();
    crate::wire::health::mark_not_serving(&reporter).await;
    let replay = Arc::new(replay_store(&config)?);
    tracing::info!(replay_store = %replay.describe(), "DPoP replay store");
    let replay_health = tokio::spawn(crate::wire::health::report_replay_store(
        reporter.clone(),
        Arc::clone(&replay),
    ));

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("reflection: cannot load descriptors")?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("reflection: cannot load descriptors")?;

    let revocations = revocation_store(&config)?;
    let following_revocations = revocations
        .clone()
        .map(|store| tokio::spawn(store.follow()));
    let service =
        AuthzService::from_config(&config, verifier, replay).with_revocations(revocations.clone());
    let ssf = match (&config.startup.ssf, &revocations, ssf_listener) {
        (Some(ssf), Some(store), Some(listener)) => {
            let receiver = crate::ssf::Receiver::new(
                ssf,
                Arc::clone(store),
                config.startup.jwks.clone(),
                config.clock.clone(),
            );
            service.metrics().set_ssf(Arc::clone(&receiver.stats));
            tracing::info!(ssf = %listener.local_addr()?, path = %ssf.path, "shared signals receiver listening");
            Some((listener, receiver))
        }
        _ => None,
    };
    let live = LiveAuthz::new(service);
    let readiness = Readiness::new();
    let following = tokio::spawn(Arc::clone(&readiness).follow(live.clone()));
    let health_reporting = tokio::spawn(crate::wire::health::report_readiness(
        reporter,
        Arc::clone(&readiness),
    ));
    let service = live.current();
    let issuer_count = config.settings.issuers.len();
    let http_limits = config.startup.http_limits;
    // The reloader owns the key caches' refreshers: aborting it stops them.
    let reloader = tokio::spawn(Reloader::new(config, keys, live.clone()).run());
    let deny_log = service.deny_log();
    let deny_summaries = tokio::spawn(Arc::clone(&deny_log).run_summaries());
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    if let Some(admin) = admin {
        let metrics = service.metrics();
        let live = live.clone();
        let readiness = Arc::clone(&readiness);
        tracing::info!(admin = %admin.local_addr()?, "admin endpoints listening");
        tokio::spawn(crate::wire::httpd::serve(
            admin,
            http_limits,
            move |request| admin_endpoint(&metrics, &live.current(), readiness.is_ready(), request),
            async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            },
        ));
    }
    if let Some((listener, receiver)) = ssf {
        let mut stop_rx = stop_tx.subscribe();
        tokio::spawn(crate::wire::httpd::serve_body(
            listener,
            http_limits,
            crate::ssf::MAX_SET_BYTES,
            move |parts, body| {
                let receiver = Arc::clone(&receiver);
                async move { receiver.handle(&parts, body).await }
            },
            async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            },
        ));
    }
    if let Some(http) = http {
        let live = live.clone();
        let mut stop_rx = stop_tx.subscribe();
        tracing::info!(http = %http.local_addr()?, "http authorization endpoint listening");
        tokio::spawn(crate::wire::httpd::serve_async(
            http,
            http_limits,
            move |parts| {
                // invariant: the whole request is decided on one configuration, the one
                // current when it arrives, as on the gRPC wire.
                let service = live.current();
                async move { crate::wire::http::handle(&service, &parts).await }
            },
            async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            },
        ));
    }
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    tracing::info!(listen = %local, issuers = issuer_count, "jwt-authz listening");
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let result = Server::builder()
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(CheckServer::new(live))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .context("grpc server");
    reloader.abort();
    following.abort();
    health_reporting.abort();
    replay_health.abort();
    if let Some(task) = following_revocations {
        task.abort();
    }
    deny_summaries.abort();
    deny_log.log_summary();
    tracing::info!("jwt-authz stopped");
    result
}

/// `/metrics` (Prometheus text), `/healthz` (the process answers) and `/readyz` (the
/// service's [`Readiness`], which gRPC health reports too).
fn admin_endpoint(
    metrics: &Metrics,
    service: &AuthzService,
    ready: bool,
    request: &http::request::Parts,
) -> httpd::HttpResponse {
    let host = request
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let resources = &service.settings().resources;
    if let Some(resource) = resources
        .document(request.method.as_str(), request.uri.path(), host)
        .and_then(|i| resources.get(i))
    {
        return httpd::respond(
            StatusCode::OK,
            "application/json",
            resource.metadata.body.clone(),
        );
    }
    match request.uri.path() {
        "/metrics" => {
            let format = Exposition::for_accept(
                request
                    .headers
                    .get(http::header::ACCEPT)
                    .and_then(|h| h.to_str().ok()),
            );
            httpd::respond(
                StatusCode::OK,
                format.content_type(),
                metrics.render(format),
            )
        }
        "/healthz" => httpd::respond(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" if ready => httpd::respond(StatusCode::OK, "text/plain", "ready\n"),
        "/readyz" => httpd::respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "signing keys not loaded\n",
        ),
        _ => httpd::respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is called, not
/// when the future is first polled, so a signal that arrives during start-up is not lost
/// (nor does it kill the process with the default action).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    let mut signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let recv = |s: &mut Option<tokio::signal::unix::Signal>| {
                let s = s.take();
                async move {
                    match s {
                        Some(mut s) => {
                            s.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                }
            };
            let (term, int) = (recv(&mut signals.0), recv(&mut signals.1));
            tokio::select! {
                () = term => {}
                () = int => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown signal received, draining");
    }
}

/// The revocation store `config` names, when it has a `revocation` block. A Redis store is
/// followed in the background ([`RevocationStore::follow`]); until its first read it
/// refuses every token (`revocation_unavailable`).
pub fn revocation_store(config: &Config) -> anyhow::Result<Option<Arc<RevocationStore>>> {
    let Some(revocation) = &config.startup.revocation else {
        return Ok(None);
    };
    let store = match &revocation.store {
        RevocationStoreConfig::Memory => RevocationStore::memory(revocation.settings.clone()),
        RevocationStoreConfig::Redis { url } => {
            let shared = RedisRevocations::new(url, revocation)
                .map_err(|e| anyhow::anyhow!("revocation.store: {e}"))?;
            RevocationStore::redis(revocation.settings.clone(), shared)
        }
    };
    tracing::info!(revocation_store = %store.describe(), "revocations are checked");
    Ok(Some(store))
}

/// The DPoP replay store `config` names. Redis is connected lazily: an unreachable one
/// refuses DPoP requests (503 `replay_store_unavailable`) until it answers.
pub fn replay_store(config: &Config) -> anyhow::Result<ReplayStore> {
    let store = match &config.startup.replay_store {
        ReplayStoreConfig::Memory { max_entries } => ReplayStore::memory(*max_entries),
        ReplayStoreConfig::Redis { url, timeout } => {
            ReplayStore::redis(url, *timeout, REPLAY_KEY_PREFIX).map_err(|e| anyhow::anyhow!(e))?
        }
    };
    Ok(store.with_holder_quota(config.startup.replay_max_per_key))
}

/// Prefix of the replay store's Redis keys, so a shared Redis can hold other data.
const REPLAY_KEY_PREFIX: &str = "jwt-authz:dpop:";
