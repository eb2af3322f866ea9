//! `grpc.health.v1.Health`: NOT_SERVING until every issuer's keys are loaded, SERVING from
//! then on. Keys, once loaded, stay cached through identity-provider outages, so the
//! service never goes back to NOT_SERVING on its own.

use std::sync::Arc;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::jwks::JwksCache;
use crate::proto::AuthorizationServer;
use crate::service::AuthzService;

/// Marks the service NOT_SERVING. Call before the listener accepts anything: tonic-health
/// starts out reporting SERVING.
pub async fn mark_not_serving(reporter: &HealthReporter) {
    set_all(reporter, ServingStatus::NotServing).await;
}

/// Marks the service SERVING once all `caches` have loaded keys.
pub async fn report_readiness(reporter: HealthReporter, caches: Vec<Arc<JwksCache>>) {
    for cache in caches {
        let mut ready = cache.ready();
        // An error means the cache was dropped: the server is shutting down.
        if ready.wait_for(|loaded| *loaded).await.is_err() {
            return;
        }
    }
    set_all(&reporter, ServingStatus::Serving).await;
    tracing::info!("signing keys loaded, serving");
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
