//! Responses: what the guest answers, and what backends answer the guest.

use http::StatusCode;
use wasip2::http::types::{
    Fields, IncomingResponse, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

use crate::body::Body;
use crate::cache::EdgePolicy;
use crate::error::{Error, ErrorKind};
use crate::headers::Headers;
use crate::wasi::{BodyParent, IncomingStream};

/// An HTTP response: status, headers and a body that may still be streaming from a backend.
///
/// ```
/// use outpost::{Response, StatusCode};
///
/// let response = Response::text("hello\n").with_header("cache-control", "max-age=60");
/// assert_eq!(response.status(), StatusCode::OK);
/// assert_eq!(response.header("content-type"), Some("text/plain; charset=utf-8"));
/// ```
#[derive(Debug)]
pub struct Response {
    status: StatusCode,
    headers: Headers,
    body: Body,
    /// Whether (and how) the edge may store this response in the service's response cache.
    edge_cache: Option<EdgePolicy>,
    /// Set on the value [`crate::StreamingBody::finish`] returns: the client has it already.
    sent: bool,
}

impl Default for Response {
    fn default() -> Self {
        Self::new()
    }
}

impl Response {
    /// An empty `200 OK`.
    pub fn new() -> Self {
        Self {
            status: StatusCode::OK,
            headers: Headers::new(),
            body: Body::empty(),
            edge_cache: None,
            sent: false,
        }
    }

    /// The marker a finished streaming response leaves for the handler to return.
    pub(crate) fn already_sent() -> Self {
        Self {
            sent: true,
            ..Self::new()
        }
    }

    /// Whether this is the marker of a response already streamed to the client.
    pub(crate) fn is_sent(&self) -> bool {
        self.sent
    }

    /// An empty response with `status`.
    ///
    /// ```
    /// assert_eq!(outpost::Response::from_status(404).status(), 404);
    /// ```
    ///
    /// # Panics
    /// If `status` is not between 100 and 999.
    pub fn from_status(status: u16) -> Self {
        Self::new().with_status(StatusCode::from_u16(status).expect("status between 100 and 999"))
    }

    /// A `200 OK` plain-text response.
    pub fn text(text: impl Into<String>) -> Self {
        Self::new()
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(text.into())
    }

    /// A `200 OK` HTML response.
    ///
    /// ```
    /// let page = outpost::Response::html("<h1>hi</h1>");
    /// assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    /// ```
    pub fn html(html: impl Into<String>) -> Self {
        Self::new()
            .with_header("content-type", "text/html; charset=utf-8")
            .with_body(html.into())
    }

    /// A redirect with `status` (301, 302, 307, 308) to `location`.
    ///
    /// ```
    /// let r = outpost::Response::redirect(308, "https://example.com/");
    /// assert_eq!(r.header("location"), Some("https://example.com/"));
    /// ```
    pub fn redirect(status: u16, location: &str) -> Self {
        Self::from_status(status).with_header("location", location)
    }

    pub(crate) fn from_incoming(incoming: IncomingResponse) -> Result<Self, Error> {
        let status = StatusCode::from_u16(incoming.status()).map_err(|e| {
            Error::of_kind(
                ErrorKind::BackendUnavailable,
                format!("backend sent a bad status: {e}"),
            )
        })?;
        let headers = Headers::of_response(&incoming.headers());
        let body = match incoming.consume() {
            Ok(body) => {
                Body::from_stream(IncomingStream::new(body, BodyParent::Response(incoming))?)
            }
            Err(()) => Body::empty(),
        };
        Ok(Self {
            status,
            headers,
            body,
            edge_cache: None,
            sent: false,
        })
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Replaces the status.
    pub fn set_status(&mut self, status: StatusCode) {
        self.status = status;
    }

    /// [`Response::set_status`] for chaining.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    crate::message::headers_and_body!(Response);

    /// Lets the edge keep this response fresh for `ttl` and answer later requests for the
    /// same URL with it without running the guest, where the operator turned the service's
    /// response cache on. Shorthand for [`Response::with_edge_cache`] with
    /// [`EdgePolicy::ttl`].
    ///
    /// Only do this for answers that are the same for every client: a stored response is
    /// served to anyone asking for that URL (and matching its `Vary`). Responses with
    /// `Set-Cookie`, `private` or `no-store` are never stored.
    ///
    /// ```
    /// use std::time::Duration;
    /// let page = outpost::Response::html("<h1>news</h1>").cache_at_edge(Duration::from_secs(30));
    /// assert_eq!(page.edge_cache().unwrap().ttl_value(), Duration::from_secs(30));
    /// ```
    pub fn cache_at_edge(self, ttl: std::time::Duration) -> Self {
        self.with_edge_cache(EdgePolicy::ttl(ttl))
    }

    /// Lets the edge store this response under `policy` (stale windows, surrogate keys).
    pub fn with_edge_cache(mut self, policy: EdgePolicy) -> Self {
        self.edge_cache = Some(policy);
        self
    }

    /// The edge cache policy attached to this response, if any.
    pub fn edge_cache(&self) -> Option<&EdgePolicy> {
        self.edge_cache.as_ref()
    }

    /// The head's fields, ready to send (any `Content-Length` set is kept); the response
    /// keeps no headers.
    pub(crate) fn take_header_fields(&mut self) -> Result<Fields, Error> {
        std::mem::replace(&mut self.headers, Headers::new()).into_fields(None, true)
    }

    /// Tells the host how it may store the response about to be sent.
    pub(crate) fn announce_edge_cache(&self) {
        if let Some(policy) = &self.edge_cache {
            policy.apply();
        }
    }

    /// Sends this response to the client: the head first, then the body as it streams.
    /// `head_only` drops any body (for HEAD requests).
    pub(crate) fn send_downstream(self, out: ResponseOutparam, head_only: bool) {
        self.announce_edge_cache();
        let Response {
            status,
            headers,
            body,
            ..
        } = self;
        let no_body = head_only || !allows_body(status);
        let length = body.known_len().filter(|_| !no_body);
        // A body-less response keeps no length the guest could not write.
        let fields = match headers.into_fields(length, !no_body) {
            Ok(fields) => fields,
            Err(error) => return error_response(error).send_downstream(out, head_only),
        };
        let response = OutgoingResponse::new(fields);
        if status != StatusCode::OK {
            let _ = response.set_status_code(status.as_u16());
        }
        let outgoing_body = response.body().expect("a new response has a body");
        ResponseOutparam::set(out, Ok(response));
        if !no_body {
            let stream = outgoing_body.write().expect("a new body has a stream");
            if let Err(error) = body.write_to(&stream) {
                // Never finish a body we could not write: the client must see it cut off,
                // not a complete-looking short response.
                panic!("response body failed mid-stream: {error}");
            }
        }
        if let Err(code) = OutgoingBody::finish(outgoing_body, None) {
            panic!("finishing the response body failed: {code:?}");
        }
    }
}

/// Whether a response with `status` may carry a body (not 1xx, 204 or 304).
pub(crate) fn allows_body(status: StatusCode) -> bool {
    !(status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational())
}

/// The response sent for an [`Error`] returned by the handler.
pub(crate) fn error_response(error: Error) -> Response {
    Response::text(format!("{}\n", error.message())).with_status(error.status())
}
