//! The edge cache: an RFC 9111 shared cache in front of every backend fetch a guest makes.
//!
//! A guest's `GET`/`HEAD` to a backend is looked up by its key (service, scheme, backend,
//! path and query, plus anything the guest adds) and the Vary-selected request fields.
//! What happens next:
//!
//! - **fresh hit**: answered from memory, with `Age`, `X-Cache: HIT`, conditional 304s and
//!   single byte ranges computed here;
//! - **stale** within stale-while-revalidate: answered stale, one background refresh runs;
//! - **miss or revalidation**: one *fill* per key goes to the origin (request collapsing);
//!   concurrent requests for the key wait for its response head, then read the body as it
//!   arrives. A fill runs in its own task, so a client that leaves does not abort it.
//!   Revalidation sends the stored validators and folds a 304 into the stored head;
//!   an origin failure or 5xx falls back to the stale object within stale-if-error.
//! - an **uncacheable** answer goes to the requester that caused the fill; the others then
//!   fetch on their own, and the key is remembered as hit-for-miss for a while so later
//!   requests skip the queue (a cacheable answer in that time is still stored).
//!
//! Anything else (`POST`, a guest's pass) goes straight to the origin; a successful unsafe
//! request invalidates its URL and same-origin `Location`/`Content-Location` (RFC 9111
//! section 4.4).
//!
//! Storage is a moka cache bounded by bytes: each key holds its variants, weighted by size,
//! and expires when the longest stale window of its variants ends. Purges (by key, surrogate
//! key, service or everything; hard or soft) are recorded in a [`purge::PurgeLog`] so a fill
//! that began before a purge never stores what the purge removed.

pub mod directives;
pub mod object;
pub mod policy;
pub mod purge;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use moka::ops::compute::Op;
use moka::sync::Cache;
use tokio::sync::{oneshot, watch};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use crate::backend::Backend;
use crate::config::CacheConfig;
use crate::metrics::CacheMetrics;
use directives::Directives;
use object::{BodyBuffer, Object, empty_body, strip_edge_fields};
pub use object::{CacheState, X_CACHE};
pub use policy::Overrides;
use policy::{Heuristics, RequestFacts, Reuse, Storability};
use purge::PurgeLog;
pub use purge::PurgeTarget;

/// Separates the parts of a cache key; cannot appear in a URL or service name.
const KEY_SEPARATOR: char = '\u{1f}';

/// The cache key of a request: service, scheme, authority (the backend name), path and
/// query, and the guest's extra key text.
pub fn primary_key(
    service: &str,
    scheme: &str,
    authority: &str,
    path_and_query: &str,
    extra: Option<&str>,
) -> String {
    let mut key = format!(
        "{service}{KEY_SEPARATOR}{scheme}://{}{path_and_query}",
        authority.to_ascii_lowercase()
    );
    if let Some(extra) = extra {
        key.push(KEY_SEPARATOR);
        key.push_str(extra);
    }
    key
}

/// The key of a URL as written by a guest (`http://backend/path?query`).
pub fn url_key(service: &str, url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    Some(primary_key(
        service,
        uri.scheme_str().unwrap_or("http"),
        uri.authority()?.as_str(),
        uri.path_and_query().map_or("/", |p| p.as_str()),
        None,
    ))
}

/// The key of a simple-cache value: its own namespace inside the service's.
fn value_key(service: &str, key: &str) -> Arc<str> {
    primary_key(service, "value", "", key, None).into()
}

/// A header map from `(name, value)` pairs, for the cache's unit tests.
#[cfg(test)]
fn test_headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::header::HeaderName::try_from(*name).unwrap(),
            value.parse().unwrap(),
        );
    }
    map
}

/// The service part of a cache key.
fn key_service(key: &str) -> &str {
    key.split(KEY_SEPARATOR).next().unwrap_or_default()
}

/// Runtime settings of the cache, from `[cache]`.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Total bytes the store may hold.
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

impl From<&CacheConfig> for CacheSettings {
    fn from(config: &CacheConfig) -> Self {
        Self {
            memory_bytes: config.memory.as_u64(),
            max_object_bytes: config.max_object.as_u64(),
            collapse_wait: Duration::from_millis(config.collapse_wait_ms),
            hit_for_miss: Duration::from_secs(config.hit_for_miss_secs),
            heuristics: Heuristics {
                keep_stale: Duration::from_secs(config.keep_stale_secs),
                ..Heuristics::default()
            },
            max_variants: 32,
        }
    }
}

/// All variants stored under one key.
struct Variants {
    objects: Vec<Arc<Object>>,
    /// When the longest-lived variant stops being useful.
    keep_for: Duration,
    weight: u32,
}

impl Variants {
    fn new(objects: Vec<Arc<Object>>, key: &str, heuristics: &Heuristics) -> Arc<Variants> {
        let now = SystemTime::now();
        let keep_for = objects
            .iter()
            .map(|o| o.freshness.keep_for(now, o.has_validators(), heuristics))
            .max()
            .unwrap_or_default();
        let weight = objects.iter().map(|o| o.weight()).sum::<u64>() + key.len() as u64;
        Arc::new(Variants {
            objects,
            keep_for,
            weight: weight.min(u32::MAX as u64) as u32,
        })
    }
}

/// A stored value that knows how long it stays in the store.
trait Lifetime {
    fn lifetime(&self) -> Duration;
}

impl Lifetime for Variants {
    fn lifetime(&self) -> Duration {
        self.keep_for
    }
}

impl Lifetime for StoredValue {
    fn lifetime(&self) -> Duration {
        self.ttl
    }
}

/// Per-entry expiry for both stores: an entry lives as long as its value says, counted
/// again from every insert or update.
struct ExpireByLifetime;

impl<V: Lifetime> moka::Expiry<Arc<str>, Arc<V>> for ExpireByLifetime {
    fn expire_after_create(
        &self,
        _key: &Arc<str>,
        value: &Arc<V>,
        _at: Instant,
    ) -> Option<Duration> {
        Some(value.lifetime())
    }

    fn expire_after_update(
        &self,
        _key: &Arc<str>,
        value: &Arc<V>,
        _at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.lifetime())
    }
}

/// How a fill ended, as seen by requests that waited for it.
#[derive(Clone)]
enum FlightState {
    Pending,
    /// Serve this object with this state.
    Done(Arc<Object>, CacheState),
    /// Nothing stored: fetch on your own.
    NotStored,
}

/// Where a request stands with the fill of its key.
enum Flight {
    /// Another request's fill is under way: wait for it.
    Join(watch::Receiver<FlightState>),
    /// This request leads a new fill.
    Lead(watch::Sender<FlightState>),
    /// A fill finished since the lookup: serve what it stored.
    Stored(Arc<Object>),
}

/// What a fill hands the request that started it.
enum FillReply {
    Served(Arc<Object>, CacheState),
    Uncacheable(http::Response<WasiBody>),
    Failed(HttpError),
}

/// What a fill needs to know about the request it fetches for.
struct FillRequest {
    backend: Arc<Backend>,
    key: Arc<str>,
    uri: http::Uri,
    headers: HeaderMap,
    facts: RequestFacts,
    request_cc: Directives,
    overrides: Overrides,
    stale: Option<Arc<Object>>,
}

impl FillRequest {
    /// A fill for the request `parts` under `request_cc`; what the request says about
    /// storing (Authorization, `no-store`) is derived from those.
    fn new(
        backend: Arc<Backend>,
        key: Arc<str>,
        parts: &http::request::Parts,
        request_cc: Directives,
        overrides: Overrides,
        stale: Option<Arc<Object>>,
    ) -> Self {
        Self {
            backend,
            key,
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            facts: RequestFacts {
                authorization: parts.headers.contains_key(header::AUTHORIZATION),
                no_store: request_cc.no_store,
            },
            request_cc,
            overrides,
            stale,
        }
    }
}

/// A value of the simple cache (`outpost:edge/cache.insert`).
struct StoredValue {
    bytes: Bytes,
    surrogate_keys: Vec<String>,
    ttl: Duration,
}

/// What [`EdgeCache::value_get_or_lock`] found.
pub enum ValueLookup {
    /// The stored value.
    Hit(Bytes),
    /// Not stored; the caller now holds the key's lock and should insert.
    Locked,
    /// Not stored and someone else holds the lock (the wait ran out); compute anyway.
    Unlocked,
}

/// The node's edge cache, shared by every service.
pub struct EdgeCache {
    store: Cache<Arc<str>, Arc<Variants>>,
    values: Cache<Arc<str>, Arc<StoredValue>>,
    value_locks: Mutex<HashMap<Arc<str>, Arc<tokio::sync::Notify>>>,
    hit_for_miss: Cache<Arc<str>, ()>,
    flights: Mutex<HashMap<Arc<str>, watch::Receiver<FlightState>>>,
    purges: PurgeLog,
    settings: CacheSettings,
    metrics: CacheMetrics,
}

impl EdgeCache {
    /// Creates an empty cache.
    pub fn new(settings: CacheSettings, metrics: CacheMetrics) -> Arc<EdgeCache> {
        let store = Cache::builder()
            .max_capacity(settings.memory_bytes)
            .weigher(|_key: &Arc<str>, value: &Arc<Variants>| value.weight)
            .expire_after(ExpireByLifetime)
            .build();
        let values = Cache::builder()
            .max_capacity(settings.memory_bytes / 4)
            .weigher(|key: &Arc<str>, value: &Arc<StoredValue>| {
                (value.bytes.len() + key.len() + 64).min(u32::MAX as usize) as u32
            })
            .expire_after(ExpireByLifetime)
            .build();
        let hit_for_miss = Cache::builder()
            .max_capacity(100_000)
            .time_to_live(settings.hit_for_miss.max(Duration::from_millis(1)))
            .build();
        Arc::new(EdgeCache {
            store,
            values,
            value_locks: Mutex::default(),
            hit_for_miss,
            flights: Mutex::default(),
            purges: PurgeLog::default(),
            settings,
            metrics,
        })
    }

    /// Fetches `request` for `service` from `backend` through the cache. The response
    /// carries `X-Cache`; the state is also returned for logs and Server-Timing.
    pub async fn fetch(
        self: &Arc<Self>,
        service: &str,
        backend: Arc<Backend>,
        request: http::Request<WasiBody>,
        overrides: Overrides,
    ) -> Result<(http::Response<WasiBody>, CacheState), HttpError> {
        let method = request.method().clone();
        let cacheable_method = matches!(method, Method::GET | Method::HEAD);
        if overrides.pass || !cacheable_method {
            return self.pass(service, backend, request).await;
        }
        let (parts, _body) = request.into_parts();
        let key: Arc<str> = primary_key(
            service,
            parts.uri.scheme_str().unwrap_or("http"),
            parts.uri.authority().map_or("", |a| a.as_str()),
            parts.uri.path_and_query().map_or("/", |p| p.as_str()),
            overrides.key_extra.as_deref(),
        )
        .into();
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
        if let Some(object) = self.lookup(&key, &parts.headers) {
            match policy::reuse(&object.freshness, &request_cc, now, object.purged_at()) {
                Reuse::Fresh => {
                    return Ok(self.serve(&object, &method, &parts.headers, CacheState::Hit));
                }
                Reuse::StaleAccepted => {
                    return Ok(self.serve(&object, &method, &parts.headers, CacheState::Stale));
                }
                Reuse::StaleWhileRevalidate => {
                    // The client's directives were for this answer, not the refresh;
                    // Authorization still limits what the refresh may store.
                    self.refresh_in_background(FillRequest::new(
                        backend,
                        key.clone(),
                        &parts,
                        Directives::default(),
                        overrides,
                        Some(object.clone()),
                    ));
                    return Ok(self.serve(&object, &method, &parts.headers, CacheState::Stale));
                }
                Reuse::Revalidate => stale = Some(object),
            }
        }
        if request_cc.only_if_cached {
            self.metrics.lookup(CacheState::Miss);
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
            match self.join_or_lead(&key, Some((&parts.headers, &request_cc))) {
                Flight::Stored(object) => {
                    return Ok(self.serve(&object, &method, &parts.headers, CacheState::Hit));
                }
                other => Some(other),
            }
        };
        let fill = FillRequest::new(backend, key.clone(), &parts, request_cc, overrides, stale);
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
                        return Ok(self.serve(&object, &method, &parts.headers, state));
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
                Ok(self.serve(&object, &method, &parts.headers, state))
            }
            FillReply::Uncacheable(mut response) => {
                self.metrics.lookup(CacheState::Miss);
                mark_forwarded(response.headers_mut(), CacheState::Miss);
                if method == Method::HEAD {
                    *response.body_mut() = empty_body();
                }
                Ok((response, CacheState::Miss))
            }
            FillReply::Failed(error) => {
                self.metrics.lookup(CacheState::Miss);
                Err(error)
            }
        }
    }

    /// Sends a request that the cache does not answer, invalidating after unsafe methods.
    async fn pass(
        self: &Arc<Self>,
        service: &str,
        backend: Arc<Backend>,
        request: http::Request<WasiBody>,
    ) -> Result<(http::Response<WasiBody>, CacheState), HttpError> {
        let method = request.method().clone();
        let uri = request.uri().clone();
        let mut response = backend.send(request).await?;
        let safe = matches!(
            method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        );
        let status = response.status();
        if !safe && (status.is_success() || status.is_redirection()) {
            self.invalidate_after_unsafe(service, &uri, response.headers());
        }
        self.metrics.lookup(CacheState::Pass);
        mark_forwarded(response.headers_mut(), CacheState::Pass);
        Ok((response, CacheState::Pass))
    }

    /// RFC 9111 section 4.4: the target URI and same-origin Location / Content-Location.
    fn invalidate_after_unsafe(&self, service: &str, uri: &http::Uri, headers: &HeaderMap) {
        let scheme = uri.scheme_str().unwrap_or("http");
        let authority = uri.authority().map_or("", |a| a.as_str());
        let mut paths = vec![uri.path_and_query().map_or("/", |p| p.as_str()).to_owned()];
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            let Some(target) = headers.get(&name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            let Ok(target) = target.parse::<http::Uri>() else {
                continue;
            };
            match target.authority() {
                Some(other) if !other.as_str().eq_ignore_ascii_case(authority) => continue,
                _ => {}
            }
            let path = target.path_and_query().map_or("/", |p| p.as_str());
            if path.starts_with('/') {
                paths.push(path.to_owned());
            } else {
                let base = uri.path();
                let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
                paths.push(format!("{dir}{path}"));
            }
        }
        for path in paths {
            let key = primary_key(service, scheme, authority, &path, None);
            self.store.invalidate(key.as_str());
        }
    }

    /// The stored variant of `key` that matches these request headers.
    fn lookup(&self, key: &Arc<str>, request_headers: &HeaderMap) -> Option<Arc<Object>> {
        let variants = self.store.get(key)?;
        variants
            .objects
            .iter()
            .find(|o| o.matches(request_headers) && !o.body.failed())
            .cloned()
    }

    fn serve(
        &self,
        object: &Arc<Object>,
        method: &Method,
        request_headers: &HeaderMap,
        state: CacheState,
    ) -> (http::Response<WasiBody>, CacheState) {
        self.metrics.lookup(state);
        (
            object.respond(method, request_headers, state, SystemTime::now()),
            state,
        )
    }

    /// Joins the fill of `key` under way, or registers a new one this caller leads. With
    /// `request`, a fresh object stored since the caller's lookup is returned instead: a
    /// fill stores before it leaves the map, so checking under the lock closes the window
    /// in which a late request would start a second origin fetch.
    fn join_or_lead(&self, key: &Arc<str>, request: Option<(&HeaderMap, &Directives)>) -> Flight {
        let mut flights = self.flights.lock().expect("flights lock");
        if let Some(rx) = flights
            .get(key)
            .filter(|rx| matches!(*rx.borrow(), FlightState::Pending))
        {
            return Flight::Join(rx.clone());
        }
        if let Some((headers, request_cc)) = request
            && let Some(object) = self.lookup(key, headers)
            && policy::reuse(
                &object.freshness,
                request_cc,
                SystemTime::now(),
                object.purged_at(),
            ) == Reuse::Fresh
        {
            return Flight::Stored(object);
        }
        let (tx, rx) = watch::channel(FlightState::Pending);
        flights.insert(key.clone(), rx);
        Flight::Lead(tx)
    }

    /// Starts a stale-while-revalidate refresh unless one is already running.
    fn refresh_in_background(self: &Arc<Self>, fill: FillRequest) {
        let Flight::Lead(flight) = self.join_or_lead(&fill.key, None) else {
            return;
        };
        let cache = self.clone();
        tokio::spawn(async move {
            let (reply_tx, _reply_rx) = oneshot::channel();
            cache.fill(fill, Some(flight), reply_tx).await;
        });
    }

    /// Runs a fill in its own task and waits for its reply.
    async fn start_fill(
        self: &Arc<Self>,
        fill: FillRequest,
        flight: Option<watch::Sender<FlightState>>,
    ) -> FillReply {
        let (reply_tx, reply_rx) = oneshot::channel();
        let cache = self.clone();
        tokio::spawn(async move { cache.fill(fill, flight, reply_tx).await });
        reply_rx
            .await
            .unwrap_or(FillReply::Failed(HttpError::InternalError(Some(
                "cache fill task ended without a reply".into(),
            ))))
    }

    /// Fetches from the origin, stores what may be stored, and streams the body in.
    async fn fill(
        self: Arc<Self>,
        fill: FillRequest,
        flight: Option<watch::Sender<FlightState>>,
        reply: oneshot::Sender<FillReply>,
    ) {
        let flight = FlightGuard {
            cache: &self,
            key: &fill.key,
            tx: flight,
        };
        let purge_seq = self.purges.seq();
        let mut headers = fill.headers.clone();
        for name in [
            header::RANGE,
            header::IF_RANGE,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_MATCH,
            header::IF_UNMODIFIED_SINCE,
        ] {
            headers.remove(name);
        }
        if let Some(stale) = &fill.stale {
            if let Some(etag) = stale.headers.get(header::ETAG) {
                headers.insert(header::IF_NONE_MATCH, etag.clone());
            }
            if let Some(modified) = stale.headers.get(header::LAST_MODIFIED) {
                headers.insert(header::IF_MODIFIED_SINCE, modified.clone());
            }
        }
        let mut request = http::Request::new(empty_body());
        *request.uri_mut() = fill.uri.clone();
        *request.headers_mut() = headers;

        let request_time = SystemTime::now();
        let result = fill.backend.send(request).await;
        let response_time = SystemTime::now();

        let stale_on_error = || {
            let stale = fill.stale.as_ref()?;
            policy::may_serve_on_error(
                &stale.freshness,
                &fill.request_cc,
                response_time,
                stale.purged_at(),
            )
            .then(|| {
                tracing::info!(key = %printable(&fill.key), "origin failed; serving stale (stale-if-error)");
                stale.clone()
            })
        };
        let response = match result {
            Err(error) => {
                if let Some(stale) = stale_on_error() {
                    flight.done(FlightState::Done(stale.clone(), CacheState::Stale));
                    let _ = reply.send(FillReply::Served(stale, CacheState::Stale));
                } else {
                    flight.done(FlightState::NotStored);
                    let _ = reply.send(FillReply::Failed(error));
                }
                return;
            }
            Ok(response) => response,
        };
        let status = response.status();
        if status.is_server_error()
            && let Some(stale) = stale_on_error()
        {
            flight.done(FlightState::Done(stale.clone(), CacheState::Stale));
            let _ = reply.send(FillReply::Served(stale, CacheState::Stale));
            return;
        }
        if status == StatusCode::NOT_MODIFIED
            && let Some(stale) = &fill.stale
        {
            // Fold the 304 into the stored head (RFC 9111 section 4.3.4).
            let head = stale.merged_head(response.headers());
            let decision = policy::storability(
                fill.facts,
                stale.status,
                &head,
                request_time,
                response_time,
                &fill.overrides,
                &self.settings.heuristics,
            );
            let Storability::Store { freshness, .. } = decision else {
                tracing::debug!(key = %printable(&fill.key), "revalidated response no longer storable");
                self.store.invalidate(&fill.key);
                let object = Arc::new(stale.revalidated(head, stale.freshness.clone()));
                flight.done(FlightState::NotStored);
                let _ = reply.send(FillReply::Served(object, CacheState::Revalidated));
                return;
            };
            let object = Arc::new(stale.revalidated(head, freshness));
            self.insert(&fill.key, object.clone(), purge_seq);
            flight.done(FlightState::Done(object.clone(), CacheState::Hit));
            let _ = reply.send(FillReply::Served(object, CacheState::Revalidated));
            return;
        }

        let decision = policy::storability(
            fill.facts,
            status,
            response.headers(),
            request_time,
            response_time,
            &fill.overrides,
            &self.settings.heuristics,
        );
        let expected_len = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let decision = match decision {
            Storability::Store { .. }
                if expected_len.is_some_and(|n| n > self.settings.max_object_bytes) =>
            {
                Storability::DoNotStore("larger than cache.max_object")
            }
            other => other,
        };
        let (freshness, strip) = match decision {
            Storability::Store { freshness, strip } => (freshness, strip),
            Storability::DoNotStore(reason) => {
                tracing::debug!(key = %printable(&fill.key), %status, "not stored: {reason}");
                if fill.stale.is_some() {
                    // The origin replaced what we had with something we may not keep.
                    self.store.invalidate(&fill.key);
                }
                self.hit_for_miss.insert(fill.key.clone(), ());
                flight.done(FlightState::NotStored);
                let _ = reply.send(FillReply::Uncacheable(response));
                return;
            }
        };

        let (parts, mut body) = response.into_parts();
        let mut stored_headers = parts.headers;
        for name in &strip {
            stored_headers.remove(name);
        }
        add_date(&mut stored_headers, response_time);
        let buffer = BodyBuffer::filling(expected_len);
        let object = Arc::new(Object::new(
            status,
            stored_headers,
            freshness,
            &fill.headers,
            &fill.overrides.surrogate_keys,
            buffer.clone(),
        ));
        let stored = self.insert(&fill.key, object.clone(), purge_seq);
        self.hit_for_miss.invalidate(&fill.key);
        flight.done(FlightState::Done(object.clone(), CacheState::Hit));
        let _ = reply.send(FillReply::Served(object.clone(), CacheState::Miss));

        // Stream the body in; readers follow along.
        let mut oversized = false;
        let complete = loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        let len = buffer.push(data);
                        if !oversized && len > self.settings.max_object_bytes {
                            oversized = true;
                            self.remove_object(&fill.key, &object);
                        }
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(key = %printable(&fill.key), "origin body failed: {error}");
                    break false;
                }
                None => break true,
            }
        };
        buffer.finish(complete);
        if !complete {
            self.remove_object(&fill.key, &object);
        } else if stored && !oversized && expected_len.is_none() {
            // Weigh it again now that its size is known.
            self.reweigh(&fill.key, &object);
        }
    }

    /// Stores `object` as a variant of `key` unless a purge since `purge_seq` covers it.
    fn insert(&self, key: &Arc<str>, object: Arc<Object>, purge_seq: u64) -> bool {
        if !self.purges.allows(purge_seq, key, &object) {
            tracing::debug!(key = %printable(key), "fill not stored: purged while it ran");
            return false;
        }
        let heuristics = self.settings.heuristics;
        let max_variants = self.settings.max_variants;
        self.store.entry(key.clone()).and_compute_with(|existing| {
            let mut objects: Vec<Arc<Object>> = existing
                .map(|e| e.into_value().objects.clone())
                .unwrap_or_default();
            objects.retain(|o| {
                !o.same_variant(&object)
                    && o.vary
                        .iter()
                        .map(|(n, _)| n)
                        .eq(object.vary.iter().map(|(n, _)| n))
            });
            objects.insert(0, object.clone());
            objects.truncate(max_variants);
            Op::Put(Variants::new(objects, key, &heuristics))
        });
        true
    }

    fn reweigh(&self, key: &Arc<str>, object: &Arc<Object>) {
        let heuristics = self.settings.heuristics;
        self.store
            .entry(key.clone())
            .and_compute_with(|existing| match existing {
                Some(entry) if entry.value().objects.iter().any(|o| Arc::ptr_eq(o, object)) => {
                    Op::Put(Variants::new(
                        entry.value().objects.clone(),
                        key,
                        &heuristics,
                    ))
                }
                _ => Op::Nop,
            });
    }

    fn remove_object(&self, key: &Arc<str>, object: &Arc<Object>) {
        let heuristics = self.settings.heuristics;
        self.store.entry(key.clone()).and_compute_with(|existing| {
            let Some(entry) = existing else {
                return Op::Nop;
            };
            let objects: Vec<Arc<Object>> = entry
                .value()
                .objects
                .iter()
                .filter(|o| !Arc::ptr_eq(o, object))
                .cloned()
                .collect();
            if objects.is_empty() {
                Op::Remove
            } else {
                Op::Put(Variants::new(objects, key, &heuristics))
            }
        });
    }

    /// Purges `target`: hard removes objects, soft marks them stale (so stale-while-
    /// revalidate and stale-if-error still apply). Returns how many objects it touched.
    pub fn purge(&self, target: PurgeTarget, soft: bool) -> usize {
        self.purges.record(target.clone());
        let values = self.purge_values(&target);
        let now = SystemTime::now();
        if let PurgeTarget::Key(key) = &target {
            let Some(variants) = self.store.get(key.as_str()) else {
                return 0;
            };
            if soft {
                variants.objects.iter().for_each(|o| o.soft_purge(now));
            } else {
                self.store.invalidate(key.as_str());
            }
            return variants.objects.len();
        }
        if target == PurgeTarget::All && !soft {
            let count: usize = self.store.iter().map(|(_, v)| v.objects.len()).sum();
            self.store.invalidate_all();
            return count + values;
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
                    self.remove_object(&key, object);
                }
            }
        }
        touched
    }

    /// The simple cache's value for `key` of `service`.
    pub fn value_get(&self, service: &str, key: &str) -> Option<Bytes> {
        self.values
            .get(value_key(service, key).as_ref())
            .map(|v| v.bytes.clone())
    }

    /// Stores a simple-cache value and wakes requests waiting for it. The key's lock stays
    /// with whoever holds it; the holder's [`EdgeCache::value_unlock`] releases it.
    pub fn value_insert(
        &self,
        service: &str,
        key: &str,
        bytes: Bytes,
        ttl: Duration,
        surrogate_keys: Vec<String>,
    ) {
        let full = value_key(service, key);
        if !ttl.is_zero() && (bytes.len() as u64) <= self.settings.max_object_bytes {
            self.values.insert(
                full.clone(),
                Arc::new(StoredValue {
                    bytes,
                    surrogate_keys,
                    ttl,
                }),
            );
        }
        let waiting = self
            .value_locks
            .lock()
            .expect("value locks")
            .get(&full)
            .cloned();
        if let Some(notify) = waiting {
            notify.notify_waiters();
        }
    }

    /// Returns the value, or the key's lock, or waits up to `wait` for whoever holds the lock.
    pub async fn value_get_or_lock(&self, service: &str, key: &str, wait: Duration) -> ValueLookup {
        let full = value_key(service, key);
        if let Some(value) = self.values.get(&full) {
            return ValueLookup::Hit(value.bytes.clone());
        }
        let holder = {
            let mut locks = self.value_locks.lock().expect("value locks");
            match locks.get(&full) {
                Some(notify) => Some(notify.clone()),
                None => {
                    locks.insert(full.clone(), Arc::default());
                    None
                }
            }
        };
        let Some(notify) = holder else {
            return ValueLookup::Locked;
        };
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(value) = self.values.get(&full) {
            return ValueLookup::Hit(value.bytes.clone());
        }
        let _ = tokio::time::timeout(wait, notified).await;
        match self.values.get(&full) {
            Some(value) => ValueLookup::Hit(value.bytes.clone()),
            None => ValueLookup::Unlocked,
        }
    }

    /// Releases a simple-cache key lock and wakes its waiters; only the lock's holder calls
    /// this, so a lock someone else took meanwhile is never released by mistake.
    pub fn value_unlock(&self, service: &str, key: &str) {
        let notify = self
            .value_locks
            .lock()
            .expect("value locks")
            .remove(value_key(service, key).as_ref());
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }

    /// Removes simple-cache values covered by `target` (they have no stale life).
    fn purge_values(&self, target: &PurgeTarget) -> usize {
        let mut removed = 0;
        for (key, value) in self.values.iter() {
            let covered = match target {
                PurgeTarget::All => true,
                PurgeTarget::Service(service) => key_service(&key) == service,
                PurgeTarget::Key(_) => false,
                PurgeTarget::SurrogateKey { service, key: tag } => {
                    key_service(&key) == service && value.surrogate_keys.iter().any(|k| k == tag)
                }
            };
            if covered {
                self.values.invalidate(key.as_ref().as_ref());
                removed += 1;
            }
        }
        removed
    }

    /// Updates the stored bytes/objects gauges (moka's counts settle on maintenance).
    pub fn update_gauges(&self) {
        let (bytes, objects) = self.usage();
        self.metrics.set_size(bytes, objects);
    }

    /// Bytes and objects stored now, HTTP variants and simple-cache values alike.
    pub fn usage(&self) -> (u64, u64) {
        self.store.run_pending_tasks();
        (
            self.store.weighted_size(),
            self.store.iter().map(|(_, v)| v.objects.len() as u64).sum(),
        )
    }
}

/// Marks a flight finished when the fill ends, however it ends, and forgets it.
struct FlightGuard<'a> {
    cache: &'a EdgeCache,
    key: &'a Arc<str>,
    tx: Option<watch::Sender<FlightState>>,
}

impl FlightGuard<'_> {
    fn done(mut self, state: FlightState) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(state);
            self.forget(&tx);
        }
    }

    fn forget(&self, tx: &watch::Sender<FlightState>) {
        let mut flights = self.cache.flights.lock().expect("flights lock");
        if flights
            .get(self.key)
            .is_some_and(|rx| rx.same_channel(&tx.subscribe()))
        {
            flights.remove(self.key);
        }
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(FlightState::NotStored);
            self.forget(&tx);
        }
    }
}

/// Prepares the head of an origin response the cache forwards without storing: edge-only
/// fields removed, `Date` added if missing, `X-Cache` set.
fn mark_forwarded(headers: &mut HeaderMap, state: CacheState) {
    strip_edge_fields(headers);
    add_date(headers, SystemTime::now());
    headers.insert(X_CACHE, HeaderValue::from_static(state.as_header()));
}

/// A recipient with a clock adds `Date` to a response that lacks one before caching or
/// forwarding it (RFC 9110 section 6.6.1), so ages downstream have a reference.
fn add_date(headers: &mut HeaderMap, received: SystemTime) {
    if !headers.contains_key(header::DATE)
        && let Ok(value) = HeaderValue::try_from(httpdate::fmt_http_date(received))
    {
        headers.insert(header::DATE, value);
    }
}

/// A cache key with its separators made readable, for logs.
fn printable(key: &str) -> String {
    key.replace(KEY_SEPARATOR, " ")
}
