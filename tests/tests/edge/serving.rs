//! The front end: protocols, TLS by SNI, routing by Host, limits on what clients send.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

fn hello_config() -> String {
    format!(
        r#"
[server]
listen = ["{{listen}}"]
max_header_bytes = 8192

[services.hello]
domains = ["hello.test", "*.hello.test"]
guest = {}
"#,
        toml_path(&example("hello"))
    )
}

#[tokio::test]
async fn hello_answers_over_http1_and_h2c() {
    let node = Node::start(&hello_config()).await;
    install_crypto();
    // The host name travels in the URL, so h2c carries it as :authority, as browsers do.
    let h1 = reqwest::Client::builder()
        .http1_only()
        .resolve("hello.test", node.addr)
        .build()
        .unwrap();
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve("hello.test", node.addr)
        .build()
        .unwrap();
    let url = format!("http://hello.test:{}/greet?name=edge", node.addr.port());
    for (client, version) in [(h1, http::Version::HTTP_11), (h2, http::Version::HTTP_2)] {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.version(), version);
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-guest"], "hello");
        assert!(response.headers().contains_key("x-outpost-request-id"));
        let body = response.text().await.unwrap();
        assert_eq!(body, "Hello, edge! (from an Outpost guest, GET /greet)\n");
    }
    // Wildcards match any depth below the suffix.
    let response = http1()
        .get(node.url("/"))
        .header("host", "a.b.hello.test:1234")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn keep_alive_serves_many_requests_on_one_connection() {
    let node = Node::start(&hello_config()).await;
    let mut stream = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    let mut seen = String::new();
    for i in 0..3 {
        let request = format!("GET /n{i} HTTP/1.1\r\nHost: hello.test\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(seen.matches("HTTP/1.1 200").count(), 3, "{seen}");
    assert!(seen.contains("GET /n2"), "{seen}");
}

#[tokio::test]
async fn unknown_host_gets_404_from_the_node() {
    let node = Node::start(&hello_config()).await;
    let response = http1()
        .get(node.url("/"))
        .header("host", "nobody.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.text().await.unwrap().contains("nobody.example"));
}

/// Sends raw bytes on a fresh connection and returns everything the node answers
/// before it closes the connection.
async fn raw_exchange(node: &Node, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the node kept the connection open after {request:?}"
    );
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn malformed_and_oversized_requests_are_refused() {
    let node = Node::start(&hello_config()).await;
    // A request line that is not HTTP. (It is longer than the 24-byte HTTP/2 preface: on
    // the plaintext port pingora reads that many bytes to tell h2c from HTTP/1.)
    let text = raw_exchange(&node, b"HELLO THERE, THIS IS NOT HTTP AT ALL\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.1 400"), "got {text:?}");

    // Headers over server.max_header_bytes (8 KiB here).
    let response = http1()
        .get(node.url("/"))
        .header("host", "hello.test")
        .header("x-big", "a".repeat(10_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);

    // No Host at all (HTTP/1.0 allows leaving it out; the answer is in the client's version).
    let text = raw_exchange(&node, b"GET / HTTP/1.0\r\nUser-Agent: raw\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.0 400"), "got {text:?}");

    // The node still serves afterwards.
    let response = http1()
        .get(node.url("/"))
        .header("host", "hello.test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn tls_picks_the_certificate_by_sni_and_negotiates_h2() {
    let dir = tempfile::tempdir().unwrap();
    let (a_pem, a_key, a_der) = certificate(&["a.test"]);
    let (b_pem, b_key, b_der) = certificate(&["b.test", "*.b.test"]);
    for (name, text) in [
        ("a.pem", &a_pem),
        ("a.key", &a_key),
        ("b.pem", &b_pem),
        ("b.key", &b_key),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let plain = free_addr();
    let tls = free_addr();
    let config = format!(
        r#"
[server]
listen = ["{plain}"]

[tls]
listen = ["{tls}"]

[[tls.certificates]]
domains = ["a.test"]
cert = {}
key = {}

[[tls.certificates]]
domains = ["b.test", "*.b.test"]
cert = {}
key = {}

[services.hello]
domains = ["a.test", "b.test", "*.b.test"]
guest = {}
"#,
        toml_path(&dir.path().join("a.pem")),
        toml_path(&dir.path().join("a.key")),
        toml_path(&dir.path().join("b.pem")),
        toml_path(&dir.path().join("b.key")),
        toml_path(&example("hello")),
    );
    let node = Node::start_on(plain, &config, &[plain, tls]).await;

    // The client trusts both certificates, so only the presented one tells SNI worked.
    for (host, der) in [
        ("a.test", &a_der),
        ("b.test", &b_der),
        ("www.b.test", &b_der),
    ] {
        for http2 in [true, false] {
            let mut tls_config = trusting(&[&a_pem, &b_pem]);
            tls_config.alpn_protocols = if http2 {
                vec![b"h2".to_vec(), b"http/1.1".to_vec()]
            } else {
                vec![b"http/1.1".to_vec()]
            };
            install_crypto();
            let client = reqwest::Client::builder()
                .use_preconfigured_tls(tls_config)
                .tls_info(true)
                .resolve(host, tls)
                .no_proxy()
                .build()
                .unwrap();
            let response = client
                .get(format!("https://{host}:{}/tls", tls.port()))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{host}");
            let expected_version = if http2 {
                http::Version::HTTP_2
            } else {
                http::Version::HTTP_11
            };
            assert_eq!(response.version(), expected_version, "{host}");
            let info = response
                .extensions()
                .get::<reqwest::tls::TlsInfo>()
                .expect("tls info");
            assert_eq!(
                info.peer_certificate(),
                Some(der.as_slice()),
                "{host} got the wrong certificate"
            );
            assert!(response.text().await.unwrap().contains("GET /tls"));
        }
    }
    drop(node);
}

#[tokio::test]
async fn guests_learn_the_tls_protocol_and_the_sni_name_the_client_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (pem, key, _) = certificate(&["*.shop.test"]);
    std::fs::write(dir.path().join("c.pem"), &pem).unwrap();
    std::fs::write(dir.path().join("c.key"), &key).unwrap();
    let (plain, tls) = (free_addr(), free_addr());
    let config = format!(
        "[server]\nlisten = [\"{plain}\"]\n\n[tls]\nlisten = [\"{tls}\"]\n\n[[tls.certificates]]\ndomains = [\"*.shop.test\"]\ncert = {}\nkey = {}\n\n[services.svc]\ndomains = [\"*\"]\nguest = {}\n",
        toml_path(&dir.path().join("c.pem")),
        toml_path(&dir.path().join("c.key")),
        toml_path(&test_guest("stores")),
    );
    let _node = Node::start_on(plain, &config, &[plain, tls]).await;
    install_crypto();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(trusting(&[&pem]))
        .resolve("eu.shop.test", tls)
        .no_proxy()
        .build()
        .unwrap();
    let text = client
        .get(format!("https://eu.shop.test:{}/info", tls.port()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("tls=TLSv1_3") || text.contains("tls=TLSv1.3"),
        "{text}"
    );
    assert!(text.contains("sni=eu.shop.test"), "{text}");
    // Plain HTTP on the same node has neither.
    let plain_text = get_text(&format!("http://{plain}/info")).await;
    assert!(plain_text.contains("tls=- sni=-"), "{plain_text}");
}
