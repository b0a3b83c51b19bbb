//! Prometheus metrics: the registry, the node's metric families, and per-service and
//! per-backend handles resolved once at startup.
//!
//! Metric and label names are API (see DESIGN.md); keep them stable. On the request path
//! nothing looks up labels: [`ServiceMetrics`] and [`BackendMetrics`] hold the concrete
//! counters and histograms, whose updates are atomic operations without a lock.

use std::sync::Arc;

use crate::runtime::{Busy, FailureKind};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets from 5 µs (instantiation) to 30 s (slow origins), in seconds.
const BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Status classes used as the `status` label.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Why a request was turned away before its guest ran (the `reason` label).
const REJECTIONS: [Busy; 2] = [Busy::Service, Busy::Node];

/// Why a connection was closed at once (the `reason` label).
const REFUSALS: [&str; 2] = ["max_connections", "max_connections_per_ip"];

/// The node's registry and metric families.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    instantiate: Histogram,
    execution: HistogramVec,
    backend_duration: HistogramVec,
    guest_errors: IntCounterVec,
    guest_runs: IntCounterVec,
    instances_created: IntCounterVec,
    cancelled: IntCounterVec,
    rejected: IntCounterVec,
    refused: IntCounterVec,
    /// Requests being handled right now.
    pub in_flight: IntGauge,
    connections: IntGaugeVec,
    cache_lookups: IntCounterVec,
    cache_bytes: IntGauge,
    cache_objects: IntGauge,
    log_suppressed: IntCounter,
    /// Config loads and reloads, by result (`success`, `failure`).
    reloads: IntCounterVec,
    /// When the config last loaded successfully (Unix seconds).
    last_reload_success: IntGauge,
    /// Whether the last load attempt succeeded (1) or not (0).
    last_reload_successful: IntGauge,
    /// Access log lines dropped because the writer fell behind.
    pub access_log_dropped: IntCounter,
}

fn class_index(status: u16) -> usize {
    (status / 100).clamp(1, 5) as usize - 1
}

impl Metrics {
    /// Creates and registers every metric family.
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let vec = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
                labels,
            )
            .expect("valid histogram");
            registry
                .register(Box::new(vec.clone()))
                .expect("unique metric");
            vec
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
            registry
                .register(Box::new(vec.clone()))
                .expect("unique metric");
            vec
        };
        let gauge = |name: &str, help: &str| {
            let gauge = IntGauge::new(name, help).expect("valid gauge");
            registry
                .register(Box::new(gauge.clone()))
                .expect("unique metric");
            gauge
        };
        let requests = counter(
            "outpost_requests_total",
            "Requests answered, by service and status class.",
            &["service", "status"],
        );
        let request_duration = histogram(
            "outpost_request_duration_seconds",
            "Time from request head to the end of the response, by service and status class.",
            &["service", "status"],
        );
        let instantiate = histogram(
            "outpost_guest_instantiate_seconds",
            "Time to get a ready guest instance (store creation plus instantiation).",
            &[],
        )
        .with_label_values(&[] as &[&str]);
        let execution = histogram(
            "outpost_guest_execution_seconds",
            "Time a guest instance lived, from instantiation to its end, by service.",
            &["service"],
        );
        let backend_duration = histogram(
            "outpost_backend_request_duration_seconds",
            "Time from sending a backend request to its response head, by service, backend \
             and status class (`error` when no response).",
            &["service", "backend", "status"],
        );
        let guest_errors = counter(
            "outpost_guest_errors_total",
            "Guest failures by service and kind (trap, timeout, memory, ...).",
            &["service", "kind"],
        );
        let guest_runs = counter(
            "outpost_guest_runs_total",
            "Requests a guest ran for, by service (response-cache hits run none).",
            &["service"],
        );
        let instances_created = counter(
            "outpost_guest_instances_created_total",
            "Guest instances created, by service (fewer than runs when instances are reused).",
            &["service"],
        );
        let cancelled = counter(
            "outpost_requests_cancelled_total",
            "Requests whose client went away before their response was complete (the guest \
             is cancelled with them).",
            &["service"],
        );
        let rejected = counter(
            "outpost_requests_rejected_total",
            "Requests answered 503 because no instance slot came free in time, by service \
             and reason.",
            &["service", "reason"],
        );
        let refused = counter(
            "outpost_connections_refused_total",
            "Client connections closed at once because a connection limit was reached, by \
             listener and reason.",
            &["listener", "reason"],
        );
        let in_flight = gauge(
            "outpost_requests_in_flight",
            "Requests being handled right now.",
        );
        let connections = IntGaugeVec::new(
            Opts::new(
                "outpost_connections_open",
                "Client connections open right now, by listener.",
            ),
            &["listener"],
        )
        .expect("valid gauge");
        registry
            .register(Box::new(connections.clone()))
            .expect("unique metric");
        let cache_lookups = counter(
            "outpost_cache_lookups_total",
            "Edge cache lookups by layer (fetch: guests' backend fetches; response: guests' \
             own answers) and how they were answered (hit, miss, stale, pass, revalidated).",
            &["layer", "result"],
        );
        let cache_bytes = gauge(
            "outpost_cache_bytes",
            "Bytes held by the edge cache (heads and bodies).",
        );
        let cache_objects = gauge(
            "outpost_cache_objects",
            "Responses stored in the edge cache (each Vary variant counts).",
        );
        let log_suppressed = IntCounter::new(
            "outpost_log_events_suppressed_total",
            "Node log events dropped by the rate limit on events unauthenticated clients can \
             cause.",
        )
        .expect("valid counter");
        registry
            .register(Box::new(log_suppressed.clone()))
            .expect("unique metric");
        let reloads = counter(
            "outpost_config_reloads_total",
            "Config reloads (SIGHUP or POST /reload) by result: success, or failure (the \
             running config stays).",
            &["result"],
        );
        let last_reload_success = gauge(
            "outpost_config_last_reload_success_timestamp_seconds",
            "When the running config was loaded (Unix time).",
        );
        let last_reload_successful = gauge(
            "outpost_config_last_reload_successful",
            "Whether the last config load or reload succeeded (1) or failed (0).",
        );
        let access_log_dropped = IntCounter::new(
            "outpost_access_log_dropped_total",
            "Access log lines dropped because the writer fell behind (its queue is bounded).",
        )
        .expect("valid counter");
        registry
            .register(Box::new(access_log_dropped.clone()))
            .expect("unique metric");
        for result in ["success", "failure"] {
            reloads.with_label_values(&[result]);
        }
        Arc::new(Metrics {
            reloads,
            last_reload_success,
            last_reload_successful,
            access_log_dropped,
            log_suppressed,
            registry,
            cache_lookups,
            cache_bytes,
            cache_objects,
            requests,
            request_duration,
            instantiate,
            execution,
            backend_duration,
            guest_errors,
            guest_runs,
            instances_created,
            cancelled,
            rejected,
            refused,
            in_flight,
            connections,
        })
    }

    /// Resolves the handles for one service.
    pub fn service(&self, service: &str) -> ServiceMetrics {
        ServiceMetrics {
            requests: CLASSES.map(|class| self.requests.with_label_values(&[service, class])),
            duration: CLASSES
                .map(|class| self.request_duration.with_label_values(&[service, class])),
            instantiate: self.instantiate.clone(),
            execution: self.execution.with_label_values(&[service]),
            errors: FailureKind::ALL.map(|kind| {
                self.guest_errors
                    .with_label_values(&[service, kind.label()])
            }),
            runs: self.guest_runs.with_label_values(&[service]),
            created: self.instances_created.with_label_values(&[service]),
            cancelled: self.cancelled.with_label_values(&[service]),
            rejected: REJECTIONS
                .map(|busy| self.rejected.with_label_values(&[service, busy.label()])),
        }
    }

    /// Resolves the handles for one listener.
    pub fn listener(&self, listener: &str) -> ListenerMetrics {
        ListenerMetrics {
            refused: REFUSALS.map(|reason| self.refused.with_label_values(&[listener, reason])),
            open: self.connections.with_label_values(&[listener]),
        }
    }

    /// Resolves the handles for one backend of one service.
    pub fn backend(&self, service: &str, backend: &str) -> BackendMetrics {
        BackendMetrics {
            duration: CLASSES.map(|class| {
                self.backend_duration
                    .with_label_values(&[service, backend, class])
            }),
            failed: self
                .backend_duration
                .with_label_values(&[service, backend, "error"]),
        }
    }

    /// Resolves the edge cache's handles, one lookup counter per `(layer, result)` label
    /// pair, in the order the cache counts them.
    pub fn cache(&self, lookups: &[(&str, &str)]) -> CacheMetrics {
        CacheMetrics {
            lookups: lookups
                .iter()
                .map(|(layer, result)| self.cache_lookups.with_label_values(&[*layer, *result]))
                .collect(),
            bytes: self.cache_bytes.clone(),
            objects: self.cache_objects.clone(),
        }
    }

    /// The config the node started with is loaded.
    pub fn config_started(&self) {
        self.stamp_config_load();
    }

    /// Counts a reload; a success also stamps the time.
    pub fn config_reloaded(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.reloads.with_label_values(&[result]).inc();
        if success {
            self.stamp_config_load();
        } else {
            self.last_reload_successful.set(0);
        }
    }

    fn stamp_config_load(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_reload_success.set(now as i64);
        self.last_reload_successful.set(1);
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Vec<u8> {
        let suppressed = crate::logging::suppressed();
        let counted = self.log_suppressed.get();
        if suppressed > counted {
            self.log_suppressed.inc_by(suppressed - counted);
        }
        let mut out = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// One service's metric handles.
pub struct ServiceMetrics {
    requests: [IntCounter; 5],
    duration: [Histogram; 5],
    instantiate: Histogram,
    execution: Histogram,
    errors: [IntCounter; FailureKind::ALL.len()],
    runs: IntCounter,
    created: IntCounter,
    cancelled: IntCounter,
    rejected: [IntCounter; 2],
}

impl ServiceMetrics {
    /// Counts one answered request with its status and total duration in seconds.
    pub fn request(&self, status: u16, seconds: f64) {
        let class = class_index(status);
        self.requests[class].inc();
        self.duration[class].observe(seconds);
    }

    /// Records how long instantiation took.
    pub fn instantiated(&self, seconds: f64) {
        self.instantiate.observe(seconds);
    }

    /// Records how long a guest instance lived.
    pub fn executed(&self, seconds: f64) {
        self.execution.observe(seconds);
    }

    /// Counts a guest failure of `kind`.
    pub fn guest_error(&self, kind: FailureKind) {
        self.errors[kind.index()].inc();
    }

    /// Counts a guest run, and the instance it created when it was not reused.
    pub fn guest_ran(&self, created_instance: bool) {
        self.runs.inc();
        if created_instance {
            self.created.inc();
        }
    }

    /// Counts a request whose client went away before its response was complete.
    pub fn cancelled(&self) {
        self.cancelled.inc();
    }

    /// Counts a request turned away for want of a slot.
    pub fn rejected(&self, busy: Busy) {
        let i = REJECTIONS.iter().position(|b| *b == busy).unwrap_or(0);
        self.rejected[i].inc();
    }
}

/// One listener's connection handles.
pub struct ListenerMetrics {
    refused: [IntCounter; 2],
    open: IntGauge,
}

impl ListenerMetrics {
    /// Counts a connection closed at once for `reason` (`max_connections`, ...).
    pub fn refused(&self, reason: &str) {
        if let Some(i) = REFUSALS.iter().position(|r| *r == reason) {
            self.refused[i].inc();
        }
    }

    /// A connection was admitted.
    pub fn opened(&self) {
        self.open.inc();
    }

    /// An admitted connection closed.
    pub fn closed(&self) {
        self.open.dec();
    }
}

/// One backend's metric handles.
#[derive(Clone)]
pub struct BackendMetrics {
    duration: [Histogram; 5],
    failed: Histogram,
}

impl BackendMetrics {
    /// Records a backend response head (`Some(status)`) or a failure (`None`).
    pub fn response(&self, status: Option<u16>, seconds: f64) {
        match status {
            Some(status) => self.duration[class_index(status)].observe(seconds),
            None => self.failed.observe(seconds),
        }
    }
}

/// The edge cache's metric handles.
#[derive(Clone)]
pub struct CacheMetrics {
    lookups: Vec<IntCounter>,
    bytes: IntGauge,
    objects: IntGauge,
}

impl CacheMetrics {
    /// Counts one lookup, by its index into the labels the handles were resolved for.
    pub fn lookup(&self, index: usize) {
        if let Some(counter) = self.lookups.get(index) {
            counter.inc();
        }
    }

    /// Sets the stored bytes and objects.
    pub fn set_size(&self, bytes: u64, objects: u64) {
        self.bytes.set(bytes as i64);
        self.objects.set(objects as i64);
    }
}

/// Work done just before each scrape, such as settling gauges that are costly to keep exact.
pub type ScrapeHook = Arc<dyn Fn() + Send + Sync>;

/// The `/metrics` listener: Prometheus text for `GET /metrics`, 404 otherwise.
#[derive(Clone)]
pub struct MetricsEndpoint {
    metrics: Arc<Metrics>,
    before_scrape: Option<ScrapeHook>,
}

impl MetricsEndpoint {
    /// Serves `metrics`, running `before_scrape` before each exposition.
    pub fn new(metrics: Arc<Metrics>, before_scrape: Option<ScrapeHook>) -> Self {
        Self {
            metrics,
            before_scrape,
        }
    }
}

impl crate::server::Handler for MetricsEndpoint {
    type Body = wasmtime_wasi_http::WasiBody;
    type Future = std::future::Ready<http::Response<Self::Body>>;

    fn handle(
        &self,
        request: http::Request<hyper::body::Incoming>,
        _conn: &Arc<crate::server::ConnInfo>,
    ) -> Self::Future {
        if request.uri().path() != "/metrics" {
            let mut response =
                http::Response::new(crate::http::full_body("metrics are at /metrics\n"));
            *response.status_mut() = http::StatusCode::NOT_FOUND;
            return std::future::ready(response);
        }
        if let Some(hook) = &self.before_scrape {
            hook();
        }
        let mut response = http::Response::new(crate::http::full_body(self.metrics.encode()));
        if let Ok(value) = http::HeaderValue::from_str(TextEncoder::new().format_type()) {
            response
                .headers_mut()
                .insert(http::header::CONTENT_TYPE, value);
        }
        std::future::ready(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_update_the_families_with_the_documented_labels() {
        let metrics = Metrics::new();
        let service = metrics.service("shop");
        service.request(204, 0.001);
        service.request(503, 0.5);
        service.guest_error(FailureKind::Timeout);
        metrics.backend("shop", "origin").response(Some(200), 0.02);
        metrics.backend("shop", "origin").response(None, 1.0);
        let text = String::from_utf8(metrics.encode()).unwrap();
        assert!(
            text.contains(r#"outpost_requests_total{service="shop",status="2xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"outpost_requests_total{service="shop",status="5xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"outpost_guest_errors_total{kind="timeout",service="shop"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"outpost_backend_request_duration_seconds_count{backend="origin",service="shop",status="error"} 1"#), "{text}");
        assert!(text.contains(r#"outpost_request_duration_seconds_bucket{service="shop",status="2xx",le="0.001"} 1"#), "{text}");
        assert!(
            text.contains(r#"le="0.000005""#),
            "microsecond buckets: {text}"
        );
    }
}
