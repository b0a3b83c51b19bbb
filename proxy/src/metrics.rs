//! Prometheus metrics: the registry, the node's metric families, and per-service and
//! per-backend handles resolved once at startup.
//!
//! Metric and label names are API (see DESIGN.md); keep them stable. On the request path
//! nothing looks up labels: [`ServiceMetrics`] and [`BackendMetrics`] hold the concrete
//! counters and histograms, whose updates are atomic operations without a lock.

use std::sync::Arc;

use crate::cache::CacheState;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Latency buckets from 5 µs (instantiation) to 30 s (slow origins), in seconds.
const BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Status classes used as the `status` label.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Guest failure kinds used as the `kind` label.
pub const ERROR_KINDS: [&str; 6] = [
    "trap",
    "timeout",
    "memory",
    "no_response",
    "error_code",
    "instantiate",
];

/// The node's registry and metric families.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    instantiate: Histogram,
    execution: HistogramVec,
    backend_duration: HistogramVec,
    guest_errors: IntCounterVec,
    /// Requests being handled right now.
    pub in_flight: IntGauge,
    /// Client connections open right now.
    pub connections: IntGauge,
    cache_lookups: IntCounterVec,
    cache_bytes: IntGauge,
    cache_objects: IntGauge,
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
            "Time from sending a backend request to its response head, by service, backend and status class (`error` when no response).",
            &["service", "backend", "status"],
        );
        let guest_errors = counter(
            "outpost_guest_errors_total",
            "Guest failures by service and kind (trap, timeout, memory, ...).",
            &["service", "kind"],
        );
        let in_flight = gauge(
            "outpost_requests_in_flight",
            "Requests being handled right now.",
        );
        let connections = gauge(
            "outpost_connections_open",
            "Client connections open right now.",
        );
        let cache_lookups = counter(
            "outpost_cache_lookups_total",
            "Backend fetches by how the edge cache answered them (hit, miss, stale, pass, revalidated).",
            &["result"],
        );
        let cache_bytes = gauge(
            "outpost_cache_bytes",
            "Bytes held by the edge cache (heads and bodies).",
        );
        let cache_objects = gauge(
            "outpost_cache_objects",
            "Responses stored in the edge cache (each Vary variant counts).",
        );
        Arc::new(Metrics {
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
            errors: ERROR_KINDS.map(|kind| self.guest_errors.with_label_values(&[service, kind])),
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

    /// Resolves the edge cache's handles.
    pub fn cache(&self) -> CacheMetrics {
        CacheMetrics {
            lookups: CacheState::ALL.map(|s| self.cache_lookups.with_label_values(&[s.label()])),
            bytes: self.cache_bytes.clone(),
            objects: self.cache_objects.clone(),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Vec<u8> {
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
    errors: [IntCounter; 6],
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

    /// Counts a guest failure of `kind` (one of [`ERROR_KINDS`]).
    pub fn guest_error(&self, kind: &str) {
        if let Some(i) = ERROR_KINDS.iter().position(|k| *k == kind) {
            self.errors[i].inc();
        }
    }
}

/// One backend's metric handles.
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
    lookups: [IntCounter; 5],
    bytes: IntGauge,
    objects: IntGauge,
}

impl CacheMetrics {
    /// Counts one fetch answered with `state`.
    pub fn lookup(&self, state: CacheState) {
        self.lookups[state.index()].inc();
    }

    /// Sets the stored bytes and objects.
    pub fn set_size(&self, bytes: u64, objects: u64) {
        self.bytes.set(bytes as i64);
        self.objects.set(objects as i64);
    }
}

/// Work done just before each scrape, such as settling gauges that are costly to keep exact.
pub type ScrapeHook = Box<dyn Fn() + Send + Sync>;

/// The `/metrics` listener: Prometheus text for `GET /metrics`, 404 otherwise.
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

#[async_trait::async_trait]
impl pingora_core::apps::http_app::ServeHttp for MetricsEndpoint {
    async fn response(
        &self,
        session: &mut pingora_core::protocols::http::ServerSession,
    ) -> http::Response<Vec<u8>> {
        let _ = session.drain_request_body().await;
        if session.req_header().uri.path() != "/metrics" {
            return http::Response::builder()
                .status(404)
                .header("content-type", "text/plain")
                .body(b"metrics are at /metrics\n".to_vec())
                .expect("static response");
        }
        if let Some(hook) = &self.before_scrape {
            hook();
        }
        let body = self.metrics.encode();
        http::Response::builder()
            .header("content-type", TextEncoder::new().format_type())
            .header("content-length", body.len())
            .body(body)
            .expect("static response")
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
        service.guest_error("timeout");
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
