//! Guests that fetch from backends: fidelity of what passes through, streaming, and the
//! rule that a guest reaches only the backends its service names.

use bytes::Bytes;
use futures::StreamExt;

use crate::support::*;

fn proxy_config(origin: &Origin) -> String {
    one_service(
        &example("origin_proxy"),
        // 8 MiB of guest memory: the 10 MiB bodies below fit only if they stream.
        "limits = { max_request_body_bytes = 20000000, memory_mib = 8 }",
        &[("origin", format!("url = \"{}\"", origin.url()))],
    )
}

#[tokio::test]
async fn origin_proxy_forwards_method_path_query_headers_and_body() {
    let origin = Origin::start().await;
    let node = Node::start(&proxy_config(&origin)).await;
    for client in [http1(), h2c()] {
        let response = client
            .put(node.url("/items/42?color=blue&size=L"))
            .header("x-custom", "kept")
            .header("user-agent", "tester/1")
            .body("the request body")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-origin"], "default");
        assert_eq!(response.headers()["set-cookie"], "session=abc; Path=/");
        assert_eq!(
            response.headers()["x-edge"],
            "outpost",
            "the guest adds a response header"
        );
        assert_eq!(
            response.text().await.unwrap(),
            "origin saw PUT /items/42?color=blue&size=L\n"
        );
    }
    let seen = origin.seen();
    assert_eq!(seen.len(), 2);
    for request in seen {
        assert_eq!(request.method, "PUT");
        assert_eq!(request.path_and_query, "/items/42?color=blue&size=L");
        assert_eq!(request.header("x-custom"), Some("kept"));
        assert_eq!(
            request.header("user-agent"),
            Some("tester/1 outpost-edge/0.1"),
            "the guest rewrites one header"
        );
        assert_eq!(
            request.header("host"),
            Some(origin.addr.to_string().as_str())
        );
        assert_eq!(request.body_prefix, b"the request body");
    }

    // The origin's status passes through, as does an empty body.
    let response = http1()
        .delete(node.url("/gone?status=410"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 410);
}

#[tokio::test]
async fn ten_mib_streams_both_ways() {
    const SIZE: usize = 10 << 20;
    let origin = Origin::start().await;
    let node = Node::start(&proxy_config(&origin)).await;

    // Upload in chunks (no Content-Length, so it is chunked end to end); the origin echoes it.
    let payload = pattern_bytes(SIZE);
    let chunks: Vec<Result<Bytes, std::io::Error>> = payload
        .chunks(100_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let response = http1()
        .post(node.url("/echo"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-origin"], "echo");
    let mut received = Vec::with_capacity(SIZE);
    let mut stream = response.bytes_stream();
    let mut pieces = 0;
    while let Some(chunk) = stream.next().await {
        received.extend_from_slice(&chunk.unwrap());
        pieces += 1;
    }
    assert_eq!(received.len(), SIZE);
    assert!(received == payload, "echoed body differs");
    assert!(
        pieces > 1,
        "the body arrived in one piece; it was not streamed"
    );
    let seen = origin.seen();
    assert_eq!(seen.last().unwrap().body_len, SIZE);

    // Download 10 MiB over h2c.
    let response = h2c()
        .get(node.url(&format!("/bytes/{SIZE}")))
        .send()
        .await
        .unwrap();
    if response.status() != 200 {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        panic!("{status}: {body}\n{}", node.log());
    }
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), SIZE);
    assert!(body == pattern_bytes(SIZE));
}

#[tokio::test]
async fn a_backend_the_service_does_not_name_is_refused_and_never_contacted() {
    let origin = Origin::start().await;
    // origin-proxy fetches `origin`, but this service only has `other`.
    let config = one_service(
        &example("origin_proxy"),
        "",
        &[("other", format!("url = \"{}\"", origin.url()))],
    );
    let node = Node::start(&config).await;
    let response = http1().get(node.url("/secret")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("backend `origin` is not a backend of this service"),
        "the guest saw a typed error: {text}"
    );
    assert!(origin.seen().is_empty(), "the origin must not be contacted");
    let log = node.wait_log("denied").await;
    assert!(log.contains("guest fetch to `origin` denied"), "{log}");
}

#[tokio::test]
async fn backend_failures_reach_the_guest_as_errors() {
    // A backend that refuses connections, and one that answers too slowly.
    let origin = Origin::start().await;
    let closed = free_addr();
    let config = format!(
        r#"
[server]
listen = ["{{listen}}"]

[services.down]
domains = ["down.test"]
guest = {guest}
[services.down.backends.origin]
url = "http://{closed}"

[services.slow]
domains = ["slow.test"]
guest = {guest}
[services.slow.backends.origin]
url = "{slow}"
first_byte_timeout_ms = 300
"#,
        guest = toml_path(&example("origin_proxy")),
        slow = origin.url(),
    );
    let node = Node::start(&config).await;
    let response = http1()
        .get(node.url("/"))
        .header("host", "down.test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let started = std::time::Instant::now();
    let response = http1()
        .get(node.url("/slow/3000"))
        .header("host", "slow.test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "first-byte timeout not applied"
    );
    assert!(response.text().await.unwrap().contains("timed out"));
}

#[tokio::test]
async fn backend_connections_are_kept_alive_and_reused() {
    let origin = Origin::start().await;
    let node = Node::start(&proxy_config(&origin)).await;
    let client = http1();
    for i in 0..10 {
        let response = client
            .get(node.url(&format!("/n/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    assert_eq!(origin.seen().len(), 10);
    // hyper returns a connection to its pool as the body ends, which can race the next
    // request by a hair; one spare connection is allowed, a connection per fetch is not.
    assert!(
        origin.connections() <= 2,
        "10 sequential fetches opened {} origin connections",
        origin.connections()
    );
}

#[tokio::test]
async fn tls_backend_with_a_configured_ca_host_override_and_dns_name() {
    // The origin's certificate is for `origin.internal`; the backend connects to
    // `localhost` (resolved by the node) and sends that name as SNI and Host.
    let cert = rcgen::generate_simple_self_signed(vec!["origin.internal".to_owned()]).unwrap();
    let origin = Origin::start_tls(&cert.cert.pem(), &cert.signing_key.serialize_pem()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let config = |with_ca: bool| {
        format!(
            r#"
[server]
listen = ["{{listen}}"]

[services.proxy]
domains = ["*"]
guest = {}

[services.proxy.backends.origin]
url = "https://localhost:{}/base"
host = "origin.internal"
{}
"#,
            toml_path(&example("origin_proxy")),
            origin.addr.port(),
            if with_ca {
                format!("ca = {}", toml_path(&ca))
            } else {
                String::new()
            }
        )
    };
    let node = Node::start(&config(true)).await;
    let response = http1().get(node.url("/over/tls?q=1")).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", node.log());
    assert_eq!(
        response.text().await.unwrap(),
        "origin saw GET /base/over/tls?q=1\n"
    );
    let seen = origin.seen();
    assert_eq!(seen[0].header("host"), Some("origin.internal"));
    drop(node);

    // Without the CA the certificate is not trusted, and nothing is served from it.
    let node = Node::start(&config(false)).await;
    let response = http1().get(node.url("/untrusted")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(
        origin.seen().len(),
        1,
        "an untrusted origin must not get the request"
    );
}

#[tokio::test]
async fn between_bytes_timeout_cuts_a_stalled_origin_body() {
    // An origin that sends a head and a little body, then stalls.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
                    .await;
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            });
        }
    });
    let config = one_service(
        &example("origin_proxy"),
        "",
        &[(
            "origin",
            format!("url = \"http://{addr}\"\nbetween_bytes_timeout_ms = 300"),
        )],
    );
    let node = Node::start(&config).await;
    let started = std::time::Instant::now();
    let response = http1().get(node.url("/stall")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // The body must end in an error (cut off), never look complete, and soon.
    let body = response.bytes().await;
    assert!(body.is_err(), "a stalled body looked complete: {body:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_client_abandoning_an_upload_never_reaches_the_origin_as_a_complete_body() {
    use tokio::io::AsyncWriteExt;
    let origin = Origin::start().await;
    let node = Node::start(&proxy_config(&origin)).await;
    // A chunked upload that stops after two chunks: the client goes away mid-body.
    let mut stream = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: up.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..2 {
        stream.write_all(b"400\r\n").await.unwrap();
        stream.write_all(&[b'u'; 0x400]).await.unwrap();
        stream.write_all(b"\r\n").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(stream);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for seen in origin.seen() {
        assert!(
            !seen.body_complete,
            "the origin took a cut-off upload of {} bytes for a complete body",
            seen.body_len
        );
    }
    let log = node.log();
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test]
async fn send_async_runs_fetches_concurrently_and_select_takes_the_first() {
    let origin = Origin::start().await;
    let node = Node::start(&one_service(
        &test_guest("concurrent"),
        "",
        &[("origin", format!("url = \"{}\"", origin.url()))],
    ))
    .await;
    assert_eq!(get_text(&node.url("/both")).await, "200,200");
    assert_eq!(
        origin.most_concurrent(),
        2,
        "both fetches were at the origin at the same time"
    );
    let raced = get_text(&node.url("/race")).await;
    assert_eq!(
        raced,
        "origin saw GET /slow/10?who=fast first; 1 still pending"
    );
}

#[tokio::test]
async fn guests_read_their_config_store_and_secrets_which_are_never_logged() {
    let node = Node::start(&one_service(
        &test_guest("stores"),
        "config = { banner = \"summer sale\" }\nsecrets = { api-key = \"s3cr3t-value\" }",
        &[],
    ))
    .await;
    assert_eq!(get_text(&node.url("/config/banner")).await, "summer sale");
    let missing = http1().get(node.url("/config/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let check = |token: &'static str| {
        http1()
            .get(node.url("/secret/api-key"))
            .header("x-token", token)
            .send()
    };
    assert_eq!(
        check("s3cr3t-value").await.unwrap().text().await.unwrap(),
        "match"
    );
    assert_eq!(
        check("guess").await.unwrap().text().await.unwrap(),
        "no match"
    );
    let log = node.wait_log("checking token against").await;
    assert!(log.contains("checking token against ***"), "{log}");
    assert!(
        !log.contains("s3cr3t-value"),
        "the secret leaked into the log:\n{log}"
    );
}

#[tokio::test]
async fn guests_learn_client_ip_version_request_id_and_pop() {
    let config = one_service(&test_guest("stores"), "", &[])
        .replace("[server]\n", "[server]\npop = \"ams-1\"\n");
    let node = Node::start(&config).await;
    let response = http1().get(node.url("/info")).send().await.unwrap();
    let id = response.headers()["x-outpost-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().await.unwrap();
    assert_eq!(
        text,
        format!("ip=127.0.0.1 version=HTTP/1.1 tls=- sni=- id={id} pop=ams-1")
    );
    let h2 = h2c().get(node.url("/info")).send().await.unwrap();
    assert!(h2.text().await.unwrap().contains("version=HTTP/2"));
}

#[tokio::test]
async fn dynamic_backends_reach_only_allow_listed_hosts() {
    let origin = Origin::start().await;
    let port = origin.addr.port();
    let node = Node::start(&one_service(
        &test_guest("concurrent"),
        "dynamic_backends = [\"127.0.0.1\"]",
        &[],
    ))
    .await;
    let allowed = get_text(&node.url(&format!("/dynamic?to=127.0.0.1:{port}"))).await;
    assert_eq!(allowed, "origin saw GET /dyn\n");
    let denied = http1()
        .get(node.url(&format!("/dynamic?to=localhost:{port}")))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 502);
    assert_eq!(denied.text().await.unwrap(), "BackendNotAllowed");
    assert_eq!(
        origin.hits("/dyn").len(),
        1,
        "only the allowed fetch reached the origin"
    );
    node.wait_log("dynamic hosts allowed: 127.0.0.1").await;

    // An absolute URL carries its scheme: plain HTTP reaches the origin; HTTPS makes the node
    // open TLS, which this plain-HTTP origin cannot speak, so the request never arrives.
    let by_url =
        get_text(&node.url(&format!("/dynamic-url?url=http://127.0.0.1:{port}/dyn-url"))).await;
    assert_eq!(by_url, "origin saw GET /dyn-url\n");
    let tls = http1()
        .get(node.url(&format!(
            "/dynamic-url?url=https://127.0.0.1:{port}/dyn-tls"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(tls.status(), 502);
    assert!(
        origin.hits("/dyn-tls").is_empty(),
        "https was sent as plain HTTP"
    );
    let odd = http1()
        .get(node.url("/dynamic-url?url=ftp://127.0.0.1/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(odd.text().await.unwrap(), "Invalid");
}

#[tokio::test]
async fn guests_locate_clients_and_addresses_in_the_configured_geo_database() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("test-city.mmdb");
    write_geo_database(&database);
    let config = one_service(&test_guest("stores"), "", &[]).replace(
        "[services.svc]",
        &format!(
            "[geo]\ndatabase = {}\n\n[services.svc]",
            toml_path(&database)
        ),
    );
    let node = Node::start(&config).await;

    let berlin = get_text(&node.url("/geo")).await;
    for field in [
        r#"country_code: Some("DE")"#,
        r#"country_name: Some("Germany")"#,
        r#"continent_code: Some("EU")"#,
        r#"region: Some("BE")"#,
        r#"city: Some("Berlin")"#,
        r#"postal_code: Some("10115")"#,
        "latitude: Some(52.52)",
        "longitude: Some(13.405)",
        r#"time_zone: Some("Europe/Berlin")"#,
        "asn: Some(64500)",
        r#"as_org: Some("Example Net")"#,
    ] {
        assert!(berlin.contains(field), "{field} missing from {berlin}");
    }
    let france = get_text(&node.url("/geo?ip=203.0.113.9")).await;
    assert!(
        france.contains(r#"country_code: Some("FR")"#) && france.contains("city: None"),
        "{france}"
    );
    assert_eq!(get_text(&node.url("/geo?ip=198.51.100.1")).await, "nowhere");

    // Without a database there is no location, and nothing fails.
    let plain = Node::start(&one_service(&test_guest("stores"), "", &[])).await;
    assert_eq!(get_text(&plain.url("/geo")).await, "nowhere");
}

#[test]
fn a_missing_geo_database_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("outpost.toml");
    std::fs::write(
        &config,
        one_service(&test_guest("stores"), "", &[])
            .replace("{listen}", "127.0.0.1:1")
            .replace(
                "[services.svc]",
                "[geo]\ndatabase = \"nope.mmdb\"\n\n[services.svc]",
            ),
    )
    .unwrap();
    let (ok, output) = run_cli(&["check", "--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        output.contains("geo.database") && output.contains("nope.mmdb"),
        "{output}"
    );
}

/// The SDK leaves a backend response's headers in the host until the guest reads them and
/// makes changes there; every change must reach the client either way, a read must see
/// the changes made before it, and a request the guest never reads must cost it nothing.
#[tokio::test]
async fn sdk_header_changes_reach_the_client_whether_or_not_the_guest_read_them() {
    let origin = Origin::start().await;
    origin.set(
        "/page",
        Canned::ok(
            "page body\n",
            &[
                ("content-type", "text/plain"),
                ("cache-control", "no-store"),
                ("x-keep", "k"),
                ("x-drop", "d"),
            ],
        ),
    );
    let config = one_service(
        &test_guest("headers"),
        "",
        &[("origin", format!("url = \"{}\"", origin.url()))],
    );
    let node = Node::start(&config).await;
    let client = http1();

    for query in ["", "?read", "?managed"] {
        let response = client
            .get(node.url(&format!("/page{query}")))
            .send()
            .await
            .unwrap();
        let got = Got::read(response).await;
        assert_eq!(got.status, 200, "{query}: {got:?}");
        assert_eq!(got.body, "page body\n", "{query}");
        assert_eq!(got.header("content-length"), Some("10"), "{query}");
        assert_eq!(got.header("content-type"), Some("text/plain"), "{query}");
        assert_eq!(got.header("x-keep"), Some("k"), "{query}");
        assert_eq!(got.header("x-added"), Some("yes"), "{query}: a set field");
        assert_eq!(got.header("x-drop"), None, "{query}: a removed field");
        assert_ne!(got.header("transfer-encoding"), Some("chunked"), "{query}");
    }
    let read = Got::read(client.get(node.url("/page?read")).send().await.unwrap()).await;
    assert_eq!(
        read.header("x-seen"),
        Some("added=yes drop=none keep=k"),
        "a read sees the changes made host-side before it"
    );
    assert_eq!(read.header("x-after-read"), Some("yes"));

    let head = client.head(node.url("/page")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["x-added"], "yes");
    assert!(head.bytes().await.unwrap().is_empty());

    // A request whose body the guest never opens, and one it reads after its headers.
    let unread = client
        .post(node.url("/self"))
        .body("never read")
        .send()
        .await
        .unwrap();
    assert_eq!(unread.status(), 200);
    assert_eq!(
        unread.text().await.unwrap(),
        "answered without reading the request\n"
    );
    let read_request = client
        .post(node.url("/read-request"))
        .header("x-in", "tag")
        .body("12345")
        .send()
        .await
        .unwrap();
    assert_eq!(read_request.text().await.unwrap(), "x-in=tag body=5\n");
}
