//! jwt-authz: an Envoy `ext_authz` gRPC service that verifies OAuth2 JWT access tokens
//! against a cached JWKS and enforces per-route scopes.
//!
//! `main.rs` parses the command line and calls [`server::run`]; the integration tests in
//! `tests/` call [`server::serve`] on a loopback listener.

#![forbid(unsafe_code)]

pub mod alg;
pub mod binding;
pub mod claims;
pub mod clock;
pub mod config;
pub mod demo;
pub mod deny_log;
pub mod error;
pub mod explain;

pub mod fetch_url;
pub mod inbound;
pub mod jwks;
pub mod metrics;
pub mod percent;
pub mod policy;
pub mod readiness;
pub mod reload;
pub mod replay;
pub mod resource_metadata;
pub mod server;
pub mod service;
pub mod telemetry;
pub mod testkit;
pub mod token_cache;
pub mod token_source;
pub mod trace;
pub mod upstream;
pub mod verify;
pub mod wire;

#[cfg(test)]
mod layout;
