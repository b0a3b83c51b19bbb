//! Hostile guests: each failure costs only its own request a 5xx, within its deadline,
//! while well-behaved requests on the same node keep succeeding.

use std::time::{Duration, Instant};

use crate::support::*;

fn hostile_config() -> String {
    let service = |name: &str, guest: std::path::PathBuf, deadline: u64, memory: u64| {
        format!(
            "[services.{name}]\ndomains = [\"{name}.test\"]\nguest = {}\nlimits = {{ deadline_ms = {deadline}, memory_mib = {memory} }}\n\n",
            toml_path(&guest)
        )
    };
    format!(
        "[server]\nlisten = [\"{{listen}}\"]\n\n{}{}{}{}",
        service("hello", example("hello"), 10_000, 64),
        service("trap", test_guest("trap"), 10_000, 64),
        service("spin", test_guest("spin"), 500, 64),
        service("hog", test_guest("hog"), 10_000, 32),
    )
}

async fn get(node: &Node, host: &str, path: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let response = http1()
        .get(node.url(path))
        .header("host", host)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.text().await.unwrap_or_default(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_panicking_guest_gets_500_with_its_message_logged() {
    let node = Node::start(&hostile_config()).await;
    let (status, body, _) = get(&node, "trap.test", "/explode").await;
    assert_eq!(status, 500);
    assert!(body.contains("request id"), "{body}");
    let log = node.wait_log("boom at the edge").await;
    assert!(
        log.contains("boom at the edge: /explode"),
        "panic message not logged:\n{log}"
    );
    assert!(
        log.contains("service=trap") || log.contains("service: trap") || log.contains("trap"),
        "{log}"
    );
    // The same guest still serves its good path: no state survived the trap.
    let (status, body, _) = get(&node, "trap.test", "/ok").await;
    assert_eq!((status, body.as_str()), (200, "fine\n"));
}

#[tokio::test]
async fn a_looping_guest_gets_504_at_its_deadline() {
    let node = Node::start(&hostile_config()).await;
    let (status, _, elapsed) = get(&node, "spin.test", "/").await;
    assert_eq!(status, 504);
    assert!(
        elapsed >= Duration::from_millis(450),
        "stopped before its deadline: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "deadline not enforced: {elapsed:?}"
    );
    let log = node.wait_log("kind=\"timeout\"").await;
    assert!(log.contains("exceeded its deadline"), "{log}");
}

#[tokio::test]
async fn a_guest_that_allocates_without_bound_gets_500() {
    let node = Node::start(&hostile_config()).await;
    let (status, _, elapsed) = get(&node, "hog.test", "/").await;
    assert_eq!(status, 500);
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    let log = node.wait_log("memory limit").await;
    assert!(log.contains("exceeded its memory limit"), "{log}");
}

#[tokio::test]
async fn hostile_guests_do_not_disturb_hello() {
    let node = std::sync::Arc::new(Node::start(&hostile_config()).await);
    let mut hostile = Vec::new();
    for (host, expected) in [
        ("spin.test", 504),
        ("hog.test", 500),
        ("trap.test", 500),
        ("spin.test", 504),
        ("hog.test", 500),
    ] {
        let node = node.clone();
        hostile.push(tokio::spawn(async move {
            let (status, _, _) = get(&node, host, "/").await;
            assert_eq!(status, expected, "{host}");
        }));
    }
    // While those fail, hello keeps answering promptly.
    let started = Instant::now();
    let mut served = 0;
    while started.elapsed() < Duration::from_millis(600) {
        let (status, body, elapsed) = get(&node, "hello.test", "/").await;
        assert_eq!(status, 200);
        assert!(body.starts_with("Hello, world!"));
        assert!(
            elapsed < Duration::from_millis(400),
            "hello was slowed to {elapsed:?}"
        );
        served += 1;
    }
    for task in hostile {
        task.await.unwrap();
    }
    assert!(served >= 5, "only {served} hello requests completed");
}

#[tokio::test]
async fn backend_requests_per_guest_request_are_capped() {
    let origin = Origin::start().await;
    let config = one_service(
        &test_guest("fanout"),
        "limits = { max_backend_requests = 3 }",
        &[("origin", format!("url = \"{}\"", origin.url()))],
    );
    let node = Node::start(&config).await;
    let response = http1().get(node.url("/?n=5")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.starts_with("ok=3 first_error=BackendLimit"), "{text}");
    assert_eq!(
        origin.seen().len(),
        3,
        "fetches past the cap must not reach the origin"
    );
    // The budget is per request: the next request gets a fresh one.
    let text = get_text(&node.url("/?n=2")).await;
    assert!(text.starts_with("ok=2 first_error=none"), "{text}");
}

#[tokio::test]
async fn a_guest_dying_mid_upload_never_hands_the_origin_a_complete_short_body() {
    let origin = Origin::start().await;
    let config = one_service(
        &test_guest("half_upload"),
        "",
        &[("origin", format!("url = \"{}\"", origin.url()))],
    );
    let node = Node::start(&config).await;
    let response = http1().get(node.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 500);
    // The origin sees the upload break off, as the node aborts the connection.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for seen in origin.seen() {
        assert!(
            !seen.body_complete,
            "the origin took a cut-off upload of {} bytes for a complete body",
            seen.body_len
        );
    }
    let log = node.wait_log("dying halfway").await;
    assert!(log.contains("dying halfway through an upload"), "{log}");
}
