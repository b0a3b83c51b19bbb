#![warn(missing_docs)]
//! Outpost's edge node.
//!
//! Request flow, one module per step: [`server`] accepts (pingora listeners, TLS with
//! [`tls`] picking certificates by SNI; hyper speaks HTTP/1.1 and HTTP/2 with every
//! connection state under a deadline) and hands each request to [`service`], the one
//! request pipeline: it routes by host ([`host_pattern`]), answers from the response cache
//! or runs the service's guest in [`runtime`]. The guest's outgoing requests pass through
//! [`host`], which allows only the service's named [`backend`]s and offers Outpost's own
//! imports, through the [`cache`]. [`config`] is the file format and its validation,
//! [`node`] assembles the pieces, [`reload`] swaps a new config in while the node serves,
//! [`lifecycle`] turns an operator's signals into reloads, drains and upgrades, [`cli`] is
//! the command line and [`demo`] the built-in default that `outpost serve` starts with no
//! arguments.

pub mod access_log;
pub mod admin;
pub mod backend;
pub mod cache;
pub mod cli;
pub mod config;
pub mod counters;
pub mod demo;
pub mod geo;
pub mod host;
pub mod host_pattern;
pub mod http;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod reload;
pub mod runtime;
pub mod server;
pub mod service;
pub mod tls;
mod wit;
