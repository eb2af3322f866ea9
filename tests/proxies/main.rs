//! The service as its neighbours see it: the `jwt-authz` binary and its `demo`, a real
//! Envoy, a real `grpcurl`, and the deployment files that wire them together. A missing
//! Envoy or grpcurl fails these tests (scripts/install-test-tools.sh installs both).

mod binding;
mod canonical;
mod cli;
mod demo;
mod deploy;
mod differential;
mod edge;
mod envoy;
mod grpc_services;
mod grpcurl;
mod http_endpoint;
mod mcp;
mod monitoring;
mod mtls;
mod proofs;
mod signals;
mod traces;
