//! A compiled guest with its imports resolved (the per-service template for instances),
//! and, where the service opted into reuse, its pool of idle instances.

use std::path::Path;
use std::sync::Arc;

use wasmtime::component::Component;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::artifact::{self, Provenance};
use super::instance::GuestState;
use super::pool::{InstancePool, ReusePolicy};
use super::{Runtime, RuntimeError};
use crate::config::{LimitsConfig, ReuseConfig};

/// A component compiled for this node's engine, imports resolved and handler checked.
#[derive(Clone)]
pub struct Compiled {
    pub(crate) pre: ProxyPre<GuestState>,
}

impl Compiled {
    /// Checks that `component` exports an HTTP handler whose imports this node provides.
    /// `name` labels errors.
    pub fn link(
        runtime: &Runtime,
        name: &str,
        component: &Component,
    ) -> Result<Compiled, RuntimeError> {
        component
            .initialize_copy_on_write_image()
            .map_err(|e| RuntimeError::NotAComponent {
                path: name.to_owned(),
                reason: format!("{e:#}"),
            })?;
        let instance_pre =
            runtime
                .linker
                .instantiate_pre(component)
                .map_err(|e| RuntimeError::Imports {
                    path: name.to_owned(),
                    reason: format!("{e:#}"),
                })?;
        let pre = ProxyPre::new(instance_pre).map_err(|e| RuntimeError::NoHandler {
            path: name.to_owned(),
            reason: format!("{e:#}"),
        })?;
        Ok(Compiled { pre })
    }

    /// Loads the guest at `path` (`.wasm`, through the compile cache, or a `.cwasm`) and
    /// links it; also says where its code came from.
    pub fn load(runtime: &Runtime, path: &Path) -> Result<(Compiled, Provenance), RuntimeError> {
        let (component, provenance) = artifact::load_component(runtime, path)?;
        let compiled = Compiled::link(runtime, &path.display().to_string(), &component)?;
        Ok((compiled, provenance))
    }
}

/// Compiles `bytes` (a component, never a core module) for `runtime`'s engine.
pub(crate) fn compile(
    runtime: &Runtime,
    name: &str,
    bytes: &[u8],
) -> Result<Component, RuntimeError> {
    if is_core_module(bytes) {
        return Err(RuntimeError::NotAComponent {
            path: name.to_owned(),
            reason: "this is a core WebAssembly module, not a component".into(),
        });
    }
    Component::new(&runtime.engine, bytes).map_err(|e| RuntimeError::NotAComponent {
        path: name.to_owned(),
        reason: format!("{e:#}"),
    })
}

/// A service's guest: the compiled component and, with reuse on, its idle instances. A
/// new version (`--watch`, reload) is a new `Guest` with an empty pool; requests keep the
/// version they started with.
pub struct Guest {
    pub(crate) compiled: Compiled,
    pub(crate) pool: Option<Arc<InstancePool>>,
}

impl Guest {
    /// A guest from `compiled`, reusing instances within `reuse` when it is set.
    pub fn new(
        runtime: &Runtime,
        compiled: Compiled,
        reuse: Option<(&ReuseConfig, &LimitsConfig)>,
    ) -> Guest {
        let pool = reuse.map(|(config, limits)| {
            InstancePool::new(ReusePolicy::new(config, limits), &runtime.reaper)
        });
        Guest { compiled, pool }
    }

    /// Idle instances waiting for a request (0 without reuse).
    pub fn idle_instances(&self) -> usize {
        self.pool.as_ref().map_or(0, |p| p.idle_count())
    }
}

/// A core module starts with the magic and version 1; a component with version 0x0d layer 1.
pub(crate) fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_modules_are_told_apart_from_components() {
        assert!(is_core_module(b"\0asm\x01\0\0\0"));
        assert!(!is_core_module(b"\0asm\x0d\0\x01\0"));
        assert!(!is_core_module(b"junk"));
    }
}
