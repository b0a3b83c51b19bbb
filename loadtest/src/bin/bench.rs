//! `outpost-bench`: the node's real request path, in process and without client sockets,
//! timed request by request. It builds a node from the example guests and drives
//! `Site::handle` (the pipeline the front end and the test harness use) on one thread, so
//! what it reports is the node's own cost per request: routing, guest instantiation and
//! execution, the cache, response assembly. No HTTP codec, no TCP.
//!
//! ```text
//! outpost-bench [--guests DIR] [--iterations N] [--only TEXT]
//! ```
//!
//! `--only` runs just the scenarios whose label contains TEXT (for profiling one path).
//!
//! Prints a Markdown table (median and p99 in µs per scenario) that `loadtest/run.sh`
//! appends to its report. A timing here is a measurement, not a test: nothing fails on it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use outpost_proxy::config::{
    BackendConfig, Config, ResponseCacheConfig, ReuseConfig, ServiceConfig,
};
use outpost_proxy::host_pattern::HostPattern;
use outpost_proxy::node::Node;
use outpost_proxy::service::{Downstream, Site};

/// The origin's one body: 1 KiB, cacheable by shared caches for an hour.
const BODY_1K: &[u8] = &[b'a'; 1024];

fn main() -> anyhow::Result<()> {
    let mut guests = PathBuf::from("guest-examples/target/wasm32-wasip2/release");
    let mut iterations = 20_000usize;
    let mut only = String::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--guests" => guests = args.next().context("--guests DIR")?.into(),
            "--iterations" => {
                iterations = args.next().context("--iterations N")?.parse()?;
            }
            "--only" => only = args.next().context("--only TEXT")?,
            other => {
                bail!("unknown argument `{other}` (use --guests DIR, --iterations N, --only TEXT)")
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(guests, iterations, &only))
}

async fn run(guests: PathBuf, iterations: usize, only: &str) -> anyhow::Result<()> {
    let origin = start_origin().await?;
    let node = Node::build(config(&guests, origin)?)?;
    let site = node.site();
    let hello = site.service("hello").context("service hello")?.clone();

    let mut rows = Vec::new();
    let instantiate = "store + instantiate (hello, no call)";
    if instantiate.contains(only) {
        rows.push(
            time(instantiate, iterations, || {
                let (hello, shared) = (hello.clone(), site.shared().clone());
                async move {
                    hello
                        .time_instantiation(&shared)
                        .await
                        .map_err(|failure| anyhow::anyhow!("instantiating hello: {failure}"))?;
                    Ok(())
                }
            })
            .await?,
        );
    }
    for (label, host, path, expect) in [
        ("hello, fresh instance", "hello.test", "/", None),
        ("hello, reused instance", "reuse.test", "/", None),
        (
            "1 KiB fetch-cache hit through origin-proxy",
            "proxy.test",
            "/1k",
            Some("HIT"),
        ),
        (
            "1 KiB response-cache hit (no guest)",
            "edge.test",
            "/1k",
            Some("HIT"),
        ),
    ] {
        if !label.contains(only) {
            continue;
        }
        // Prime the caches; a scenario that is not what it says is an error, not a number.
        let answer = request(&site, host, path).await?;
        let answer = request(&site, host, path)
            .await
            .or(Ok::<_, anyhow::Error>(answer))?;
        if let Some(expected) = expect
            && answer.as_deref() != Some(expected)
        {
            bail!("{label}: expected X-Cache {expected}, got {answer:?}");
        }
        rows.push(
            time(label, iterations, || {
                let site = site.clone();
                async move {
                    request(&site, host, path).await?;
                    Ok(())
                }
            })
            .await?,
        );
    }

    println!("| in-process scenario | median µs | p99 µs | requests |");
    println!("|---|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {:.1} | {:.1} | {} |",
            row.label, row.median_us, row.p99_us, row.iterations
        );
    }
    Ok(())
}

struct Row {
    label: &'static str,
    median_us: f64,
    p99_us: f64,
    iterations: usize,
}

/// Runs `once` a tenth of `iterations` to warm up, then `iterations` times, timing each.
async fn time<F, Fut>(label: &'static str, iterations: usize, mut once: F) -> anyhow::Result<Row>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    for _ in 0..iterations / 10 {
        once().await?;
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        once().await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1e6
    };
    Ok(Row {
        label,
        median_us: at(0.5),
        p99_us: at(0.99),
        iterations,
    })
}

/// One GET through the node's pipeline, body read to the end; its `X-Cache`, if any.
async fn request(site: &Arc<Site>, host: &str, path: &str) -> anyhow::Result<Option<String>> {
    let request = http::Request::get(path)
        .header(http::header::HOST, host)
        .body(outpost_proxy::http::empty_body())?;
    let downstream = Downstream::in_process(site.shared().ids.next(), None);
    let response = site.handle(request, downstream).await;
    let status = response.status();
    let x_cache = response
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.into_body().collect().await?.to_bytes();
    if status != 200 || body.is_empty() {
        bail!("{host}{path}: {status} with {} bytes", body.len());
    }
    Ok(x_cache)
}

/// The node: hello (fresh and reused), origin-proxy through the fetch cache, and
/// origin-proxy behind the response cache, all fetching from `origin`.
fn config(guests: &std::path::Path, origin: SocketAddr) -> anyhow::Result<Config> {
    let guest = |name: &str| {
        let path = guests.join(format!("{name}.wasm"));
        if path.is_file() {
            Ok(path)
        } else {
            bail!(
                "{} is missing: build the examples (cd guest-examples && cargo build --release --target wasm32-wasip2)",
                path.display()
            )
        }
    };
    let service = |domain: &str, guest: PathBuf| {
        let mut service = ServiceConfig::new(vec![HostPattern::Exact(domain.into())], guest);
        service.server_timing = false;
        service
    };
    let mut config = Config::default();
    config.log.level = "warn".into();
    config
        .services
        .insert("hello".into(), service("hello.test", guest("hello")?));
    let mut reuse = service("reuse.test", guest("hello")?);
    reuse.reuse = Some(ReuseConfig::default());
    config.services.insert("reuse".into(), reuse);
    let origin_url = format!("http://{origin}");
    let mut proxy = service("proxy.test", guest("origin_proxy")?);
    proxy
        .backends
        .insert("origin".into(), BackendConfig::from_url(origin_url.clone()));
    config.services.insert("proxy".into(), proxy);
    let mut edge = service("edge.test", guest("origin_proxy")?);
    edge.backends
        .insert("origin".into(), BackendConfig::from_url(origin_url));
    edge.response_cache = ResponseCacheConfig {
        enabled: true,
        ..ResponseCacheConfig::default()
    };
    config.services.insert("edge".into(), edge);
    config.validate()?;
    Ok(config)
}

/// A tiny origin on 127.0.0.1: every path answers 1 KiB, public for an hour.
async fn start_origin() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    let response = http::Response::builder()
                        .header(http::header::CACHE_CONTROL, "public, max-age=3600")
                        .body(Full::new(Bytes::from_static(BODY_1K)))
                        .expect("a valid response");
                    Ok::<_, std::convert::Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}
