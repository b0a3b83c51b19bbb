//! Real parts for the tests: an origin that records what it receives, the node binary
//! started from a config file, and HTTP clients.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Parses the Prometheus text format into `name{labels}` -> value.
pub fn scrape(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.rsplit_once(' '))
        .filter_map(|(key, value)| Some((key.to_owned(), value.parse().ok()?)))
        .collect()
}

/// What a client got: status, headers, body.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Got {
    /// Reads `response` whole.
    pub async fn read(response: reqwest::Response) -> Got {
        Got {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `X-Cache`, or `(none)`.
    pub fn x_cache(&self) -> &str {
        self.header("x-cache").unwrap_or("(none)")
    }
}

/// Polls `check` every 50 ms until it holds, for at most 5 s; whether it did.
pub async fn eventually<F: std::future::Future<Output = bool>>(
    mut check: impl FnMut() -> F,
) -> bool {
    for _ in 0..100 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check().await
}

/// The node's metrics at `addr`, scraped now.
pub async fn metrics_at(addr: SocketAddr) -> HashMap<String, f64> {
    scrape(&get_text(&format!("http://{addr}/metrics")).await)
}

/// Sends raw bytes on a fresh connection and returns everything the node answers until it
/// closes the connection; panics if it keeps the connection open for `within`.
pub async fn raw_exchange_within(addr: SocketAddr, request: &[u8], within: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the node kept the connection open for {within:?} after {:?}; it sent {:?}",
        String::from_utf8_lossy(request),
        String::from_utf8_lossy(&buf)
    );
    String::from_utf8_lossy(&buf).into_owned()
}

/// Path of an example guest built from guest-examples/.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("OUTPOST_EXAMPLES_WASM")).join(format!("{name}.wasm"))
}

/// Path of a test guest built from tests/guests/.
pub fn test_guest(name: &str) -> PathBuf {
    Path::new(env!("OUTPOST_TEST_GUESTS_WASM")).join(format!("{name}.wasm"))
}

/// A loopback port nobody holds now. Ports come from 20000-31999, below Linux's ephemeral
/// range, so a port cannot be handed to another test's outgoing connection between this
/// check and the node binding it; each is used once per test process.
pub fn free_addr() -> SocketAddr {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = 20_000 + (std::process::id() % 400) as u16 * 30;
    loop {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (start - 20_000 + offset) % 12_000;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
}

/// One request as the origin saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: http::HeaderMap,
    pub body_len: usize,
    pub body_prefix: Vec<u8>,
    /// Whether the body ended properly (false: the sender broke off mid-body).
    pub body_complete: bool,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A response the origin gives for one path, set by a test with [`Origin::set`].
#[derive(Debug, Clone, Default)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Send half the body, wait this long, then the rest.
    pub trickle: Option<Duration>,
    /// Append the value of this request header to the body (to tell variants apart).
    pub echo_header: Option<String>,
}

impl Canned {
    /// A 200 with `body` and these headers.
    pub fn ok(body: &str, headers: &[(&str, &str)]) -> Canned {
        Canned {
            status: 200,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.to_owned(),
            ..Canned::default()
        }
    }
}

/// A real HTTP origin on 127.0.0.1 that records every request.
///
/// Routes: paths set with [`Origin::set`] answer as canned (with a 304 when the request's
/// If-None-Match names the canned ETag); `/echo` streams the request body back; `/bytes/N`
/// streams N pattern bytes; `/slow/MS` waits MS milliseconds first; anything else answers
/// with `?status=` (default 200), a few fixed headers and a body naming the path.
pub struct Origin {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    canned: Arc<Mutex<HashMap<String, Canned>>>,
    concurrency: Arc<Concurrency>,
}

/// Requests being answered now, and the most there ever were at once.
#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    most: AtomicUsize,
}

/// Counts one request in flight until dropped.
struct InFlight(Arc<Concurrency>);

impl InFlight {
    fn new(concurrency: Arc<Concurrency>) -> Self {
        let now = concurrency.now.fetch_add(1, Ordering::SeqCst) + 1;
        concurrency.most.fetch_max(now, Ordering::SeqCst);
        Self(concurrency)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Origin {
    /// A plain-HTTP origin.
    pub async fn start() -> Origin {
        Self::start_with(None).await
    }

    /// An HTTPS origin presenting `cert_pem` / `key_pem`.
    pub async fn start_tls(cert_pem: &str, key_pem: &str) -> Origin {
        use rustls::pki_types::pem::PemObject;
        install_crypto();
        let certs =
            vec![rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Origin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let canned: Arc<Mutex<HashMap<String, Canned>>> = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let record = seen.clone();
        let answers = canned.clone();
        let concurrency: Arc<Concurrency> = Arc::default();
        let counter = concurrency.clone();
        let accepted = connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let record = record.clone();
                let answers = answers.clone();
                let counter = counter.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let in_flight = InFlight::new(counter.clone());
                        let answer = handle(req, record.clone(), answers.clone());
                        async move {
                            let response = answer.await;
                            drop(in_flight);
                            response
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                    }
                });
            }
        });
        Origin {
            addr,
            seen,
            connections,
            canned,
            concurrency,
        }
    }

    /// The most requests this origin was ever answering at the same time.
    pub fn most_concurrent(&self) -> usize {
        self.concurrency.most.load(Ordering::SeqCst)
    }

    /// Makes `path` answer with `canned` from now on.
    pub fn set(&self, path: &str, canned: Canned) {
        self.canned.lock().unwrap().insert(path.to_owned(), canned);
    }

    /// Requests received for `path` (ignoring the query).
    pub fn hits(&self, path: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path_and_query.split('?').next() == Some(path))
            .collect()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

type OriginBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A body that arrives in 16 KiB frames without a length, as a streaming origin sends it.
fn chunked(bytes: Bytes) -> OriginBody {
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = bytes
        .chunks(16 * 1024)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    StreamBody::new(futures::stream::iter(frames)).boxed()
}

fn pattern(n: usize) -> Bytes {
    Bytes::from((0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

/// The bytes `/bytes/N` sends, for comparison.
pub fn pattern_bytes(n: usize) -> Vec<u8> {
    pattern(n).to_vec()
}

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    canned: Arc<Mutex<HashMap<String, Canned>>>,
) -> Result<hyper::Response<OriginBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let mut record = Seen {
        method: parts.method.to_string(),
        path_and_query: path_and_query.clone(),
        headers: parts.headers.clone(),
        body_len: 0,
        body_prefix: Vec::new(),
        body_complete: false,
    };
    let collected = body.collect().await;
    record.body_complete = collected.is_ok();
    let bytes = collected.map(|b| b.to_bytes()).unwrap_or_default();
    record.body_len = bytes.len();
    record.body_prefix = bytes[..bytes.len().min(64)].to_vec();
    seen.lock().unwrap().push(record);

    let answer = canned.lock().unwrap().get(&path).cloned();
    if let Some(answer) = answer {
        return Ok(answer_canned(answer, &parts.headers).await);
    }

    if path == "/echo" {
        // The whole body was read first (as most origins do; answering while still reading
        // would deadlock a guest that sends before it reads); now stream it back in pieces.
        return Ok(hyper::Response::builder()
            .header("x-origin", "echo")
            .body(chunked(bytes))
            .unwrap());
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        let n: usize = n.parse().unwrap_or(0);
        return Ok(hyper::Response::builder()
            .header("x-origin", "bytes")
            .body(chunked(pattern(n)))
            .unwrap());
    }
    if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
    }
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let status: u16 = query
        .get("status")
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let text = format!("origin saw {} {}\n", parts.method, path_and_query);
    Ok(hyper::Response::builder()
        .status(status)
        .header("x-origin", "default")
        .header("set-cookie", "session=abc; Path=/")
        .header("content-type", "text/plain")
        .body(http_body_util::Full::new(Bytes::from(text)).boxed())
        .unwrap())
}

async fn answer_canned(canned: Canned, request: &http::HeaderMap) -> hyper::Response<OriginBody> {
    tokio::time::sleep(canned.delay).await;
    let mut builder = hyper::Response::builder().status(canned.status);
    let mut etag = None;
    for (name, value) in &canned.headers {
        if name.eq_ignore_ascii_case("etag") {
            etag = Some(value.clone());
        }
        builder = builder.header(name, value);
    }
    let inm = request.get("if-none-match").and_then(|v| v.to_str().ok());
    if let (Some(etag), Some(inm)) = (&etag, inm)
        && inm.split(',').any(|c| c.trim() == etag)
    {
        return builder
            .status(304)
            .body(http_body_util::Empty::new().boxed())
            .unwrap();
    }
    let mut body = canned.body.clone();
    if let Some(name) = &canned.echo_header {
        body.push_str(
            request
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-"),
        );
    }
    let body = Bytes::from(body);
    match canned.trickle {
        None => builder
            .header("content-length", body.len())
            .body(http_body_util::Full::new(body).boxed())
            .unwrap(),
        Some(pause) => {
            let half = body.len() / 2;
            let (first, rest) = (body.slice(..half), body.slice(half..));
            let stream = futures::StreamExt::chain(
                futures::stream::iter([first]),
                futures::stream::once(async move {
                    tokio::time::sleep(pause).await;
                    rest
                }),
            );
            let stream = futures::StreamExt::map(stream, |b| Ok::<_, Infallible>(Frame::data(b)));
            builder.body(StreamBody::new(stream).boxed()).unwrap()
        }
    }
}

/// The node binary, started from a config file, killed on drop.
pub struct Node {
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Starts the node on `config`, where `{listen}` is replaced by a fresh address, and
    /// waits until it accepts connections.
    pub async fn start(config: &str) -> Node {
        let addr = free_addr();
        Self::start_on(
            addr,
            &config.replace("{listen}", &addr.to_string()),
            &[addr],
        )
        .await
    }

    /// Starts the node on a complete config and waits for every address in `wait_for`.
    pub async fn start_on(addr: SocketAddr, config: &str, wait_for: &[SocketAddr]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outpost.toml");
        std::fs::write(&path, config).unwrap();
        Self::spawn(
            addr,
            &["serve", "--config", path.to_str().unwrap()],
            dir,
            wait_for,
        )
        .await
    }

    /// Starts the node with raw command-line arguments.
    pub async fn spawn(
        addr: SocketAddr,
        args: &[&str],
        dir: tempfile::TempDir,
        wait_for: &[SocketAddr],
    ) -> Node {
        let log = dir.path().join("node.log");
        let child = outpost_command()
            .args(args)
            .env("OUTPOST_LOG", "info,pingora_core=warn")
            .stdout(Stdio::from(
                std::fs::File::create(dir.path().join("stdout.log")).unwrap(),
            ))
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("starting the node");
        let mut node = Node {
            addr,
            child,
            log,
            _dir: dir,
        };
        for addr in wait_for {
            node.wait_listening(*addr).await;
        }
        node
    }

    async fn wait_listening(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "node exited with {status} before listening on {addr}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "node not listening on {addr} after 60 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The node process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The node process's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// The config file `start`/`start_on` wrote (rewrite it, then reload).
    pub fn config_path(&self) -> PathBuf {
        self._dir.path().join("outpost.toml")
    }

    /// Sends the node `signal` (`HUP`, `QUIT`, `TERM`, ...).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// Waits up to `limit` for the process to exit; its exit status, if it did.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// What the node has printed on stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// What the node has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to 5 s for the log to contain `needle`.
    pub async fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log();
            if log.contains(needle) || Instant::now() > deadline {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// reqwest is built without a default TLS provider; every client uses ring.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An HTTP/1.1 client.
pub fn http1() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .build()
        .unwrap()
}

/// An HTTP/1.1 client that opens a new connection for every request.
pub fn http1_fresh() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// An HTTP/1.1 client connecting from the loopback address `127.0.0.LAST` (so tests can
/// play several clients), not following redirects.
pub fn http1_from(last: u8) -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from([127, 0, 0, last]))
        .build()
        .unwrap()
}

/// GETs `url` over HTTP/1.1 and returns the body as text.
pub async fn get_text(url: &str) -> String {
    http1().get(url).send().await.unwrap().text().await.unwrap()
}

/// An h2c (HTTP/2 with prior knowledge, no TLS) client.
pub fn h2c() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .unwrap()
}

/// A config whose one service, `svc`, answers every host with `guest`. `service_extra` is
/// added under the service's table; each backend is (name, its TOML lines).
pub fn one_service(guest: &Path, service_extra: &str, backends: &[(&str, String)]) -> String {
    let mut config = format!(
        "[server]\nlisten = [\"{{listen}}\"]\n\n[services.svc]\ndomains = [\"*\"]\nguest = {}\n{service_extra}\n",
        toml_path(guest)
    );
    for (name, lines) in backends {
        config.push_str(&format!("\n[services.svc.backends.{name}]\n{lines}\n"));
    }
    config
}

/// A TOML string literal for a path.
pub fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// Runs `outpost` with `args` to completion and returns (success, stdout + stderr).
/// The node binary, with the default compile cache in the build's temp directory (shared
/// by every test: entries are written atomically) rather than the user's.
pub fn outpost_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_outpost-under-test"));
    command.env_remove("CACHE_DIRECTORY").env(
        "XDG_CACHE_HOME",
        concat!(env!("CARGO_TARGET_TMPDIR"), "/xdg-cache"),
    );
    command
}

pub fn run_cli(args: &[&str]) -> (bool, String) {
    let (code, text) = run_cli_code(args);
    (code == Some(0), text)
}

/// Runs the binary to completion: its exit code and everything it printed.
pub fn run_cli_code(args: &[&str]) -> (Option<i32>, String) {
    let out = outpost_command().args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// Writes a small MaxMind-format City database to `path`: 127.0.0.1 is in Berlin (with an
/// ASN), 127.0.0.2 in New York, 203.0.113.0/24 in France (country only); nothing else.
pub fn write_geo_database(path: &Path) {
    use maxminddb_writer::Database;
    use maxminddb_writer::metadata::IpVersion;
    use maxminddb_writer::paths::IpAddrWithMask;
    let mut db = Database::default();
    db.metadata.ip_version = IpVersion::V4;
    db.metadata.binary_format_major_version = 2;
    db.metadata.database_type = "Outpost-Test-City".into();
    db.metadata.languages = vec!["en".into()];
    let records = [
        (
            "127.0.0.1/32",
            serde_json::json!({
                "continent": {"code": "EU"},
                "country": {"iso_code": "DE", "names": {"en": "Germany", "de": "Deutschland"}},
                "subdivisions": [{"iso_code": "BE"}],
                "city": {"names": {"en": "Berlin"}},
                "postal": {"code": "10115"},
                "location": {"latitude": 52.52, "longitude": 13.405, "time_zone": "Europe/Berlin"},
                "autonomous_system_number": 64500,
                "autonomous_system_organization": "Example Net"
            }),
        ),
        (
            "127.0.0.2/32",
            serde_json::json!({
                "continent": {"code": "NA"},
                "country": {"iso_code": "US", "names": {"en": "United States"}},
                "city": {"names": {"en": "New York"}},
                "location": {"latitude": 40.71, "longitude": -74.0, "time_zone": "America/New_York"}
            }),
        ),
        (
            "203.0.113.0/24",
            serde_json::json!({"country": {"iso_code": "FR", "names": {"en": "France"}}}),
        ),
    ];
    for (network, record) in records {
        let data = db.insert_value(record).unwrap();
        db.insert_node(network.parse::<IpAddrWithMask>().unwrap(), data);
    }
    let file = std::fs::File::create(path).unwrap();
    db.write_to(std::io::BufWriter::new(file)).unwrap();
}

/// A TLS client config that trusts exactly these PEM certificates.
pub fn trusting(pems: &[&str]) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for pem in pems {
        let cert = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        roots.add(cert).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth()
}

/// A self-signed certificate for `names`, as (PEM cert, PEM key, DER cert).
pub fn certificate(names: &[&str]) -> (String, String, Vec<u8>) {
    let cert =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    (
        cert.cert.pem(),
        cert.signing_key.serialize_pem(),
        cert.cert.der().to_vec(),
    )
}
