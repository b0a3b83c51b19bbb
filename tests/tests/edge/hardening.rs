//! The node on the open internet: raw bytes over plain sockets and hand-driven HTTP/2, as
//! an attacker sends them. Each test is one class of input; the node must refuse with the
//! right status or close, never forward an ambiguous request, never hang, and keep its
//! memory and its good traffic's latency.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// A node with short deadlines, a metrics listener, and services for every test here:
/// `hello.test` (answers itself), `proxy.test` (origin-proxy, 1 KiB body limit),
/// `spin.test` (never answers) and `slow.test` (origin-proxy limited to 2 at once).
async fn hardened(origin: &Origin, server_extra: &str) -> (Node, SocketAddr) {
    let metrics = free_addr();
    let server_extra = if server_extra.contains("header_timeout_ms") {
        server_extra.to_owned()
    } else {
        format!("header_timeout_ms = 1000\n{server_extra}")
    };
    let config = format!(
        r#"
[server]
listen = ["{{listen}}"]
keepalive_timeout_secs = 1
{server_extra}

[runtime]
queue_timeout_ms = 500

[metrics]
listen = "{metrics}"

[services.hello]
domains = ["hello.test"]
guest = {hello}

[services.proxy]
domains = ["proxy.test"]
guest = {proxy}
limits = {{ max_request_body_bytes = 1024 }}
[services.proxy.backends.origin]
url = "{origin}"

[services.spin]
domains = ["spin.test"]
guest = {spin}

[services.slow]
domains = ["slow.test"]
guest = {proxy}
limits = {{ max_concurrent = 2 }}
[services.slow.backends.origin]
url = "{origin}"
"#,
        hello = toml_path(&example("hello")),
        proxy = toml_path(&example("origin_proxy")),
        spin = toml_path(&test_guest("spin")),
        origin = origin.url(),
    );
    let addr = free_addr();
    let node = Node::start_on(
        addr,
        &config.replace("{listen}", &addr.to_string()),
        &[addr, metrics],
    )
    .await;
    (node, metrics)
}

/// Time until the node closes a connection after it was sent `bytes` (drip-fed when
/// `drip` is set), and what it answered; panics past `limit`.
async fn closed_after(
    addr: SocketAddr,
    bytes: &[u8],
    drip: Option<Duration>,
    limit: Duration,
) -> (Duration, String) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    match drip {
        None => stream.write_all(bytes).await.unwrap(),
        Some(pause) => {
            for byte in bytes {
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
        }
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "still open after {limit:?}; sent {:?}",
        String::from_utf8_lossy(bytes)
    );
    (
        started.elapsed(),
        String::from_utf8_lossy(&answer).into_owned(),
    )
}

#[tokio::test]
async fn every_connection_state_has_a_deadline() {
    let origin = Origin::start().await;
    let (node, _) = hardened(&origin, "").await;
    let five = Duration::from_secs(5);

    // Shorter than the 24-byte HTTP/2 preface, and valid HTTP/1.0: answered at once.
    let started = Instant::now();
    let text = raw_exchange_within(node.addr, b"GET / HTTP/1.0\r\n\r\n", five).await;
    assert!(text.starts_with("HTTP/1.0 400"), "{text:?}");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "answered without waiting for more bytes"
    );
    let text = raw_exchange_within(
        node.addr,
        b"GET / HTTP/1.0\r\nHost: hello.test\r\n\r\n",
        five,
    )
    .await;
    assert!(text.starts_with("HTTP/1.0 200"), "{text:?}");

    // Nothing at all, half a request line, half the h2c preface: closed at the 1 s deadline
    // (with a 400 when part of an HTTP/1 head had arrived).
    for bytes in [&b""[..], b"GET / HT", b"PRI * HTTP/2.0\r\n"] {
        let (after, answer) = closed_after(node.addr, bytes, None, five).await;
        assert!(
            after >= Duration::from_millis(900) && after < Duration::from_secs(3),
            "{after:?} for {bytes:?}"
        );
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
            "{answer:?}"
        );
    }

    // A complete HTTP/2 preface and then silence: an idle HTTP/2 connection is closed too.
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // an empty SETTINGS frame
    let (after, _) = closed_after(node.addr, &preface, None, five).await;
    assert!(
        after < Duration::from_secs(4),
        "idle h2 closed after {after:?}"
    );

    // A head that trickles in, one byte every 100 ms, never completes within the deadline.
    let slow = b"GET / HTTP/1.1\r\nHost: hello.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let (after, answer) =
        closed_after(node.addr, slow, Some(Duration::from_millis(100)), five).await;
    assert!(
        after < Duration::from_secs(3),
        "a slow head is cut at its deadline, not at its end: {after:?}"
    );
    assert!(!answer.contains("200 OK"), "{answer:?}");

    // Idle keep-alive: one request, then silence; the connection goes after 1 s.
    let mut stream = TcpStream::connect(node.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: hello.test\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(five, stream.read_to_end(&mut answer))
        .await
        .expect("idle keep-alive connection closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_millis(800) && idle < Duration::from_secs(3),
        "{idle:?}"
    );
}

#[tokio::test]
async fn framing_that_cannot_be_trusted_closes_the_connection() {
    let origin = Origin::start().await;
    let (node, _) = hardened(&origin, "").await;
    let five = Duration::from_secs(5);

    // Transfer-Encoding and Content-Length: read as chunked, then the connection closes
    // (RFC 9112 section 6.1), so nothing after it can be read as a request.
    let both = b"POST /echo HTTP/1.1\r\nHost: proxy.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /after-both HTTP/1.1\r\nHost: proxy.test\r\n\r\n";
    let text = raw_exchange_within(node.addr, both, five).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text:?}"
    );
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        1,
        "one answer only: {text:?}"
    );

    // A broken chunked body, to an unrouted host and to a routed one, with a request
    // smuggled behind it: one answer, then the connection closes.
    for host in ["nobody.test", "proxy.test"] {
        let smuggle = format!(
            "POST /upload HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nGET /smuggled HTTP/1.1\r\nHost: proxy.test\r\n\r\n"
        );
        let text = raw_exchange_within(node.addr, smuggle.as_bytes(), five).await;
        assert_eq!(
            text.matches("HTTP/1.1 ").count(),
            1,
            "one answer only: {text:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        origin.hits("/smuggled").is_empty(),
        "a smuggled request reached the origin"
    );
    assert!(origin.hits("/after-both").is_empty());
}

#[tokio::test]
async fn only_valid_request_targets_reach_a_service() {
    let origin = Origin::start().await;
    let (node, _) = hardened(&origin, "").await;
    let five = Duration::from_secs(5);
    for line in [
        "GET tgt-a HTTP/1.1",
        "GET * HTTP/1.1",
        "GET #frag HTTP/1.1",
        "GET  /two-spaces HTTP/1.1",
        "get x /path HTTP/1.1",
        "GET /a b HTTP/1.1",
        "GET ftp://proxy.test/x HTTP/1.1",
    ] {
        let request = format!("{line}\r\nHost: proxy.test\r\n\r\n");
        let text = raw_exchange_within(node.addr, request.as_bytes(), five).await;
        assert!(text.starts_with("HTTP/1.1 400"), "{line:?} got {text:?}");
    }
    let text = raw_exchange_within(
        node.addr,
        b"OPTIONS * HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n",
        five,
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 204"), "{text:?}");
    assert!(text.to_ascii_lowercase().contains("allow: get"), "{text:?}");

    // CONNECT is never forwarded, in any form.
    let connect = format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", origin.addr);
    let text = raw_exchange_within(node.addr, connect.as_bytes(), five).await;
    assert!(text.starts_with("HTTP/1.1 405"), "{text:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        origin.seen().is_empty(),
        "the origin saw {:?}",
        origin.seen()
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_before_any_guest_runs() {
    let origin = Origin::start().await;
    let (node, metrics) = hardened(&origin, "").await;
    let five = Duration::from_secs(5);
    let huge = b"POST /upload HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 10737418240\r\n\r\n";
    let text = raw_exchange_within(node.addr, huge, five).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text:?}");

    let expecting = b"POST /upload HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 10737418240\r\nExpect: 100-continue\r\n\r\n";
    let text = raw_exchange_within(node.addr, expecting, five).await;
    assert!(
        text.starts_with("HTTP/1.1 413"),
        "no 100 Continue first: {text:?}"
    );

    // A chunked body that goes over the limit as it streams.
    let mut chunked =
        b"POST /echo HTTP/1.1\r\nHost: proxy.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        chunked.extend_from_slice(b"200\r\n");
        chunked.extend_from_slice(&[b'x'; 512]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let text = raw_exchange_within(node.addr, &chunked, five).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text:?}");

    let m = metrics_at(metrics).await;
    assert_eq!(
        m[r#"outpost_guest_runs_total{service="proxy"}"#], 1.0,
        "only the chunked upload ran a guest"
    );
    assert!(origin.hits("/upload").is_empty());
    assert!(
        origin
            .hits("/echo")
            .iter()
            .all(|seen| !seen.body_complete || seen.body_len <= 1024),
        "no whole over-limit body reached the origin"
    );

    // Within the limit, `Expect: 100-continue` gets its 100 before the client sends.
    let mut stream = TcpStream::connect(node.addr).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 25];
    tokio::time::timeout(five, stream.read_exact(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert!(
        first.starts_with(b"HTTP/1.1 100 Continue"),
        "{:?}",
        String::from_utf8_lossy(&first)
    );
    stream.write_all(b"hello").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(five, stream.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.contains("HTTP/1.1 200") && rest.contains("hello"),
        "{rest:?}"
    );
}

#[tokio::test]
async fn heads_over_the_limit_are_refused_while_they_arrive() {
    let origin = Origin::start().await;
    let (node, _) = hardened(&origin, "max_header_bytes = 8192").await;
    let mut stream = TcpStream::connect(node.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: hello.test\r\n")
        .await
        .unwrap();
    // 64 KiB of header lines that never end: the 431 comes once 8 KiB are in.
    let line = format!("X-Filler: {}\r\n", "a".repeat(1000));
    let mut answer = Vec::new();
    let mut sent = 0;
    while sent < 64 * 1024 {
        if stream.write_all(line.as_bytes()).await.is_err() {
            break;
        }
        sent += line.len();
    }
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("closed after the 431")
        .ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
}

#[tokio::test]
async fn clients_that_leave_take_their_guests_with_them() {
    let origin = Origin::start().await;
    let (node, metrics) = hardened(&origin, "").await;
    // Five HTTP/1 clients ask a guest that never answers (deadline 10 s), then hang up.
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut stream = TcpStream::connect(node.addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: spin.test\r\n\r\n")
            .await
            .unwrap();
        clients.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(clients);
    let cancelled = r#"outpost_requests_cancelled_total{service="spin"}"#;
    let deadline = Instant::now() + Duration::from_secs(3);
    let m = loop {
        let m = metrics_at(metrics).await;
        if m[cancelled] >= 5.0 || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(m[cancelled], 5.0);
    assert_eq!(
        m["outpost_requests_in_flight"], 0.0,
        "their guests are gone, not running to the deadline"
    );
    assert_eq!(
        m[r#"outpost_guest_errors_total{kind="timeout",service="spin"}"#],
        0.0
    );
}

#[tokio::test]
async fn http2_streams_reset_right_after_opening_end_their_guests_and_then_the_connection() {
    let origin = Origin::start().await;
    let (node, metrics) = hardened(&origin, "").await;
    let tcp = TcpStream::connect(node.addr).await.unwrap();
    let (mut client, connection) = h2::client::Builder::new()
        .max_concurrent_streams(1000)
        .handshake::<_, bytes::Bytes>(tcp)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let mut opened = 0;
    for _ in 0..150 {
        let request = http::Request::get(format!("http://{}/", "spin.test"))
            .body(())
            .unwrap();
        let Ok(ready) = client.clone().ready().await else {
            break;
        };
        client = ready;
        let Ok((response, _stream)) = client.send_request(request, true) else {
            break;
        };
        opened += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Dropping the response and the stream resets it (RST_STREAM CANCEL).
        drop(response);
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), connection).await;
    assert!(
        ended.is_ok(),
        "the node ended the connection (GOAWAY) after {opened} resets"
    );
    let m = metrics_at(metrics).await;
    assert!(
        m[r#"outpost_requests_cancelled_total{service="spin"}"#] >= 50.0,
        "{:?}",
        m.get(r#"outpost_requests_cancelled_total{service="spin"}"#)
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while metrics_at(metrics).await["outpost_requests_in_flight"] > 0.0 {
        assert!(
            Instant::now() < deadline,
            "guests of reset streams kept running"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn one_busy_service_cannot_take_the_others_slots() {
    let origin = Origin::start().await;
    let (node, metrics) = hardened(&origin, "").await;
    // Eight slow requests to a service allowed two at a time (each waits 2 s on its
    // origin), then one to another service.
    let client = http1();
    let slow: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            let url = node.url("/slow/2000");
            tokio::spawn(async move {
                client
                    .get(url)
                    .header("host", "slow.test")
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let hello = client
        .get(node.url("/"))
        .header("host", "hello.test")
        .send()
        .await
        .unwrap();
    assert_eq!(hello.status(), 200);
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "hello waited {:?}",
        started.elapsed()
    );
    let mut busy = 0;
    for request in slow {
        let response = request.await.unwrap();
        if response.status() == 503 {
            busy += 1;
            assert_eq!(response.headers()["retry-after"], "1");
        } else {
            assert_eq!(response.status(), 200);
        }
    }
    assert!(
        busy >= 4,
        "the queue timeout (500 ms) turned most of them away: {busy}"
    );
    let m = metrics_at(metrics).await;
    assert_eq!(
        m[r#"outpost_requests_rejected_total{reason="service_busy",service="slow"}"#],
        busy as f64
    );
}

#[tokio::test]
async fn connection_limits_close_extra_connections_at_once() {
    let origin = Origin::start().await;
    let (node, metrics) =
        hardened(&origin, "max_connections = 4\nmax_connections_per_ip = 3").await;
    // The start-up probe's connection must be gone before the limits are counted.
    let open = format!(r#"outpost_connections_open{{listener="{}"}}"#, node.addr);
    for _ in 0..100 {
        if metrics_at(metrics).await.get(&open) == Some(&0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(node.addr).await.unwrap());
    }
    // A fourth from the same address is over the per-address limit.
    let refused = |mut stream: TcpStream| async move {
        let mut buf = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(refused(TcpStream::connect(node.addr).await.unwrap()).await);
    // Another address still gets in, up to the listener's limit of four.
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut fourth = other.connect(node.addr).await.unwrap();
    fourth
        .write_all(b"GET / HTTP/1.1\r\nHost: hello.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    fourth.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    let fifth = tokio::net::TcpSocket::new_v4().unwrap();
    fifth.bind("127.0.0.3:0".parse().unwrap()).unwrap();
    assert!(refused(fifth.connect(node.addr).await.unwrap()).await);
    let m = metrics_at(metrics).await;
    let listener = node.addr.to_string();
    assert_eq!(
        m[&format!(
            r#"outpost_connections_refused_total{{listener="{listener}",reason="max_connections_per_ip"}}"#
        )],
        1.0
    );
    assert_eq!(
        m[&format!(
            r#"outpost_connections_refused_total{{listener="{listener}",reason="max_connections"}}"#
        )],
        1.0
    );
    drop(held);
}

/// What a connection may cost the node at most while a client holds it with an
/// unfinished head: twice `server.max_header_bytes` (the codec's buffer) plus 32 KiB of
/// connection state. README's operations section documents this bound.
fn connection_bound_kib(max_header_bytes: u64) -> u64 {
    2 * max_header_bytes / 1024 + 32
}

#[tokio::test]
async fn a_thousand_abusive_connections_stay_within_the_memory_bound_and_good_traffic_flows() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let origin = Origin::start().await;
    let (node, _) = hardened(
        &origin,
        "max_header_bytes = 16384\nheader_timeout_ms = 20000",
    )
    .await;
    let client = http1();
    let timed = || async {
        let started = Instant::now();
        let response = http1_fresh()
            .get(node.url("/"))
            .header("host", "hello.test")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        started.elapsed()
    };
    let _ = client
        .get(node.url("/"))
        .header("host", "hello.test")
        .send()
        .await;
    let mut calm = Vec::new();
    for _ in 0..10 {
        calm.push(timed().await);
    }
    calm.sort();
    let rss_before = node.rss_kib();

    // 500 connections each with 15 KiB of a head that never ends, 500 that send nothing.
    let partial = {
        let mut head = b"GET / HTTP/1.1\r\nHost: hello.test\r\n".to_vec();
        while head.len() < 15 * 1024 {
            head.extend_from_slice(
                b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        head
    };
    let mut abusive = Vec::new();
    for i in 0..1000 {
        let mut stream = TcpStream::connect(node.addr).await.unwrap();
        if i % 2 == 0 {
            stream.write_all(&partial).await.unwrap();
        }
        abusive.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_during = node.rss_kib();
    let mut under_abuse = Vec::new();
    for _ in 0..10 {
        under_abuse.push(timed().await);
    }
    under_abuse.sort();

    let grown = rss_during.saturating_sub(rss_before);
    let bound = 1000 * connection_bound_kib(16384);
    assert!(
        grown < bound,
        "1,000 connections grew RSS by {grown} KiB, over the documented {bound} KiB"
    );
    let (calm_median, abused_median) = (calm[5], under_abuse[5]);
    assert!(
        abused_median < calm_median * 5 + Duration::from_millis(50),
        "good requests slowed from {calm_median:?} to {abused_median:?} under abuse"
    );
    assert!(
        under_abuse[9] < Duration::from_secs(1),
        "slowest good request {:?}",
        under_abuse[9]
    );
    drop(abusive);
}

#[tokio::test]
async fn admin_checks_the_token_first_and_no_secret_reaches_the_log() {
    let origin = Origin::start().await;
    let (cert, key, _) = certificate(&["edge.test"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), &key).unwrap();
    let token = "admin-token-7f3a9c1d2e4b5a6f";
    let (admin, metrics, tls) = (free_addr(), free_addr(), free_addr());
    let config = format!(
        r#"
[server]
listen = ["{{listen}}"]
[tls]
listen = ["{tls}"]
[[tls.certificates]]
domains = ["edge.test"]
cert = {cert}
key = {key}
[metrics]
listen = "{metrics}"
[admin]
listen = "{admin}"
token = "{token}"
[services.proxy]
domains = ["*"]
guest = {proxy}
[services.proxy.backends.origin]
url = "{origin}"
"#,
        cert = toml_path(&dir.path().join("cert.pem")),
        key = toml_path(&dir.path().join("key.pem")),
        proxy = toml_path(&example("origin_proxy")),
        origin = origin.url(),
    );
    let addr = free_addr();
    let node = Node::start_on(
        addr,
        &config.replace("{listen}", &addr.to_string()),
        &[addr, admin, metrics, tls],
    )
    .await;
    let five = Duration::from_secs(5);

    // 100 MB announced, nothing sent: the 401 comes at once, the body is never awaited.
    let started = Instant::now();
    let text = raw_exchange_within(
        admin,
        b"POST /purge/all HTTP/1.1\r\nHost: admin\r\nContent-Length: 100000000\r\n\r\n",
        five,
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 401"), "{text:?}");
    assert!(started.elapsed() < Duration::from_secs(1));

    // Malformed requests carrying a token and a cookie, to every listener.
    let cookie = "session=SECRET-COOKIE-1234";
    let malformed = format!(
        "GET /a b c HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nCookie: {cookie}\r\n\r\n"
    );
    for target in [admin, metrics, node.addr] {
        let text = raw_exchange_within(target, malformed.as_bytes(), five).await;
        assert!(text.starts_with("HTTP/1.1 400"), "{target}: {text:?}");
    }
    // A flood of non-TLS bytes at the TLS listener: the handshake errors are rate-limited.
    for _ in 0..200 {
        let mut stream = TcpStream::connect(tls).await.unwrap();
        let _ = stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut buf)).await;
    }
    let m = metrics_at(metrics).await;
    let log = node.log();
    assert!(
        !log.contains(token),
        "the admin token reached the log:\n{log}"
    );
    assert!(
        !log.contains("SECRET-COOKIE"),
        "a cookie reached the log:\n{log}"
    );
    let handshake_lines = log.lines().filter(|l| l.contains("handshake")).count();
    assert!(
        handshake_lines <= 25,
        "{handshake_lines} handshake error lines for 200 bad clients"
    );
    assert!(
        m["outpost_log_events_suppressed_total"] >= 150.0,
        "{:?}",
        m.get("outpost_log_events_suppressed_total")
    );
}
