//! Stored responses: the object (head, freshness, variant, surrogate keys), its body buffer
//! that readers can follow while it is still arriving, and the answer built from it
//! (Age, conditional 304, single byte ranges, HEAD).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use super::policy::{CDN_CACHE_CONTROL, Freshness, SURROGATE_CONTROL};
use crate::http::{X_CACHE, empty_body};

/// Names the response's surrogate keys (space separated); never forwarded to clients.
pub const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");

/// How the cache answered one fetch; `X-Cache` and the metrics label come from this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheState {
    /// Served from a fresh stored response (or a concurrent fill it waited for).
    Hit,
    /// Fetched from the origin (stored if allowed).
    Miss,
    /// Served stale: stale-while-revalidate, max-stale or stale-if-error.
    Stale,
    /// Not looked up: the guest passed, or the method is not cacheable.
    Pass,
    /// Revalidated with the origin, which answered 304.
    Revalidated,
}

impl CacheState {
    /// Every state, in metric label order.
    pub const ALL: [CacheState; 5] = [
        CacheState::Hit,
        CacheState::Miss,
        CacheState::Stale,
        CacheState::Pass,
        CacheState::Revalidated,
    ];

    /// The `X-Cache` value.
    pub fn as_header(self) -> &'static str {
        match self {
            CacheState::Hit => "HIT",
            CacheState::Miss => "MISS",
            CacheState::Stale => "STALE",
            CacheState::Pass => "PASS",
            CacheState::Revalidated => "REVALIDATED",
        }
    }

    /// The `result` label of `outpost_cache_lookups_total`.
    pub fn label(self) -> &'static str {
        match self {
            CacheState::Hit => "hit",
            CacheState::Miss => "miss",
            CacheState::Stale => "stale",
            CacheState::Pass => "pass",
            CacheState::Revalidated => "revalidated",
        }
    }

    /// Index into [`CacheState::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One stored response.
pub struct Object {
    /// Status of the stored response.
    pub status: StatusCode,
    /// Headers as stored (hop-by-hop and `no-cache="…"`/`private="…"` fields removed).
    pub headers: HeaderMap,
    /// How it ages.
    pub freshness: Freshness,
    /// The request headers this variant was selected by (Vary), with their normalised values.
    pub vary: Vec<(HeaderName, Option<String>)>,
    /// Surrogate keys for purging.
    pub surrogate_keys: Vec<String>,
    /// The body, possibly still arriving.
    pub body: Arc<BodyBuffer>,
    /// Milliseconds since the epoch of a soft purge; 0 when never purged.
    purged_at_ms: AtomicU64,
}

impl Object {
    /// Creates an object for a response with these (already cleaned) headers.
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        freshness: Freshness,
        request_headers: &HeaderMap,
        extra_keys: &[String],
        body: Arc<BodyBuffer>,
    ) -> Object {
        let vary = vary_fields(&headers)
            .into_iter()
            .map(|name| {
                let value = normalized(request_headers, &name);
                (name, value)
            })
            .collect();
        let mut surrogate_keys: Vec<String> = headers
            .get_all(SURROGATE_KEY)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(str::split_whitespace)
            .map(str::to_owned)
            .collect();
        surrogate_keys.extend(extra_keys.iter().cloned());
        surrogate_keys.sort();
        surrogate_keys.dedup();
        Object {
            status,
            headers,
            freshness,
            vary,
            surrogate_keys,
            body,
            purged_at_ms: AtomicU64::new(0),
        }
    }

    /// The stored head updated with the fields of a 304 (RFC 9111 section 3.2).
    pub fn merged_head(&self, not_modified: &HeaderMap) -> HeaderMap {
        let mut headers = self.headers.clone();
        for name in not_modified.keys() {
            if *name == header::CONTENT_LENGTH || *name == header::TRANSFER_ENCODING {
                continue;
            }
            headers.remove(name);
            for value in not_modified.get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        headers
    }

    /// A copy with a new head and freshness after revalidation; the body is shared.
    pub fn revalidated(&self, headers: HeaderMap, freshness: Freshness) -> Object {
        Object {
            status: self.status,
            headers,
            freshness,
            vary: self.vary.clone(),
            surrogate_keys: self.surrogate_keys.clone(),
            body: self.body.clone(),
            purged_at_ms: AtomicU64::new(0),
        }
    }

    /// Whether a request with `headers` selects this variant (RFC 9111 section 4.1).
    pub fn matches(&self, request_headers: &HeaderMap) -> bool {
        self.vary
            .iter()
            .all(|(name, value)| normalized(request_headers, name) == *value)
    }

    /// Whether `other` answers exactly the same requests (same Vary fields and values).
    pub fn same_variant(&self, other: &Object) -> bool {
        self.vary == other.vary
    }

    /// The ETag or Last-Modified to revalidate with.
    pub fn has_validators(&self) -> bool {
        self.headers.contains_key(header::ETAG) || self.headers.contains_key(header::LAST_MODIFIED)
    }

    /// Marks the object stale from now on (soft purge).
    pub fn soft_purge(&self, now: SystemTime) {
        let ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis().max(1) as u64);
        let _ = self
            .purged_at_ms
            .compare_exchange(0, ms, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// When the object was soft-purged, if it was.
    pub fn purged_at(&self) -> Option<SystemTime> {
        match self.purged_at_ms.load(Ordering::SeqCst) {
            0 => None,
            ms => Some(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }

    /// Bytes this object holds, for the store's weigher.
    pub fn weight(&self) -> u64 {
        let head: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        256 + head as u64 + self.body.expected_len().unwrap_or(0).max(self.body.len())
    }

    /// The body length if known: from Content-Length, or once the body is complete.
    fn total_len(&self) -> Option<u64> {
        self.body.expected_len().or_else(|| {
            let state = self.body.state.lock().expect("body lock");
            matches!(state.end, Some(Ok(()))).then_some(state.len)
        })
    }

    /// Builds the answer to a request (`method`, `request_headers`) from this object.
    pub fn respond(
        &self,
        method: &Method,
        request_headers: &HeaderMap,
        state: CacheState,
        now: SystemTime,
    ) -> http::Response<WasiBody> {
        let mut headers = self.headers.clone();
        strip_edge_fields(&mut headers);
        headers.insert(
            header::AGE,
            HeaderValue::from(self.freshness.age(now).as_secs()),
        );
        headers.insert(X_CACHE, HeaderValue::from_static(state.as_header()));

        let mut status = self.status;
        let mut range = None;
        if self.not_modified(method, request_headers) {
            status = StatusCode::NOT_MODIFIED;
            headers.remove(header::CONTENT_LENGTH);
        } else if *method == Method::GET && self.status == StatusCode::OK {
            if let Some(total) = self.total_len() {
                match requested_range(request_headers, &self.headers, total) {
                    RangeAnswer::Full => {}
                    RangeAnswer::Partial(start, end) => {
                        status = StatusCode::PARTIAL_CONTENT;
                        headers.insert(
                            header::CONTENT_RANGE,
                            HeaderValue::try_from(format!("bytes {start}-{end}/{total}"))
                                .expect("digits"),
                        );
                        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start + 1));
                        range = Some((start, end - start + 1));
                    }
                    RangeAnswer::Unsatisfiable => {
                        status = StatusCode::RANGE_NOT_SATISFIABLE;
                        headers.insert(
                            header::CONTENT_RANGE,
                            HeaderValue::try_from(format!("bytes */{total}")).expect("digits"),
                        );
                        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
                        range = Some((0, 0));
                    }
                }
            }
            if let Some(total) = self.total_len() {
                headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                if range.is_none() {
                    // A body that arrived chunked is complete now: say how long it is.
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
                }
            }
        }
        let body = if *method == Method::HEAD || status == StatusCode::NOT_MODIFIED {
            empty_body()
        } else {
            let (skip, limit) = range.map_or((0, None), |(s, l)| (s, Some(l)));
            BodyReader {
                buffer: self.body.clone(),
                next: 0,
                skip,
                remaining: limit,
            }
            .boxed_unsync()
        };
        let mut response = http::Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }

    /// Evaluates If-None-Match / If-Modified-Since against this object (RFC 9110 13.2.2).
    fn not_modified(&self, method: &Method, request: &HeaderMap) -> bool {
        if !matches!(*method, Method::GET | Method::HEAD) {
            return false;
        }
        if let Some(inm) = request.get(header::IF_NONE_MATCH) {
            let Some(etag) = self.headers.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
                return false;
            };
            let etag = etag.trim().trim_start_matches("W/");
            return inm.to_str().is_ok_and(|list| {
                list.split(',').any(|candidate| {
                    let candidate = candidate.trim();
                    candidate == "*" || candidate.trim_start_matches("W/") == etag
                })
            });
        }
        let since = request
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok());
        let modified = self
            .headers
            .get(header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok());
        matches!((since, modified), (Some(since), Some(modified)) if modified <= since)
    }
}

/// Removes the fields meant for this cache only.
pub fn strip_edge_fields(headers: &mut HeaderMap) {
    headers.remove(CDN_CACHE_CONTROL);
    headers.remove(SURROGATE_CONTROL);
    headers.remove(SURROGATE_KEY);
}

/// The field names a response varies on, lower-cased.
fn vary_fields(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|f| HeaderName::try_from(f.trim()).ok())
        .collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    names
}

/// A request field's value for Vary matching: every instance joined, whitespace collapsed.
fn normalized(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let joined = values
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect::<Vec<_>>()
        .join(",");
    Some(
        joined
            .split(',')
            .map(|part| part.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

enum RangeAnswer {
    Full,
    /// Inclusive byte positions.
    Partial(u64, u64),
    Unsatisfiable,
}

/// Reads one `bytes=` range (multiple ranges get the full response, which RFC 9110 allows).
fn requested_range(request: &HeaderMap, stored: &HeaderMap, total: u64) -> RangeAnswer {
    let Some(spec) = request.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeAnswer::Full;
    };
    if let Some(if_range) = request.get(header::IF_RANGE) {
        // Only a strong validator equal to ours keeps the range (RFC 9110 13.1.5).
        let matches_etag = stored
            .get(header::ETAG)
            .is_some_and(|etag| etag == if_range && !if_range.as_bytes().starts_with(b"W/"));
        let matches_date = stored.get(header::LAST_MODIFIED) == Some(if_range);
        if !(matches_etag || matches_date) {
            return RangeAnswer::Full;
        }
    }
    let Some(set) = spec.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full;
    };
    if set.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((first, last)) = set.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    let (start, end) = match (first.trim().is_empty(), parse(first), parse(last)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(suffix)) => {
            if suffix == 0 || total == 0 {
                return RangeAnswer::Unsatisfiable;
            }
            (total.saturating_sub(suffix), total - 1)
        }
        (false, Some(start), None) if last.trim().is_empty() => (start, total.saturating_sub(1)),
        (false, Some(start), Some(end)) if end >= start => {
            (start, end.min(total.saturating_sub(1)))
        }
        _ => return RangeAnswer::Full,
    };
    if start >= total {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Partial(start, end)
}

/// A body that is written once, possibly while being read by several readers.
pub struct BodyBuffer {
    expected_len: Option<u64>,
    state: Mutex<BufferState>,
}

struct BufferState {
    chunks: Vec<Bytes>,
    len: u64,
    /// `Some(Ok)` when complete, `Some(Err)` when the origin failed mid-body.
    end: Option<Result<(), ()>>,
    wakers: Vec<Waker>,
}

impl BodyBuffer {
    /// A buffer to be filled, expecting `expected_len` bytes when the origin said so.
    pub fn filling(expected_len: Option<u64>) -> Arc<BodyBuffer> {
        Arc::new(BodyBuffer {
            expected_len,
            state: Mutex::new(BufferState {
                chunks: Vec::new(),
                len: 0,
                end: None,
                wakers: Vec::new(),
            }),
        })
    }

    /// The length announced by the origin.
    pub fn expected_len(&self) -> Option<u64> {
        self.expected_len
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.state.lock().expect("body lock").len
    }

    /// Whether nothing has arrived yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a chunk and wakes readers; returns the new length.
    pub fn push(&self, chunk: Bytes) -> u64 {
        let mut state = self.state.lock().expect("body lock");
        state.len += chunk.len() as u64;
        state.chunks.push(chunk);
        for waker in state.wakers.drain(..) {
            waker.wake();
        }
        state.len
    }

    /// Ends the body: cleanly, or with an error that readers see as a cut-off body.
    pub fn finish(&self, complete: bool) {
        let mut state = self.state.lock().expect("body lock");
        if state.end.is_none() {
            state.end = Some(if complete { Ok(()) } else { Err(()) });
        }
        for waker in state.wakers.drain(..) {
            waker.wake();
        }
    }

    /// Whether the whole body arrived.
    pub fn is_complete(&self) -> bool {
        matches!(self.state.lock().expect("body lock").end, Some(Ok(())))
    }

    /// Whether the body ended in an error.
    pub fn failed(&self) -> bool {
        matches!(self.state.lock().expect("body lock").end, Some(Err(())))
    }
}

/// Reads a [`BodyBuffer`] from the start (or a byte range), waiting for chunks still due.
struct BodyReader {
    buffer: Arc<BodyBuffer>,
    next: usize,
    skip: u64,
    remaining: Option<u64>,
}

impl Body for BodyReader {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        if this.remaining == Some(0) {
            return Poll::Ready(None);
        }
        let mut state = this.buffer.state.lock().expect("body lock");
        while let Some(chunk) = state.chunks.get(this.next) {
            this.next += 1;
            let len = chunk.len() as u64;
            if this.skip >= len {
                this.skip -= len;
                continue;
            }
            let mut chunk = chunk.slice(this.skip as usize..);
            this.skip = 0;
            if let Some(remaining) = this.remaining.as_mut() {
                let take = (*remaining).min(chunk.len() as u64);
                chunk.truncate(take as usize);
                *remaining -= take;
            }
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match state.end {
            Some(Ok(())) => Poll::Ready(None),
            Some(Err(())) => Poll::Ready(Some(Err(HttpError::HttpProtocolError))),
            None => {
                if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    state.wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match (self.remaining, self.buffer.expected_len) {
            (Some(n), _) => SizeHint::with_exact(n),
            (None, Some(n)) if self.next == 0 && self.skip == 0 => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::http::test_headers as headers;

    #[test]
    fn ranges() {
        let stored = headers(&[("etag", "\"v1\"")]);
        let range = |spec: &str| match requested_range(&headers(&[("range", spec)]), &stored, 100) {
            RangeAnswer::Full => "full".to_owned(),
            RangeAnswer::Partial(a, b) => format!("{a}-{b}"),
            RangeAnswer::Unsatisfiable => "416".to_owned(),
        };
        assert_eq!(range("bytes=0-9"), "0-9");
        assert_eq!(range("bytes=90-"), "90-99");
        assert_eq!(range("bytes=-5"), "95-99");
        assert_eq!(range("bytes=50-500"), "50-99");
        assert_eq!(range("bytes=100-"), "416");
        assert_eq!(range("bytes=0-1,5-6"), "full");
        assert_eq!(range("items=0-1"), "full");
        let stale_if_range = headers(&[("range", "bytes=0-9"), ("if-range", "\"v0\"")]);
        assert!(matches!(
            requested_range(&stale_if_range, &stored, 100),
            RangeAnswer::Full
        ));
    }

    #[test]
    fn vary_values_are_normalised() {
        let a = headers(&[("accept-encoding", "gzip,  br")]);
        let b = headers(&[("accept-encoding", "gzip"), ("accept-encoding", "br")]);
        let name = HeaderName::from_static("accept-encoding");
        assert_eq!(normalized(&a, &name), normalized(&b, &name));
        assert_eq!(normalized(&HeaderMap::new(), &name), None);
    }

    #[tokio::test]
    async fn readers_follow_a_filling_body() {
        let buffer = BodyBuffer::filling(None);
        let reader = BodyReader {
            buffer: buffer.clone(),
            next: 0,
            skip: 2,
            remaining: None,
        };
        let collect = tokio::spawn(async move { reader.collect().await.map(|b| b.to_bytes()) });
        buffer.push(Bytes::from_static(b"hello "));
        tokio::task::yield_now().await;
        buffer.push(Bytes::from_static(b"world"));
        buffer.finish(true);
        let body = collect.await.unwrap().ok().unwrap();
        assert_eq!(&body[..], b"llo world");
    }
}
