//! The edge cache: an RFC 9111 shared cache in front of every backend fetch a guest makes
//! (the fetch layer) and, where a service opts in, in front of the guest itself (the
//! response layer). Both layers share one store, one byte budget, one set of purges.
//!
//! A `GET`/`HEAD` is looked up by its [`CacheKey`] and the Vary-selected request fields:
//!
//! - **fresh hit**: answered from memory, with `Age`, `X-Cache: HIT`, conditional 304s and
//!   single byte ranges computed here;
//! - **stale** within stale-while-revalidate: answered stale, one background refresh runs;
//! - **miss or revalidation**: one fill per key goes to the [`Origin`] ([`flight`]: request
//!   collapsing, [`fill`]: what is kept); concurrent requests wait for its head and read
//!   the body as it arrives;
//! - an **uncacheable** answer goes to the requester that caused the fill; the key is
//!   hit-for-miss for a while, so later requests skip the queue.
//!
//! Anything else (`POST`, a guest's pass) goes straight to the origin; a successful unsafe
//! request invalidates its URL and same-origin `Location`/`Content-Location` (RFC 9111
//! section 4.4). Purges (by URL, surrogate key, service or everything; hard or soft) are
//! recorded in a [`purge::PurgeLog`] so a fill that began before a purge never stores what
//! the purge removed. The guests' simple value cache lives beside it ([`values`]).

pub mod directives;
mod fill;
mod flight;
mod key;
pub mod object;
mod origin;
pub mod policy;
pub mod purge;
mod store;
mod values;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use moka::sync::Cache;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use crate::http::{X_CACHE, add_date, empty_body};
use crate::metrics::CacheMetrics;
use directives::Directives;
use fill::{FillReply, FillRequest};
use flight::{Flight, FlightState, Flights};
pub use key::{CacheKey, Layer};
use object::strip_edge_fields;
pub use object::{CacheState, Object};
pub use origin::{Origin, OriginFuture};
pub use policy::Overrides;
use policy::{Heuristics, Reuse};
use purge::PurgeLog;
pub use purge::PurgeTarget;
use store::Store;
pub use values::{ValueCache, ValueLookup};

/// Runtime settings of the cache.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Total bytes the HTTP store may hold.
    pub memory_bytes: u64,
    /// Largest object stored; larger responses pass through.
    pub max_object_bytes: u64,
    /// How long a request waits for another request's fill of the same key.
    pub collapse_wait: Duration,
    /// How long an uncacheable answer makes its key skip collapsing.
    pub hit_for_miss: Duration,
    /// Freshness heuristics and stale keeping.
    pub heuristics: Heuristics,
    /// Variants kept per key.
    pub max_variants: usize,
}

/// Every `(layer, result)` pair of `outpost_cache_lookups_total`, in the order
/// [`lookup_index`] counts them.
pub fn lookup_labels() -> Vec<(&'static str, &'static str)> {
    Layer::ALL
        .iter()
        .flat_map(|layer| {
            CacheState::ALL
                .iter()
                .map(|state| (layer.label(), state.label()))
        })
        .collect()
}

fn lookup_index(layer: Layer, state: CacheState) -> usize {
    layer.index() * CacheState::ALL.len() + state.index()
}

/// The node's edge cache, shared by every service.
pub struct EdgeCache {
    store: Store,
    flights: Flights,
    hit_for_miss: Cache<CacheKey, ()>,
    purges: PurgeLog,
    values: ValueCache,
    settings: CacheSettings,
    metrics: CacheMetrics,
}

impl EdgeCache {
    /// Creates an empty cache; `metrics` counts lookups by [`lookup_labels`].
    pub fn new(settings: CacheSettings, metrics: CacheMetrics) -> Arc<EdgeCache> {
        let hit_for_miss = Cache::builder()
            .max_capacity(100_000)
            .time_to_live(settings.hit_for_miss.max(Duration::from_millis(1)))
            .build();
        Arc::new(EdgeCache {
            store: Store::new(
                settings.memory_bytes,
                settings.heuristics,
                settings.max_variants,
            ),
            flights: Flights::default(),
            hit_for_miss,
            purges: PurgeLog::default(),
            values: ValueCache::new(settings.memory_bytes / 4, settings.max_object_bytes),
            settings,
            metrics,
        })
    }

    /// The guests' simple value cache.
    pub fn values(&self) -> &ValueCache {
        &self.values
    }

    /// Fetches a guest's `request` for `service` from `origin` (a backend) through the
    /// fetch layer. The response carries `X-Cache`; the state is also returned for logs
    /// and Server-Timing.
    pub async fn fetch(
        self: &Arc<Self>,
        service: &Arc<str>,
        origin: Arc<dyn Origin>,
        request: http::Request<WasiBody>,
        overrides: Overrides,
    ) -> Result<(http::Response<WasiBody>, CacheState), HttpError> {
        let cacheable_method = matches!(*request.method(), Method::GET | Method::HEAD);
        if overrides.pass || !cacheable_method {
            return self.pass(service, origin, request).await;
        }
        let key = CacheKey::of_uri(
            service,
            Layer::Fetch,
            request.uri(),
            "",
            overrides.key_extra.as_deref(),
        );
        self.lookup_or_fill(key, origin, request, overrides).await
    }

    /// Answers a client's `GET`/`HEAD` for `service` from the response layer, keyed by
    /// `scheme://authority/path?query` as the client asked, running `origin` (the
    /// service's guest) on a miss.
    pub async fn fetch_response(
        self: &Arc<Self>,
        service: &Arc<str>,
        scheme: &str,
        authority: &str,
        origin: Arc<dyn Origin>,
        request: http::Request<WasiBody>,
    ) -> Result<(http::Response<WasiBody>, CacheState), HttpError> {
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let key = CacheKey::new(service, Layer::Response, scheme, authority, path, None);
        self.lookup_or_fill(key, origin, request, Overrides::default())
            .await
    }

    async fn lookup_or_fill(
        self: &Arc<Self>,
        key: CacheKey,
        origin: Arc<dyn Origin>,
        request: http::Request<WasiBody>,
        overrides: Overrides,
    ) -> Result<(http::Response<WasiBody>, CacheState), HttpError> {
        let layer = key.layer();
        let method = request.method().clone();
        let (parts, _body) = request.into_parts();
        let mut request_cc = Directives::from_headers(&parts.headers, header::CACHE_CONTROL);
        if !request_cc.present
            && parts
                .headers
                .get(header::PRAGMA)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().contains("no-cache"))
        {
            request_cc.no_cache = Some(Vec::new());
        }
        let now = SystemTime::now();
        let mut stale = None;
        if let Some(object) = self.store.lookup(&key, &parts.headers) {
            match policy::reuse(&object.freshness, &request_cc, now, object.purged_at()) {
                Reuse::Fresh => {
                    return Ok(self.serve(
                        layer,
                        &object,
                        &method,
                        &parts.headers,
                        CacheState::Hit,
                    ));
                }
                Reuse::StaleAccepted => {
                    return Ok(self.serve(
                        layer,
                        &object,
                        &method,
                        &parts.headers,
                        CacheState::Stale,
                    ));
                }
                Reuse::StaleWhileRevalidate => {
                    // The client's directives were for this answer, not the refresh;
                    // Authorization still limits what the refresh may store.
                    self.refresh_in_background(FillRequest::new(
                        origin,
                        key.clone(),
                        &parts,
                        Directives::default(),
                        overrides,
                        Some(object.clone()),
                    ));
                    return Ok(self.serve(
                        layer,
                        &object,
                        &method,
                        &parts.headers,
                        CacheState::Stale,
                    ));
                }
                Reuse::Revalidate => stale = Some(object),
            }
        }
        if request_cc.only_if_cached {
            self.metrics.lookup(lookup_index(layer, CacheState::Miss));
            let mut response = http::Response::new(empty_body());
            *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
            response
                .headers_mut()
                .insert(X_CACHE, HeaderValue::from_static("MISS"));
            return Ok((response, CacheState::Miss));
        }

        // Join a fill already under way for this key, unless the key is hit-for-miss.
        let flight = if self.hit_for_miss.contains_key(&key) {
            None
        } else {
            let stored = || {
                let object = self.store.lookup(&key, &parts.headers)?;
                (policy::reuse(
                    &object.freshness,
                    &request_cc,
                    SystemTime::now(),
                    object.purged_at(),
                ) == Reuse::Fresh)
                    .then_some(object)
            };
            match self.flights.join_or_lead(&key, Some(&stored)) {
                Flight::Stored(object) => {
                    return Ok(self.serve(
                        layer,
                        &object,
                        &method,
                        &parts.headers,
                        CacheState::Hit,
                    ));
                }
                other => Some(other),
            }
        };
        let fill = FillRequest::new(origin, key, &parts, request_cc, overrides, stale);
        let reply = match flight {
            Some(Flight::Join(mut waiting)) => {
                let outcome = match tokio::time::timeout(
                    self.settings.collapse_wait,
                    waiting.wait_for(|s| !matches!(s, FlightState::Pending)),
                )
                .await
                {
                    Ok(Ok(state)) => state.clone(),
                    _ => FlightState::NotStored,
                };
                match outcome {
                    FlightState::Done(object, state) if object.matches(&parts.headers) => {
                        return Ok(self.serve(layer, &object, &method, &parts.headers, state));
                    }
                    // Not for us (another variant, uncacheable, failed or too slow): fetch alone.
                    _ => self.start_fill(fill, None).await,
                }
            }
            Some(Flight::Lead(tx)) => self.start_fill(fill, Some(tx)).await,
            _ => self.start_fill(fill, None).await,
        };
        match reply {
            FillReply::Served(object, state) => {
                Ok(self.serve(layer, &object, &method, &parts.headers, state))
            }
            FillReply::Uncacheable(mut response) => {
                self.metrics.lookup(lookup_index(layer, CacheState::Miss));
                mark_forwarded(response.headers_mut(), CacheState::Miss);
                if method == Method::HEAD {
                    *response.body_mut() = empty_body();
                }
                Ok((response, CacheState::Miss))
            }
            FillReply::Failed(error) => {
                self.metrics.lookup(lookup_index(layer, CacheState::Miss));
                Err(error)
            }
        }
    }

    /// Sends a request that the cache does not answer, invalidating after unsafe methods.
    async fn pass(
        self: &Arc<Self>,
        service: &Arc<str>,
        origin: Arc<dyn Origin>,
        request: http::Request<WasiBody>,
    ) -> Result<(http::Response<WasiBody>, CacheState), HttpError> {
        let method = request.method().clone();
        let uri = request.uri().clone();
        let mut response = origin.send(request).await?;
        let safe = matches!(
            method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        );
        let status = response.status();
        if !safe && (status.is_success() || status.is_redirection()) {
            self.invalidate_after_unsafe(service, &uri, response.headers());
        }
        self.metrics
            .lookup(lookup_index(Layer::Fetch, CacheState::Pass));
        mark_forwarded(response.headers_mut(), CacheState::Pass);
        Ok((response, CacheState::Pass))
    }

    /// RFC 9111 section 4.4: the target URI and same-origin Location / Content-Location.
    fn invalidate_after_unsafe(&self, service: &Arc<str>, uri: &http::Uri, headers: &HeaderMap) {
        let target = CacheKey::of_uri(service, Layer::Fetch, uri, "", None);
        let authority = uri.authority().map_or("", |a| a.as_str());
        let mut keys = vec![target.clone()];
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            let Some(location) = headers.get(&name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            let Ok(location) = location.parse::<http::Uri>() else {
                continue;
            };
            match location.authority() {
                Some(other) if !other.as_str().eq_ignore_ascii_case(authority) => continue,
                _ => {}
            }
            let path = location.path_and_query().map_or("/", |p| p.as_str());
            if path.starts_with('/') {
                keys.push(target.with_path(path));
            } else {
                let base = uri.path();
                let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
                keys.push(target.with_path(&format!("{dir}{path}")));
            }
        }
        for key in keys {
            self.store.remove(&key);
        }
    }

    fn serve(
        &self,
        layer: Layer,
        object: &Arc<Object>,
        method: &Method,
        request_headers: &HeaderMap,
        state: CacheState,
    ) -> (http::Response<WasiBody>, CacheState) {
        self.metrics.lookup(lookup_index(layer, state));
        (
            object.respond(method, request_headers, state, SystemTime::now()),
            state,
        )
    }

    /// Purges `target`: hard removes objects, soft marks them stale (so stale-while-
    /// revalidate and stale-if-error still apply). Returns how many objects it touched.
    pub fn purge(&self, target: PurgeTarget, soft: bool) -> usize {
        self.purges.record(target.clone());
        let values = self.values.purge(&target);
        let now = SystemTime::now();
        if let PurgeTarget::Keys(keys) = &target {
            let mut touched = 0;
            for key in keys {
                let Some(variants) = self.store.variants(key) else {
                    continue;
                };
                if soft {
                    variants.objects.iter().for_each(|o| o.soft_purge(now));
                } else {
                    self.store.remove(key);
                }
                touched += variants.objects.len();
            }
            return touched;
        }
        if target == PurgeTarget::All && !soft {
            return self.store.clear() + values;
        }
        let mut touched = values;
        for (key, variants) in self.store.iter() {
            let hit: Vec<&Arc<Object>> = variants
                .objects
                .iter()
                .filter(|o| target.covers(&key, o))
                .collect();
            if hit.is_empty() {
                continue;
            }
            touched += hit.len();
            if soft {
                hit.iter().for_each(|o| o.soft_purge(now));
            } else {
                for object in hit {
                    self.store.remove_object(&key, object);
                }
            }
        }
        touched
    }

    /// Updates the stored bytes/objects gauges (moka's counts settle on maintenance).
    pub fn update_gauges(&self) {
        let (bytes, objects) = self.usage();
        self.metrics.set_size(bytes, objects);
    }

    /// Bytes and objects stored now in the HTTP store (both layers).
    pub fn usage(&self) -> (u64, u64) {
        self.store.usage()
    }
}

/// Prepares the head of an origin response the cache forwards without storing: edge-only
/// fields removed, `Date` added if missing, `X-Cache` set.
fn mark_forwarded(headers: &mut HeaderMap, state: CacheState) {
    strip_edge_fields(headers);
    add_date(headers, SystemTime::now());
    headers.insert(X_CACHE, HeaderValue::from_static(state.as_header()));
}

#[cfg(test)]
mod tests;
