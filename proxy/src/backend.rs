//! Named origins: where a guest's `http://NAME/...` fetch really goes.
//!
//! Each backend owns a keep-alive connection pool (hyper-util's client), its own TLS trust
//! (webpki roots plus an optional CA file) and its three timeouts: connect, first byte, and
//! between bytes of the response body. Host names resolve off the async workers (getaddrinfo
//! on tokio's blocking pool), so a slow resolver never stalls request handling.
//! Bodies stream in both directions; nothing here buffers a whole body.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use crate::config::BackendConfig;
use crate::metrics::BackendMetrics;

/// Errors building a backend from config.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The CA file could not be read or holds no certificate.
    #[error("backend `{backend}`: CA file {path}: {reason}")]
    Ca {
        /// The backend's name.
        backend: String,
        /// The CA file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The URL or host override is unusable.
    #[error("backend `{backend}`: {reason}")]
    Invalid {
        /// The backend's name.
        backend: String,
        /// What went wrong.
        reason: String,
    },
}

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

/// Removes hop-by-hop headers, including those named by `Connection`.
pub fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

/// One configured origin with its pool.
pub struct Backend {
    name: String,
    scheme: Scheme,
    authority: Authority,
    path_prefix: String,
    host_header: HeaderValue,
    first_byte_timeout: Duration,
    between_bytes_timeout: Duration,
    client: Client<HttpsConnector<HttpConnector>, WasiBody>,
    metrics: BackendMetrics,
}

impl Backend {
    /// Builds the backend `name`; relative paths (the CA file) resolve against `base_dir`.
    pub fn new(
        name: &str,
        config: &BackendConfig,
        base_dir: &Path,
        metrics: BackendMetrics,
    ) -> Result<Backend, BackendError> {
        let invalid = |reason: String| BackendError::Invalid {
            backend: name.to_owned(),
            reason,
        };
        let uri: http::Uri = config
            .url
            .parse()
            .map_err(|e| invalid(format!("url `{}`: {e}", config.url)))?;
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| invalid(format!("url `{}` has no host", config.url)))?;
        let path_prefix = uri.path().trim_end_matches('/').to_owned();
        let host = config.host.clone().unwrap_or_else(|| authority.to_string());
        let host_header = HeaderValue::try_from(host.as_str())
            .map_err(|_| invalid(format!("host `{host}` is not a valid Host header")))?;

        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(ca) = &config.ca {
            let path = if ca.is_absolute() {
                ca.clone()
            } else {
                base_dir.join(ca)
            };
            let ca_error = |reason: String| BackendError::Ca {
                backend: name.to_owned(),
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(&path).map_err(|e| ca_error(e.to_string()))?;
            let mut added = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| ca_error(e.to_string()))?;
                roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
                added += 1;
            }
            if added == 0 {
                return Err(ca_error("no PEM certificate in the file".into()));
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let builder = match &config.host {
            Some(sni) => {
                let server_name =
                    rustls::pki_types::ServerName::try_from(sni.clone()).map_err(|e| {
                        invalid(format!("host `{sni}` cannot be a TLS server name: {e}"))
                    })?;
                builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(
                    server_name,
                ))
            }
            None => builder,
        };
        let connector = builder.enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(config.max_idle_connections)
            .build(connector);

        Ok(Backend {
            name: name.to_owned(),
            scheme,
            authority,
            path_prefix,
            host_header,
            first_byte_timeout: Duration::from_millis(config.first_byte_timeout_ms),
            between_bytes_timeout: Duration::from_millis(config.between_bytes_timeout_ms),
            client,
            metrics,
        })
    }

    /// The backend's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends a guest's request to this origin. The guest's scheme and authority are replaced
    /// by the backend's; its path is appended to the backend's path prefix.
    pub async fn send(
        &self,
        request: http::Request<WasiBody>,
    ) -> Result<http::Response<WasiBody>, HttpError> {
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let target = format!("{}{}", self.path_prefix, path);
        parts.uri = http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(target)
            .build()
            .map_err(|_| HttpError::HttpRequestUriInvalid)?;
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.insert(header::HOST, self.host_header.clone());
        parts.version = http::Version::HTTP_11;
        let request = http::Request::from_parts(parts, body);

        let started = std::time::Instant::now();
        let result =
            tokio::time::timeout(self.first_byte_timeout, self.client.request(request)).await;
        let status = match &result {
            Ok(Ok(response)) => Some(response.status().as_u16()),
            _ => None,
        };
        self.metrics
            .response(status, started.elapsed().as_secs_f64());
        let response = match result {
            Err(_elapsed) => {
                tracing::warn!(backend = %self.name, "no response head within {:?}", self.first_byte_timeout);
                return Err(HttpError::ConnectionReadTimeout);
            }
            Ok(Err(e)) => {
                tracing::warn!(backend = %self.name, "request failed: {}", error_chain(&e));
                return Err(map_client_error(&e));
            }
            Ok(Ok(response)) => response,
        };
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = BetweenBytesTimeout::new(body, self.between_bytes_timeout)
            .map_err(|e| match e {
                BodyError::Timeout => HttpError::ConnectionReadTimeout,
                BodyError::Hyper(e) => HttpError::from(e),
            })
            .boxed_unsync();
        Ok(http::Response::from_parts(parts, body))
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn map_client_error(error: &hyper_util::client::legacy::Error) -> HttpError {
    let text = error_chain(error).to_ascii_lowercase();
    if error.is_connect() {
        if text.contains("timed out") || text.contains("timeout") {
            HttpError::ConnectionTimeout
        } else if text.contains("dns") || text.contains("lookup") || text.contains("resolve") {
            HttpError::DnsError {
                rcode: None,
                info_code: None,
            }
        } else if text.contains("certificate") || text.contains("tls") {
            HttpError::TlsCertificateError
        } else {
            HttpError::ConnectionRefused
        }
    } else if text.contains("connection closed") || text.contains("incomplete") {
        HttpError::ConnectionTerminated
    } else {
        HttpError::HttpProtocolError
    }
}

/// A response body that fails if the origin goes quiet for too long between chunks.
struct BetweenBytesTimeout {
    inner: hyper::body::Incoming,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    /// Whether the timer measures the current wait; a wait starts when a poll finds no data,
    /// so a guest that is slow to read never counts against the origin.
    waiting: bool,
}

enum BodyError {
    Timeout,
    Hyper(hyper::Error),
}

impl BetweenBytesTimeout {
    fn new(inner: hyper::body::Incoming, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
            waiting: false,
        }
    }
}

impl Body for BetweenBytesTimeout {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                Poll::Ready(frame.map(|f| f.map_err(BodyError::Hyper)))
            }
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    this.timer.as_mut().reset(Instant::now() + this.limit);
                }
                ready!(this.timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(BodyError::Timeout)))
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
