//! The WebAssembly runtime: one wasmtime engine, one pre-instantiated component per service,
//! and a fresh, strictly limited instance for every request.
//!
//! What this module promises:
//! - **Isolation.** Each request gets its own `Store`, so no state survives between requests
//!   and a guest that traps, runs past its deadline or exhausts its memory costs only its own
//!   request. The failure comes back as a [`GuestFailure`] that says which limit was hit.
//! - **Speed.** Components are compiled and their imports resolved once ([`Guest::load`]).
//!   Per request the work is `Store::new` plus instantiation from the pooling allocator with
//!   copy-on-write memory images: microseconds.
//! - **Bounded concurrency.** At most `runtime.max_instances` guests run at once; further
//!   requests wait for a slot instead of failing allocation.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, oneshot};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder, Trap, UpdateDeadline,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme as WasiScheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::config::{LimitsConfig, RuntimeConfig};
use crate::host::EdgeHooks;

/// How often the engine's epoch advances: the granularity of guest deadlines, and how long
/// a guest may run before it yields its worker thread to other requests.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Guest stdout and stderr kept per request (panic messages land in stderr), in bytes each.
const OUTPUT_CAPTURE_BYTES: usize = 16 * 1024;

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
        "{path}: not a WebAssembly component: {reason}\n  fix: build the guest for `wasm32-wasip2` (which emits components), or wrap a core module with `wasm-tools component new`"
    )]
    NotAComponent {
        /// The guest file.
        path: String,
        /// wasmtime's reason.
        reason: String,
    },
    /// The component imports something the node does not provide.
    #[error(
        "{path}: the guest imports something this node does not provide: {reason}\n  fix: target the `wasi:http/proxy` world (or `outpost:edge/service` from sdk/wit)"
    )]
    Imports {
        /// The guest file.
        path: String,
        /// wasmtime's reason.
        reason: String,
    },
    /// The component does not export an HTTP handler.
    #[error(
        "{path}: the guest does not export `wasi:http/incoming-handler`: {reason}\n  fix: use `#[outpost::main]`, or export `wasi:http/incoming-handler@0.2.x`"
    )]
    NoHandler {
        /// The guest file.
        path: String,
        /// wasmtime's reason.
        reason: String,
    },
}

/// Why a guest did not produce a (complete) response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestFailure {
    /// The guest trapped: a panic, `unreachable`, a stack overflow, a bad memory access.
    Trap(String),
    /// The guest ran past its wall-clock deadline.
    Timeout,
    /// The guest tried to grow its memory past its limit.
    Memory,
    /// The guest returned without setting a response.
    NoResponse,
    /// The guest answered with an error code instead of a response.
    ErrorCode(String),
    /// The node could not instantiate the guest.
    Instantiate(String),
}

impl GuestFailure {
    /// The status the client gets when this happens before the response started.
    pub fn status(&self) -> u16 {
        match self {
            GuestFailure::Timeout => 504,
            GuestFailure::ErrorCode(_) => 502,
            _ => 500,
        }
    }

    /// A short label for logs and metrics: trap, timeout, memory, ...
    pub fn kind(&self) -> &'static str {
        match self {
            GuestFailure::Trap(_) => "trap",
            GuestFailure::Timeout => "timeout",
            GuestFailure::Memory => "memory",
            GuestFailure::NoResponse => "no_response",
            GuestFailure::ErrorCode(_) => "error_code",
            GuestFailure::Instantiate(_) => "instantiate",
        }
    }
}

impl std::fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuestFailure::Trap(why) => write!(f, "guest trapped: {why}"),
            GuestFailure::Timeout => write!(f, "guest exceeded its deadline"),
            GuestFailure::Memory => write!(f, "guest exceeded its memory limit"),
            GuestFailure::NoResponse => write!(f, "guest returned without a response"),
            GuestFailure::ErrorCode(code) => write!(f, "guest answered with error {code}"),
            GuestFailure::Instantiate(why) => write!(f, "guest could not be instantiated: {why}"),
        }
    }
}

/// Per-request state inside a guest's `Store`.
pub struct GuestState {
    // `hooks` drops before `table`: a guest that did not end cleanly is marked failed
    // before its unfinished outgoing bodies (in the table) close.
    hooks: EdgeHooks,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// The engine, the shared linker and the concurrency gate.
pub struct Runtime {
    engine: Engine,
    linker: Linker<GuestState>,
    slots: Arc<Semaphore>,
    pooling: bool,
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
                        "pooling allocator unavailable ({e:#}); falling back to on-demand instances, which are slower"
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
        crate::guest_api::add_to_linker(&mut linker, |state: &mut GuestState| &mut state.hooks)
            .map_err(RuntimeError::Engine)?;
        Ok(Runtime {
            engine,
            linker,
            slots: Arc::new(Semaphore::new(config.max_instances as usize)),
            pooling,
        })
    }

    /// Whether instances come from the pooling allocator.
    pub fn is_pooling(&self) -> bool {
        self.pooling
    }

    /// Starts one request in a fresh instance of `guest`. Returns once the guest has set its
    /// response head (the body may still be streaming) or has failed.
    pub async fn start(
        &self,
        guest: &Guest,
        limits: &LimitsConfig,
        hooks: EdgeHooks,
        request: hyper::Request<wasmtime_wasi_http::WasiBody>,
        scheme: http::uri::Scheme,
    ) -> Result<GuestResponse, GuestDone> {
        let setup_failed = |why: String| GuestDone::failed(GuestFailure::Instantiate(why));
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| setup_failed("runtime shut down".into()))?;
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPTURE_BYTES);
        let stdout = MemoryOutputPipe::new(OUTPUT_CAPTURE_BYTES);
        let wasi = wasmtime_wasi::WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        let setup_started = Instant::now();
        let memory_bytes = (limits.memory_mib as usize).saturating_mul(1 << 20);
        let state = GuestState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks,
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        let deadline = Duration::from_millis(limits.deadline_ms);
        // Every tick the guest yields to the scheduler, so a guest burning CPU cannot starve
        // other requests on its worker thread; past its deadline it is interrupted.
        let deadline_at = Instant::now() + deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline_at {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });

        let (response_tx, response_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let (incoming, outparam) = {
            let mut http = store.data_mut().http();
            let incoming = http
                .new_incoming_request(wasi_scheme(&scheme), request)
                .map_err(|e| setup_failed(format!("{e:#}")))?;
            let outparam = http
                .new_response_outparam(response_tx)
                .map_err(|e| setup_failed(format!("{e:#}")))?;
            (incoming, outparam)
        };
        let pre = guest.pre.clone();
        // Instantiation time is store setup plus `instantiate_async`, not time the task
        // spends queued behind other work.
        let setup = setup_started.elapsed();
        let (instantiated_tx, instantiated_rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let _permit = permit;
            let started = Instant::now();
            let mut instantiate = None;
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                instantiate = Some(setup + started.elapsed());
                let _ = instantiated_tx.send(setup + started.elapsed());
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, outparam)
                    .await
            };
            let outcome = match tokio::time::timeout(deadline, run).await {
                Err(_elapsed) => Err(GuestFailure::Timeout),
                Ok(Err(e)) => Err(classify(&e)),
                Ok(Ok(())) => Ok(()),
            };
            if outcome.is_ok() {
                store.data_mut().hooks.ended_cleanly();
            }
            let text = |pipe: &MemoryOutputPipe| {
                String::from_utf8_lossy(&pipe.contents())
                    .trim_end()
                    .to_owned()
            };
            let _ = done_tx.send(GuestDone {
                outcome,
                stderr: text(&stderr),
                stdout: text(&stdout),
                instantiate,
                lived: setup + started.elapsed(),
            });
            // The store (and with it the response sender) drops only after `done` is sent,
            // so whoever sees the response channel close can read why.
            drop(store);
        });
        let mut invocation = Invocation {
            _task: AbortOnDrop(task),
            done: done_rx,
            instantiate: None,
        };
        let head = response_rx.await;
        invocation.instantiate = instantiated_rx.await.ok();
        match head {
            Ok(Ok(response)) => Ok(invocation.with_response(response)),
            Ok(Err(code)) => Err(GuestDone::failed(GuestFailure::ErrorCode(format!(
                "{code:?}"
            )))),
            Err(_closed) => {
                let mut done = invocation.finish().await;
                if done.outcome.is_ok() {
                    done.outcome = Err(GuestFailure::NoResponse);
                }
                Err(done)
            }
        }
    }
}

/// The level of one line of guest output: the SDK's log macros tag lines (`[warn] ...`);
/// untagged output is `info`. Returns the level and the line without its tag.
pub fn guest_log_level(line: &str) -> (tracing::Level, &str) {
    [
        ("[error] ", tracing::Level::ERROR),
        ("[warn] ", tracing::Level::WARN),
        ("[info] ", tracing::Level::INFO),
        ("[debug] ", tracing::Level::DEBUG),
    ]
    .into_iter()
    .find_map(|(tag, level)| line.strip_prefix(tag).map(|rest| (level, rest)))
    .unwrap_or((tracing::Level::INFO, line))
}

/// What a finished guest left behind.
#[derive(Debug)]
pub struct GuestDone {
    /// Whether the guest finished cleanly.
    pub outcome: Result<(), GuestFailure>,
    /// What the guest wrote to stderr (panic messages land here), trimmed.
    pub stderr: String,
    /// What the guest wrote to stdout, trimmed.
    pub stdout: String,
    /// How long instantiation took, if the guest got that far.
    pub instantiate: Option<Duration>,
    /// How long the guest lived, from store setup to its end (time queued excluded).
    pub lived: Duration,
}

impl GuestDone {
    fn failed(failure: GuestFailure) -> Self {
        Self {
            outcome: Err(failure),
            stderr: String::new(),
            stdout: String::new(),
            instantiate: None,
            lived: Duration::ZERO,
        }
    }
}

/// A running guest whose response head is known.
pub struct Invocation {
    /// Held so the guest is aborted if the request is dropped.
    _task: AbortOnDrop,
    done: oneshot::Receiver<GuestDone>,
    /// Time from store creation to a ready instance, when instantiation finished.
    pub instantiate: Option<Duration>,
}

/// A guest's response plus the handle that tells how the guest ended.
pub struct GuestResponse {
    /// The response head and its (possibly still streaming) body.
    pub response: hyper::Response<HyperOutgoingBody>,
    /// The running guest; [`Invocation::finish`] waits for it.
    pub invocation: Invocation,
}

impl Invocation {
    fn with_response(self, response: hyper::Response<HyperOutgoingBody>) -> GuestResponse {
        GuestResponse {
            response,
            invocation: self,
        }
    }

    /// Waits for the guest to end (bounded by its deadline) and reports how it went.
    pub async fn finish(mut self) -> GuestDone {
        match (&mut self.done).await {
            Ok(done) => done,
            Err(_) => GuestDone::failed(GuestFailure::Trap("guest task ended unexpectedly".into())),
        }
    }
}

/// Aborts the guest's task when the request that owns it goes away (client disconnect).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn wasi_scheme(scheme: &http::uri::Scheme) -> WasiScheme {
    if *scheme == http::uri::Scheme::HTTPS {
        WasiScheme::Https
    } else {
        WasiScheme::Http
    }
}

/// Names the limit a failed guest hit.
fn classify(error: &wasmtime::Error) -> GuestFailure {
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => GuestFailure::Timeout,
            Trap::StackOverflow => GuestFailure::Trap("stack overflow".into()),
            other => GuestFailure::Trap(other.to_string()),
        };
    }
    let root = error.root_cause().to_string();
    if root.contains("forcing trap when growing memory") {
        return GuestFailure::Memory;
    }
    tracing::debug!("guest error detail: {error:?}");
    GuestFailure::Trap(root)
}

/// A compiled guest with its imports resolved: the per-service template for instances.
#[derive(Clone)]
pub struct Guest {
    pre: ProxyPre<GuestState>,
}

impl Guest {
    /// Compiles `path` and checks that it is a component exporting an HTTP handler whose
    /// imports this node provides.
    pub fn load(runtime: &Runtime, path: &Path) -> Result<Guest, RuntimeError> {
        let bytes = std::fs::read(path).map_err(|source| RuntimeError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Guest::from_bytes(runtime, &path.display().to_string(), &bytes)
    }

    /// Like [`Guest::load`] for a component already in memory; `name` labels errors.
    pub fn from_bytes(runtime: &Runtime, name: &str, bytes: &[u8]) -> Result<Guest, RuntimeError> {
        if wasmparser_is_core_module(bytes) {
            return Err(RuntimeError::NotAComponent {
                path: name.to_owned(),
                reason: "this is a core WebAssembly module, not a component".into(),
            });
        }
        let component =
            Component::new(&runtime.engine, bytes).map_err(|e| RuntimeError::NotAComponent {
                path: name.to_owned(),
                reason: format!("{e:#}"),
            })?;
        component
            .initialize_copy_on_write_image()
            .map_err(|e| RuntimeError::NotAComponent {
                path: name.to_owned(),
                reason: format!("{e:#}"),
            })?;
        let instance_pre =
            runtime
                .linker
                .instantiate_pre(&component)
                .map_err(|e| RuntimeError::Imports {
                    path: name.to_owned(),
                    reason: format!("{e:#}"),
                })?;
        let pre = ProxyPre::new(instance_pre).map_err(|e| RuntimeError::NoHandler {
            path: name.to_owned(),
            reason: format!("{e:#}"),
        })?;
        Ok(Guest { pre })
    }
}

/// A core module starts with the magic and version 1; a component with version 0x0d layer 1.
fn wasmparser_is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}

fn engine_config(config: &RuntimeConfig, pooling_memory: Option<u64>) -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true);
    c.epoch_interruption(true);
    let stack = config.max_stack_kib * 1024;
    c.max_wasm_stack(stack);
    c.async_stack_size(stack + (1 << 20));
    if let Some(max_memory) = pooling_memory {
        let n = config.max_instances;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(4))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(4))
            .total_stacks(n)
            .max_memory_size(max_memory as usize)
            .max_component_instance_size(4 << 20)
            .max_core_instance_size(4 << 20)
            .linear_memory_keep_resident(256 << 10)
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn core_modules_are_told_apart_from_components() {
        assert!(wasmparser_is_core_module(b"\0asm\x01\0\0\0"));
        assert!(!wasmparser_is_core_module(b"\0asm\x0d\0\x01\0"));
        assert!(!wasmparser_is_core_module(b"junk"));
    }

    #[test]
    fn failures_map_to_the_documented_statuses() {
        assert_eq!(GuestFailure::Timeout.status(), 504);
        assert_eq!(GuestFailure::Memory.status(), 500);
        assert_eq!(GuestFailure::Trap("x".into()).status(), 500);
        assert_eq!(GuestFailure::ErrorCode("x".into()).status(), 502);
    }
}
