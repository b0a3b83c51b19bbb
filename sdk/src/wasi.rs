//! The thin layer over `wasi:http` and `wasi:io` that the rest of the SDK stands on.

use std::rc::Rc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use wasip2::http::types::{
    self as wasi, ErrorCode, Fields, IncomingBody, IncomingRequest, IncomingResponse,
};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};

use crate::error::{Error, ErrorKind};

/// Headers the host manages itself; sending them is an error in `wasi:http`, so the SDK
/// leaves them out when it converts a header map.
pub(crate) const HOST_MANAGED: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
    "http2-settings",
];

/// The resource an incoming body belongs to; it must outlive the body.
pub(crate) enum BodyParent {
    /// The client's request, shared with its headers.
    Request(Rc<IncomingRequest>),
    Response(#[allow(dead_code)] IncomingResponse),
}

/// The stream of an incoming body (a body gives its stream once).
fn stream_of(body: &IncomingBody) -> Result<InputStream, Error> {
    body.stream()
        .map_err(|()| Error::of_kind(ErrorKind::Body, "the body stream was already taken"))
}

/// An incoming body being read: the stream must be dropped before the body resource, and
/// the parent request or response after both, which the field order guarantees.
pub(crate) struct IncomingStream {
    stream: Option<InputStream>,
    body: Option<IncomingBody>,
    /// Set while the client's request body is still unopened (opened on the first read).
    unopened: bool,
    parent: BodyParent,
}

impl IncomingStream {
    pub(crate) fn new(body: IncomingBody, parent: BodyParent) -> Result<Self, Error> {
        let stream = stream_of(&body)?;
        Ok(Self {
            stream: Some(stream),
            body: Some(body),
            unopened: false,
            parent,
        })
    }

    /// The client's request body, opened when first read: a guest that never reads it
    /// makes no calls for it.
    pub(crate) fn of_request(request: Rc<IncomingRequest>) -> Self {
        Self {
            stream: None,
            body: None,
            unopened: true,
            parent: BodyParent::Request(request),
        }
    }

    /// Opens the client's request body on first use; a request without one ends at once.
    fn open(&mut self) -> Result<(), Error> {
        if !std::mem::take(&mut self.unopened) {
            return Ok(());
        }
        let BodyParent::Request(request) = &self.parent else {
            return Ok(());
        };
        let Ok(body) = request.consume() else {
            return Ok(());
        };
        self.stream = Some(stream_of(&body)?);
        self.body = Some(body);
        Ok(())
    }

    /// The next chunk, or `None` at the end of the body.
    pub(crate) fn read(&mut self, max: u64) -> Result<Option<Bytes>, Error> {
        self.step("reading a body", |stream| {
            let chunk = stream.blocking_read(max)?;
            Ok((!chunk.is_empty()).then(|| Bytes::from(chunk)))
        })
    }

    /// Moves the next chunk straight to `out` inside the host (no copy through guest
    /// memory); `None` at the end of the body, else how many bytes moved. The input ending
    /// and the client leaving both end it; the flush after reports the latter.
    pub(crate) fn splice_to(&mut self, out: &OutputStream, max: u64) -> Result<Option<u64>, Error> {
        self.step("passing a body through", |stream| {
            let moved = out.blocking_splice(stream, max)?;
            Ok((moved > 0).then_some(moved))
        })
    }

    /// Runs `op` on the stream until it yields something (`Ok(None)` means "nothing yet,
    /// try again"); at the end of the body releases it and returns `None`.
    fn step<T>(
        &mut self,
        doing: &str,
        mut op: impl FnMut(&InputStream) -> Result<Option<T>, StreamError>,
    ) -> Result<Option<T>, Error> {
        self.open()?;
        loop {
            let Some(stream) = &self.stream else {
                return Ok(None);
            };
            match op(stream) {
                Ok(None) => continue,
                Ok(Some(value)) => return Ok(Some(value)),
                Err(StreamError::Closed) => {
                    self.end();
                    return Ok(None);
                }
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(Error::of_kind(
                        ErrorKind::Body,
                        format!("{doing} failed: {}", e.to_debug_string()),
                    ));
                }
            }
        }
    }

    /// Releases the stream and then its body (the stream is the body's child: it goes
    /// first), once the body has ended.
    fn end(&mut self) {
        self.stream = None;
        if let Some(body) = self.body.take() {
            drop(IncomingBody::finish(body));
        }
    }
}

/// Writes all of `data`, waiting for the host whenever its buffer is full.
pub(crate) fn write_all(stream: &OutputStream, mut data: &[u8]) -> Result<(), String> {
    while !data.is_empty() {
        let permitted = stream.check_write().map_err(describe_stream_error)? as usize;
        if permitted == 0 {
            stream.subscribe().block();
            continue;
        }
        let n = permitted.min(data.len());
        stream.write(&data[..n]).map_err(describe_stream_error)?;
        data = &data[n..];
    }
    Ok(())
}

pub(crate) fn describe_stream_error(error: StreamError) -> String {
    match error {
        StreamError::Closed => "the stream was closed".into(),
        StreamError::LastOperationFailed(e) => e.to_debug_string(),
    }
}

/// Converts a header map to `wasi:http` fields, leaving out host-managed headers and any
/// `content-length` when `keep_length` is false.
pub(crate) fn to_fields(headers: &HeaderMap, keep_length: bool) -> Result<Fields, Error> {
    let entries: Vec<(String, Vec<u8>)> = headers
        .iter()
        .filter(|(name, _)| !HOST_MANAGED.contains(&name.as_str()))
        .filter(|(name, _)| keep_length || *name != http::header::CONTENT_LENGTH)
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    Fields::from_list(&entries)
        .map_err(|e| Error::of_kind(ErrorKind::Invalid, format!("invalid headers: {e:?}")))
}

/// Converts `wasi:http` fields to a header map, skipping anything `http` rejects.
pub(crate) fn from_fields(fields: &Fields) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in fields.entries() {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.append(name, value);
        }
    }
    headers
}

pub(crate) fn to_wasi_method(method: &Method) -> wasi::Method {
    match *method {
        Method::GET => wasi::Method::Get,
        Method::HEAD => wasi::Method::Head,
        Method::POST => wasi::Method::Post,
        Method::PUT => wasi::Method::Put,
        Method::DELETE => wasi::Method::Delete,
        Method::CONNECT => wasi::Method::Connect,
        Method::OPTIONS => wasi::Method::Options,
        Method::TRACE => wasi::Method::Trace,
        Method::PATCH => wasi::Method::Patch,
        ref other => wasi::Method::Other(other.as_str().to_owned()),
    }
}

pub(crate) fn from_wasi_method(method: wasi::Method) -> Method {
    match method {
        wasi::Method::Get => Method::GET,
        wasi::Method::Head => Method::HEAD,
        wasi::Method::Post => Method::POST,
        wasi::Method::Put => Method::PUT,
        wasi::Method::Delete => Method::DELETE,
        wasi::Method::Connect => Method::CONNECT,
        wasi::Method::Options => Method::OPTIONS,
        wasi::Method::Trace => Method::TRACE,
        wasi::Method::Patch => Method::PATCH,
        wasi::Method::Other(other) => Method::from_bytes(other.as_bytes()).unwrap_or(Method::GET),
    }
}

/// Maps a `wasi:http` error from a backend fetch to an SDK error that names the backend.
pub(crate) fn backend_error(backend: &str, code: ErrorCode) -> Error {
    use ErrorCode as C;
    let (kind, what) = match &code {
        C::HttpRequestDenied => (
            ErrorKind::BackendNotAllowed,
            "is not a backend of this service (add it under [services.NAME.backends])".to_owned(),
        ),
        C::ConnectionLimitReached => (
            ErrorKind::BackendLimit,
            "was not fetched: this request's backend budget is spent".to_owned(),
        ),
        C::ConnectionTimeout
        | C::ConnectionReadTimeout
        | C::ConnectionWriteTimeout
        | C::HttpResponseTimeout
        | C::DnsTimeout => (ErrorKind::BackendTimeout, format!("timed out ({code:?})")),
        other => (ErrorKind::BackendUnavailable, format!("failed: {other:?}")),
    };
    Error::of_kind(kind, format!("backend `{backend}` {what}"))
}
