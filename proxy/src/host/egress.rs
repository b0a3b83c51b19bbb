//! What guests may reach beyond computing: outgoing HTTP to named backends, through the
//! edge cache.
//!
//! Every `wasi:http/outgoing-handler.handle` a guest makes lands in
//! [`EdgeHooks::send_request`]. The request's authority must name one of the service's
//! configured backends, or a host on its `dynamic_backends` allow-list; anything else fails
//! with `HTTP-request-denied`, which the guest sees as a typed error. The host never
//! connects anywhere the config did not name, and a request may make at most
//! `limits.max_backend_requests` fetches. Allowed fetches go through the [`EdgeCache`]
//! (unless the guest passes), which decides whether the origin is reached.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::backend::Backend;
use crate::cache::{CacheState, EdgeCache, Overrides};
use crate::host_pattern::{HostPattern, HostSet, normalize_host};
use crate::metrics::BackendMetrics;

/// The named backends of one service, by lower-case name.
pub type Backends = BTreeMap<String, Arc<Backend>>;

/// Chunks of a guest's response body buffered between the guest and the client: enough
/// that writing a small body never parks the guest, bounded by [`BODY_CHUNK_BYTES`] each.
const BODY_BUFFER_CHUNKS: usize = 4;
/// Largest single write a guest may make to a body stream.
const BODY_CHUNK_BYTES: usize = 64 * 1024;

/// What the guest may learn about its request beyond HTTP (the `request-info` import).
#[derive(Debug, Default, Clone)]
pub struct RequestInfo {
    /// The TCP peer's address.
    pub client_ip: Option<std::net::IpAddr>,
    /// `HTTP/1.1` or `HTTP/2`.
    pub http_version: &'static str,
    /// TLS details, when over TLS (shared by every request of the connection).
    pub tls: Option<Arc<TlsInfo>>,
    /// The node's POP name.
    pub pop: Arc<str>,
}

/// The TLS session a request arrived on.
#[derive(Debug, Default, Clone)]
pub struct TlsInfo {
    /// Protocol version, e.g. `TLSv1_3`.
    pub protocol: String,
    /// Cipher suite.
    pub cipher: String,
    /// The server name the client asked for (SNI), if it sent one.
    pub sni: Option<String>,
}

/// What a service grants each of its guests' requests; built once per service.
pub struct Grants {
    /// The service's name.
    pub service: Arc<str>,
    /// The named backends it may fetch from.
    pub backends: Backends,
    /// The node's edge cache; `None` when `cache.memory` is 0.
    pub cache: Option<Arc<EdgeCache>>,
    /// Its config store and secrets.
    pub stores: ServiceStores,
    /// Backend fetches one request may make.
    pub max_backend_requests: u32,
    /// Hosts the guest may fetch without a configured backend.
    pub dynamic: DynamicBackends,
    /// The node's rate counters (keyed per service).
    pub counters: Arc<crate::counters::Counters>,
    /// The node's geolocation database, when configured.
    pub geo: Option<Arc<crate::geo::GeoDb>>,
}

/// Backends made on demand for hosts on the service's `dynamic_backends` allow-list: the
/// guest fetches `http://HOST[:PORT]/...` directly, and each origin gets a pooled backend
/// with default timeouts, made once and kept (at most [`DynamicBackends::KEPT`]).
pub struct DynamicBackends {
    allow: HostSet,
    described: String,
    made: Mutex<BTreeMap<String, Arc<Backend>>>,
    metrics: BackendMetrics,
    service: Arc<str>,
}

impl DynamicBackends {
    /// How many dynamic origins keep their connection pools.
    pub const KEPT: usize = 256;

    /// Allows the hosts matching `allow`; their fetches count into `metrics`.
    pub fn new(service: Arc<str>, allow: &[HostPattern], metrics: BackendMetrics) -> Self {
        let described = if allow.is_empty() {
            "none".to_owned()
        } else {
            allow
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        Self {
            allow: HostSet::of(allow),
            described,
            made: Mutex::default(),
            metrics,
            service,
        }
    }

    /// The backend for `uri`'s origin when its host is allowed.
    pub fn backend_for(&self, uri: &http::Uri) -> Option<Arc<Backend>> {
        if self.allow.is_empty() {
            return None;
        }
        let host = normalize_host(uri.host()?);
        if !self.allow.allows(&host) {
            return None;
        }
        let origin = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("http"),
            uri.authority()?.as_str().to_ascii_lowercase()
        );
        let mut made = self.made.lock().expect("dynamic backends lock");
        if let Some(backend) = made.get(&origin) {
            return Some(backend.clone());
        }
        let backend = match Backend::for_origin(&origin, self.metrics.clone()) {
            Ok(backend) => Arc::new(backend),
            Err(error) => {
                tracing::warn!(service = %self.service, "dynamic backend {origin}: {error}");
                return None;
            }
        };
        if made.len() < Self::KEPT {
            made.insert(origin, backend.clone());
        }
        Some(backend)
    }
}

/// A service's read-only stores, shared by all its requests.
#[derive(Debug, Default)]
pub struct ServiceStores {
    /// `[services.NAME.config]`.
    pub config: BTreeMap<String, String>,
    /// `[services.NAME.secrets]`.
    pub secrets: BTreeMap<String, crate::config::Secret>,
}

/// What one request's backend fetches cost and how the cache answered them; shared between
/// the guest's hooks and the pipeline, which reports it in Server-Timing and the access log.
#[derive(Debug, Default)]
pub struct FetchStats {
    origin_ns: AtomicU64,
    /// 0 when no fetch happened, else 1 + the [`CacheState`] index of the latest fetch.
    cache: AtomicU8,
}

impl FetchStats {
    /// Time spent waiting for backend response heads (cache hits count their lookup).
    pub fn origin_time(&self) -> Duration {
        Duration::from_nanos(self.origin_ns.load(Ordering::Relaxed))
    }

    /// How the cache answered the latest fetch, if there was one.
    pub fn cache_state(&self) -> Option<CacheState> {
        match self.cache.load(Ordering::Relaxed) {
            0 => None,
            n => CacheState::ALL.get(n as usize - 1).copied(),
        }
    }

    fn record(&self, waited: Duration, state: Option<CacheState>) {
        self.origin_ns
            .fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
        if let Some(state) = state {
            self.cache.store(state.index() as u8 + 1, Ordering::Relaxed);
        }
    }
}

/// Where a guest's `cache-response` call leaves its instructions for the response cache
/// (shared between the request's hooks and the pipeline that stores the answer).
pub type ResponsePolicy = Arc<Mutex<Option<Overrides>>>;

/// Per-request egress policy, stored in the guest's `Store`.
pub struct EdgeHooks {
    grants: Arc<Grants>,
    request_id: Arc<str>,
    info: RequestInfo,
    remaining_requests: u32,
    stats: Arc<FetchStats>,
    /// Cache instructions for the next fetch (set through the guest's typed cache calls).
    pub next_overrides: Overrides,
    /// Where the guest's instructions for caching its own answer go, when the service's
    /// response cache covers this request.
    pub response_policy: Option<ResponsePolicy>,
    /// Simple-cache key locks this request holds (`get-or-lock`), released when it ends.
    held_locks: Vec<String>,
    /// Set when the guest goes away without ending cleanly (trap, deadline, abort); the
    /// request bodies it was streaming to origins then end in an error, not cleanly.
    guest_failed: Arc<AtomicBool>,
    ended_cleanly: bool,
}

impl EdgeHooks {
    /// Hooks for one request (`request_id`, `info`) of the service that `grants` describes.
    /// Timings and cache results accumulate in `stats`.
    pub fn new(
        grants: Arc<Grants>,
        request_id: Arc<str>,
        info: RequestInfo,
        stats: Arc<FetchStats>,
    ) -> Self {
        Self {
            remaining_requests: grants.max_backend_requests,
            grants,
            request_id,
            info,
            stats,
            next_overrides: Overrides::default(),
            response_policy: None,
            held_locks: Vec::new(),
            guest_failed: Arc::default(),
            ended_cleanly: false,
        }
    }

    /// The service this request belongs to.
    pub fn service(&self) -> &str {
        &self.grants.service
    }

    /// The request's id.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// What the guest may learn about its request.
    pub fn info(&self) -> &RequestInfo {
        &self.info
    }

    /// What the service grants this request.
    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    /// Remembers a simple-cache key lock this request holds, to release when it ends.
    pub fn hold_lock(&mut self, key: String) {
        self.held_locks.push(key);
    }

    /// Releases a simple-cache key lock this request held (after its insert).
    pub fn release_lock(&mut self, key: &str) {
        if let Some(at) = self.held_locks.iter().position(|k| k == key) {
            let key = self.held_locks.swap_remove(at);
            self.unlock(&key);
        }
    }

    fn unlock(&self, key: &str) {
        if let Some(cache) = &self.grants.cache {
            cache.values().unlock(&self.grants.service, key);
        }
    }

    /// Marks the guest as finished without error, so its outgoing bodies may end normally.
    pub fn ended_cleanly(&mut self) {
        self.ended_cleanly = true;
    }
}

type SendResult = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

impl WasiHttpHooks for EdgeHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let name = normalize_host(request.uri().host().unwrap_or_default());
        let backend = match self.grants.backends.get(name.as_ref()) {
            Some(backend) => Some(backend.clone()),
            None => self.grants.dynamic.backend_for(request.uri()),
        };
        let Some(backend) = backend else {
            tracing::warn!(
                service = %self.grants.service,
                request_id = %self.request_id,
                "guest fetch to `{name}` denied: not a backend of this service (configured: \
                 {}; dynamic hosts allowed: {})",
                self.grants.backends.keys().cloned().collect::<Vec<_>>().join(", "),
                self.grants.dynamic.described
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        };
        if self.remaining_requests == 0 {
            tracing::warn!(
                service = %self.grants.service,
                request_id = %self.request_id,
                "guest fetch to `{name}` denied: backend request limit reached"
            );
            return Box::new(async { Err(HttpError::ConnectionLimitReached) });
        }
        self.remaining_requests -= 1;
        let stats = self.stats.clone();
        let cache = self.grants.cache.clone();
        let service = self.grants.service.clone();
        let overrides = std::mem::take(&mut self.next_overrides);
        let failed = self.guest_failed.clone();
        let request = request.map(|body| {
            GuardedBody {
                inner: body,
                failed,
            }
            .boxed_unsync()
        });
        Box::new(async move {
            let started = Instant::now();
            let response = match cache {
                Some(cache) => cache
                    .fetch(&service, backend, request, overrides)
                    .await
                    .map(|(response, state)| (response, Some(state))),
                None => backend.send(request).await.map(|r| (r, None)),
            };
            let (response, state) = match response {
                Ok(answer) => answer,
                Err(error) => {
                    stats.record(started.elapsed(), None);
                    return Err(error);
                }
            };
            stats.record(started.elapsed(), state);
            let io_done: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, io_done))
        })
    }

    fn set_host_header(&mut self) -> bool {
        // The backend decides the Host header (its URL's host or its override).
        false
    }

    fn default_scheme(&mut self) -> Option<http::uri::Scheme> {
        Some(http::uri::Scheme::HTTP)
    }

    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        BODY_BUFFER_CHUNKS
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_CHUNK_BYTES
    }
}

impl Drop for EdgeHooks {
    fn drop(&mut self) {
        for key in std::mem::take(&mut self.held_locks) {
            self.unlock(&key);
        }
        if !self.ended_cleanly {
            self.guest_failed.store(true, Ordering::SeqCst);
        }
    }
}

/// A guest's outgoing request body. wasmtime-wasi-http 48 ends such a body cleanly when the
/// guest drops it without `finish` (as a dying guest does), so an origin would take a cut-off
/// chunked upload for a complete one. This wrapper turns that end into an error when the
/// guest failed, so the connection to the origin is aborted instead.
struct GuardedBody {
    inner: WasiBody,
    failed: Arc<AtomicBool>,
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(None) if self.failed.load(Ordering::SeqCst) => {
                Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(None))))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        // True only for bodies known empty up front (no body at all); a guest's streamed
        // body never claims its end early, so the last poll decides.
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
