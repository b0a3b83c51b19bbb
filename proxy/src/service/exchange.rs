//! One request's record, from its head to the end of its response: the id it is logged
//! under, what its fetches and guest cost, and, once the response body has been sent (or
//! the client went away), its metrics and access-log line. [`EdgeBody`] is the response
//! body that closes the record.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use super::Service;
use crate::access_log::{AccessLog, AccessRecord};
use crate::cache::CacheState;
use crate::host::{FetchStats, RequestInfo, TlsInfo};
use crate::http::{REQUEST_ID, complete_at};

/// Request ids: a random per-process prefix and a counter, cheap and unique enough to grep.
pub struct RequestIds {
    prefix: u32,
    counter: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        let prefix = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish() as u32;
        Self {
            prefix,
            counter: AtomicU64::new(1),
        }
    }
}

impl RequestIds {
    /// The next id.
    pub fn next(&self) -> Arc<str> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{:08x}{:08x}", self.prefix, n).into()
    }
}

/// Where a request came from: everything the pipeline needs about its connection.
pub struct Downstream {
    /// The id the request is logged under and answered with.
    pub request_id: Arc<str>,
    /// When its head was complete.
    pub started: Instant,
    /// The TCP peer's address.
    pub client_ip: Option<IpAddr>,
    /// HTTP/1.1 or HTTP/2.
    pub version: http::Version,
    /// TLS details, when over TLS.
    pub tls: Option<Arc<TlsInfo>>,
}

impl Downstream {
    /// A request that came over no connection (the test harness, benchmarks).
    pub fn in_process(request_id: Arc<str>, client_ip: Option<IpAddr>) -> Self {
        Self {
            request_id,
            started: Instant::now(),
            client_ip,
            version: http::Version::HTTP_11,
            tls: None,
        }
    }
}

/// What the parts of a request's handling report back while it runs; shared with the
/// guest's hooks (fetches), the request body (bytes in) and the guest's report (time).
#[derive(Default)]
pub(crate) struct RequestTrace {
    pub(crate) fetches: Arc<FetchStats>,
    pub(crate) bytes_in: AtomicU64,
    /// Set when the request body went over the service's limit.
    pub(crate) body_too_large: AtomicBool,
    /// The guest's lifetime, once it ended.
    pub(crate) guest: OnceLock<Duration>,
}

/// One request's record; finished exactly once, by its [`EdgeBody`].
pub(crate) struct Exchange {
    pub(crate) request_id: Arc<str>,
    pub(crate) started: Instant,
    pub(crate) client_ip: Option<IpAddr>,
    pub(crate) version: http::Version,
    pub(crate) tls: Option<Arc<TlsInfo>>,
    pub(crate) service: Option<Arc<Service>>,
    pub(crate) status: u16,
    pub(crate) trace: Arc<RequestTrace>,
    /// How the response cache answered, when it was consulted.
    pub(crate) response_cache: Option<CacheState>,
    /// A `HEAD` request: its response has no body on the wire.
    head_request: bool,
    log: Option<LogLine>,
    in_flight: prometheus::IntGauge,
    finished: bool,
}

/// What the access log needs beyond the record, kept only when there is an access log.
struct LogLine {
    sink: Arc<AccessLog>,
    method: http::Method,
    host: String,
    path: String,
}

impl Drop for Exchange {
    /// A request dropped before it had a response (its client went away while the guest
    /// worked) is counted as cancelled.
    fn drop(&mut self) {
        self.finish(0, Outcome::Cancelled);
    }
}

impl Exchange {
    pub(crate) fn new<B>(
        downstream: Downstream,
        request: &http::Request<B>,
        access_log: Option<&Arc<AccessLog>>,
        in_flight: &prometheus::IntGauge,
    ) -> Self {
        in_flight.inc();
        let log = access_log.map(|sink| LogLine {
            sink: sink.clone(),
            method: request.method().clone(),
            host: request
                .uri()
                .host()
                .or_else(|| {
                    request
                        .headers()
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                })
                .unwrap_or_default()
                .to_owned(),
            path: request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned(),
        });
        Self {
            request_id: downstream.request_id,
            started: downstream.started,
            client_ip: downstream.client_ip,
            version: downstream.version,
            tls: downstream.tls,
            service: None,
            status: 0,
            trace: Arc::default(),
            response_cache: None,
            head_request: request.method() == http::Method::HEAD,
            log,
            in_flight: in_flight.clone(),
            finished: false,
        }
    }

    /// Who a guest runs for when it runs for this request.
    pub(crate) fn caller(&self, pop: &Arc<str>) -> super::Caller {
        super::Caller {
            request_id: self.request_id.clone(),
            info: RequestInfo {
                client_ip: self.client_ip,
                http_version: if self.version == http::Version::HTTP_2 {
                    "HTTP/2"
                } else {
                    "HTTP/1.1"
                },
                tls: self.tls.clone(),
                pop: pop.clone(),
            },
            trace: self.trace.clone(),
        }
    }

    /// Counts and logs the finished exchange (once).
    fn finish(&mut self, bytes_out: u64, outcome: Outcome) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        // Out of flight before it is counted, so a scrape never sees it in both.
        self.in_flight.dec();
        let total = self.started.elapsed();
        let cancelled = outcome == Outcome::Cancelled;
        // A request the client abandoned is logged as nginx does, 499.
        let status = if cancelled { 499 } else { self.status };
        if let Some(service) = &self.service {
            if cancelled {
                service.metrics.cancelled();
            }
            service.metrics.request(status, total.as_secs_f64());
        }
        if let Some(log) = &self.log {
            let response_cache = self.response_cache.map(CacheState::as_header);
            log.sink.write(&AccessRecord {
                request_id: &self.request_id,
                service: self.service.as_ref().map(|s| &*s.name),
                client: self.client_ip,
                method: log.method.as_str(),
                host: &log.host,
                path: &log.path,
                status,
                bytes_in: self.trace.bytes_in.load(Ordering::Relaxed),
                bytes_out,
                total,
                guest: self.trace.guest.get().copied(),
                origin: self.trace.fetches.origin_time(),
                cache: self.trace.fetches.cache_state().map(|s| s.as_header()),
                response_cache,
            });
        }
    }

    /// A response whose body is `body`, closing this record when it ends.
    pub(crate) fn respond(
        mut self,
        mut response: http::Response<BodyKind>,
    ) -> http::Response<EdgeBody> {
        self.status = response.status().as_u16();
        if let Ok(id) = HeaderValue::from_str(&self.request_id) {
            response.headers_mut().insert(REQUEST_ID, id);
        }
        // The codec stops reading a body at its declared length, or never reads one that
        // cannot go on the wire: both count as sent whole.
        let complete_at = complete_at(self.head_request, response.status(), response.headers());
        response.map(|inner| EdgeBody {
            inner,
            bytes_out: 0,
            complete_at,
            exchange: Some(self),
        })
    }

    /// A short plain-text answer from the node itself.
    pub(crate) fn answer(self, status: http::StatusCode, text: &str) -> http::Response<EdgeBody> {
        let response = super::node_answer(status, text);
        self.respond(response.map(|text| BodyKind::Full(Some(text))))
    }
}

/// How an exchange's response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Sent whole.
    Complete,
    /// Cut off by an error (a failing guest or origin): the client saw it incomplete.
    CutOff,
    /// The client went away first.
    Cancelled,
}

/// A response body as the node sends it.
#[allow(
    clippy::large_enum_variant,
    reason = "one per response, built once; boxing the guest's body would cost an \
              allocation per request"
)]
pub(crate) enum BodyKind {
    /// Bytes known up front (node answers); `None` once sent.
    Full(Option<Bytes>),
    /// A guest's body, which drives the guest.
    Guest(crate::runtime::GuestBody),
    /// A stream from the cache or an origin.
    Stream(WasiBody),
}

impl BodyKind {
    /// No body at all.
    pub(crate) fn empty() -> Self {
        BodyKind::Full(None)
    }
}

/// The response body the node hands its HTTP codec: it counts the bytes sent and closes
/// the request's record when the body ends, fails, or is dropped because the client left.
pub struct EdgeBody {
    inner: BodyKind,
    bytes_out: u64,
    /// The byte count at which the response is whole on the wire, when known.
    complete_at: Option<u64>,
    exchange: Option<Exchange>,
}

impl EdgeBody {
    fn end(&mut self, outcome: Outcome) {
        if let Some(mut exchange) = self.exchange.take() {
            exchange.finish(self.bytes_out, outcome);
        }
    }
}

impl Body for EdgeBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.get_mut();
        let polled = match &mut this.inner {
            BodyKind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            BodyKind::Guest(body) => Pin::new(body).poll_frame(cx),
            BodyKind::Stream(body) => Pin::new(body).poll_frame(cx),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes_out += data.len() as u64;
                }
            }
            Poll::Ready(Some(Err(_))) => this.end(Outcome::CutOff),
            Poll::Ready(None) => this.end(Outcome::Complete),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            BodyKind::Full(bytes) => bytes.is_none(),
            BodyKind::Guest(body) => body.is_end_stream(),
            BodyKind::Stream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            BodyKind::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            BodyKind::Full(None) => SizeHint::with_exact(0),
            BodyKind::Guest(body) => body.size_hint(),
            BodyKind::Stream(body) => body.size_hint(),
        }
    }
}

impl Drop for EdgeBody {
    fn drop(&mut self) {
        if self.exchange.is_none() {
            return;
        }
        let complete = self.is_end_stream() || self.complete_at == Some(self.bytes_out);
        let inner = std::mem::replace(&mut self.inner, BodyKind::empty());
        if complete {
            // The client has the whole response: a guest still working (on what follows
            // its body) may finish in its own time.
            if let BodyKind::Guest(body) = inner {
                body.detach();
            }
            self.end(Outcome::Complete);
        } else {
            // The guest goes first (cancelled, and reported), then the record closes.
            drop(inner);
            self.end(Outcome::Cancelled);
        }
    }
}
