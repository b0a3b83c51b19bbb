//! Guests that fetch from backends: fidelity of what passes through, streaming, and the
//! rule that a guest reaches only the backends its service names.

use bytes::Bytes;
use futures::StreamExt;

use crate::support::*;

fn proxy_config(origin: &Origin) -> String {
    format!(
        r#"
[server]
listen = ["{{listen}}"]

[services.proxy]
domains = ["*"]
guest = {}
limits = {{ max_request_body_bytes = 20000000 }}

[services.proxy.backends.origin]
url = "{}"
"#,
        toml_path(&example("origin_proxy")),
        origin.url()
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
    assert_eq!(response.status(), 200, "{}", node.log());
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), SIZE);
    assert!(body == pattern_bytes(SIZE));
}

#[tokio::test]
async fn a_backend_the_service_does_not_name_is_refused_and_never_contacted() {
    let origin = Origin::start().await;
    // origin-proxy fetches `origin`, but this service only has `other`.
    let config = format!(
        r#"
[server]
listen = ["{{listen}}"]

[services.proxy]
domains = ["*"]
guest = {}

[services.proxy.backends.other]
url = "{}"
"#,
        toml_path(&example("origin_proxy")),
        origin.url()
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
async fn a_plain_wasi_http_component_runs_unchanged() {
    let config = format!(
        r#"
[server]
listen = ["{{listen}}"]

[services.plain]
domains = ["*"]
guest = {}
"#,
        toml_path(&test_guest("plain_wasi"))
    );
    let node = Node::start(&config).await;
    let response = http1().get(node.url("/raw?x=1")).send().await.unwrap();
    assert_eq!(response.status(), 203);
    assert_eq!(response.text().await.unwrap(), "plain wasi saw /raw?x=1\n");
}
