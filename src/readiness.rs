//! Whether the service is ready to decide: every issuer of the configuration now in force
//! has signing keys. One answer, owned by the server and kept by [`Readiness::follow`]
//! through reloads; gRPC health ([`crate::wire::health`]) and `/readyz` both read it, so
//! they never disagree. Keys, once loaded, stay cached through identity-provider outages:
//! only a reload that adds an issuer whose keys have not loaded yet makes the service
//! unready again, until they load. With a revocation store, the service is also unready
//! while the store cannot vouch it holds every revocation (it refuses every token then).

use std::sync::Arc;

use tokio::sync::watch;

use crate::reload::LiveAuthz;

/// The service's readiness. Starts unready.
pub struct Readiness {
    state: watch::Sender<bool>,
}

impl Readiness {
    pub fn new() -> Arc<Readiness> {
        Arc::new(Readiness {
            state: watch::Sender::new(false),
        })
    }

    pub fn is_ready(&self) -> bool {
        *self.state.borrow()
    }

    /// Changes of readiness, for a reporter.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.state.subscribe()
    }

    /// Keeps readiness true exactly while every issuer of `live`'s current configuration
    /// has keys, re-reading the issuers at each reload. Runs until aborted.
    pub async fn follow(self: Arc<Self>, live: LiveAuthz) {
        let mut reloads = live.subscribe();
        loop {
            reloads.borrow_and_update();
            let service = live.current();
            let mut caches: Vec<watch::Receiver<bool>> =
                service.verifier().caches().map(|c| c.ready()).collect();
            let revocations = service.revocations().cloned();
            drop(service);
            let keys = caches.iter().all(|loaded| *loaded.borrow());
            let ready = keys && revocations.as_ref().is_none_or(|r| r.is_current());
            self.state
                .send_if_modified(|state| std::mem::replace(state, ready) != ready);
            let loaded = async {
                for cache in &mut caches {
                    // An error means the cache was dropped: a reload replaced it.
                    let _ = cache.wait_for(|loaded| *loaded).await;
                }
            };
            tokio::select! {
                changed = reloads.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = loaded, if !keys => {}
                () = tokio::time::sleep(crate::revocation::redis::POLL), if revocations.is_some() => {}
            }
        }
    }
}
