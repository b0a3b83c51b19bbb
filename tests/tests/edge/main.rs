//! End-to-end tests: a real origin on 127.0.0.1, the real `outpost` binary started from a
//! config file, real HTTP/1.1, h2c and TLS clients, and guests compiled from Rust sources
//! (guest-examples/ and tests/guests/). One binary, one module per area.

mod cache;
mod cli;
mod examples;
mod foreign;
mod hardening;
mod isolation;
mod observability;
mod operations;
mod proxying;
mod response_cache;
mod reuse;
mod serving;
mod support;
