//! `grpc.health.v1.Health`: SERVING exactly while the service is ready
//! ([`crate::readiness`]: every issuer of the current configuration has keys), the same
//! answer `/readyz` gives.
//!
//! The DPoP replay store has a health entry of its own ([`REPLAY_STORE_SERVICE`]): an
//! unreachable Redis refuses DPoP requests only, so it does not take the whole service
//! out of rotation, but it shows.

use std::sync::Arc;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::readiness::Readiness;
use crate::replay::ReplayStore;
use crate::service::AuthzService;
use crate::wire::proto::AuthorizationServer;

/// Marks the service NOT_SERVING. Call before the listener accepts anything: tonic-health
/// starts out reporting SERVING.
pub async fn mark_not_serving(reporter: &HealthReporter) {
    set_all(reporter, ServingStatus::NotServing).await;
}

/// Copies the service's [`Readiness`] into health: SERVING while ready, NOT_SERVING while
/// not, each change logged. Runs until the server stops.
pub async fn report_readiness(reporter: HealthReporter, readiness: Arc<Readiness>) {
    let mut changes = readiness.subscribe();
    let mut last = false;
    loop {
        let ready = *changes.borrow_and_update();
        if ready != last {
            if ready {
                set_all(&reporter, ServingStatus::Serving).await;
                tracing::info!("signing keys loaded, serving");
            } else {
                set_all(&reporter, ServingStatus::NotServing).await;
                tracing::warn!(
                    "an issuer of the configuration has no signing keys yet: not serving until they load"
                );
            }
            last = ready;
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// The health service name that reports whether the DPoP replay store answers.
const REPLAY_STORE_SERVICE: &str = "jwt_authz.dpop_replay_store";

/// How often the replay store's reachability is copied into health.
const REPLAY_STORE_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Keeps [`REPLAY_STORE_SERVICE`] SERVING while `replay` answers and NOT_SERVING while it
/// does not, logging each change. Runs until the server stops.
pub async fn report_replay_store(reporter: HealthReporter, replay: Arc<ReplayStore>) {
    let mut last = None;
    loop {
        let reachable = replay.reachable();
        if last != Some(reachable) {
            let status = if reachable {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter
                .set_service_status(REPLAY_STORE_SERVICE, status)
                .await;
            match (last, reachable) {
                (Some(false), true) => {
                    tracing::info!(store = %replay.describe(), "DPoP replay store reachable again");
                }
                (_, false) => {
                    tracing::warn!(store = %replay.describe(), "DPoP replay store unreachable: DPoP requests are refused with 503 replay_store_unavailable");
                }
                _ => {}
            }
            last = Some(reachable);
        }
        tokio::time::sleep(REPLAY_STORE_POLL).await;
    }
}

async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    // "" is the whole server's health, the name Envoy's gRPC health check uses by default.
    reporter.set_service_status("", status).await;
    match status {
        ServingStatus::Serving => {
            reporter
                .set_serving::<AuthorizationServer<AuthzService>>()
                .await
        }
        _ => {
            reporter
                .set_not_serving::<AuthorizationServer<AuthzService>>()
                .await
        }
    }
}
