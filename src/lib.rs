//! jwt-authz: an Envoy `ext_authz` gRPC service that verifies OAuth2 JWT access tokens
//! against a cached JWKS and enforces per-route scopes.
//!
//! `main.rs` parses the command line and calls [`server::run`]; the integration tests in
//! the test kit runs [`server::serve_all`] on loopback listeners.

#![forbid(unsafe_code)]

pub use jwt_authz_core::{
    alg, claims, clock, error, inbound, percent, policy, token_source, trace, upstream,
};

pub mod binding;
pub mod config;
pub mod demo;
pub(crate) mod deny_log;
pub mod explain;

pub mod fetch_url;
pub mod introspection;
pub mod jwks;
pub mod metrics;
pub mod otel;
pub(crate) mod readiness;
pub(crate) mod reload;
pub mod replay;
pub(crate) mod resource_metadata;
pub mod revocation;
pub mod server;
pub mod service;
pub mod ssf;
pub mod telemetry;
pub mod testkit;
pub mod token_cache;
pub mod verify;
pub mod wire;
