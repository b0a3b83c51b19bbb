//! The front end: pingora accepts connections (TCP, and TLS with the certificate picked by
//! SNI and HTTP/2 chosen by ALPN); hyper speaks HTTP/1.1 and HTTP/2 on them (h2c by prior
//! knowledge on plaintext listeners); every request goes to the site's one request
//! pipeline ([`crate::service::Site::handle`]).
//!
//! Promises:
//! - **Every connection state has a deadline** ([`conn`]): the protocol preface and each
//!   request head `server.header_timeout_ms`, idle keep-alive `keepalive_timeout_secs`,
//!   each write `write_timeout_secs`, the TLS handshake 60 s (pingora's).
//! - **Malformed HTTP is refused by the codec** before anything routes on it: heads over
//!   `server.max_header_bytes` get 431 (counted while they arrive), anything hyper cannot
//!   parse 400, and the connection closes. An answer sent before the request body was read
//!   whole closes the connection too, so no byte of a body is ever taken for a request.
//! - **Bounded connections**: at most `server.max_connections` per listener (and
//!   `max_connections_per_ip` per client address, when set); more are closed at once and
//!   counted in `outpost_connections_refused_total`.
//! - **Clients that leave take their work with them**: dropping a request (client closed,
//!   HTTP/2 `RST_STREAM`) drops its guest. An HTTP/2 client that keeps resetting streams
//!   it just opened gets GOAWAY, as nginx and Envoy do since the rapid-reset advisories.
//! - **Drain** ([`drain`]): once the node drains, HTTP/1 responses close their connection
//!   and HTTP/2 connections get GOAWAY; when the listeners close, what is left gets
//!   `server.drain_timeout_secs` to finish.

pub(crate) mod conn;
pub mod drain;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pingora_core::apps::ServerApp;
use pingora_core::protocols::{ALPN, Stream};
use pingora_core::server::ShutdownWatch;
use tokio::sync::Notify;
use wasmtime_wasi_http::Error as HttpError;

use crate::config::ServerConfig;
use crate::host::TlsInfo;
use crate::metrics::ListenerMetrics;
use crate::tls::ClientSni;
use conn::{ConnIo, ConnState, Deadlines, Sniffed};
pub use drain::Drain;

/// A stream reset counts as premature when the client resets it this soon after opening it.
const PREMATURE_RESET: Duration = Duration::from_secs(1);
/// An HTTP/2 connection gets GOAWAY once at least this many of its streams were reset
/// prematurely, and they are at least half of the streams it opened.
const PREMATURE_RESETS_TOLERATED: u32 = 50;
/// How long an idle or abusive HTTP/2 connection gets after its GOAWAY.
const GOAWAY_GRACE: Duration = Duration::from_millis(500);
/// HTTP/2 PING interval and timeout for connections whose peer went silent.
const H2_KEEPALIVE: Duration = Duration::from_secs(20);

/// Connection-level settings, from `[server]`; part of the loaded site, so a reload
/// changes them for new connections.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    deadlines: Deadlines,
    max_header_bytes: usize,
    h2_max_concurrent_streams: u32,
    max_connections: usize,
    max_connections_per_ip: usize,
    drain_timeout: Duration,
    h2c: bool,
}

impl ConnSettings {
    /// The settings `config` describes.
    pub fn new(config: &ServerConfig) -> Self {
        Self {
            deadlines: Deadlines {
                header: Duration::from_millis(config.header_timeout_ms),
                keepalive: Duration::from_secs(config.keepalive_timeout_secs),
                write: Duration::from_secs(config.write_timeout_secs),
            },
            max_header_bytes: config.max_header_bytes,
            h2_max_concurrent_streams: config.h2_max_concurrent_streams,
            max_connections: config.max_connections,
            max_connections_per_ip: config.max_connections_per_ip,
            drain_timeout: Duration::from_secs(config.drain_timeout_secs),
            h2c: true,
        }
    }
}

/// What a request handler learns about the connection its request came on.
pub struct ConnInfo {
    /// The TCP peer's address.
    pub client_ip: Option<IpAddr>,
    /// TLS details, when the connection is TLS.
    pub tls: Option<Arc<TlsInfo>>,
    /// HTTP/1.1 or HTTP/2.
    pub version: http::Version,
    link: ConnLink,
}

/// How a request reports back to its connection.
enum ConnLink {
    /// HTTP/1: one request at a time; the connection idles between them.
    H1(Arc<ConnState>),
    /// HTTP/2: many streams; the connection counts the ones reset right after opening.
    H2(Arc<StreamResets>),
}

impl ConnInfo {
    /// The request's head is complete and it is being served.
    pub(crate) fn request_started(&self) {
        match &self.link {
            ConnLink::H1(state) => state.busy(),
            ConnLink::H2(streams) => streams.stream_started(),
        }
    }

    /// The request ended: `cancelled` when the client went away first, after `age`.
    pub(crate) fn request_ended(&self, cancelled: bool, age: Duration) {
        match &self.link {
            ConnLink::H1(state) => state.idle(),
            ConnLink::H2(streams) => streams.stream_ended(cancelled && age < PREMATURE_RESET),
        }
    }
}

/// Serves requests for the front end: the node's pipeline, or a bare answer in the
/// load test's ceiling server.
pub trait Handler: Clone + Send + Sync + 'static {
    /// The response body.
    type Body: http_body::Body<Data = Bytes, Error = HttpError> + Send + Unpin + 'static;
    /// The response.
    type Future: Future<Output = http::Response<Self::Body>> + Send + Unpin + 'static;
    /// Answers `request`, which came on the connection `conn` describes.
    fn handle(&self, request: http::Request<Incoming>, conn: &Arc<ConnInfo>) -> Self::Future;
}

/// Serves one accepted connection until it ends (or the node drains it).
pub async fn serve_connection<H: Handler>(
    stream: Stream,
    handler: H,
    settings: &ConnSettings,
    shutdown: &ShutdownWatch,
    drain: &Drain,
) {
    let client_ip = stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
    let tls = stream.get_ssl_digest().map(|t| {
        Arc::new(TlsInfo {
            protocol: t.version.to_string(),
            cipher: t.cipher.to_string(),
            sni: t.extension.get::<ClientSni>().map(|s| s.0.clone()),
        })
    });
    let alpn_h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
    let (mut io, state) = ConnIo::new(stream, settings.deadlines);
    let protocol = if tls.is_some() {
        if alpn_h2 { Sniffed::H2 } else { Sniffed::H1 }
    } else if settings.h2c {
        io.sniff().await
    } else {
        Sniffed::H1
    };
    match protocol {
        Sniffed::Gone => {}
        Sniffed::H1 => {
            let conn = Arc::new(ConnInfo {
                client_ip,
                tls,
                version: http::Version::HTTP_11,
                link: ConnLink::H1(state),
            });
            serve_h1(io, handler, conn, settings, shutdown, drain).await;
        }
        Sniffed::H2 => {
            io.expect_h2_preface();
            let resets = Arc::new(StreamResets::default());
            let conn = Arc::new(ConnInfo {
                client_ip,
                tls,
                version: http::Version::HTTP_2,
                link: ConnLink::H2(resets.clone()),
            });
            serve_h2(io, handler, conn, resets, settings, shutdown, drain).await;
        }
    }
}

async fn serve_h1<H: Handler>(
    io: ConnIo,
    handler: H,
    conn: Arc<ConnInfo>,
    settings: &ConnSettings,
    shutdown: &ShutdownWatch,
    drain: &Drain,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // The connection's own deadlines (`conn`) bound idle time and heads.
        .header_read_timeout(None)
        .keep_alive(true)
        .half_close(false)
        .max_header_size(settings.max_header_bytes)
        .max_buf_size(settings.max_header_bytes.max(8192));
    let service = HyperService {
        handler,
        conn,
        close_when_draining: Some(drain.clone()),
    };
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut shutdown = shutdown.clone();
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutting_down(&mut shutdown) => {
            connection.as_mut().graceful_shutdown();
            finish_within(connection, settings.drain_timeout).await
        }
    };
    if let Err(e) = result {
        tracing::debug!("HTTP/1 connection ended: {e}");
    }
}

async fn serve_h2<H: Handler>(
    io: ConnIo,
    handler: H,
    conn: Arc<ConnInfo>,
    resets: Arc<StreamResets>,
    settings: &ConnSettings,
    shutdown: &ShutdownWatch,
    drain: &Drain,
) {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(settings.h2_max_concurrent_streams)
        .max_header_list_size(settings.max_header_bytes.min(u32::MAX as usize) as u32)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024)
        .keep_alive_interval(H2_KEEPALIVE)
        .keep_alive_timeout(H2_KEEPALIVE);
    let service = HyperService {
        handler,
        conn,
        close_when_draining: None,
    };
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut shutdown = shutdown.clone();
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = async {
            tokio::select! {
                () = shutting_down(&mut shutdown) => {}
                () = drain.started() => {}
            }
        } => {
            connection.as_mut().graceful_shutdown();
            finish_within(connection, settings.drain_timeout).await
        }
        () = resets.idle_for(settings.deadlines.keepalive) => {
            let idle = settings.deadlines.keepalive;
            tracing::debug!("closing an HTTP/2 connection idle for {idle:?}");
            connection.as_mut().graceful_shutdown();
            finish_within(connection, GOAWAY_GRACE).await
        }
        () = resets.flooded() => {
            tracing::warn!(
                "HTTP/2 client reset {} streams right after opening them: GOAWAY (rapid reset)",
                resets.premature.load(Ordering::Relaxed)
            );
            connection.as_mut().graceful_shutdown();
            finish_within(connection, GOAWAY_GRACE).await
        }
    };
    if let Err(e) = result {
        tracing::debug!("HTTP/2 connection ended: {e}");
    }
}

/// Drives a connection told to go away until it is done, for at most `grace`; past that
/// it is dropped (closed).
async fn finish_within<F: Future<Output = hyper::Result<()>>>(
    connection: Pin<&mut F>,
    grace: Duration,
) -> hyper::Result<()> {
    tokio::time::timeout(grace, connection)
        .await
        .unwrap_or(Ok(()))
}

/// Resolves once the node starts shutting down.
async fn shutting_down(shutdown: &mut ShutdownWatch) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// An HTTP/2 connection's streams: how many are open (for the idle timeout) and how many
/// the client reset right after opening them (for the rapid-reset defence).
#[derive(Default)]
pub(crate) struct StreamResets {
    active: AtomicU32,
    activity: Notify,
    streams: AtomicU32,
    premature: AtomicU32,
    flood: Notify,
    flagged: AtomicBool,
}

impl StreamResets {
    fn stream_started(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.activity.notify_waiters();
    }

    /// Resolves once the connection has had no open stream for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let changed = self.activity.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.active.load(Ordering::Relaxed) == 0 {
                tokio::select! {
                    () = tokio::time::sleep(limit) => return,
                    () = changed => {}
                }
            } else {
                changed.await;
            }
        }
    }

    fn stream_ended(&self, premature: bool) {
        self.active.fetch_sub(1, Ordering::Relaxed);
        self.activity.notify_waiters();
        let streams = self.streams.fetch_add(1, Ordering::Relaxed) + 1;
        if !premature {
            return;
        }
        let premature = self.premature.fetch_add(1, Ordering::Relaxed) + 1;
        if premature >= PREMATURE_RESETS_TOLERATED
            && premature * 2 >= streams
            && !self.flagged.swap(true, Ordering::Relaxed)
        {
            self.flood.notify_one();
        }
    }

    async fn flooded(&self) {
        self.flood.notified().await;
    }
}

/// Adapts a [`Handler`] to hyper's service trait for one connection.
struct HyperService<H> {
    handler: H,
    conn: Arc<ConnInfo>,
    /// HTTP/1: answers say `Connection: close` once the node drains.
    close_when_draining: Option<Drain>,
}

impl<H: Handler> hyper::service::Service<http::Request<Incoming>> for HyperService<H> {
    type Response = http::Response<Tracked<H::Body>>;
    type Error = Infallible;
    type Future = Answer<H::Future>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        self.conn.request_started();
        let head_request = request.method() == http::Method::HEAD;
        Answer {
            future: self.handler.handle(request, &self.conn),
            close_when_draining: self.close_when_draining.clone(),
            request: Some(RequestOnConn {
                conn: self.conn.clone(),
                started: Instant::now(),
                head_request,
            }),
        }
    }
}

/// One request on its connection, until its response is whole or the client went away;
/// then the connection hears how it ended (idle time, rapid-reset accounting).
struct RequestOnConn {
    conn: Arc<ConnInfo>,
    started: Instant,
    head_request: bool,
}

impl RequestOnConn {
    fn ended(self, cancelled: bool) {
        self.conn.request_ended(cancelled, self.started.elapsed());
    }
}

/// A handler's answer as hyper wants it: never an error (failures are responses). Dropped
/// before it resolves, its request was cancelled.
pub struct Answer<F> {
    future: F,
    close_when_draining: Option<Drain>,
    request: Option<RequestOnConn>,
}

impl<F, B> Future for Answer<F>
where
    F: Future<Output = http::Response<B>> + Unpin,
{
    type Output = Result<http::Response<Tracked<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut response = std::task::ready!(Pin::new(&mut this.future).poll(cx));
        if this
            .close_when_draining
            .as_ref()
            .is_some_and(Drain::is_draining)
        {
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        let request = this.request.take();
        let complete_at = request.as_ref().and_then(|r| {
            crate::http::complete_at(r.head_request, response.status(), response.headers())
        });
        Poll::Ready(Ok(response.map(|inner| Tracked {
            inner,
            sent: 0,
            complete_at,
            request,
        })))
    }
}

impl<F> Drop for Answer<F> {
    fn drop(&mut self) {
        if let Some(request) = self.request.take() {
            request.ended(true);
        }
    }
}

/// A response body on its way to the client; tells the connection when it is done.
pub struct Tracked<B> {
    inner: B,
    sent: u64,
    complete_at: Option<u64>,
    request: Option<RequestOnConn>,
}

impl<B> http_body::Body for Tracked<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                this.sent += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            Poll::Ready(None) => {
                if let Some(request) = this.request.take() {
                    request.ended(false);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(request) = this.request.take() {
                    request.ended(true);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        if let Some(request) = self.request.take() {
            request.ended(self.complete_at != Some(self.sent));
        }
    }
}

/// One listening address: counts its connections, refuses those over its limits, and
/// serves the rest with `handler`.
pub struct Listener<H> {
    handler: H,
    settings: Arc<dyn Fn() -> Arc<ConnSettings> + Send + Sync>,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    metrics: ListenerMetrics,
    drain: Drain,
}

impl<H: Handler> Listener<H> {
    /// A listener serving with `handler`; `settings` gives the current connection settings
    /// (they may change on reload); `drain` is the node's.
    pub fn new(
        handler: H,
        settings: Arc<dyn Fn() -> Arc<ConnSettings> + Send + Sync>,
        metrics: ListenerMetrics,
        drain: Drain,
    ) -> Self {
        Self {
            handler,
            settings,
            open: AtomicUsize::new(0),
            per_ip: Mutex::default(),
            metrics,
            drain,
        }
    }

    fn admit(&self, ip: Option<IpAddr>, settings: &ConnSettings) -> Option<Slot<'_, H>> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= settings.max_connections {
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.metrics.refused("max_connections");
            return None;
        }
        let mut slot = Slot {
            listener: self,
            ip: None,
        };
        if let (Some(ip), limit @ 1..) = (ip, settings.max_connections_per_ip) {
            let mut per_ip = self.per_ip.lock().expect("per-ip connections lock");
            let count = per_ip.entry(ip).or_insert(0);
            if *count >= limit {
                drop(per_ip);
                self.metrics.refused("max_connections_per_ip");
                return None;
            }
            *count += 1;
            slot.ip = Some(ip);
        }
        self.metrics.opened();
        Some(slot)
    }
}

/// An admitted connection; dropping it frees its place under the limits.
struct Slot<'a, H> {
    listener: &'a Listener<H>,
    ip: Option<IpAddr>,
}

impl<H> Drop for Slot<'_, H> {
    fn drop(&mut self) {
        self.listener.open.fetch_sub(1, Ordering::Relaxed);
        self.listener.metrics.closed();
        if let Some(ip) = self.ip {
            let mut per_ip = self
                .listener
                .per_ip
                .lock()
                .expect("per-ip connections lock");
            if let Some(count) = per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
    }
}

#[async_trait]
impl<H: Handler> ServerApp for Listener<H> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let settings = (self.settings)();
        let ip = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let Some(_slot) = self.admit(ip, &settings) else {
            // Closed at once: dropping the stream closes the socket.
            return None;
        };
        let _open = self.drain.connection();
        let started = Instant::now();
        serve_connection(
            stream,
            self.handler.clone(),
            &settings,
            shutdown,
            &self.drain,
        )
        .await;
        tracing::trace!("connection served for {:?}", started.elapsed());
        None
    }
}

/// The node's request handler: hands every request to the site loaded now.
#[derive(Clone)]
pub struct EdgeHandler {
    site: Arc<arc_swap::ArcSwap<crate::service::Site>>,
}

impl EdgeHandler {
    /// Serves whatever site `site` holds when a request arrives.
    pub fn new(site: Arc<arc_swap::ArcSwap<crate::service::Site>>) -> Self {
        Self { site }
    }
}

impl Handler for EdgeHandler {
    type Body = crate::service::EdgeBody;
    type Future = Pin<Box<dyn Future<Output = http::Response<Self::Body>> + Send>>;

    fn handle(&self, request: http::Request<Incoming>, conn: &Arc<ConnInfo>) -> Self::Future {
        use http_body_util::BodyExt;
        let site = self.site.load_full();
        let downstream = crate::service::Downstream {
            request_id: site.shared().ids.next(),
            started: Instant::now(),
            client_ip: conn.client_ip,
            version: conn.version,
            tls: conn.tls.clone(),
        };
        let request = request.map(|body| body.map_err(HttpError::from).boxed_unsync());
        Box::pin(async move { site.handle(request, downstream).await })
    }
}
