#![warn(missing_docs)]
//! Test an Outpost guest in-process: no running node, no network beyond loopback mocks.
//!
//! A [`Harness`] loads a guest component into the same wasmtime runtime, edge cache and
//! host imports the node uses, serves it requests you build in Rust, and answers its
//! backend fetches from mock backends you declare as closures. Every answer comes back with
//! what the guest logged, how its fetch used the cache, and whether it failed, so tests
//! can assert on all of it from plain `cargo test`.
//!
//! ```no_run
//! use outpost_test::{Harness, MockResponse};
//!
//! #[test]
//! fn adds_a_header_and_caches_the_origin() {
//!     let harness = Harness::builder("target/wasm32-wasip2/release/my_guest.wasm")
//!         .backend("origin", |req| {
//!             MockResponse::ok(format!("origin saw {}", req.path))
//!                 .header("cache-control", "max-age=60")
//!         })
//!         .config("greeting", "hi")
//!         .build()
//!         .unwrap();
//!
//!     let first = harness.get("/page");
//!     assert_eq!(first.status(), 200);
//!     assert_eq!(first.text(), "origin saw /page");
//!     assert_eq!(first.cache_state(), Some("MISS"));
//!     assert_eq!(harness.get("/page").cache_state(), Some("HIT"));
//!     assert_eq!(harness.backend_requests("origin").len(), 1);
//! }
//! # fn main() {}
//! ```
//!
//! Mock backends are real HTTP servers on 127.0.0.1 inside the harness, so guests fetch
//! them exactly as they fetch origins in production: through the backend pool, the
//! limits and the RFC 9111 cache. Build the guest first (`cargo build --release --target
//! wasm32-wasip2`); the harness compiles it once per [`Harness`]. Use it from ordinary
//! `#[test]` functions: it runs its own async runtime.

mod mock;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use outpost_proxy::cache::EdgeCache;
use outpost_proxy::config::Config;
use outpost_proxy::host::{EdgeHooks, FetchStats, RequestInfo};
use outpost_proxy::node::Node;
use outpost_proxy::runtime::{GuestDone, Runtime, guest_log_level};
use outpost_proxy::server::Service;

pub use mock::{MockRequest, MockResponse};

/// The service name guests run under inside the harness.
const SERVICE: &str = "guest";

/// A guest loaded with its mock backends, config store, secrets and edge cache.
pub struct Harness {
    tokio: tokio::runtime::Runtime,
    runtime: Arc<Runtime>,
    service: Arc<Service>,
    cache: Option<Arc<EdgeCache>>,
    backends: BTreeMap<String, mock::MockBackend>,
    client_ip: IpAddr,
    next_id: AtomicU64,
    // Keeps the node (and its guest) alive as long as the harness.
    _node: Node,
}

/// Declares what a [`Harness`] runs: see [`Harness::builder`].
pub struct HarnessBuilder {
    guest: PathBuf,
    backends: Vec<(String, mock::Handler)>,
    config: BTreeMap<String, String>,
    secrets: BTreeMap<String, String>,
    dynamic_backends: Vec<String>,
    geo_database: Option<PathBuf>,
    cache_memory: String,
    limits: Vec<(String, String)>,
    client_ip: IpAddr,
}

impl Harness {
    /// Starts declaring a harness for the component at `guest` (a `.wasm` file).
    pub fn builder(guest: impl AsRef<Path>) -> HarnessBuilder {
        HarnessBuilder {
            guest: guest.as_ref().to_owned(),
            backends: Vec::new(),
            config: BTreeMap::new(),
            secrets: BTreeMap::new(),
            dynamic_backends: Vec::new(),
            geo_database: None,
            cache_memory: "64MiB".into(),
            limits: Vec::new(),
            client_ip: IpAddr::from([192, 0, 2, 1]),
        }
    }

    /// Sends a `GET` for `path` (with query) and waits for the whole answer.
    pub fn get(&self, path: &str) -> TestResponse {
        let request = http::Request::get(path)
            .body(Bytes::new())
            .expect("a GET request for a path");
        self.send(request)
    }

    /// Sends `request` and waits for the whole answer. A relative URI (`/path?q`) gets the
    /// host `guest.test`; the client is [`HarnessBuilder::client_ip`].
    pub fn send(&self, request: http::Request<impl Into<Bytes>>) -> TestResponse {
        self.tokio.block_on(self.run(request.map(Into::into)))
    }

    /// Every request a mock backend received so far, oldest first.
    pub fn backend_requests(&self, backend: &str) -> Vec<MockRequest> {
        self.backends
            .get(backend)
            .map(|b| b.received())
            .unwrap_or_default()
    }

    /// What the edge cache holds now: HTTP variants and simple-cache values.
    pub fn cache_usage(&self) -> CacheUsage {
        let (bytes, objects) = self.cache.as_ref().map_or((0, 0), |c| c.usage());
        CacheUsage { bytes, objects }
    }

    /// Empties the edge cache, as `POST /purge/all` on the admin API would.
    pub fn purge_all(&self) {
        if let Some(cache) = &self.cache {
            cache.purge(outpost_proxy::cache::PurgeTarget::All, false);
        }
    }

    async fn run(&self, request: http::Request<Bytes>) -> TestResponse {
        let (mut parts, body) = request.into_parts();
        if parts.uri.authority().is_none() {
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            parts.uri = format!("http://guest.test{path}")
                .parse()
                .expect("a valid path and query");
        }
        let scheme = parts
            .uri
            .scheme()
            .cloned()
            .unwrap_or(http::uri::Scheme::HTTP);
        let body = Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync();
        let request = hyper::Request::from_parts(parts, body);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(FetchStats::default());
        let hooks = EdgeHooks::new(
            self.service.grants.clone(),
            format!("test-{id}").into(),
            RequestInfo {
                client_ip: Some(self.client_ip),
                http_version: "HTTP/1.1",
                tls: None,
                pop: "test".into(),
            },
            stats.clone(),
        );
        let guest = self.service.guest.load_full();
        let started = self
            .runtime
            .start(&guest, &self.service.limits, hooks, request, scheme)
            .await;
        let (status, headers, body, done) = match started {
            Ok(answer) => {
                let (parts, body) = answer.response.into_parts();
                let collected = body.collect().await;
                let done = answer.invocation.finish().await;
                match collected {
                    Ok(body) => (parts.status, parts.headers, body.to_bytes(), done),
                    Err(e) => {
                        let mut done = done;
                        if done.outcome.is_ok() {
                            done.outcome = Err(outpost_proxy::runtime::GuestFailure::Trap(
                                format!("response body failed: {e:?}"),
                            ));
                        }
                        (parts.status, parts.headers, Bytes::new(), done)
                    }
                }
            }
            Err(done) => {
                let status = done
                    .outcome
                    .as_ref()
                    .err()
                    .map_or(500, |failure| failure.status());
                let status = http::StatusCode::from_u16(status)
                    .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
                (status, http::HeaderMap::new(), Bytes::new(), done)
            }
        };
        TestResponse {
            status,
            headers,
            body,
            failure: done.outcome.as_ref().err().map(|f| f.to_string()),
            logs: logs(&done),
            cache_state: stats.cache_state().map(|s| s.as_header()),
        }
    }
}

impl HarnessBuilder {
    /// Adds a mock backend: the guest reaches it as `http://NAME/...` (`Request::send(NAME)`
    /// in the SDK), and `answer` makes each response.
    pub fn backend(
        mut self,
        name: &str,
        answer: impl Fn(&MockRequest) -> MockResponse + Send + Sync + 'static,
    ) -> Self {
        self.backends.push((name.to_owned(), Arc::new(answer)));
        self
    }

    /// Sets a config-store entry (`outpost::config::get`).
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.config.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Sets a secret (`outpost::config::secret`).
    pub fn secret(mut self, key: &str, value: &str) -> Self {
        self.secrets.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Allows dynamic backends matching `pattern` (see the node's `dynamic_backends`).
    pub fn dynamic_backend(mut self, pattern: &str) -> Self {
        self.dynamic_backends.push(pattern.to_owned());
        self
    }

    /// A MaxMind-format database for `outpost::geo`.
    pub fn geo_database(mut self, path: impl AsRef<Path>) -> Self {
        self.geo_database = Some(path.as_ref().to_owned());
        self
    }

    /// The edge cache size (`"64MiB"` by default; `"0"` turns the cache off).
    pub fn cache_memory(mut self, size: &str) -> Self {
        self.cache_memory = size.to_owned();
        self
    }

    /// Sets a per-request limit by its config name (`deadline_ms`, `memory_mib`,
    /// `max_backend_requests`, ...), as under `[services.NAME.limits]`.
    pub fn limit(mut self, name: &str, value: u64) -> Self {
        self.limits.push((name.to_owned(), value.to_string()));
        self
    }

    /// The client address guests see in `request_info()` and geolocation
    /// (`192.0.2.1` by default).
    pub fn client_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = ip;
        self
    }

    /// Starts the mock backends and compiles the guest.
    pub fn build(mut self) -> anyhow::Result<Harness> {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the harness's async runtime")?;
        let mut backends = BTreeMap::new();
        for (name, handler) in std::mem::take(&mut self.backends) {
            let backend = tokio
                .block_on(mock::MockBackend::start(handler))
                .with_context(|| format!("starting mock backend `{name}`"))?;
            backends.insert(name, backend);
        }
        let text = self.config_text(&backends);
        let config = Config::from_toml(&text, "outpost-test harness", Path::new("."))
            .context("the harness's node config")?;
        let node = tokio
            .block_on(async { Node::build(config) })
            .with_context(|| format!("loading {}", self.guest.display()))?;
        let service = node.service(SERVICE).expect("the harness's one service");
        Ok(Harness {
            runtime: node.runtime(),
            cache: node.cache(),
            service,
            backends,
            client_ip: self.client_ip,
            next_id: AtomicU64::new(1),
            tokio,
            _node: node,
        })
    }

    fn config_text(&self, backends: &BTreeMap<String, mock::MockBackend>) -> String {
        let quote = |s: &str| format!("{s:?}");
        let table = |entries: &BTreeMap<String, String>| {
            entries
                .iter()
                .map(|(k, v)| format!("{} = {}", quote(k), quote(v)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut text = String::from("[server]\nlisten = [\"127.0.0.1:1\"]\n\n");
        text.push_str(&format!(
            "[cache]\nmemory = {}\n\n",
            quote(&self.cache_memory)
        ));
        if let Some(db) = &self.geo_database {
            text.push_str(&format!(
                "[geo]\ndatabase = {}\n\n",
                quote(&db.display().to_string())
            ));
        }
        text.push_str(&format!(
            "[services.{SERVICE}]\ndomains = [\"*\"]\nguest = {}\nconfig = {{ {} }}\nsecrets = {{ {} }}\ndynamic_backends = [{}]\n",
            quote(&self.guest.display().to_string()),
            table(&self.config),
            table(&self.secrets),
            self.dynamic_backends
                .iter()
                .map(|p| quote(p))
                .collect::<Vec<_>>()
                .join(", "),
        ));
        if !self.limits.is_empty() {
            text.push_str(&format!("\n[services.{SERVICE}.limits]\n"));
            for (name, value) in &self.limits {
                text.push_str(&format!("{name} = {value}\n"));
            }
        }
        for (name, backend) in backends {
            text.push_str(&format!(
                "\n[services.{SERVICE}.backends.{}]\nurl = \"http://{}\"\n",
                quote(name),
                backend.addr()
            ));
        }
        text
    }
}

/// A guest's whole answer to one request, with what happened on the way.
#[derive(Debug, Clone)]
pub struct TestResponse {
    status: http::StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
    failure: Option<String>,
    logs: Vec<LogLine>,
    cache_state: Option<&'static str>,
}

impl TestResponse {
    /// The status (for a failed guest, the status the node would send: 500, 502 or 504).
    pub fn status(&self) -> u16 {
        self.status.as_u16()
    }

    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// All headers.
    pub fn headers(&self) -> &http::HeaderMap {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Why the guest failed (trap, panic, deadline, memory), if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// What the guest logged: its stdout lines, then its stderr lines, each in order. The
    /// SDK's log macros carry their level; plain prints (and panic messages) are `INFO`.
    pub fn logs(&self) -> &[LogLine] {
        &self.logs
    }

    /// Whether any log line contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.logs.iter().any(|line| line.message.contains(text))
    }

    /// How the guest's last backend fetch used the edge cache: `HIT`, `MISS`, `STALE`,
    /// `PASS` or `REVALIDATED`; `None` when it fetched nothing.
    pub fn cache_state(&self) -> Option<&'static str> {
        self.cache_state
    }
}

/// One line a guest logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// `ERROR`, `WARN`, `INFO` or `DEBUG`.
    pub level: String,
    /// The line without its level tag.
    pub message: String,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
}

/// What the edge cache holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheUsage {
    /// Bytes stored (heads and bodies).
    pub bytes: u64,
    /// Objects stored (response variants and simple-cache values).
    pub objects: u64,
}

fn logs(done: &GuestDone) -> Vec<LogLine> {
    let mut lines = Vec::new();
    for (stream, text) in [("stdout", &done.stdout), ("stderr", &done.stderr)] {
        for line in text.lines() {
            let (level, message) = guest_log_level(line);
            lines.push(LogLine {
                level: level.to_string(),
                message: message.to_owned(),
                stream,
            });
        }
    }
    lines
}
