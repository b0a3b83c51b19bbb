#![warn(missing_docs)]
//! Outpost's edge node.
//!
//! Request flow, one module per step:
//! [`server`] accepts (pingora: HTTP/1.1, h2c, TLS with [`tls`] picking certificates by SNI)
//! and routes by Host; [`runtime`] instantiates the service's guest in a fresh, limited
//! wasmtime store; the guest's outgoing requests pass through [`host`], which allows only
//! the service's named [`backend`]s, and [`guest_api`] offers Outpost's own imports (cache
//! control, config store, request info, [`counters`], [`geo`]). [`config`] is the file format and its validation,
//! [`node`] assembles the pieces, [`cli`] is the command line and [`demo`] the built-in
//! default that `outpost serve` starts with no arguments.

pub mod access_log;
pub mod admin;
pub mod backend;
pub mod cache;
pub mod cli;
pub mod config;
pub mod counters;
pub mod demo;
pub mod geo;
pub mod guest_api;
pub mod host;
pub mod metrics;
pub mod node;
pub mod runtime;
pub mod server;
pub mod tls;
