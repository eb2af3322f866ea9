//! jwt-authz: an Envoy `ext_authz` gRPC service that verifies OAuth2 JWT access tokens
//! against a cached JWKS and enforces per-route scopes.
//!
//! `main.rs` parses the command line and calls [`server::run`]; the integration tests in
//! the test kit runs [`server::serve_all`] on loopback listeners.

#![forbid(unsafe_code)]

pub(crate) mod alg;
pub mod binding;
pub(crate) mod claims;
pub(crate) mod clock;
pub mod config;
pub mod demo;
pub(crate) mod deny_log;
pub(crate) mod error;
pub mod explain;

pub mod fetch_url;
pub(crate) mod inbound;
pub mod jwks;
pub(crate) mod metrics;
pub mod percent;
pub mod policy;
pub(crate) mod readiness;
pub(crate) mod reload;
pub mod replay;
pub(crate) mod resource_metadata;
pub mod server;
pub mod service;
pub mod telemetry;
pub mod testkit;
pub mod token_cache;
pub mod token_source;
pub(crate) mod trace;
pub mod upstream;
pub mod verify;
pub mod wire;

#[cfg(test)]
mod layout;
