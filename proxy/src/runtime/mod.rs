//! The WebAssembly runtime: one wasmtime engine, one pre-instantiated component per
//! service, and a strictly limited instance for every request.
//!
//! What this module promises:
//! - **Isolation.** By default each request gets its own `Store`, so no state survives
//!   between requests, and a guest that traps, runs past its deadline or exhausts its memory
//!   costs only its own request. The failure comes back as a [`GuestFailure`] that says
//!   which limit was hit. A service may opt into reuse ([`crate::config::ReuseConfig`]):
//!   then an instance that ended cleanly serves the next request of that service, and only
//!   then.
//! - **Speed.** Components are compiled and their imports resolved once ([`Compiled`]).
//!   Per request the work is `Store::new` plus instantiation from the pooling allocator with
//!   copy-on-write memory images, run inside the request's own task.
//! - **Fair, bounded concurrency.** A request needs one of its service's slots
//!   (`limits.max_concurrent`) and one of the node's (`runtime.max_instances`), and waits
//!   for them at most `runtime.queue_timeout_ms` ([`Runtime::admit`]).

pub mod artifact;
mod engine;
mod failure;
mod guest;
mod instance;
mod invoke;
mod pool;

pub use engine::{Admission, Busy, Runtime};
pub use failure::{FailureKind, GuestFailure};
pub use guest::{Compiled, Guest};
pub use instance::GuestState;
pub use invoke::{GuestBody, GuestEnd, GuestReport, GuestRequest, GuestResponse, ReportSink};

/// Errors building the engine or loading a guest, phrased for the operator.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// wasmtime refused the engine configuration.
    #[error("cannot configure the WebAssembly engine: {0:#}")]
    Engine(wasmtime::Error),
    /// The guest file could not be read.
    #[error("{path}: cannot read the guest: {source}")]
    Read {
        /// The guest file.
        path: String,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The file is not a valid WebAssembly component.
    #[error(
        "{path}: not a WebAssembly component: {reason}\n  fix: build the guest for \
         `wasm32-wasip2` (which emits components), or wrap a core module with \
         `wasm-tools component new`"
    )]
    NotAComponent {
        /// The guest file.
        path: String,
        /// wasmtime's reason.
        reason: String,
    },
    /// The component imports something the node does not provide.
    #[error(
        "{path}: the guest imports something this node does not provide: {reason}\n  fix: \
         target the `wasi:http/proxy` world (or `outpost:edge/service` from sdk/wit)"
    )]
    Imports {
        /// The guest file.
        path: String,
        /// wasmtime's reason.
        reason: String,
    },
    /// The component does not export an HTTP handler.
    #[error(
        "{path}: the guest does not export `wasi:http/incoming-handler`: {reason}\n  fix: use \
         `#[outpost::main]`, or export `wasi:http/incoming-handler@0.2.x`"
    )]
    NoHandler {
        /// The guest file.
        path: String,
        /// wasmtime's reason.
        reason: String,
    },
    /// A precompiled guest (`.cwasm`) cannot be loaded by this node.
    #[error("{path}: cannot load the precompiled guest: {reason}\n  fix: {fix}")]
    Precompiled {
        /// The guest file.
        path: String,
        /// Why it was refused.
        reason: String,
        /// What to do about it.
        fix: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The SDK's WIT world must parse and keep exporting the handler the node calls.
    #[test]
    fn sdk_world_exports_the_incoming_handler() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/wit");
        let mut resolve = wit_parser::Resolve::default();
        let (package, _) = resolve.push_dir(&dir).expect("sdk/wit parses");
        let world = resolve
            .select_world(&[package], Some("service"))
            .expect("world `service`");
        let exports: Vec<String> = resolve.worlds[world]
            .exports
            .keys()
            .map(|key| resolve.name_world_key(key))
            .collect();
        assert!(
            exports
                .iter()
                .any(|e| e.starts_with("wasi:http/incoming-handler@0.2")),
            "exports: {exports:?}"
        );
    }
}
