//! The decision's building blocks, with no I/O, bottom-up: [`percent`] decoding and the
//! [`inbound`] request, [`claims`] and signing [`alg`]orithms, the [`clock`], the
//! [`error`] table, [`token_source`]s, route [`policy`], [`upstream`] claim headers, and
//! the decision's [`trace`]. The service crate builds on them; nothing here can reach it.

#![forbid(unsafe_code)]

pub mod alg;
pub mod claims;
pub mod clock;
pub mod error;
pub mod inbound;
pub mod percent;
pub mod policy;
pub mod token_source;
pub mod trace;
pub mod upstream;
