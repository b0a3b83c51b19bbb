//! What the node checks about a request before routing it: the form of its target, its
//! host, its expectations and the size of its head. Pure functions of the request head,
//! so the same rules hold for the front end and the test harness.
//!
//! Only the forms RFC 9112 section 3.2 allows a server here reach a service: origin-form
//! (`/path?query`), absolute-form (`http://host/path`, routed by its authority), and
//! `OPTIONS *`, which the node answers itself. `CONNECT` is never forwarded (405), and an
//! authority-form or asterisk-form target with any other method is a 400.

use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode};

/// Why the node answers a request itself instead of routing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) reason: &'static str,
    /// The connection must close after the answer (the request cannot be framed or
    /// continued safely).
    pub(crate) close: bool,
}

impl Refusal {
    fn new(status: StatusCode, reason: &'static str) -> Self {
        Self {
            status,
            reason,
            close: false,
        }
    }

    fn closing(mut self) -> Self {
        self.close = true;
        self
    }
}

/// The methods the node accepts, for `Allow` (CONNECT and TRACE are never forwarded).
pub(crate) const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS";

/// What a request's head says before routing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    /// A request for `host` (lower-case, no port) to route to its service.
    Route(&'a str),
    /// `OPTIONS *`: a question about the node itself.
    AsteriskOptions,
}

/// Checks `request`'s target, host, expectations and head size against the rules above.
pub(crate) fn check<B>(
    request: &Request<B>,
    max_header_bytes: usize,
) -> Result<Target<'_>, Refusal> {
    let uri = request.uri();
    if *request.method() == Method::CONNECT {
        return Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not supported: this is not a forward proxy",
        )
        .closing());
    }
    if head_size(request) > max_header_bytes {
        return Err(Refusal::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request header fields too large",
        )
        .closing());
    }
    if uri.path() == "*" && uri.authority().is_none() {
        return if *request.method() == Method::OPTIONS {
            Ok(Target::AsteriskOptions)
        } else {
            Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "the asterisk target is only for OPTIONS",
            )
            .closing())
        };
    }
    let origin_form = uri.scheme().is_none() && uri.authority().is_none();
    let absolute_form =
        matches!(uri.scheme_str(), Some("http") | Some("https")) && uri.authority().is_some();
    if !(origin_form && uri.path().starts_with('/') || absolute_form) {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "malformed request target: use a path (`/index.html`) or an absolute URL",
        )
        .closing());
    }
    if let Some(expect) = request.headers().get(header::EXPECT)
        && !expect.as_bytes().eq_ignore_ascii_case(b"100-continue")
    {
        return Err(Refusal::new(
            StatusCode::EXPECTATION_FAILED,
            "only `Expect: 100-continue` is supported",
        ));
    }
    host(request).map(Target::Route)
}

/// The host a request is for: its absolute target's authority (RFC 9112 section 3.2.2:
/// it wins over `Host`), else its one `Host` header; without port or trailing dot.
pub(crate) fn host<B>(request: &Request<B>) -> Result<&str, Refusal> {
    let missing = || Refusal::new(StatusCode::BAD_REQUEST, "request has no Host").closing();
    let authority = match request.uri().authority() {
        Some(authority) => authority.host(),
        None => {
            let mut hosts = request.headers().get_all(header::HOST).iter();
            let host = hosts.next().ok_or_else(missing)?;
            if hosts.next().is_some() {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "request has more than one Host",
                )
                .closing());
            }
            host_of(host).ok_or_else(|| {
                Refusal::new(StatusCode::BAD_REQUEST, "request has a malformed Host").closing()
            })?
        }
    };
    let host = authority.trim_end_matches('.');
    if host.is_empty() {
        return Err(missing());
    }
    Ok(host)
}

/// The host part of a `Host` header value (`example.com:8080` -> `example.com`).
fn host_of(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?.trim();
    let authority = http::uri::Authority::try_from(text).ok()?;
    if !authority.as_str().eq_ignore_ascii_case(text) || text.contains('@') {
        return None;
    }
    // The authority borrows `text`; find the same host inside it.
    let host = authority.host();
    let start = text.find(host)?;
    Some(&text[start..start + host.len()])
}

/// The size of a request's head as it would be sent over HTTP/1.1.
pub(crate) fn head_size<B>(request: &Request<B>) -> usize {
    let target = request
        .uri()
        .path_and_query()
        .map_or(1, |p| p.as_str().len());
    request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + target
        + request.method().as_str().len()
        + 12
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method(method).uri(target);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    fn status(method: &str, target: &str, headers: &[(&str, &str)]) -> u16 {
        match check(&request(method, target, headers), 65536) {
            Ok(_) => 200,
            Err(refusal) => refusal.status.as_u16(),
        }
    }

    #[test]
    fn only_origin_absolute_and_options_asterisk_forms_pass() {
        let host = [("host", "a.test")];
        assert_eq!(status("GET", "/x?y=1", &host), 200);
        assert_eq!(status("GET", "http://a.test/x", &[]), 200);
        assert_eq!(status("OPTIONS", "*", &host), 200);
        assert_eq!(status("GET", "*", &host), 400);
        assert_eq!(status("GET", "tgt-a", &host), 400, "authority-form");
        assert_eq!(status("GET", "ftp://a.test/x", &host), 400);
        assert_eq!(status("CONNECT", "a.test:443", &host), 405);
    }

    #[test]
    fn an_absolute_target_routes_by_its_authority() {
        let req = request("GET", "http://Shop.Test.:8080/x", &[("host", "other.test")]);
        assert_eq!(check(&req, 65536), Ok(Target::Route("Shop.Test")));
    }

    #[test]
    fn host_must_be_one_and_well_formed() {
        assert_eq!(status("GET", "/", &[]), 400);
        assert_eq!(
            status("GET", "/", &[("host", "a.test"), ("host", "b.test")]),
            400
        );
        assert_eq!(status("GET", "/", &[("host", "a b")]), 400);
        assert_eq!(status("GET", "/", &[("host", "user@a.test")]), 400);
        let req = request("GET", "/", &[("host", "a.test:8080")]);
        assert_eq!(check(&req, 65536), Ok(Target::Route("a.test")));
    }

    #[test]
    fn expectations_other_than_continue_fail() {
        let host = ("host", "a.test");
        assert_eq!(status("PUT", "/", &[host, ("expect", "100-Continue")]), 200);
        assert_eq!(status("PUT", "/", &[host, ("expect", "200-ok")]), 417);
    }

    #[test]
    fn oversized_heads_get_431() {
        let big = "x".repeat(2000);
        let req = request("GET", "/", &[("host", "a.test"), ("x-big", &big)]);
        assert_eq!(check(&req, 1024).unwrap_err().status, 431);
    }
}
