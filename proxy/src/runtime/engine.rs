//! The wasmtime engine every guest runs in, its linker, and the node's instance slots.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::RuntimeError;
use super::artifact::CompileCache;
use super::instance::GuestState;
use super::pool::Reaper;
use crate::config::RuntimeConfig;

/// How often the engine's epoch advances: the granularity of guest deadlines, and how long
/// a guest may run before it yields its worker thread to other requests.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The engine, the shared linker and the node-wide concurrency gate.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<GuestState>,
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
    pooling: bool,
    /// Drops idle reusable instances past their idle timeout; also caps how many idle
    /// instances the node keeps.
    pub(crate) reaper: Arc<Reaper>,
    /// Fingerprint of the engine's code-generation settings (see [`super::artifact`]).
    pub(crate) engine_hash: u64,
    /// Compiled guests kept on disk between starts, unless turned off.
    pub(crate) compile_cache: Option<CompileCache>,
}

/// A request's right to run a guest: one of its service's slots and one of the node's,
/// released when the guest ends.
pub struct Admission {
    _service: OwnedSemaphorePermit,
    _node: OwnedSemaphorePermit,
    /// How long the request waited for its slots.
    pub waited: Duration,
}

/// No slot came free within `runtime.queue_timeout_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// The service's own `limits.max_concurrent` were all taken.
    Service,
    /// The node's `runtime.max_instances` were all taken.
    Node,
}

impl Busy {
    /// The `reason` label of `outpost_requests_rejected_total`.
    pub fn label(self) -> &'static str {
        match self {
            Busy::Service => "service_busy",
            Busy::Node => "node_busy",
        }
    }
}

impl Runtime {
    /// Builds the engine. `max_memory_bytes` is the largest memory any service may use; it
    /// sizes the pool's slots. Falls back to on-demand allocation (with a warning) where the
    /// pool's virtual memory cannot be reserved.
    pub fn new(config: &RuntimeConfig, max_memory_bytes: u64) -> Result<Runtime, RuntimeError> {
        let (engine, pooling) = if config.pooling {
            match Engine::new(&engine_config(config, Some(max_memory_bytes))) {
                Ok(engine) => (engine, true),
                Err(e) => {
                    tracing::warn!(
                        "pooling allocator unavailable ({e:#}); falling back to on-demand \
                         instances, which are slower"
                    );
                    (
                        Engine::new(&engine_config(config, None)).map_err(RuntimeError::Engine)?,
                        false,
                    )
                }
            }
        } else {
            (
                Engine::new(&engine_config(config, None)).map_err(RuntimeError::Engine)?,
                false,
            )
        };
        start_epoch_ticker(&engine);
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(RuntimeError::Engine)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(RuntimeError::Engine)?;
        crate::host::imports::add_to_linker(&mut linker, |state: &mut GuestState| &mut state.hooks)
            .map_err(RuntimeError::Engine)?;
        Ok(Runtime {
            linker,
            slots: Arc::new(Semaphore::new(config.max_instances as usize)),
            queue_timeout: Duration::from_millis(config.queue_timeout_ms),
            pooling,
            reaper: Reaper::start(config.max_instances as usize),
            engine_hash: super::artifact::engine_hash(&engine),
            compile_cache: config.compile_cache_dir().map(CompileCache::new),
            engine,
        })
    }

    /// Where compiled guests are cached on disk, if anywhere.
    pub fn compile_cache_dir(&self) -> Option<&std::path::Path> {
        self.compile_cache.as_ref().map(|c| c.dir())
    }

    /// Whether instances come from the pooling allocator.
    pub fn is_pooling(&self) -> bool {
        self.pooling
    }

    /// The engine (for compiling guests).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Waits (up to the queue timeout) for a slot of the service whose slots are `service`
    /// and one of the node's. The service's slot is taken first, so a service at its limit
    /// queues without holding node slots other services need.
    pub async fn admit(&self, service: &Arc<Semaphore>) -> Result<Admission, Busy> {
        let started = Instant::now();
        let service_slot = match service.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout(self.queue_timeout, service.clone().acquire_owned())
                .await
                .map_err(|_| Busy::Service)?
                .map_err(|_| Busy::Service)?,
        };
        let node_slot = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let left = self.queue_timeout.saturating_sub(started.elapsed());
                tokio::time::timeout(left, self.slots.clone().acquire_owned())
                    .await
                    .map_err(|_| Busy::Node)?
                    .map_err(|_| Busy::Node)?
            }
        };
        Ok(Admission {
            _service: service_slot,
            _node: node_slot,
            waited: started.elapsed(),
        })
    }

    /// The queue timeout, for `Retry-After`.
    pub fn queue_timeout(&self) -> Duration {
        self.queue_timeout
    }
}

fn engine_config(config: &RuntimeConfig, pooling_memory: Option<u64>) -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true);
    c.epoch_interruption(true);
    let stack = config.max_stack_kib * 1024;
    c.max_wasm_stack(stack);
    c.async_stack_size(stack + (1 << 20));
    if let Some(max_memory) = pooling_memory {
        // Room for as many idle reusable instances as running ones: idle instances hold
        // pool slots but no concurrency slot (the reaper caps them at `max_instances`).
        let n = config.max_instances.saturating_mul(2);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(4))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(4))
            .total_stacks(n)
            .max_memory_size(max_memory as usize)
            .max_component_instance_size(4 << 20)
            .max_core_instance_size(4 << 20)
            // Reset a slot by scanning for the pages the guest dirtied (PAGEMAP_SCAN,
            // Linux 6.7+) and zeroing those in place, up to this much: no `madvise`, and
            // no page faults when the next instance touches the same pages. Kernels
            // without the ioctl fall back to `madvise` (Auto). Measured in
            // loadtest/README.md: hello 91.6 -> 60.4 µs of CPU per request.
            .linear_memory_keep_resident(256 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto)
            .table_keep_resident(64 << 10);
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    c
}

/// One thread per engine advances the epoch; it exits when the engine is dropped.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("outpost-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}
