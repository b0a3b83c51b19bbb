//! Mock backends: real HTTP/1.1 servers on 127.0.0.1 whose answers are Rust closures, and
//! which record every request they receive.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// Makes a mock backend's answer to one request.
pub(crate) type Handler = Arc<dyn Fn(&MockRequest) -> MockResponse + Send + Sync>;

/// A request as a mock backend received it.
#[derive(Debug, Clone)]
pub struct MockRequest {
    /// The method, e.g. `GET`.
    pub method: http::Method,
    /// The path, e.g. `/users/7`.
    pub path: String,
    /// The query string without `?`, if any.
    pub query: Option<String>,
    /// The request headers, as the node sent them on.
    pub headers: http::HeaderMap,
    /// The whole request body.
    pub body: Bytes,
}

impl MockRequest {
    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What a mock backend answers.
#[derive(Debug, Clone)]
pub struct MockResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
    delay: Duration,
}

impl MockResponse {
    /// A `200 OK` with `body`.
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Self::status(200).body(body)
    }

    /// An empty answer with `status`.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            delay: Duration::ZERO,
        }
    }

    /// A `200 OK` JSON answer.
    pub fn json(json: impl Into<String>) -> Self {
        Self::ok(json.into()).header("content-type", "application/json")
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Replaces the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Waits this long before answering (to test timeouts and concurrency).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// One running mock backend.
pub(crate) struct MockBackend {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<MockRequest>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl MockBackend {
    pub(crate) async fn start(handler: Handler) -> std::io::Result<MockBackend> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let received: Arc<Mutex<Vec<MockRequest>>> = Arc::default();
        let log = received.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (handler, log) = (handler.clone(), log.clone());
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let (handler, log) = (handler.clone(), log.clone());
                            async move {
                                let (parts, body) = request.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let received = MockRequest {
                                    method: parts.method,
                                    path: parts.uri.path().to_owned(),
                                    query: parts.uri.query().map(str::to_owned),
                                    headers: parts.headers,
                                    body,
                                };
                                let answer = handler(&received);
                                log.lock().expect("mock log").push(received);
                                if !answer.delay.is_zero() {
                                    tokio::time::sleep(answer.delay).await;
                                }
                                let mut response = hyper::Response::builder().status(answer.status);
                                for (name, value) in &answer.headers {
                                    response = response.header(name, value);
                                }
                                Ok::<_, Infallible>(
                                    response.body(Full::new(answer.body)).unwrap_or_else(|_| {
                                        hyper::Response::new(Full::new(Bytes::from_static(
                                            b"bad mock response",
                                        )))
                                    }),
                                )
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(MockBackend {
            addr,
            received,
            _server: server,
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn received(&self) -> Vec<MockRequest> {
        self.received.lock().expect("mock log").clone()
    }
}
