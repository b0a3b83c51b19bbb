//! The front end: pingora accepts HTTP/1.1, h2c and TLS (HTTP/2 by ALPN), the Host header
//! picks a service, and the request streams into a fresh guest while its response streams
//! back to the client.
//!
//! Promises:
//! - A request for a host no service claims gets a 404 from the node itself.
//! - Request heads over `server.max_header_bytes` get 431, bodies over the service's
//!   `max_request_body_bytes` get 413, malformed HTTP gets 400 (or the connection closed).
//! - A guest failure before its response head is a 5xx for that request only (504 for the
//!   deadline); after the head, the response is cut off rather than made to look complete.
//! - Every response carries `x-outpost-request-id`, the id the node's log lines use.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http_body_util::BodyExt;
use pingora_core::apps::{
    HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream, ServerApp,
};
use pingora_core::protocols::Stream;
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use pingora_http::{RequestHeader, ResponseHeader};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use crate::access_log::{AccessLog, AccessRecord};
use crate::backend::strip_hop_by_hop;
use crate::config::{LimitsConfig, ServerConfig};
use crate::host::{EdgeHooks, FetchStats, Grants, RequestInfo, TlsInfo};
use crate::metrics::{Metrics, ServiceMetrics};
use crate::runtime::{Guest, GuestDone, GuestFailure, GuestResponse, Runtime};
use crate::tls::ClientSni;

/// The response header that carries the request id.
pub const REQUEST_ID_HEADER: &str = "x-outpost-request-id";

/// `Server-Timing` (W3C), shown by browsers' dev tools, in milliseconds: `edge` is the time
/// until the guest's response head, `instantiate` the time to a ready guest instance, and
/// `origin` the time spent waiting for backend response heads.
const SERVER_TIMING: &str = "server-timing";

/// One service as the front end sees it: a guest, its limits and its backends.
pub struct Service {
    /// The service's name from the config.
    pub name: Arc<str>,
    /// The compiled guest.
    /// The compiled guest; swapped in place when `--watch` sees a new build.
    pub guest: arc_swap::ArcSwap<Guest>,
    /// Per-request limits.
    pub limits: LimitsConfig,
    /// What its guests may reach: backends, cache, stores.
    pub grants: Arc<Grants>,
    /// Whether responses carry a `Server-Timing` header.
    pub server_timing: bool,
    /// This service's metric handles.
    pub metrics: ServiceMetrics,
}

/// Maps a request's host to its service: exact names first, then the longest wildcard
/// suffix (`*.example.com` matches any depth below `example.com`), then `*`.
pub struct Router<T = Arc<Service>> {
    exact: HashMap<String, T>,
    suffix: HashMap<String, T>,
    any: Option<T>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            suffix: HashMap::new(),
            any: None,
        }
    }
}

impl<T> Router<T> {
    /// Routes `domain` (already normalised by the config) to `service`.
    pub fn add(&mut self, domain: &str, service: T) {
        if domain == "*" {
            self.any = Some(service);
        } else if let Some(suffix) = domain.strip_prefix('*') {
            self.suffix.insert(suffix.to_owned(), service);
        } else {
            self.exact.insert(domain.to_owned(), service);
        }
    }

    /// The service for `host` (lower-case, without port), if any.
    pub fn lookup(&self, host: &str) -> Option<&T> {
        if let Some(service) = self.exact.get(host) {
            return Some(service);
        }
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            if let Some(service) = self.suffix.get(&rest[dot..]) {
                return Some(service);
            }
            rest = &rest[dot + 1..];
        }
        self.any.as_ref()
    }
}

/// Request ids: a random per-process prefix and a counter, cheap and unique enough to grep.
struct RequestIds {
    prefix: u32,
    counter: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let prefix = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish() as u32;
        Self {
            prefix,
            counter: AtomicU64::new(1),
        }
    }

    fn next(&self) -> Arc<str> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{:08x}{:08x}", self.prefix, n).into()
    }
}

/// What the node learns about one request while serving it: the access log line and the
/// metrics are made from this.
struct Exchange {
    request_id: Arc<str>,
    started: Instant,
    service: Option<Arc<Service>>,
    host: String,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    guest: Option<Duration>,
    instantiate: Option<Duration>,
    /// Backend fetch timings and cache results (shared with the guest's hooks).
    fetches: Arc<FetchStats>,
}

/// Decrements a gauge when dropped, so cancelled work is counted out too.
struct GaugeGuard(prometheus::IntGauge);

impl GaugeGuard {
    fn new(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The pingora application that serves every listener.
pub struct EdgeApp {
    router: Router,
    runtime: Arc<Runtime>,
    limits: ServerConfig,
    options: HttpServerOptions,
    ids: RequestIds,
    metrics: Arc<Metrics>,
    access_log: Option<AccessLog>,
    pop: Arc<str>,
}

impl EdgeApp {
    /// An app routing with `router`, running guests on `runtime`, counting into `metrics`
    /// and writing `access_log` when there is one.
    pub fn new(
        router: Router,
        runtime: Arc<Runtime>,
        limits: ServerConfig,
        metrics: Arc<Metrics>,
        access_log: Option<AccessLog>,
    ) -> Self {
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        let pop = limits.pop.as_str().into();
        Self {
            router,
            runtime,
            limits,
            options,
            ids: RequestIds::new(),
            pop,
            metrics,
            access_log,
        }
    }

    /// Serves one request; returns whether the connection may be reused.
    async fn serve(&self, session: &mut ServerSession, ex: &mut Exchange) -> bool {
        let head = session.req_header();
        if head_size(head) > self.limits.max_header_bytes {
            return refuse(session, ex, 431, "request header fields too large\n").await;
        }
        let Some((host, authority)) = request_host(head) else {
            return refuse(session, ex, 400, "request has no Host\n").await;
        };
        ex.host = host;
        let Some(service) = self.router.lookup(&ex.host).cloned() else {
            let _ = session.drain_request_body().await;
            let text = format!("no service is configured for host `{}`\n", ex.host);
            return respond(session, ex, 404, &text).await;
        };
        ex.service = Some(service.clone());
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        let scheme = if tls {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        };
        let head = session.req_header();
        let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
        let Ok(uri) = http::Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.as_str())
            .path_and_query(path)
            .build()
        else {
            return refuse(session, ex, 400, "malformed request target\n").await;
        };
        let mut builder = http::Request::builder()
            .method(head.method.clone())
            .uri(uri);
        if let Some(headers) = builder.headers_mut() {
            *headers = head.headers.clone();
            strip_hop_by_hop(headers);
        }

        let has_body = !session.is_body_empty();
        let (mut body_tx, body): (_, WasiBody) = if has_body {
            let (tx, rx) = http_body_util::channel::Channel::<Bytes, HttpError>::new(2);
            (Some(tx), rx.boxed_unsync())
        } else {
            (None, crate::cache::object::empty_body())
        };
        let Ok(request) = builder.body(body) else {
            return refuse(session, ex, 400, "malformed request\n").await;
        };

        let hooks = EdgeHooks::new(
            service.grants.clone(),
            ex.request_id.clone(),
            RequestInfo {
                client_ip: session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip()),
                http_version: if session.is_http2() {
                    "HTTP/2"
                } else {
                    "HTTP/1.1"
                },
                tls: session
                    .digest()
                    .and_then(|d| d.ssl_digest.as_ref())
                    .map(|t| TlsInfo {
                        protocol: t.version.to_string(),
                        cipher: t.cipher.to_string(),
                        sni: t.extension.get::<ClientSni>().map(|s| s.0.clone()),
                    }),
                pop: self.pop.clone(),
            },
            ex.fetches.clone(),
        );
        // This request keeps the version it started with, even if `--watch` swaps it.
        let guest = service.guest.load_full();
        let start = self
            .runtime
            .start(&guest, &service.limits, hooks, request, scheme);
        tokio::pin!(start);

        // Feed the request body to the guest until it answers.
        let mut body_complete = !has_body;
        let outcome = loop {
            let Some(tx) = body_tx.as_mut() else {
                break start.as_mut().await;
            };
            tokio::select! {
                biased;
                outcome = start.as_mut() => break outcome,
                chunk = session.read_request_body() => match chunk {
                    Ok(Some(data)) => {
                        ex.bytes_in += data.len() as u64;
                        if ex.bytes_in > service.limits.max_request_body_bytes {
                            if let Some(tx) = body_tx.take() {
                                tx.abort(HttpError::HttpRequestBodySize(Some(ex.bytes_in)));
                            }
                            let text = format!("request body exceeds {} bytes\n", service.limits.max_request_body_bytes);
                            return refuse(session, ex, 413, &text).await;
                        }
                        tokio::select! {
                            biased;
                            outcome = start.as_mut() => break outcome,
                            sent = tx.send_data(data) => if sent.is_err() {
                                // The guest dropped the body; keep reading so the connection stays usable.
                                body_tx = None;
                            },
                        }
                    }
                    Ok(None) => {
                        body_tx = None;
                        body_complete = true;
                    }
                    Err(e) => {
                        tracing::debug!(service = %service.name, request_id = %ex.request_id, "reading the request body failed: {e}");
                        if let Some(tx) = body_tx.take() {
                            tx.abort(HttpError::HttpRequestBodySize(Some(ex.bytes_in)));
                        }
                        ex.status = 499;
                        return false;
                    }
                },
            }
        };
        if let Some(tx) = body_tx.take() {
            // The guest answered before the whole body arrived; it will not see more.
            tx.abort(HttpError::ConnectionTerminated);
        }

        match outcome {
            Err(done) => {
                ex.guest = Some(done.lived);
                ex.instantiate = done.instantiate;
                let failure = done
                    .outcome
                    .clone()
                    .err()
                    .unwrap_or(GuestFailure::NoResponse);
                guest_failed(&service, ex, &failure, &done);
                let text = format!(
                    "{} (request id {})\n",
                    failure_message(&failure),
                    ex.request_id
                );
                respond(session, ex, failure.status(), &text).await && body_complete
            }
            Ok(response) => {
                self.stream_response(session, &service, ex, response).await && body_complete
            }
        }
    }

    /// Writes the guest's response head and streams its body. Returns false when the
    /// response could not be completed (the connection must then close, cutting the body).
    async fn stream_response(
        &self,
        session: &mut ServerSession,
        service: &Service,
        ex: &mut Exchange,
        response: GuestResponse,
    ) -> bool {
        let head_ready = ex.started.elapsed();
        let GuestResponse {
            response,
            invocation,
        } = response;
        ex.instantiate = invocation.instantiate;
        let (parts, mut body) = response.into_parts();
        ex.status = parts.status.as_u16();
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers);
        let Ok(mut head) = ResponseHeader::build(parts.status, Some(headers.len() + 3)) else {
            return false;
        };
        for (name, value) in headers.iter() {
            let _ = head.append_header(name.clone(), value.clone());
        }
        let _ = head.insert_header(REQUEST_ID_HEADER, ex.request_id.as_ref());
        if service.server_timing {
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let mut timing = format!("edge;dur={:.3}", ms(head_ready));
            if let Some(instantiate) = invocation.instantiate {
                timing.push_str(&format!(", instantiate;dur={:.3}", ms(instantiate)));
            }
            // The guest's own time to its head: without instantiation and backend waits.
            let origin = ex.fetches.origin_time();
            let guest = head_ready
                .saturating_sub(invocation.instantiate.unwrap_or_default())
                .saturating_sub(origin);
            timing.push_str(&format!(", guest;dur={:.3}", ms(guest)));
            timing.push_str(&format!(", origin;dur={:.3}", ms(origin)));
            if let Some(state) = ex.fetches.cache_state() {
                timing.push_str(&format!(", cache;desc={}", state.as_header()));
            }
            let _ = head.append_header(SERVER_TIMING, timing);
        }
        let http11 = session.req_header().version >= http::Version::HTTP_11;
        let bodiless = session.req_header().method == http::Method::HEAD
            || parts.status.is_informational()
            || parts.status == http::StatusCode::NO_CONTENT
            || parts.status == http::StatusCode::NOT_MODIFIED;
        if !session.is_http2()
            && http11
            && !bodiless
            && !headers.contains_key(header::CONTENT_LENGTH)
        {
            // Without a length, pingora frames HTTP/1.1 bodies by closing the connection.
            let _ = head.insert_header(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        if let Err(e) = session.write_response_header(Box::new(head)).await {
            tracing::debug!(request_id = %ex.request_id, "writing the response head failed: {e}");
            return false;
        }
        loop {
            match body.frame().await {
                None => break,
                Some(Ok(frame)) => {
                    let frame = match frame.into_data() {
                        Ok(data) => {
                            if data.is_empty() {
                                continue;
                            }
                            let len = data.len() as u64;
                            if let Err(e) = session.write_response_body(data, false).await {
                                tracing::debug!(request_id = %ex.request_id, "client went away mid-body: {e}");
                                return false;
                            }
                            ex.bytes_out += len;
                            continue;
                        }
                        Err(frame) => frame,
                    };
                    if let Ok(trailers) = frame.into_trailers()
                        && session.write_response_trailers(trailers).await.is_err()
                    {
                        return false;
                    }
                }
                Some(Err(e)) => {
                    let done = invocation.finish().await;
                    ex.guest = Some(done.lived);
                    let failure = done
                        .outcome
                        .clone()
                        .err()
                        .unwrap_or(GuestFailure::Trap(format!("response body failed: {e}")));
                    guest_failed(service, ex, &failure, &done);
                    return false;
                }
            }
        }
        // A body stream also ends when a guest dies mid-body, so only finish the response
        // once the guest itself has ended cleanly.
        let done = invocation.finish().await;
        ex.guest = Some(done.lived);
        if let Err(failure) = &done.outcome {
            guest_failed(service, ex, failure, &done);
            return false;
        }
        log_guest_output(&service.name, &ex.request_id, &done.stdout, &done.stderr);
        session.finish_body().await.is_ok()
    }

    /// Counts and logs a finished exchange.
    fn record(&self, session: &ServerSession, ex: &Exchange) {
        let total = ex.started.elapsed();
        if let Some(service) = &ex.service {
            if let Some(instantiate) = ex.instantiate {
                service.metrics.instantiated(instantiate.as_secs_f64());
            }
            if let Some(guest) = ex.guest {
                service.metrics.executed(guest.as_secs_f64());
            }
            // Last, so a request counted here has all its other metrics in already.
            service.metrics.request(ex.status, total.as_secs_f64());
        }
        if let Some(log) = &self.access_log {
            let head = session.req_header();
            log.write(&AccessRecord {
                request_id: &ex.request_id,
                service: ex.service.as_ref().map(|s| &*s.name),
                client: session.client_addr().and_then(|a| a.as_inet()).copied(),
                method: head.method.as_str(),
                host: &ex.host,
                path: head.uri.path_and_query().map_or("/", |p| p.as_str()),
                status: ex.status,
                bytes_in: ex.bytes_in,
                bytes_out: ex.bytes_out,
                total,
                guest: ex.guest,
                origin: ex.fetches.origin_time(),
                cache: ex.fetches.cache_state().map(|s| s.as_header()),
            });
        }
    }
}

fn failure_message(failure: &GuestFailure) -> &'static str {
    match failure {
        GuestFailure::Timeout => "the service did not answer within its deadline",
        GuestFailure::ErrorCode(_) => "the service could not reach its origin",
        _ => "the service failed to handle this request",
    }
}

/// Counts a guest failure and logs it with the guest's own output.
fn guest_failed(service: &Service, ex: &Exchange, failure: &GuestFailure, done: &GuestDone) {
    service.metrics.guest_error(failure.kind());
    let stderr = if done.stderr.is_empty() {
        String::new()
    } else {
        format!("; guest stderr: {}", done.stderr)
    };
    tracing::warn!(service = %service.name, request_id = %ex.request_id, kind = failure.kind(), "{failure}{stderr}");
    // stderr is already part of the warning above.
    log_guest_output(&service.name, &ex.request_id, &done.stdout, "");
}

/// Logs what a guest printed, one line per log record, tagged with service and request id.
fn log_guest_output(service: &str, request_id: &str, stdout: &str, stderr: &str) {
    for (stream, text) in [("stdout", stdout), ("stderr", stderr)] {
        for line in text.lines() {
            let (level, line) = crate::runtime::guest_log_level(line);
            macro_rules! guest_line {
                ($level:expr) => {
                    tracing::event!(target: "outpost::guest", $level, service = %service, request_id = %request_id, stream, "{line}")
                };
            }
            match level {
                tracing::Level::ERROR => guest_line!(tracing::Level::ERROR),
                tracing::Level::WARN => guest_line!(tracing::Level::WARN),
                tracing::Level::DEBUG => guest_line!(tracing::Level::DEBUG),
                _ => guest_line!(tracing::Level::INFO),
            }
        }
    }
}

/// The request's host, lower-cased without port, and the authority as sent.
fn request_host(head: &RequestHeader) -> Option<(String, String)> {
    let authority = match head.uri.authority() {
        Some(authority) => authority.as_str().to_owned(),
        None => head
            .headers
            .get(header::HOST)?
            .to_str()
            .ok()?
            .trim()
            .to_owned(),
    };
    let parsed: http::uri::Authority = authority.parse().ok()?;
    let host = parsed.host().trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    Some((host, authority))
}

fn head_size(head: &RequestHeader) -> usize {
    let target = head.uri.path_and_query().map_or(1, |p| p.as_str().len());
    head.headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + target
        + head.method.as_str().len()
        + 12
}

/// Answers with an error and marks the connection to close. Always returns false (the
/// connection is not reusable), so callers can `return refuse(...)`.
async fn refuse(session: &mut ServerSession, ex: &mut Exchange, status: u16, text: &str) -> bool {
    session.set_keepalive(None);
    let _ = respond(session, ex, status, text).await;
    false
}

/// Sends a small plain-text response generated by the node. Returns whether it was sent.
async fn respond(session: &mut ServerSession, ex: &mut Exchange, status: u16, text: &str) -> bool {
    ex.status = status;
    let Ok(mut head) = ResponseHeader::build(status, Some(4)) else {
        return false;
    };
    let _ = head.insert_header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
    let _ = head.insert_header(header::CONTENT_LENGTH, text.len().to_string());
    let _ = head.insert_header(REQUEST_ID_HEADER, ex.request_id.as_ref());
    if status >= 400 && status != 404 {
        let _ = head.insert_header(header::CACHE_CONTROL, "no-store");
    }
    let sent = session.write_response_header(Box::new(head)).await.is_ok()
        && session
            .write_response_body(Bytes::copy_from_slice(text.as_bytes()), true)
            .await
            .is_ok();
    if sent {
        ex.bytes_out = text.len() as u64;
    }
    sent
}

#[async_trait]
impl HttpServerApp for EdgeApp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        session.set_read_timeout(Some(Duration::from_secs(self.limits.read_timeout_secs)));
        session.set_write_timeout(Some(Duration::from_secs(self.limits.write_timeout_secs)));
        let mut ex = Exchange {
            request_id: Arc::from(""),
            started: Instant::now(),
            service: None,
            host: String::new(),
            status: 0,
            bytes_in: 0,
            bytes_out: 0,
            guest: None,
            instantiate: None,
            fetches: Arc::default(),
        };
        match session.read_request().await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::debug!("refusing a malformed request: {e}");
                ex.request_id = self.ids.next();
                let status = if e.to_string().contains("larger than") {
                    431
                } else {
                    400
                };
                refuse(&mut session, &mut ex, status, "malformed request\n").await;
                return None;
            }
        }
        ex.started = Instant::now();
        ex.request_id = self.ids.next();
        let in_flight = GaugeGuard::new(&self.metrics.in_flight);
        if *shutdown.borrow() {
            session.set_keepalive(None);
        } else {
            session.set_keepalive(Some(self.limits.keepalive_timeout_secs));
        }
        let reusable = self.serve(&mut session, &mut ex).await;
        // Out of flight before it is counted, so a scrape never sees it in both.
        drop(in_flight);
        self.record(&session, &ex);
        if !reusable {
            return None;
        }
        let persistent = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(Some(stream)) => Some(ReusedHttpStream::from_reusable_stream(stream, persistent)),
            _ => None,
        }
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }
}

/// Wraps the edge app to count open client connections: pingora hands each accepted
/// connection to `process_new` for its whole life (HTTP/1 keep-alive and HTTP/2 included).
pub struct CountedConnections {
    app: Arc<EdgeApp>,
}

impl CountedConnections {
    /// Counts connections into `app`'s metrics.
    pub fn new(app: EdgeApp) -> Self {
        Self { app: Arc::new(app) }
    }
}

#[async_trait]
impl ServerApp for CountedConnections {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = GaugeGuard::new(&self.app.metrics.connections);
        ServerApp::process_new(&self.app, stream, shutdown).await
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(self.app.as_ref()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_prefers_exact_then_longest_wildcard_then_catch_all() {
        let mut router = Router::default();
        router.add("shop.test", "exact");
        router.add("*.shop.test", "wild");
        router.add("*.eu.shop.test", "deeper");
        assert_eq!(router.lookup("shop.test"), Some(&"exact"));
        assert_eq!(router.lookup("www.shop.test"), Some(&"wild"));
        assert_eq!(router.lookup("a.b.shop.test"), Some(&"wild"));
        assert_eq!(router.lookup("x.eu.shop.test"), Some(&"deeper"));
        assert_eq!(router.lookup("other.test"), None);
        router.add("*", "any");
        assert_eq!(router.lookup("other.test"), Some(&"any"));
    }

    #[test]
    fn request_host_is_lowercased_without_port_or_trailing_dot() {
        let head = RequestHeader::build("GET", b"/", None).unwrap();
        assert!(request_host(&head).is_none());
        let mut head = RequestHeader::build("GET", b"/", None).unwrap();
        head.insert_header("host", "Example.COM.:8080").unwrap();
        assert_eq!(
            request_host(&head),
            Some(("example.com".into(), "Example.COM.:8080".into()))
        );
    }
}
