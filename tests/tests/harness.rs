//! The `outpost-test` harness, used the way a guest author would: plain `#[test]`s, real
//! guests from guest-examples/ and tests/guests/, mock backends declared as closures, no
//! node running.

use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_test::{Harness, MockResponse};

fn example(name: &str) -> PathBuf {
    Path::new(env!("OUTPOST_EXAMPLES_WASM")).join(format!("{name}.wasm"))
}

fn test_guest(name: &str) -> PathBuf {
    Path::new(env!("OUTPOST_TEST_GUESTS_WASM")).join(format!("{name}.wasm"))
}

#[test]
fn a_guest_fetches_mock_backends_through_the_real_edge_cache() {
    let harness = Harness::builder(example("origin_proxy"))
        .backend("origin", |req| {
            MockResponse::ok(format!("origin saw {} {}", req.method, req.path))
                .header("cache-control", "max-age=60")
        })
        .build()
        .unwrap();

    let first = harness.get("/page?x=1");
    assert_eq!(first.status(), 200);
    assert_eq!(first.text(), "origin saw GET /page");
    assert_eq!(first.header("x-edge"), Some("outpost"));
    assert_eq!(first.cache_state(), Some("MISS"));
    let second = harness.get("/page?x=1");
    assert_eq!(second.cache_state(), Some("HIT"));

    let seen = harness.backend_requests("origin");
    assert_eq!(seen.len(), 1, "the second answer came from the cache");
    assert_eq!(seen[0].query.as_deref(), Some("x=1"));
    assert_eq!(seen[0].header("user-agent"), Some("outpost-edge/0.1"));
    assert!(harness.cache_usage().objects >= 1);
    harness.purge_all();
    assert_eq!(harness.cache_usage().objects, 0);
    assert_eq!(harness.get("/page?x=1").cache_state(), Some("MISS"));
}

#[test]
fn logs_with_levels_and_guest_failures_come_back_with_the_response() {
    let harness = Harness::builder(test_guest("trap")).build().unwrap();
    let fine = harness.get("/ok");
    assert_eq!(fine.status(), 200);
    assert!(fine.failure().is_none());
    assert!(fine.logged("trap guest is fine on /ok"));
    assert_eq!(fine.logs()[0].stream, "stdout");

    let broken = harness.get("/boom");
    assert_eq!(broken.status(), 500);
    assert!(broken.failure().is_some());
    assert!(
        broken.logged("boom at the edge: /boom"),
        "{:?}",
        broken.logs()
    );

    // The SDK's macros keep their level.
    let limited = Harness::builder(example("rate_limit"))
        .backend("origin", |_| MockResponse::ok("fine"))
        .config("limit", "1")
        .build()
        .unwrap();
    assert_eq!(limited.get("/").status(), 200);
    let refused = limited.get("/");
    assert_eq!(refused.status(), 429);
    let line = refused
        .logs()
        .iter()
        .find(|l| l.message.starts_with("limited ip:192.0.2.1"))
        .expect("the limit is logged");
    assert_eq!(line.level, "INFO");
    assert_eq!(limited.backend_requests("origin").len(), 1);
}

#[test]
fn config_store_and_slow_or_failing_backends_are_under_test_control() {
    let harness = Harness::builder(example("api_aggregate"))
        .backend("users", |req| {
            MockResponse::json(format!(
                r#"{{"id":"{}"}}"#,
                req.path.trim_start_matches("/users/")
            ))
            .delay(Duration::from_millis(300))
        })
        .backend("orders", |_| MockResponse::status(503))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let partial = harness.get("/dashboard/7");
    assert_eq!(partial.status(), 200);
    assert_eq!(partial.header("x-partial"), Some("true"));
    assert!(
        partial.text().contains(r#""user":{"id":"7"}"#),
        "{}",
        partial.text()
    );
    assert!(partial.logged("dashboard 7 is partial"));
    assert!(started.elapsed() >= Duration::from_millis(300));

    let redirects = Harness::builder(example("redirects"))
        .backend("origin", |_| MockResponse::ok("origin"))
        .config("redirect:/old", "308 /new")
        .build()
        .unwrap();
    let moved = redirects.get("/old?a=b");
    assert_eq!(moved.status(), 308);
    assert_eq!(moved.header("location"), Some("/new?a=b"));
    assert!(redirects.backend_requests("origin").is_empty());
}

#[test]
fn a_broken_guest_path_is_a_clear_error() {
    let error = Harness::builder("/nonexistent/guest.wasm")
        .build()
        .err()
        .expect("no such guest");
    let text = format!("{error:#}");
    assert!(text.contains("/nonexistent/guest.wasm"), "{text}");
}

/// The harness runs the node's own pipeline: the same limits, headers and failure answers
/// as the node (it used to skip the body limit, the request id and Server-Timing).
#[test]
fn the_harness_enforces_the_nodes_limits_and_headers() {
    let harness = Harness::builder(example("origin_proxy"))
        .backend("origin", |req| {
            MockResponse::ok(format!("origin got {} bytes", req.body.len()))
                .header("connection", "x-hop")
                .header("x-hop", "must not reach the client")
        })
        .limits(|limits| limits.max_request_body_bytes = 16)
        .build()
        .unwrap();

    let small = harness.send(
        http::Request::post("/upload")
            .header("host", "guest.test")
            .body("0123456789")
            .unwrap(),
    );
    assert_eq!(small.status(), 200, "{}", small.text());
    assert_eq!(small.text(), "origin got 10 bytes");
    assert!(small.header("x-outpost-request-id").is_some());
    let timing = small.header("server-timing").unwrap_or_default();
    assert!(
        timing.contains("edge;dur=") && timing.contains("instantiate;dur="),
        "{timing}"
    );
    assert_eq!(
        small.header("x-hop"),
        None,
        "hop-by-hop fields are stripped"
    );

    let large = harness.send(
        http::Request::post("/upload")
            .header("host", "guest.test")
            .body("this body is longer than sixteen bytes")
            .unwrap(),
    );
    assert_eq!(large.status(), 413);
    assert!(
        harness.backend_requests("origin").len() == 1,
        "the refused body never reached the backend"
    );
}
