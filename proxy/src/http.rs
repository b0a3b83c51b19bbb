//! HTTP helpers every layer uses: hop-by-hop stripping, the empty body, `Date`, and the
//! header names the node itself sets. A leaf: it imports nothing from the node.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

/// The response header that carries the request id the node's log lines use.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-outpost-request-id");
/// Tells the client (and the guest) how the cache answered.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
/// W3C `Server-Timing`, shown by browsers' dev tools.
pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// Headers that describe one hop and must not be forwarded (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including those named by `Connection`, and
/// `Transfer-Encoding` (each hop frames its own body).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::try_from(name.trim()).ok())
            .collect();
        for name in &named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

/// An empty body of the type guests and origins exchange.
pub fn empty_body() -> WasiBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body holding `bytes`, of the type guests and origins exchange.
pub fn full_body(bytes: impl Into<bytes::Bytes>) -> WasiBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A recipient with a clock adds `Date` to a response that lacks one before caching or
/// forwarding it (RFC 9110 section 6.6.1), so ages downstream have a reference.
pub fn add_date(headers: &mut HeaderMap, received: SystemTime) {
    if !headers.contains_key(header::DATE)
        && let Ok(value) = HeaderValue::try_from(httpdate::fmt_http_date(received))
    {
        headers.insert(header::DATE, value);
    }
}

/// The number of body bytes after which a response is whole on the wire, when known: 0
/// for responses that carry no body (to `HEAD`, 1xx, 204, 304), else its `Content-Length`.
/// HTTP codecs stop reading a body there, without asking it for its end.
pub fn complete_at(
    head_request: bool,
    status: http::StatusCode,
    headers: &HeaderMap,
) -> Option<u64> {
    if head_request
        || status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED
    {
        return Some(0);
    }
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// A body that fails with [`HttpError::ConnectionReadTimeout`] when its sender goes quiet
/// for longer than `limit` between chunks. The wait starts when a read finds nothing, so a
/// reader that is slow to ask never counts against the sender.
pub struct IdleTimeout<B> {
    inner: B,
    limit: Duration,
    /// Made on the first wait: most bodies never wait.
    timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl<B> IdleTimeout<B> {
    /// Wraps `inner`, allowing `limit` between its chunks.
    pub fn new(inner: B, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            timer: None,
            waiting: false,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<HttpError>,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = Instant::now() + this.limit;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !this.waiting {
                    this.waiting = true;
                    timer.as_mut().reset(deadline);
                }
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A header map from `(name, value)` pairs, for unit tests.
#[cfg(test)]
pub fn test_headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(HeaderName::try_from(*name).unwrap(), value.parse().unwrap());
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_are_removed() {
        let mut headers = test_headers(&[
            ("connection", "close, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }
}
