//! The request pipeline: one entry point, [`Site::handle`], that owns every per-request
//! rule. The pingora/hyper front end and the `outpost-test` harness both call it, so the
//! harness can never drift from the node.
//!
//! For each request, in order:
//! 1. **Form** ([`target`]): the target must be origin-form, absolute-form or `OPTIONS *`
//!    (answered here); `CONNECT` is refused (405); one well-formed `Host`; no unknown
//!    `Expect`; the head within `server.max_header_bytes`.
//! 2. **Route** by host to a service ([`crate::host_pattern::HostMap`]); none is 404.
//! 3. **Declared body over** `limits.max_request_body_bytes`: 413 before any guest runs;
//!    a streamed body is cut off at the limit (413 if the guest has not answered yet).
//! 4. **Response cache** where the service opted in: a fresh stored answer of its guest
//!    is served without running the guest; a miss runs the guest as the cache's origin.
//! 5. **Slots**: one of the service's and one of the node's, waited for at most
//!    `runtime.queue_timeout_ms`; then 503 with `Retry-After`.
//! 6. **The guest** runs; a failure before its head is a 5xx for this request only (504
//!    for the deadline); after its head the response is cut off, never made to look whole.
//! 7. **The answer** loses hop-by-hop fields and gains `x-outpost-request-id` and, unless
//!    the service turned it off, `Server-Timing`. When its body ends (or the client
//!    leaves), the request is counted and access-logged ([`exchange`]).

mod exchange;
mod guest_log;
mod guest_origin;
mod request_body;
pub(crate) mod target;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use tokio::sync::Semaphore;
use wasmtime_wasi_http::WasiBody;

pub use exchange::{Downstream, EdgeBody, RequestIds};
pub use guest_log::{GuestRun, ReportObserver, guest_log_level};

use crate::access_log::AccessLog;
use crate::cache::{CacheState, EdgeCache};
use crate::config::{LimitsConfig, ResponseCacheConfig, ReuseConfig, ServiceConfig};
use crate::host::{EdgeHooks, Grants, RequestInfo, ResponsePolicy};
use crate::host_pattern::HostMap;
use crate::http::{SERVER_TIMING, strip_hop_by_hop};
use crate::metrics::{Metrics, ServiceMetrics};
use crate::runtime::{Guest, GuestFailure, GuestRequest, GuestResponse, Runtime};
use crate::server::ConnSettings;
use exchange::{BodyKind, Exchange};
use target::Target;

/// What every loaded site shares with the node: they outlive reloads.
pub struct Shared {
    /// The engine every guest runs in.
    pub runtime: Arc<Runtime>,
    /// The edge cache; `None` when `cache.memory` is 0.
    pub cache: Option<Arc<EdgeCache>>,
    /// The access log, when there is one.
    pub access_log: Option<Arc<AccessLog>>,
    /// Request ids, unique across reloads.
    pub ids: RequestIds,
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
    /// Sees every guest report (the test harness).
    pub observer: Option<ReportObserver>,
}

/// One loaded configuration's services and request rules; swapped whole on reload, so a
/// request keeps the site it started with.
pub struct Site {
    router: HostMap<Arc<Service>>,
    services: Vec<Arc<Service>>,
    /// Connection settings for the front end.
    pub conn: Arc<ConnSettings>,
    max_header_bytes: usize,
    read_timeout: Duration,
    pop: Arc<str>,
    shared: Arc<Shared>,
}

/// One service as the pipeline sees it: a guest, its limits, slots and grants.
pub struct Service {
    /// The service's name from the config.
    pub name: Arc<str>,
    /// The guest; swapped in place when `--watch` sees a new build.
    pub guest: ArcSwap<Guest>,
    /// Per-request limits.
    pub limits: LimitsConfig,
    /// Instance reuse, when the service opted in.
    pub reuse: Option<ReuseConfig>,
    /// What its guests may reach: backends, cache, stores.
    pub grants: Arc<Grants>,
    /// Whether responses carry a `Server-Timing` header.
    pub server_timing: bool,
    /// The response cache, when the service opted in.
    pub response_cache: ResponseCacheConfig,
    slots: Arc<Semaphore>,
    metrics: ServiceMetrics,
}

impl Service {
    /// A service named `name` running `guest` as `config` says (limits, reuse, headers,
    /// response cache).
    pub fn new(
        name: Arc<str>,
        guest: Guest,
        config: &ServiceConfig,
        grants: Arc<Grants>,
        metrics: ServiceMetrics,
    ) -> Self {
        Self {
            name,
            guest: ArcSwap::from_pointee(guest),
            slots: Arc::new(Semaphore::new(config.limits.max_concurrent as usize)),
            limits: config.limits,
            reuse: config.reuse,
            grants,
            server_timing: config.server_timing,
            response_cache: config.response_cache.clone(),
            metrics,
        }
    }
}

impl Site {
    /// A site routing `services` by their domains.
    pub fn new(
        services: Vec<(Arc<Service>, Vec<crate::host_pattern::HostPattern>)>,
        server: &crate::config::ServerConfig,
        shared: Arc<Shared>,
    ) -> Self {
        let mut router = HostMap::default();
        for (service, domains) in &services {
            for domain in domains {
                router.insert(domain, service.clone());
            }
        }
        Self {
            router,
            services: services.into_iter().map(|(s, _)| s).collect(),
            conn: Arc::new(ConnSettings::new(server)),
            max_header_bytes: server.max_header_bytes,
            read_timeout: Duration::from_secs(server.read_timeout_secs),
            pop: server.pop.as_str().into(),
            shared,
        }
    }

    /// The service named `name`.
    pub fn service(&self, name: &str) -> Option<&Arc<Service>> {
        self.services.iter().find(|s| &*s.name == name)
    }

    /// Every service.
    pub fn services(&self) -> &[Arc<Service>] {
        &self.services
    }

    /// What the site shares with the node.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Answers one request. The response's body drives whatever is still running for it
    /// (the guest); dropping it cancels that work.
    pub async fn handle(
        self: &Arc<Self>,
        request: http::Request<WasiBody>,
        downstream: Downstream,
    ) -> http::Response<EdgeBody> {
        let ex = Exchange::new(
            downstream,
            &request,
            self.shared.access_log.as_ref(),
            &self.shared.metrics.in_flight,
        );
        let host = match target::check(&request, self.max_header_bytes) {
            Ok(Target::Route(host)) => host,
            Ok(Target::AsteriskOptions) => {
                let mut response = http::Response::new(BodyKind::empty());
                *response.status_mut() = StatusCode::NO_CONTENT;
                response.headers_mut().insert(
                    header::ALLOW,
                    HeaderValue::from_static(target::ALLOWED_METHODS),
                );
                return ex.respond(response);
            }
            Err(refusal) => {
                let mut response = ex.answer(refusal.status, refusal.reason);
                if refusal.status == StatusCode::METHOD_NOT_ALLOWED {
                    response.headers_mut().insert(
                        header::ALLOW,
                        HeaderValue::from_static(target::ALLOWED_METHODS),
                    );
                }
                if refusal.close {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                return response;
            }
        };
        let Some(service) = self.router.get(host).cloned() else {
            let text = format!("no service is configured for host `{host}`");
            return ex.answer(StatusCode::NOT_FOUND, &text);
        };
        service.handle(self, request, ex).await
    }
}

impl Service {
    async fn handle(
        self: &Arc<Self>,
        site: &Arc<Site>,
        request: http::Request<WasiBody>,
        mut ex: Exchange,
    ) -> http::Response<EdgeBody> {
        ex.service = Some(self.clone());
        if declared_length(&request).is_some_and(|len| len > self.limits.max_request_body_bytes) {
            return too_large(ex, self.limits.max_request_body_bytes);
        }
        let request = request_body::limit(
            request,
            self.limits.max_request_body_bytes,
            site.read_timeout,
            ex.trace.clone(),
        );
        // A request with credentials always reaches the guest: an answer shared under its
        // URL was made for somebody else (Varnish's built-in rule, too).
        let cacheable = matches!(*request.method(), Method::GET | Method::HEAD)
            && self.response_cache.covers(request.uri().path())
            && !request.headers().contains_key(header::AUTHORIZATION);
        match (&site.shared.cache, cacheable) {
            (Some(cache), true) => self.from_response_cache(site, cache, request, ex).await,
            _ => self.run_guest(site, request, ex, None).await,
        }
    }

    /// Answers from the response cache, running the guest (as the cache's origin) on a miss.
    async fn from_response_cache(
        self: &Arc<Self>,
        site: &Arc<Site>,
        cache: &Arc<EdgeCache>,
        request: http::Request<WasiBody>,
        mut ex: Exchange,
    ) -> http::Response<EdgeBody> {
        let origin = Arc::new(guest_origin::GuestOrigin {
            service: self.clone(),
            site: site.clone(),
            caller: ex.caller(&site.pop),
        });
        let scheme = if ex.tls.is_some() { "https" } else { "http" };
        // Routing already refused a request without a usable host.
        let authority = target::host(&request).unwrap_or_default().to_owned();
        let fetched = cache
            .fetch_response(&self.name, scheme, &authority, origin, request)
            .await;
        let (response, state) = match fetched {
            Ok(answer) => answer,
            // The guest origin answers failures as 5xx responses; an error here is the
            // cache's own (its fill task vanished).
            Err(error) => {
                let text = format!(
                    "the response cache failed: {error} (request id {})",
                    ex.request_id
                );
                return ex.answer(StatusCode::INTERNAL_SERVER_ERROR, &text);
            }
        };
        ex.response_cache = Some(state);
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        if self.server_timing {
            let mut timing = format!("edge;dur={:.3}", ms(ex.started.elapsed()));
            let _ = write!(timing, ", cache;desc={}", state.as_header());
            if state != CacheState::Miss {
                timing.push_str(", guest;desc=none");
            }
            if let Ok(value) = HeaderValue::try_from(timing) {
                parts.headers.append(SERVER_TIMING, value);
            }
        }
        ex.respond(http::Response::from_parts(parts, BodyKind::Stream(body)))
    }

    /// The time to create a store and instantiate this service's guest, without running
    /// it (for the micro-benchmark).
    pub async fn time_instantiation(&self, shared: &Shared) -> Result<Duration, GuestFailure> {
        let hooks = EdgeHooks::new(
            self.grants.clone(),
            "benchmark".into(),
            RequestInfo {
                client_ip: None,
                http_version: "HTTP/1.1",
                tls: None,
                pop: "benchmark".into(),
            },
            Arc::default(),
        );
        let memory = (self.limits.memory_mib as usize).saturating_mul(1 << 20);
        let guest = self.guest.load_full();
        shared.runtime.instantiate_only(&guest, hooks, memory).await
    }

    /// Runs the guest for `request` and answers with its response (or its failure).
    async fn run_guest(
        self: &Arc<Self>,
        site: &Site,
        request: http::Request<WasiBody>,
        ex: Exchange,
        response_policy: Option<ResponsePolicy>,
    ) -> http::Response<EdgeBody> {
        let caller = ex.caller(&site.pop);
        match self.invoke(site, request, &caller, response_policy).await {
            Ok(answer) => self.answer_with_guest(ex, answer),
            Err(failed) => {
                let response = failed.response(&ex.request_id);
                ex.respond(response.map(|text| BodyKind::Full(Some(text))))
            }
        }
    }

    /// Admits and runs the guest up to its response head. Shared by the plain path and the
    /// response cache's origin.
    async fn invoke(
        self: &Arc<Self>,
        site: &Site,
        request: http::Request<WasiBody>,
        caller: &Caller,
        response_policy: Option<ResponsePolicy>,
    ) -> Result<GuestResponse, Failed> {
        let shared = &site.shared;
        let admission = match shared.runtime.admit(&self.slots).await {
            Ok(admission) => admission,
            Err(busy) => {
                self.metrics.rejected(busy);
                return Err(Failed::Busy(shared.runtime.queue_timeout()));
            }
        };
        let mut hooks = EdgeHooks::new(
            self.grants.clone(),
            caller.request_id.clone(),
            caller.info.clone(),
            caller.trace.fetches.clone(),
        );
        hooks.response_policy = response_policy;
        let scheme = if caller.info.tls.is_some() {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        };
        // A request keeps the guest version it started with, even if `--watch` swaps it.
        let guest = self.guest.load_full();
        let on_end = {
            let service = self.clone();
            let request_id = caller.request_id.clone();
            let trace = caller.trace.clone();
            let observer = shared.observer.clone();
            Box::new(move |report: crate::runtime::GuestReport| {
                guest_log::record(&service.name, &request_id, &service.metrics, &report);
                let _ = trace.guest.set(report.lived);
                if let Some(observer) = observer {
                    observer(&GuestRun {
                        request_id: &request_id,
                        report: &report,
                        fetch_cache: trace.fetches.cache_state(),
                    });
                }
            })
        };
        let call = GuestRequest {
            hooks,
            limits: self.limits,
            request,
            scheme,
            admission,
            on_end,
        };
        let trace = caller.trace.clone();
        match shared.runtime.run(guest, call).await {
            // The body went over the limit before the guest answered: that is the answer.
            _ if trace
                .body_too_large
                .load(std::sync::atomic::Ordering::Relaxed) =>
            {
                Err(Failed::TooLarge(self.limits.max_request_body_bytes))
            }
            Ok(answer) => Ok(answer),
            Err(failure) => Err(Failed::Guest(failure)),
        }
    }

    /// The guest's response as the client gets it.
    fn answer_with_guest(&self, ex: Exchange, answer: GuestResponse) -> http::Response<EdgeBody> {
        let head_ready = ex.started.elapsed();
        let GuestResponse {
            response,
            instantiate,
            ..
        } = answer;
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        if self.server_timing {
            let origin = ex.trace.fetches.origin_time();
            let mut timing = format!("edge;dur={:.3}", ms(head_ready));
            if let Some(instantiate) = instantiate {
                let _ = write!(timing, ", instantiate;dur={:.3}", ms(instantiate));
            }
            // The guest's own time to its head: without instantiation and backend waits.
            let guest = head_ready
                .saturating_sub(instantiate.unwrap_or_default())
                .saturating_sub(origin);
            let _ = write!(
                timing,
                ", guest;dur={:.3}, origin;dur={:.3}",
                ms(guest),
                ms(origin)
            );
            if let Some(state) = ex.trace.fetches.cache_state() {
                let _ = write!(timing, ", cache;desc={}", state.as_header());
            }
            if let Ok(value) = HeaderValue::try_from(timing) {
                parts.headers.append(SERVER_TIMING, value);
            }
        }
        ex.respond(http::Response::from_parts(parts, BodyKind::Guest(body)))
    }
}

/// Why a request did not get a guest's response head.
pub(crate) enum Failed {
    /// No slot came free in time.
    Busy(Duration),
    /// The request body went over the service's limit.
    TooLarge(u64),
    /// The guest failed.
    Guest(GuestFailure),
}

impl Failed {
    /// The status a client gets for this.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Failed::Busy(..) => StatusCode::SERVICE_UNAVAILABLE,
            Failed::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Failed::Guest(GuestFailure::Timeout) => StatusCode::GATEWAY_TIMEOUT,
            Failed::Guest(GuestFailure::ErrorCode(_)) => StatusCode::BAD_GATEWAY,
            Failed::Guest(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The node's answer for this: status, headers and a short text naming the request.
    pub(crate) fn response(&self, request_id: &str) -> http::Response<bytes::Bytes> {
        let text = match self {
            Failed::TooLarge(limit) => format!("request body exceeds {limit} bytes"),
            Failed::Busy(..) => format!(
                "the service is at its capacity; try again shortly (request id {request_id})"
            ),
            Failed::Guest(failure) => {
                let what = match failure {
                    GuestFailure::Timeout => "the service did not answer within its deadline",
                    GuestFailure::ErrorCode(_) => "the service could not reach its origin",
                    _ => "the service failed to handle this request",
                };
                format!("{what} (request id {request_id})")
            }
        };
        let mut response = node_answer(self.status(), &text);
        let headers = response.headers_mut();
        match self {
            Failed::Busy(queue_timeout) => {
                let seconds = queue_timeout.as_secs().max(1);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            // The rest of the body will not be read: the connection cannot carry another
            // request.
            Failed::TooLarge(_) => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Failed::Guest(_) => {}
        }
        response
    }
}

/// A short plain-text answer from the node itself; errors other than 404 are `no-store`.
pub(crate) fn node_answer(status: StatusCode, text: &str) -> http::Response<bytes::Bytes> {
    let mut response = http::Response::new(bytes::Bytes::from(format!("{text}\n")));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if (status.is_client_error() || status.is_server_error()) && status != StatusCode::NOT_FOUND {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn too_large(ex: Exchange, limit: u64) -> http::Response<EdgeBody> {
    let response = Failed::TooLarge(limit).response(&ex.request_id);
    ex.respond(response.map(|text| BodyKind::Full(Some(text))))
}

/// Who a guest runs for: the request's id, what the guest may learn about it, and where
/// its costs are recorded. Owned, so the response cache's fill task can run the guest.
#[derive(Clone)]
pub(crate) struct Caller {
    pub(crate) request_id: Arc<str>,
    pub(crate) info: crate::host::RequestInfo,
    pub(crate) trace: Arc<exchange::RequestTrace>,
}

/// The body length a request declares, if it declares one.
fn declared_length<B>(request: &http::Request<B>) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
