//! The service over its real gRPC and admin ports, in process, against a loopback identity
//! provider: the Check RPC, several issuers, the JWKS cache and the metrics. One binary so
//! the crate is linked once for all of them. Nothing here needs a tool outside Rust: the
//! tests that need Redis or Node are in `tests/tools`.

mod binding;
mod check;
mod explain;
mod identity;
mod issuers;
mod jwks;
mod listener;
mod logging;
mod mcp;
mod metrics;
mod proxyless;
mod reload;
mod resources;
mod routes;
mod ssf;
