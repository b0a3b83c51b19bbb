//! Requests: the one the client sent, and the ones a guest sends to its backends.

use std::rc::Rc;

use http::{Method, Uri};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    FutureIncomingResponse, IncomingRequest, OutgoingBody, OutgoingRequest, Scheme,
};

use crate::body::Body;
use crate::cache::CacheOverride;
use crate::error::{Error, ErrorKind};
use crate::headers::Headers;
use crate::response::Response;
use crate::wasi::{IncomingStream, backend_error, from_wasi_method, to_wasi_method};

/// An HTTP request: method, URI, headers and a body that may still be streaming in.
///
/// Build one to fetch from a backend, or modify the client's request and forward it:
///
/// ```no_run
/// # fn demo(mut req: outpost::Request) -> Result<outpost::Response, outpost::Error> {
/// req.set_header("x-edge", "outpost");
/// let response = req.send("origin")?; // fetches http://origin/<same path>
/// # Ok(response) }
/// ```
#[derive(Debug)]
pub struct Request {
    method: Method,
    uri: Uri,
    headers: Headers,
    body: Body,
    cache: Option<CacheOverride>,
}

impl Request {
    /// A request with `method` for `uri` (a path such as `/api?x=1`, or a full URL whose
    /// path is used), no headers and an empty body.
    ///
    /// ```
    /// use outpost::{Method, Request};
    ///
    /// let req = Request::new(Method::POST, "/upload");
    /// assert_eq!(req.method(), Method::POST);
    /// assert_eq!(req.path(), "/upload");
    /// ```
    pub fn new(method: Method, uri: impl AsRef<str>) -> Self {
        let uri = uri
            .as_ref()
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/"));
        Self {
            method,
            uri,
            headers: Headers::new(),
            body: Body::empty(),
            cache: None,
        }
    }

    /// A GET request for `uri`.
    ///
    /// ```
    /// let req = outpost::Request::get("/items?page=2");
    /// assert_eq!(req.query(), Some("page=2"));
    /// ```
    pub fn get(uri: impl AsRef<str>) -> Self {
        Self::new(Method::GET, uri)
    }

    /// A POST request for `uri` carrying `body`.
    ///
    /// ```
    /// let req = outpost::Request::post("/events", "{\"n\":1}");
    /// assert_eq!(req.body().known_len(), Some(7));
    /// ```
    pub fn post(uri: impl AsRef<str>, body: impl Into<Body>) -> Self {
        Self::new(Method::POST, uri).with_body(body)
    }

    pub(crate) fn from_incoming(incoming: IncomingRequest) -> Result<Self, Error> {
        let method = from_wasi_method(incoming.method());
        let authority = incoming.authority().unwrap_or_default();
        let path = incoming.path_with_query().unwrap_or_else(|| "/".to_owned());
        let scheme = match incoming.scheme() {
            Some(Scheme::Https) => "https",
            _ => "http",
        };
        let uri = if authority.is_empty() {
            path.parse()
        } else {
            format!("{scheme}://{authority}{path}").parse()
        }
        .map_err(|e| {
            Error::new(
                http::StatusCode::BAD_REQUEST,
                format!("bad request target: {e}"),
            )
        })?;
        let incoming = Rc::new(incoming);
        let headers = Headers::of_request(incoming.clone());
        let body = Body::from_stream(IncomingStream::of_request(incoming));
        Ok(Self {
            method,
            uri,
            headers,
            body,
            cache: None,
        })
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method.clone()
    }

    /// Replaces the method.
    pub fn set_method(&mut self, method: Method) {
        self.method = method;
    }

    /// The full URI. For the client's request it includes scheme and host.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// Replaces the URI (a path, or a full URL).
    ///
    /// ```
    /// let mut req = outpost::Request::get("/old");
    /// req.set_uri("/new?x=1").unwrap();
    /// assert_eq!(req.path(), "/new");
    /// ```
    pub fn set_uri(&mut self, uri: impl AsRef<str>) -> Result<(), Error> {
        self.uri = uri.as_ref().parse().map_err(|e| {
            Error::of_kind(
                ErrorKind::Invalid,
                format!("invalid URI `{}`: {e}", uri.as_ref()),
            )
        })?;
        Ok(())
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// The query string, without `?`.
    pub fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    /// The host the client asked for (from the URI), without port.
    pub fn host(&self) -> Option<&str> {
        self.uri.host()
    }

    crate::message::headers_and_body!(Request);

    /// Sets how the edge cache treats this request when it is [sent](Request::send): pass,
    /// a forced TTL, surrogate keys, ... Without one, the origin's headers decide (RFC 9111).
    ///
    /// ```
    /// use outpost::cache::CacheOverride;
    ///
    /// let mut req = outpost::Request::get("/account");
    /// req.set_cache_override(CacheOverride::pass());
    /// assert!(req.cache_override().is_some_and(|o| o.is_pass()));
    /// ```
    pub fn set_cache_override(&mut self, cache: CacheOverride) {
        self.cache = Some(cache);
    }

    /// The cache override set with [`Request::set_cache_override`], if any.
    pub fn cache_override(&self) -> Option<&CacheOverride> {
        self.cache.as_ref()
    }

    /// Sends the request to the backend named `backend` and waits for the response head.
    /// The path and query are kept; the backend's configured URL decides scheme, host and
    /// any path prefix. A streaming body streams through without being buffered.
    ///
    /// Fails with [`ErrorKind::BackendNotAllowed`] when `backend` is not configured for
    /// this service, and with timeout or connection errors from the origin.
    ///
    /// ```no_run
    /// let response = outpost::Request::get("/status").send("origin")?;
    /// assert!(response.status().is_success());
    /// # Ok::<(), outpost::Error>(())
    /// ```
    pub fn send(self, backend: &str) -> Result<Response, Error> {
        self.send_async(backend)?.wait()
    }

    /// Sends the request without waiting for the answer, so several fetches run at once;
    /// wait with [`PendingRequest::wait`], [`select`] or [`join_all`]. The request body (if
    /// any) is written before this returns.
    ///
    /// ```no_run
    /// use outpost::Request;
    ///
    /// let user = Request::get("/user/7").send_async("accounts")?;
    /// let cart = Request::get("/cart/7").send_async("shop")?;
    /// // Both origins are working now.
    /// let (user, cart) = (user.wait()?, cart.wait()?);
    /// # Ok::<(), outpost::Error>(())
    /// ```
    pub fn send_async(self, backend: &str) -> Result<PendingRequest, Error> {
        self.dispatch(Scheme::Http, backend)
    }

    /// Sends the request to the absolute URL in its URI (`https://api.example.com/v1/x`),
    /// scheme, host and port included, and waits for the response head. The host must be
    /// on the service's `dynamic_backends` allow-list; anything else fails with
    /// [`ErrorKind::BackendNotAllowed`]. HTTPS origins are verified against the web PKI.
    ///
    /// ```no_run
    /// let weather = outpost::Request::get("https://api.weather.example/v1/today").send_dynamic()?;
    /// # Ok::<(), outpost::Error>(())
    /// ```
    pub fn send_dynamic(self) -> Result<Response, Error> {
        self.send_dynamic_async()?.wait()
    }

    /// [`Request::send_dynamic`] without waiting, for [`select`] and [`join_all`].
    ///
    /// ```no_run
    /// let a = outpost::Request::get("https://a.example/x").send_dynamic_async()?;
    /// let b = outpost::Request::get("https://b.example/y").send_dynamic_async()?;
    /// let both = outpost::join_all(vec![a, b]);
    /// # Ok::<(), outpost::Error>(())
    /// ```
    pub fn send_dynamic_async(self) -> Result<PendingRequest, Error> {
        let uri = self.uri.clone();
        let invalid = |why: &str| {
            Error::of_kind(
                ErrorKind::Invalid,
                format!("`{uri}` cannot be sent to a dynamic backend: {why}"),
            )
        };
        let scheme = match uri.scheme_str() {
            Some("https") => Scheme::Https,
            Some("http") => Scheme::Http,
            _ => return Err(invalid("it needs an http:// or https:// URL")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| invalid("it has no host"))?
            .as_str()
            .to_owned();
        self.dispatch(scheme, &authority)
    }

    /// Sends to `authority` (a backend name or a dynamic host) over `scheme`.
    fn dispatch(self, scheme: Scheme, backend: &str) -> Result<PendingRequest, Error> {
        let Request {
            method,
            uri,
            headers,
            body,
            cache,
        } = self;
        let known_len = body.known_len();
        let declared = known_len.filter(|&len| len > 0 || method_has_body(&method));
        let fields = headers.into_fields(declared, declared.is_some() || known_len.is_none())?;
        let request = OutgoingRequest::new(fields);
        let invalid = |what: &str| {
            Error::of_kind(
                ErrorKind::Invalid,
                format!("backend `{backend}`: invalid {what}"),
            )
        };
        request
            .set_method(&to_wasi_method(&method))
            .map_err(|()| invalid("method"))?;
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| invalid("scheme"))?;
        request
            .set_authority(Some(backend))
            .map_err(|()| invalid("backend name"))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        request
            .set_path_with_query(Some(path))
            .map_err(|()| invalid("path"))?;

        let needs_body = body.known_len() != Some(0);
        let outgoing_body = if needs_body {
            Some(request.body().map_err(|()| invalid("body"))?)
        } else {
            None
        };
        if let Some(cache) = &cache {
            cache.apply();
        }
        let pending =
            outgoing_handler::handle(request, None).map_err(|code| backend_error(backend, code))?;
        if let Some(outgoing_body) = outgoing_body {
            let stream = outgoing_body.write().map_err(|()| invalid("body stream"))?;
            let written = body.write_to(&stream);
            drop(stream);
            match written {
                Ok(()) => OutgoingBody::finish(outgoing_body, None)
                    .map_err(|code| backend_error(backend, code))?,
                Err(write_error) => {
                    // The host may have failed the request itself; if so its answer says why.
                    let host_error = match pending.get() {
                        Some(Ok(Err(code))) => Some(backend_error(backend, code)),
                        _ => None,
                    };
                    // Cancel the request before dropping the unfinished body: wasi:http hosts
                    // may end a dropped body cleanly, and the origin must never take a cut-off
                    // upload for a complete one.
                    drop(pending);
                    drop(outgoing_body);
                    return Err(host_error.unwrap_or(write_error));
                }
            }
        }
        Ok(PendingRequest {
            backend: backend.to_owned(),
            pending,
        })
    }
}

/// A request sent with [`Request::send_async`] whose response head may not be here yet.
#[derive(Debug)]
pub struct PendingRequest {
    backend: String,
    pending: FutureIncomingResponse,
}

impl PendingRequest {
    /// Waits for the response head.
    ///
    /// ```no_run
    /// let pending = outpost::Request::get("/slow").send_async("origin")?;
    /// let response = pending.wait()?;
    /// # Ok::<(), outpost::Error>(())
    /// ```
    pub fn wait(self) -> Result<Response, Error> {
        let backend = self.backend;
        let response = wait(&self.pending).map_err(|e| match e {
            Some(code) => backend_error(&backend, code),
            None => Error::of_kind(
                ErrorKind::BackendUnavailable,
                format!("backend `{backend}`: no response"),
            ),
        })?;
        Response::from_incoming(response)
    }

    /// Whether the response head (or a failure) has arrived, so [`wait`](Self::wait) returns
    /// at once.
    pub fn is_ready(&self) -> bool {
        self.pending.subscribe().ready()
    }

    /// The backend this request went to.
    pub fn backend(&self) -> &str {
        &self.backend
    }
}

/// Waits until the first of `pending` answers and returns its response with the requests
/// still in flight (in their original order, minus the one that answered).
///
/// # Panics
/// If `pending` is empty.
///
/// ```no_run
/// use outpost::{Request, select};
///
/// // Ask two mirrors, take whichever answers first.
/// let a = Request::get("/data").send_async("mirror-a")?;
/// let b = Request::get("/data").send_async("mirror-b")?;
/// let (first, _others) = select(vec![a, b]);
/// let response = first?;
/// # Ok::<(), outpost::Error>(())
/// ```
pub fn select(mut pending: Vec<PendingRequest>) -> (Result<Response, Error>, Vec<PendingRequest>) {
    assert!(
        !pending.is_empty(),
        "select needs at least one pending request"
    );
    let ready = {
        let pollables: Vec<_> = pending.iter().map(|p| p.pending.subscribe()).collect();
        let refs: Vec<&wasip2::io::poll::Pollable> = pollables.iter().collect();
        wasip2::io::poll::poll(&refs)
    };
    let first = ready.first().copied().unwrap_or(0) as usize;
    let answered = pending.remove(first);
    (answered.wait(), pending)
}

/// Waits for every request of `pending`; they all run concurrently, so this takes as long
/// as the slowest. Results are in the order of `pending`.
///
/// ```no_run
/// use outpost::{Request, join_all};
///
/// let fetches = ["/a", "/b", "/c"]
///     .iter()
///     .map(|path| Request::get(path).send_async("origin"))
///     .collect::<Result<Vec<_>, _>>()?;
/// let responses = join_all(fetches);
/// assert_eq!(responses.len(), 3);
/// # Ok::<(), outpost::Error>(())
/// ```
pub fn join_all(pending: Vec<PendingRequest>) -> Vec<Result<Response, Error>> {
    pending.into_iter().map(PendingRequest::wait).collect()
}

fn method_has_body(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

fn wait(
    pending: &FutureIncomingResponse,
) -> Result<wasip2::http::types::IncomingResponse, Option<wasip2::http::types::ErrorCode>> {
    loop {
        match pending.get() {
            Some(Ok(Ok(response))) => return Ok(response),
            Some(Ok(Err(code))) => return Err(Some(code)),
            Some(Err(())) => return Err(None),
            None => pending.subscribe().block(),
        }
    }
}
