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

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use outpost_proxy::config::{BackendConfig, Config, LimitsConfig, Secret, ServiceConfig};
use outpost_proxy::host_pattern::HostPattern;
use outpost_proxy::node::Node;
use outpost_proxy::runtime::GuestEnd;
use outpost_proxy::service::{Downstream, GuestRun, Site, guest_log_level};

pub use mock::{MockRequest, MockResponse};

/// The service name guests run under inside the harness.
const SERVICE: &str = "guest";

/// What the harness keeps of one guest run, by request id.
#[derive(Default, Clone)]
struct Observed {
    failure: Option<String>,
    logs: Vec<LogLine>,
    cache_state: Option<&'static str>,
}

/// A guest loaded with its mock backends, config store, secrets and edge cache.
pub struct Harness {
    tokio: tokio::runtime::Runtime,
    site: Arc<Site>,
    backends: BTreeMap<String, mock::MockBackend>,
    client_ip: IpAddr,
    observed: Arc<Mutex<HashMap<String, Observed>>>,
    // Keeps the node (its runtime and cache) alive as long as the harness.
    node: Node,
}

/// Declares what a [`Harness`] runs: see [`Harness::builder`].
pub struct HarnessBuilder {
    guest: PathBuf,
    backends: Vec<(String, mock::Handler)>,
    service: ServiceConfig,
    config: Config,
    client_ip: IpAddr,
}

impl Harness {
    /// Starts declaring a harness for the component at `guest` (a `.wasm` file).
    pub fn builder(guest: impl AsRef<Path>) -> HarnessBuilder {
        let mut config = Config {
            source: "outpost-test harness".into(),
            ..Config::default()
        };
        config.cache.memory = bytesize::ByteSize::mib(64);
        HarnessBuilder {
            guest: guest.as_ref().to_owned(),
            backends: Vec::new(),
            service: ServiceConfig::new(vec![HostPattern::Any], guest.as_ref()),
            config,
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

    /// Sends `request` and waits for the whole answer: the node's own pipeline decides it
    /// (limits, routing, headers, failures), as it would for a client. A relative URI
    /// (`/path?q`) gets the host `guest.test`; the client is [`HarnessBuilder::client_ip`].
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

    /// What the edge cache holds now.
    pub fn cache_usage(&self) -> CacheUsage {
        let (bytes, objects) = self
            .node
            .shared()
            .cache
            .as_ref()
            .map_or((0, 0), |c| c.usage());
        CacheUsage { bytes, objects }
    }

    /// Empties the edge cache, as `POST /purge/all` on the admin API would.
    pub fn purge_all(&self) {
        if let Some(cache) = &self.node.shared().cache {
            cache.purge(outpost_proxy::cache::PurgeTarget::All, false);
        }
    }

    async fn run(&self, request: http::Request<Bytes>) -> TestResponse {
        let (mut parts, body) = request.into_parts();
        if parts.uri.authority().is_none() && !parts.headers.contains_key(http::header::HOST) {
            parts.headers.insert(
                http::header::HOST,
                http::HeaderValue::from_static("guest.test"),
            );
        }
        // A client sending a whole body declares its length, as any HTTP client would.
        if !body.is_empty()
            && !parts.headers.contains_key(http::header::CONTENT_LENGTH)
            && !parts.headers.contains_key(http::header::TRANSFER_ENCODING)
        {
            parts.headers.insert(
                http::header::CONTENT_LENGTH,
                http::HeaderValue::from(body.len()),
            );
        }
        let body = if body.is_empty() {
            outpost_proxy::http::empty_body()
        } else {
            Full::new(body)
                .map_err(|never| match never {})
                .boxed_unsync()
        };
        let request = http::Request::from_parts(parts, body);
        let request_id = self.site.shared().ids.next();
        let downstream = Downstream::in_process(request_id.clone(), Some(self.client_ip));
        let response = self.site.handle(request, downstream).await;
        let (parts, body) = response.into_parts();
        let (body, body_error) = match body.collect().await {
            Ok(body) => (body.to_bytes(), None),
            Err(e) => (Bytes::new(), Some(format!("the response was cut off: {e}"))),
        };
        let observed = self
            .observed
            .lock()
            .expect("observed runs lock")
            .remove(&*request_id)
            .unwrap_or_default();
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
            failure: observed.failure.or(body_error),
            logs: observed.logs,
            cache_state: observed.cache_state,
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
        self.service.config.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Sets a secret (`outpost::config::secret`).
    pub fn secret(mut self, key: &str, value: &str) -> Self {
        self.service
            .secrets
            .insert(key.to_owned(), Secret::new(value.to_owned()));
        self
    }

    /// Allows dynamic backends matching `pattern` (see the node's `dynamic_backends`).
    ///
    /// # Panics
    /// If `pattern` is not a host name, wildcard, IP address or `*`.
    pub fn dynamic_backend(mut self, pattern: &str) -> Self {
        let pattern = HostPattern::parse(pattern).expect("a valid host pattern");
        self.service.dynamic_backends.push(pattern);
        self
    }

    /// A MaxMind-format database for `outpost::geo`.
    pub fn geo_database(mut self, path: impl AsRef<Path>) -> Self {
        self.config.geo.database = Some(path.as_ref().to_owned());
        self
    }

    /// The edge cache size in bytes (64 MiB by default; 0 turns the cache off).
    pub fn cache_memory(mut self, bytes: u64) -> Self {
        self.config.cache.memory = bytesize::ByteSize::b(bytes);
        self
    }

    /// Sets the service's per-request limits, as under `[services.NAME.limits]`:
    /// `.limits(|l| l.deadline_ms = 50)`.
    pub fn limits(mut self, set: impl FnOnce(&mut LimitsConfig)) -> Self {
        set(&mut self.service.limits);
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
            self.service.backends.insert(
                name.clone(),
                BackendConfig::from_url(format!("http://{}", backend.addr())),
            );
            backends.insert(name, backend);
        }
        let mut config = self.config;
        config.services.insert(SERVICE.to_owned(), self.service);
        config.validate().context("the harness's node config")?;
        let observed: Arc<Mutex<HashMap<String, Observed>>> = Arc::default();
        let sink = observed.clone();
        let observer = Arc::new(move |run: &GuestRun<'_>| {
            let report = run.report;
            let failure = match &report.end {
                GuestEnd::Failed(failure) => Some(failure.to_string()),
                _ => None,
            };
            let entry = Observed {
                failure,
                logs: logs(&report.stdout, &report.stderr),
                cache_state: run.fetch_cache.map(|s| s.as_header()),
            };
            sink.lock()
                .expect("observed runs lock")
                .insert(run.request_id.to_owned(), entry);
        });
        let node = tokio
            .block_on(async { Node::build_observed(config, Some(observer)) })
            .with_context(|| format!("loading {}", self.guest.display()))?;
        Ok(Harness {
            site: node.site(),
            backends,
            client_ip: self.client_ip,
            observed,
            tokio,
            node,
        })
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
    /// The status, as the node would send it (for a failed guest: 500, 502 or 504).
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

fn logs(stdout: &str, stderr: &str) -> Vec<LogLine> {
    let mut lines = Vec::new();
    for (stream, text) in [("stdout", stdout), ("stderr", stderr)] {
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
