//! Fills: going to the origin for a key and deciding what to keep.
//!
//! A fill that other requests wait for (it leads a flight) or that nobody waits for (a
//! stale-while-revalidate refresh) runs in a task of its own, so a requester that leaves
//! never aborts it. A fill with no flight (the key is hit-for-miss, or the request fetches
//! alone) runs in the requester's task up to the response head, and spawns a task only to
//! stream a stored body in: an uncacheable pass then costs no task and no channel. A fill
//! sends the (conditional, when a stale object is at hand) request and then, by what
//! comes back:
//! - an error or a 5xx within stale-if-error: the stale object answers;
//! - `304` to a revalidation: the stored head is updated ([`EdgeCache::revalidated`]);
//! - a storable answer: stored at once, waiters released at the head, the body streamed
//!   in as it arrives while readers follow ([`EdgeCache::store_head`], [`BodyFill`]);
//! - anything else: handed to the requester that caused the fill alone, and the key
//!   remembered as hit-for-miss (for `cache.hit_for_miss` from the latest such answer).

use std::sync::Arc;
use std::time::SystemTime;

use http::header;
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::{oneshot, watch};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use super::EdgeCache;
use super::directives::Directives;
use super::flight::{Flight, FlightGuard, FlightState};
use super::key::CacheKey;
use super::object::{BodyBuffer, CacheState, Object};
use super::origin::Origin;
use super::policy::{self, Overrides, RequestFacts, Storability};
use crate::http::{add_date, empty_body};

/// What a fill hands the request that started it.
pub(crate) enum FillReply {
    Served(Arc<Object>, CacheState),
    Uncacheable(http::Response<WasiBody>),
    Failed(HttpError),
}

/// What a fill needs to know about the request it fetches for.
pub(crate) struct FillRequest {
    pub(crate) origin: Arc<dyn Origin>,
    pub(crate) key: CacheKey,
    uri: http::Uri,
    headers: HeaderMap,
    facts: RequestFacts,
    pub(crate) request_cc: Directives,
    overrides: Overrides,
    pub(crate) stale: Option<Arc<Object>>,
}

impl FillRequest {
    /// A fill for the request `parts` under `request_cc`; what the request says about
    /// storing (Authorization, `no-store`) is derived from those.
    pub(crate) fn new(
        origin: Arc<dyn Origin>,
        key: CacheKey,
        parts: &http::request::Parts,
        request_cc: Directives,
        overrides: Overrides,
        stale: Option<Arc<Object>>,
    ) -> Self {
        Self {
            origin,
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

    /// The request sent to the origin: the client's, minus its conditions and ranges
    /// (the cache answers those itself), plus the stale object's validators.
    fn origin_request(&self) -> http::Request<WasiBody> {
        let mut headers = self.headers.clone();
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
        if let Some(stale) = &self.stale {
            if let Some(etag) = stale.headers.get(header::ETAG) {
                headers.insert(header::IF_NONE_MATCH, etag.clone());
            }
            if let Some(modified) = stale.headers.get(header::LAST_MODIFIED) {
                headers.insert(header::IF_MODIFIED_SINCE, modified.clone());
            }
        }
        let mut request = http::Request::new(empty_body());
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = headers;
        request
    }
}

/// The rest of a fill once its head is decided: a stored object's body, still to be
/// streamed in from the origin while readers follow.
struct BodyFill {
    cache: Arc<EdgeCache>,
    key: CacheKey,
    object: Arc<Object>,
    buffer: Arc<BodyBuffer>,
    body: WasiBody,
    expected_len: Option<u64>,
    stored: bool,
}

impl BodyFill {
    /// Streams the body into the object's buffer; drops the object from the store when
    /// the body fails or outgrows `cache.max_object`.
    async fn run(mut self) {
        let cache = &self.cache;
        let mut oversized = false;
        let complete = loop {
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        let len = self.buffer.push(data);
                        if !oversized && len > cache.settings.max_object_bytes {
                            oversized = true;
                            cache.store.remove_object(&self.key, &self.object);
                        }
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(key = %self.key, "origin body failed: {error}");
                    break false;
                }
                None => break true,
            }
        };
        self.buffer.finish(complete);
        if !complete {
            cache.store.remove_object(&self.key, &self.object);
        } else if self.stored && !oversized && self.expected_len.is_none() {
            // Weigh it again now that its size is known.
            cache.store.reweigh(&self.key, &self.object);
        }
    }
}

/// A fill up to the origin's response head: the requester's answer, and the body still
/// to stream in when the answer was stored.
type FillHead = (FillReply, Option<BodyFill>);

impl EdgeCache {
    /// Starts a stale-while-revalidate refresh unless one is already running.
    pub(crate) fn refresh_in_background(self: &Arc<Self>, fill: FillRequest) {
        let Flight::Lead(flight) = self.flights.join_or_lead(&fill.key, None) else {
            return;
        };
        let cache = self.clone();
        tokio::spawn(async move {
            if let (_, Some(body)) = cache.fill(fill, Some(flight)).await {
                body.run().await;
            }
        });
    }

    /// Runs a fill and returns the requester's answer at the response head. A led fill
    /// runs in a task of its own (its waiters must not depend on this requester staying);
    /// one without a flight runs here and spawns only the streaming of a stored body.
    pub(crate) async fn start_fill(
        self: &Arc<Self>,
        fill: FillRequest,
        flight: Option<watch::Sender<FlightState>>,
    ) -> FillReply {
        let Some(flight) = flight else {
            let (reply, body) = self.fill(fill, None).await;
            if let Some(body) = body {
                tokio::spawn(body.run());
            }
            return reply;
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let cache = self.clone();
        tokio::spawn(async move {
            let (reply, body) = cache.fill(fill, Some(flight)).await;
            let _ = reply_tx.send(reply);
            if let Some(body) = body {
                body.run().await;
            }
        });
        reply_rx
            .await
            .unwrap_or(FillReply::Failed(HttpError::InternalError(Some(
                "cache fill task ended without a reply".into(),
            ))))
    }

    /// Fetches from the origin and stores what may be stored, up to the response head.
    async fn fill(
        self: &Arc<Self>,
        fill: FillRequest,
        flight: Option<watch::Sender<FlightState>>,
    ) -> FillHead {
        let key = fill.key.clone();
        let flight = FlightGuard::new(&self.flights, &key, flight);
        let purge_seq = self.purges.seq();
        let request_time = SystemTime::now();
        let result = fill.origin.send(fill.origin_request()).await;
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
                tracing::info!(key = %fill.key, "origin failed; serving stale (stale-if-error)");
                stale.clone()
            })
        };
        let response = match result {
            Err(error) => {
                if let Some(stale) = stale_on_error() {
                    flight.done(FlightState::Done(stale.clone(), CacheState::Stale));
                    return (FillReply::Served(stale, CacheState::Stale), None);
                }
                flight.done(FlightState::NotStored);
                return (FillReply::Failed(error), None);
            }
            Ok(response) => response,
        };
        let status = response.status();
        if status.is_server_error()
            && let Some(stale) = stale_on_error()
        {
            flight.done(FlightState::Done(stale.clone(), CacheState::Stale));
            return (FillReply::Served(stale, CacheState::Stale), None);
        }
        // What the origin itself asked for storing this answer (a guest's
        // `cache-response`) wins over what the request brought along.
        let overrides = response
            .extensions()
            .get::<Overrides>()
            .cloned()
            .unwrap_or_else(|| fill.overrides.clone());
        let times = (request_time, response_time);
        if status == StatusCode::NOT_MODIFIED
            && let Some(stale) = &fill.stale
        {
            let (object, state, stored) = self.revalidated(
                &fill,
                stale,
                response.headers(),
                &overrides,
                times,
                purge_seq,
            );
            flight.done(if stored {
                FlightState::Done(object.clone(), CacheState::Hit)
            } else {
                FlightState::NotStored
            });
            return (FillReply::Served(object, state), None);
        }
        self.store_head(fill, response, &overrides, times, purge_seq, flight)
    }

    /// Folds a 304 into the stale object's head (RFC 9111 section 4.3.4) and stores the
    /// result if it is still storable. Returns the object to serve, how, and whether it
    /// was stored.
    fn revalidated(
        &self,
        fill: &FillRequest,
        stale: &Arc<Object>,
        not_modified: &HeaderMap,
        overrides: &Overrides,
        (request_time, response_time): (SystemTime, SystemTime),
        purge_seq: u64,
    ) -> (Arc<Object>, CacheState, bool) {
        let head = stale.merged_head(not_modified);
        let decision = policy::storability(
            fill.key.layer(),
            fill.facts,
            stale.status,
            &head,
            request_time,
            response_time,
            overrides,
            &self.settings.heuristics,
        );
        let Storability::Store { freshness, .. } = decision else {
            tracing::debug!(key = %fill.key, "revalidated response no longer storable");
            self.store.remove(&fill.key);
            let object = Arc::new(stale.revalidated(head, stale.freshness.clone()));
            return (object, CacheState::Revalidated, false);
        };
        let object = Arc::new(stale.revalidated(head, freshness));
        let stored = self.insert(&fill.key, object.clone(), purge_seq);
        (object, CacheState::Revalidated, stored)
    }

    /// Stores a new answer if it may be stored, releasing waiters at the head, and hands
    /// back its body to stream in; an answer that may not be stored goes to the requester
    /// alone.
    fn store_head(
        self: &Arc<Self>,
        fill: FillRequest,
        response: http::Response<WasiBody>,
        overrides: &Overrides,
        (request_time, response_time): (SystemTime, SystemTime),
        purge_seq: u64,
        flight: FlightGuard<'_>,
    ) -> FillHead {
        let status = response.status();
        let decision = policy::storability(
            fill.key.layer(),
            fill.facts,
            status,
            response.headers(),
            request_time,
            response_time,
            overrides,
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
                tracing::debug!(key = %fill.key, %status, "not stored: {reason}");
                if fill.stale.is_some() {
                    // The origin replaced what we had with something we may not keep.
                    self.store.remove(&fill.key);
                }
                self.hit_for_miss.insert(fill.key.clone(), ());
                flight.done(FlightState::NotStored);
                return (FillReply::Uncacheable(response), None);
            }
        };

        let (parts, body) = response.into_parts();
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
            &overrides.surrogate_keys,
            buffer.clone(),
        ));
        let stored = self.insert(&fill.key, object.clone(), purge_seq);
        self.hit_for_miss.invalidate(&fill.key);
        flight.done(FlightState::Done(object.clone(), CacheState::Hit));
        let reply = FillReply::Served(object.clone(), CacheState::Miss);
        let body = BodyFill {
            cache: self.clone(),
            key: fill.key,
            object,
            buffer,
            body,
            expected_len,
            stored,
        };
        (reply, Some(body))
    }

    /// Stores `object` as a variant of `key` unless a purge since `purge_seq` covers it.
    fn insert(&self, key: &CacheKey, object: Arc<Object>, purge_seq: u64) -> bool {
        if !self.purges.allows(purge_seq, key, &object) {
            tracing::debug!(%key, "fill not stored: purged while it ran");
            return false;
        }
        self.store.insert(key, object);
        true
    }
}
