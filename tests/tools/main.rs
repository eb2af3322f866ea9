//! The service against outside tools it works with: a real Redis as the DPoP replay store
//! shared by replicas, and the certified OpenID provider (oidc-provider, on Node) issuing
//! bearer, DPoP-bound and certificate-bound tokens. A binary of its own, so the tests that
//! need no outside tool (`tests/service`) run without them; `scripts/test.sh` and CI run
//! both, and a missing tool fails the test, naming how to install it.

mod introspection;
mod oidc_provider;
mod proofs;
mod replay;
mod replicas;
mod revocation;
