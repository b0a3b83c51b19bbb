//! Loading guest code that was compiled ahead of time: the one `unsafe` call in Outpost,
//! kept in a crate of its own so every other crate can `forbid(unsafe_code)`.
//!
//! `wasmtime::component::Component::deserialize` maps machine code from the given bytes
//! and runs it later. wasmtime checks that the bytes are a compiled artifact of its own
//! version with compatible engine settings, but it cannot check that the code is what a
//! compiler produced: bytes crafted or corrupted by someone else would run as native code.
//! Callers therefore only hand in bytes they can vouch for: the node's compile cache (its
//! own writes, verified against a SHA-256 digest before loading) or a `.cwasm` the operator
//! installed, which is trusted as much as the `outpost` binary itself.

#![deny(unsafe_code)]

use wasmtime::Engine;
use wasmtime::component::Component;

/// Loads a component that `engine` (or one with the same compatibility hash) compiled and
/// serialized. Errors when wasmtime sees another version, other engine settings, or bytes
/// that are not an artifact at all.
///
/// The caller promises that `artifact` was produced by `Component::serialize` or
/// `Engine::precompile_component` and has not been altered since (see the crate docs).
pub fn load_trusted_artifact(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    #[allow(
        unsafe_code,
        reason = "the caller vouches for the artifact's origin and integrity"
    )]
    // SAFETY: the bytes come from wasmtime's own serializer (the caller's promise above);
    // wasmtime validates the header, version and engine settings before mapping them.
    unsafe {
        Component::deserialize(engine, artifact)
    }
}
