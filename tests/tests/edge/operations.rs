//! Operating a node that serves: reloads, a binary upgrade and a drain, under a client
//! loop that must never see a failed request.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::support::*;

const TOKEN: &str = "operations-admin-token-0123456789";

/// What the config can vary between reloads.
#[derive(Clone, Copy)]
struct Variant {
    /// `main.test` runs `hello` (false) or `origin_proxy` (true).
    main_proxies: bool,
    /// `proxy.test`'s backend is origin A (false) or B (true).
    backend_b: bool,
    /// The TLS listener serves certificate 1 (false) or 2 (true).
    cert_2: bool,
}

struct Files {
    dir: tempfile::TempDir,
    certs: [(String, String, Vec<u8>); 2],
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let certs = [certificate(&["edge.test"]), certificate(&["edge.test"])];
        for (i, (cert, key, _)) in certs.iter().enumerate() {
            std::fs::write(dir.path().join(format!("cert{i}.pem")), cert).unwrap();
            std::fs::write(dir.path().join(format!("key{i}.pem")), key).unwrap();
        }
        Files { dir, certs }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

struct Addrs {
    plain: SocketAddr,
    tls: SocketAddr,
    admin: SocketAddr,
    metrics: SocketAddr,
}

fn config(
    addrs: &Addrs,
    files: &Files,
    origins: [&Origin; 2],
    v: Variant,
    main_guest: &Path,
) -> String {
    let cert = usize::from(v.cert_2);
    format!(
        r#"
[server]
listen = ["{plain}"]
drain_grace_secs = 1
drain_timeout_secs = 10

[tls]
listen = ["{tls}"]

[[tls.certificates]]
domains = ["*"]
cert = {cert_path}
key = {key_path}

[metrics]
listen = "{metrics}"

[admin]
listen = "{admin}"
token = "{TOKEN}"

[services.main]
domains = ["main.test"]
guest = {main_guest}

[services.main.backends.origin]
url = "{origin_a}"

[services.proxy]
domains = ["proxy.test", "edge.test"]
guest = {proxy_guest}

[services.proxy.backends.origin]
url = "{backend}"
"#,
        plain = addrs.plain,
        tls = addrs.tls,
        metrics = addrs.metrics,
        admin = addrs.admin,
        cert_path = toml_path(&files.path(&format!("cert{cert}.pem"))),
        key_path = toml_path(&files.path(&format!("key{cert}.pem"))),
        main_guest = toml_path(main_guest),
        origin_a = origins[0].url(),
        proxy_guest = toml_path(&example("origin_proxy")),
        backend = origins[usize::from(v.backend_b)].url(),
    )
}

fn main_guest(v: Variant) -> PathBuf {
    example(if v.main_proxies {
        "origin_proxy"
    } else {
        "hello"
    })
}

/// Requests sent and failed by the background clients.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    failed: AtomicU64,
    failures: std::sync::Mutex<Vec<String>>,
}

/// Keeps `client` sending requests (bounded: one every few milliseconds) until `stop`.
fn client_loop(
    name: &'static str,
    client: reqwest::Client,
    plain: SocketAddr,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let (host, path) = if n.is_multiple_of(2) {
                ("main.test", "/")
            } else {
                ("proxy.test", "/cached")
            };
            // HTTP/2 routes by the URL's authority: name the host there, resolved to the node.
            let result = client
                .get(format!("http://{host}:{}{path}", plain.port()))
                .send()
                .await;
            tally.sent.fetch_add(1, Ordering::Relaxed);
            let failure = match result {
                Ok(response) if response.status() == 200 => match response.bytes().await {
                    Ok(_) => None,
                    Err(e) => Some(format!("{name} {host}{path}: body: {e:?}")),
                },
                Ok(response) => Some(format!("{name} {host}{path}: status {}", response.status())),
                Err(e) => Some(format!("{name} {host}{path}: {e:?}")),
            };
            if let Some(failure) = failure {
                tally.failed.fetch_add(1, Ordering::Relaxed);
                tally.failures.lock().unwrap().push(failure);
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    })
}

async fn get(addr: SocketAddr, host: &str, path: &str) -> (u16, String, Option<String>) {
    let response = http1_fresh()
        .get(format!("http://{addr}{path}"))
        .header("host", host)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let x_cache = response
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, response.text().await.unwrap(), x_cache)
}

/// The certificate the TLS listener presents now.
async fn presented_certificate(addrs: &Addrs, files: &Files) -> Vec<u8> {
    install_crypto();
    let tls = trusting(&[&files.certs[0].0, &files.certs[1].0]);
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .tls_info(true)
        .resolve("edge.test", addrs.tls)
        .no_proxy()
        .build()
        .unwrap();
    let response = client
        .get(format!("https://edge.test:{}/tls", addrs.tls.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .unwrap()
        .to_vec()
}

/// Checks that every part of `v` is what answers now.
async fn assert_serving(addrs: &Addrs, files: &Files, v: Variant, when: &str) {
    let (status, body, _) = get(addrs.plain, "main.test", "/page").await;
    assert_eq!(status, 200, "{when}");
    if v.main_proxies {
        assert_eq!(body, "from origin A", "{when}: main.test runs origin_proxy");
    } else {
        assert!(
            body.starts_with("Hello"),
            "{when}: main.test runs hello: {body}"
        );
    }
    let (_, body, _) = get(addrs.plain, "proxy.test", "/page").await;
    let expected = if v.backend_b {
        "from origin B"
    } else {
        "from origin A"
    };
    assert_eq!(body, expected, "{when}: proxy.test's backend");
    let der = presented_certificate(addrs, files).await;
    assert_eq!(
        der,
        files.certs[usize::from(v.cert_2)].2,
        "{when}: the certificate"
    );
}

async fn reload_via_admin(addrs: &Addrs) -> (u16, String) {
    let response = http1()
        .post(format!("http://{}/reload", addrs.admin))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn reloads(addrs: &Addrs, result: &str) -> f64 {
    let key = format!("outpost_config_reloads_total{{result=\"{result}\"}}");
    metrics_at(addrs.metrics)
        .await
        .get(&key)
        .copied()
        .unwrap_or(0.0)
}

async fn reload_via_sighup(node: &Node, addrs: &Addrs) {
    let before = reloads(addrs, "success").await;
    node.signal("HUP");
    for _ in 0..200 {
        if reloads(addrs, "success").await > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("SIGHUP reload did not succeed:\n{}", node.log());
}

#[tokio::test]
async fn reloads_an_upgrade_and_a_drain_fail_no_request() {
    let origin_a = Origin::start().await;
    let origin_b = Origin::start().await;
    for (origin, name) in [(&origin_a, "A"), (&origin_b, "B")] {
        origin.set("/page", Canned::ok(&format!("from origin {name}"), &[]));
        origin.set(
            "/cached",
            Canned::ok(
                "cached before the reloads",
                &[("cache-control", "max-age=600")],
            ),
        );
    }
    let files = Files::new();
    let addrs = Addrs {
        plain: free_addr(),
        tls: free_addr(),
        admin: free_addr(),
        metrics: free_addr(),
    };
    let mut v = Variant {
        main_proxies: false,
        backend_b: false,
        cert_2: false,
    };
    let text = config(&addrs, &files, [&origin_a, &origin_b], v, &main_guest(v));
    let mut node = Node::start_on(
        addrs.plain,
        &text,
        &[addrs.plain, addrs.tls, addrs.admin, addrs.metrics],
    )
    .await;
    let config_path = node.config_path();
    assert_serving(&addrs, &files, v, "at start").await;
    // Cached before any reload.
    assert_eq!(
        get(addrs.plain, "proxy.test", "/cached").await.2.as_deref(),
        Some("MISS")
    );

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let resolving = |builder: reqwest::ClientBuilder| {
        builder
            .resolve("main.test", addrs.plain)
            .resolve("proxy.test", addrs.plain)
            .no_proxy()
            .build()
            .unwrap()
    };
    let loops = [
        client_loop(
            "http/1.1",
            resolving(reqwest::Client::builder().http1_only()),
            addrs.plain,
            tally.clone(),
            stop.clone(),
        ),
        client_loop(
            "h2c",
            resolving(reqwest::Client::builder().http2_prior_knowledge()),
            addrs.plain,
            tally.clone(),
            stop.clone(),
        ),
    ];

    for i in 0..20u32 {
        match i % 3 {
            0 => v.main_proxies = !v.main_proxies,
            1 => v.backend_b = !v.backend_b,
            _ => v.cert_2 = !v.cert_2,
        }
        let text = config(&addrs, &files, [&origin_a, &origin_b], v, &main_guest(v));
        std::fs::write(&config_path, text).unwrap();
        if i.is_multiple_of(2) {
            reload_via_sighup(&node, &addrs).await;
        } else {
            let (status, body) = reload_via_admin(&addrs).await;
            assert_eq!(status, 200, "reload {i}: {body}");
        }
        assert_serving(&addrs, &files, v, &format!("after reload {i}")).await;
        let (_, _, x_cache) = get(addrs.plain, "proxy.test", "/cached").await;
        assert_eq!(
            x_cache.as_deref(),
            Some("HIT"),
            "the cache survives reload {i}"
        );
    }
    assert_eq!(
        origin_a.hits("/cached").len() + origin_b.hits("/cached").len(),
        1
    );

    // Broken reloads leave the running config serving.
    let good = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(&config_path, format!("{good}\n[services.main\n")).unwrap();
    let (status, body) = reload_via_admin(&addrs).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("outpost.toml"), "names the file: {body}");
    let broken = files.path("broken.wasm");
    std::fs::write(&broken, b"\0asm this is not a component").unwrap();
    let text = config(&addrs, &files, [&origin_a, &origin_b], v, &broken);
    std::fs::write(&config_path, text).unwrap();
    let (status, body) = reload_via_admin(&addrs).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("broken.wasm"), "names the guest: {body}");
    assert_eq!(reloads(&addrs, "failure").await, 2.0);
    assert_serving(&addrs, &files, v, "after the broken reloads").await;
    // A listener change needs a new process, and the error says so.
    std::fs::write(
        &config_path,
        good.replace(&addrs.admin.to_string(), &free_addr().to_string()),
    )
    .unwrap();
    let (status, body) = reload_via_admin(&addrs).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("admin.listen") && body.contains("--upgrade"),
        "{body}"
    );
    std::fs::write(&config_path, &good).unwrap();

    // A binary upgrade: the new process takes the sockets over, the old one drains.
    let log_dir = tempfile::tempdir().unwrap();
    let successor = Node::spawn(
        addrs.plain,
        &[
            "serve",
            "--config",
            config_path.to_str().unwrap(),
            "--upgrade",
        ],
        log_dir,
        &[],
    )
    .await;
    successor.wait_log("waiting up to").await;
    node.signal("QUIT");
    let exited = node.wait_exit(Duration::from_secs(30)).await;
    assert!(
        exited.is_some_and(|s| s.success()),
        "the old node drains and exits 0:\n{}",
        node.log()
    );
    assert_ne!(successor.pid(), node.pid());
    assert_serving(&addrs, &files, v, "after the upgrade").await;
    let (status, body) = reload_via_admin(&addrs).await;
    assert_eq!(status, 200, "the new process reloads too: {body}");

    stop.store(true, Ordering::Relaxed);
    for handle in loops {
        handle.await.unwrap();
    }
    let sent = tally.sent.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    println!("sent {sent} requests through 22 reloads and an upgrade; {failed} failed");
    assert!(sent > 500, "the clients kept sending: {sent}");
    assert_eq!(failed, 0, "{:#?}", tally.failures.lock().unwrap());
}

#[tokio::test]
async fn sigterm_fails_readiness_first_then_drains_and_exits() {
    let (plain, admin) = (free_addr(), free_addr());
    let config = format!(
        "[server]\nlisten = [\"{plain}\"]\ndrain_grace_secs = 2\n\n[admin]\nlisten = \"{admin}\"\n\
         token = \"{TOKEN}\"\n\n\
         [services.s]\ndomains = [\"*\"]\nguest = {}\n",
        toml_path(&example("hello"))
    );
    let mut node = Node::start_on(plain, &config, &[plain, admin]).await;
    let ready = || async {
        http1_fresh()
            .get(format!("http://{admin}/ready"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(ready().await, 200);
    let client = http1();
    assert_eq!(
        client.get(node.url("/")).send().await.unwrap().status(),
        200
    );
    node.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ready().await, 503, "unready while still serving");
    let health = http1_fresh()
        .get(format!("http://{admin}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "still alive");
    let response = client.get(node.url("/")).send().await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "still serving during the grace period"
    );
    assert_eq!(
        response.headers()["connection"],
        "close",
        "and moving clients off"
    );
    let status = node.wait_exit(Duration::from_secs(15)).await;
    assert!(status.is_some_and(|s| s.success()), "{}", node.log());
    assert!(node.log().contains("drained"), "{}", node.log());
}

#[tokio::test]
async fn sigusr2_starts_the_new_binary_which_takes_the_sockets_over() {
    let addr = free_addr();
    let config = format!(
        "[server]\nlisten = [\"{addr}\"]\n\n[services.s]\ndomains = [\"*\"]\nguest = {}\n",
        toml_path(&example("hello"))
    );
    let mut node = Node::start_on(addr, &config, &[addr]).await;
    let client = http1();
    assert_eq!(
        client.get(node.url("/")).send().await.unwrap().status(),
        200
    );
    node.signal("USR2");
    let log = node.wait_log("started the new binary (pid ").await;
    let successor: u32 = log
        .split("started the new binary (pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("the successor's pid is logged:\n{log}"));
    // However this test ends, the successor goes with it.
    struct Reap(u32);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
    let _reap = Reap(successor);
    let mut served = 0;
    while node.wait_exit(Duration::from_millis(10)).await.is_none() {
        let response = client.get(node.url("/")).send().await.unwrap();
        assert_eq!(response.status(), 200, "served throughout the handover");
        served += 1;
        assert!(served < 5_000, "the old node never left:\n{}", node.log());
    }
    assert!(std::path::Path::new(&format!("/proc/{successor}")).exists());
    let response = http1_fresh().get(node.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200, "the new binary serves");
}

#[tokio::test]
async fn sigusr1_reopens_the_access_log_after_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("access.log");
    let (addr, metrics) = (free_addr(), free_addr());
    let config = format!(
        "[server]\nlisten = [\"{addr}\"]\n\n[metrics]\nlisten = \"{metrics}\"\n\n[log]\naccess = {}\n\n\
         [services.s]\ndomains = [\"*\"]\nguest = {}\n",
        toml_path(&log_path),
        toml_path(&example("hello"))
    );
    let node = Node::start_on(addr, &config, &[addr, metrics]).await;
    let lines = |path: &Path| {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"path\":\"/before\"") || l.contains("\"path\":\"/after\""))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    http1().get(node.url("/before")).send().await.unwrap();
    let eventually = |path: PathBuf, n: usize| async move {
        for _ in 0..100 {
            if lines(&path).len() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        false
    };
    assert!(eventually(log_path.clone(), 1).await);
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log_path, &rotated).unwrap();
    node.signal("USR1");
    node.wait_log("reopening the access log").await;
    // The writer reopens before its next line.
    http1().get(node.url("/after")).send().await.unwrap();
    assert!(eventually(log_path.clone(), 1).await, "{}", node.log());
    assert!(lines(&log_path)[0].contains("/after"));
    assert_eq!(lines(&rotated).len(), 1, "the rotated file keeps its line");
    let m = metrics_at(metrics).await;
    assert_eq!(m.get("outpost_access_log_dropped_total"), Some(&0.0));
}
