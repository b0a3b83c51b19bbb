//! Named origins: where a guest's `http://NAME/...` fetch really goes.
//!
//! Each backend owns a keep-alive connection pool (hyper-util's client), its own TLS trust
//! (webpki roots plus an optional CA file) and its three timeouts: connect, first byte, and
//! between bytes of the response body. Host names resolve off the async workers (tokio's
//! resolver runs getaddrinfo on the blocking pool), so a slow resolver never stalls request
//! handling. Bodies stream in both directions; nothing here buffers a whole body.
//!
//! Failures reach the guest as typed `wasi:http` error codes, classified from the error's
//! types (our DNS error, rustls errors, I/O error kinds, hyper's predicates), never from
//! message text.

use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use crate::cache::{Origin, OriginFuture};
use crate::config::BackendConfig;
use crate::http::{IdleTimeout, strip_hop_by_hop};
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

/// One configured origin with its pool.
pub struct Backend {
    name: String,
    scheme: Scheme,
    authority: Authority,
    path_prefix: String,
    host_header: HeaderValue,
    first_byte_timeout: Duration,
    between_bytes_timeout: Duration,
    client: Client<HttpsConnector<HttpConnector<Resolver>>, WasiBody>,
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

        let mut http = HttpConnector::new_with_resolver(Resolver);
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

    /// A backend for a dynamic origin (`scheme://host[:port]`) with default settings and
    /// no extra trust: what a guest reaches on its service's `dynamic_backends` list.
    pub fn for_origin(origin: &str, metrics: BackendMetrics) -> Result<Backend, BackendError> {
        Backend::new(
            origin,
            &BackendConfig::from_url(origin),
            Path::new("."),
            metrics,
        )
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
                let waited = self.first_byte_timeout;
                tracing::warn!(backend = %self.name, "no response head within {waited:?}");
                return Err(HttpError::ConnectionReadTimeout);
            }
            Ok(Err(e)) => {
                tracing::warn!(backend = %self.name, "request failed: {}", error_chain(&e));
                return Err(classify(&e));
            }
            Ok(Ok(response)) => response,
        };
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = IdleTimeout::new(body, self.between_bytes_timeout).boxed_unsync();
        Ok(http::Response::from_parts(parts, body))
    }
}

impl Origin for Backend {
    fn send(&self, request: http::Request<WasiBody>) -> OriginFuture<'_> {
        Box::pin(Backend::send(self, request))
    }
}

fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// The `wasi:http` error code for a failed backend request, from the error's types.
fn classify(error: &hyper_util::client::legacy::Error) -> HttpError {
    if let Some(code) = classify_chain(error.source()) {
        return code;
    }
    if error.is_connect() {
        HttpError::ConnectionRefused
    } else {
        HttpError::HttpProtocolError
    }
}

/// Walks an error's sources for the first one whose type says what happened.
fn classify_chain(mut source: Option<&(dyn StdError + 'static)>) -> Option<HttpError> {
    while let Some(error) = source {
        if error.is::<DnsFailed>() {
            return Some(HttpError::DnsError {
                rcode: None,
                info_code: None,
            });
        }
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls_code(tls));
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            // rustls reports through I/O errors that carry the rustls error inside.
            if let Some(tls) = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                return Some(tls_code(tls));
            }
            use std::io::ErrorKind as K;
            match io.kind() {
                K::TimedOut => return Some(HttpError::ConnectionTimeout),
                K::ConnectionRefused => return Some(HttpError::ConnectionRefused),
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                    return Some(HttpError::ConnectionTerminated);
                }
                _ => {}
            }
        }
        if let Some(hyper) = error.downcast_ref::<hyper::Error>() {
            if hyper.is_incomplete_message() || hyper.is_canceled() {
                return Some(HttpError::ConnectionTerminated);
            }
            if hyper.is_timeout() {
                return Some(HttpError::ConnectionReadTimeout);
            }
            if hyper.is_parse() || hyper.is_parse_status() {
                return Some(HttpError::HttpProtocolError);
            }
        }
        source = error.source();
    }
    None
}

fn tls_code(error: &rustls::Error) -> HttpError {
    match error {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            HttpError::TlsCertificateError
        }
        rustls::Error::AlertReceived(alert) => HttpError::TlsAlertReceived {
            alert_id: Some(u8::from(*alert)),
            alert_message: Some(format!("{alert:?}")),
        },
        _ => HttpError::TlsProtocolError,
    }
}

/// Resolution failed: the backend's host name has no address.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve the backend's host: {0}")]
struct DnsFailed(std::io::Error);

/// Resolves backend host names with tokio's resolver (getaddrinfo on the blocking pool),
/// failing with [`DnsFailed`] so the failure is told apart by type.
#[derive(Clone, Copy)]
struct Resolver;

impl tower_service::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = DnsFailed;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, DnsFailed>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), DnsFailed>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((name.as_str(), 0))
                .await
                .map_err(DnsFailed)?;
            Ok(addrs.collect::<Vec<_>>().into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(error: &(dyn StdError + 'static)) -> Option<HttpError> {
        classify_chain(Some(error))
    }

    #[test]
    fn failures_are_classified_by_type() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(code(&refused), Some(HttpError::ConnectionRefused)));
        let timeout = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert!(matches!(code(&timeout), Some(HttpError::ConnectionTimeout)));
        let dns = DnsFailed(std::io::Error::other("no such host"));
        assert!(matches!(code(&dns), Some(HttpError::DnsError { .. })));
        let bad_cert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(matches!(
            code(&bad_cert),
            Some(HttpError::TlsCertificateError)
        ));
        let other = std::io::Error::other("something else");
        assert!(code(&other).is_none());
    }
}
