//! The built-in default node: `outpost serve` with no arguments.
//!
//! A new user has nothing yet (no guest, no origin, no config), so the node brings its
//! own: the `hello` and `origin-proxy` example guests (compiled into the binary by the build
//! script) and a tiny demo origin on loopback for `origin-proxy` to fetch from.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::config::{BackendConfig, Config, ServiceConfig};
use crate::host_pattern::HostPattern;

/// The `hello` example guest, built from guest-examples/hello.
pub static HELLO_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hello.wasm"));
/// The `origin-proxy` example guest, built from guest-examples/origin-proxy.
pub static ORIGIN_PROXY_WASM: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/origin_proxy.wasm"));

/// Where the demo origin listens by default: beside the node's default port.
pub const DEMO_ORIGIN: &str = "127.0.0.1:7677";

/// Writes the embedded guests to a private directory and returns a config that serves
/// `hello.localhost` with `hello` and every other host with `origin-proxy` in front of
/// the demo origin at `origin`.
pub fn default_config(listen: SocketAddr, origin: SocketAddr) -> std::io::Result<Config> {
    let dir = std::env::temp_dir().join(format!("outpost-default-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let hello = dir.join("hello.wasm");
    let proxy = dir.join("origin-proxy.wasm");
    std::fs::write(&hello, HELLO_WASM)?;
    std::fs::write(&proxy, ORIGIN_PROXY_WASM)?;

    let mut config = Config {
        source: "built-in default".into(),
        ..Config::default()
    };
    let hello_domain = HostPattern::parse("hello.localhost").expect("a valid host name");
    config.services.insert(
        "hello".to_owned(),
        ServiceConfig::new(vec![hello_domain], hello),
    );
    let mut origin_proxy = ServiceConfig::new(vec![HostPattern::Any], proxy);
    origin_proxy.backends.insert(
        "origin".to_owned(),
        BackendConfig::from_url(format!("http://{origin}")),
    );
    config
        .services
        .insert("origin-proxy".to_owned(), origin_proxy);
    config.server.listen = vec![listen];
    Ok(config)
}

/// Starts the demo origin on its own thread. It answers every request with a short text
/// that echoes what it received, so a user can see what the guest changed.
pub fn spawn_demo_origin(addr: SocketAddr) -> std::io::Result<()> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("demo-origin".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("demo origin runtime");
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("demo origin listener");
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    tokio::spawn(async move {
                        let service = service_fn(
                            |request: hyper::Request<hyper::body::Incoming>| async move {
                                let (parts, body) = request.into_parts();
                                let size = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes().len())
                                    .unwrap_or(0);
                                let mut text = format!(
                                    "Hello from the Outpost demo origin.\nYou sent: {} {}\n",
                                    parts.method, parts.uri
                                );
                                for (name, value) in &parts.headers {
                                    text.push_str(&format!(
                                        "  {name}: {}\n",
                                        String::from_utf8_lossy(value.as_bytes())
                                    ));
                                }
                                text.push_str(&format!("  ({size} body bytes)\n"));
                                let response = hyper::Response::builder()
                                    .header("content-type", "text/plain; charset=utf-8")
                                    .header("cache-control", "public, max-age=60")
                                    .body(Full::new(Bytes::from(text)))
                                    .expect("static response");
                                Ok::<_, Infallible>(response)
                            },
                        );
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })?;
    Ok(())
}
