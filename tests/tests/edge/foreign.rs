//! Guests Outpost's SDK had no part in: a Rust component on the raw `wasi:http` bindings, a
//! Python component from componentize-py and a JavaScript component from `jco
//! componentize` (both built by tests/build.rs from guest-examples/foreign/). Each runs
//! unchanged, and the two foreign languages also fetch through the edge cache.

use crate::support::*;

fn foreign(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("OUTPOST_FOREIGN_WASM")).join(format!("{name}.wasm"))
}

#[tokio::test]
async fn a_plain_wasi_http_component_runs_unchanged() {
    let config = one_service(&test_guest("plain_wasi"), "", &[]);
    let node = Node::start(&config).await;
    let response = http1().get(node.url("/raw?x=1")).send().await.unwrap();
    assert_eq!(response.status(), 203);
    assert_eq!(response.text().await.unwrap(), "plain wasi saw /raw?x=1\n");
}

/// A guest that answers with an `error-code` instead of a response still has its output
/// logged and its execution timed (it used to lose both).
#[tokio::test]
async fn an_error_code_answer_keeps_its_log_lines_and_its_execution_time() {
    let (addr, metrics) = (free_addr(), free_addr());
    let config = one_service(&test_guest("plain_wasi"), "", &[])
        .replace("{listen}", &addr.to_string())
        + &format!("\n[metrics]\nlisten = \"{metrics}\"\n");
    let node = Node::start_on(addr, &config, &[addr, metrics]).await;
    let response = http1().get(node.url("/error-code")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    let request_id = response.headers()["x-outpost-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let log = node.wait_log("plain wasi gives up on /error-code").await;
    let line = log
        .lines()
        .find(|l| l.contains("plain wasi gives up on /error-code"))
        .unwrap_or_else(|| panic!("the guest's line is logged:\n{log}"));
    assert!(
        line.contains(&request_id),
        "tagged with the request: {line}"
    );
    let m = metrics_at(metrics).await;
    let sum = m[r#"outpost_guest_execution_seconds_sum{service="svc"}"#];
    let count = m[r#"outpost_guest_execution_seconds_count{service="svc"}"#];
    assert_eq!(count, 1.0);
    assert!(sum >= 0.004, "the guest worked 5 ms: {sum}");
}

/// Serves `guest` with an `origin` backend whose `/page` is cacheable, checks its own
/// answer and its fetch, and that the second fetch came from the edge cache.
async fn serve_foreign(guest: &str, language: &str, transform: fn(&str) -> String) {
    let origin = Origin::start().await;
    origin.set(
        "/page",
        Canned::ok(
            "cached words from the origin",
            &[("cache-control", "max-age=60")],
        ),
    );
    let config = one_service(
        &foreign(guest),
        "",
        &[("origin", format!("url = \"{}\"", origin.url()))],
    );
    let node = Node::start(&config).await;
    let client = http1();

    let own = client
        .get(node.url("/here?x=1"))
        .header("user-agent", "tester")
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    assert_eq!(own.headers()["x-guest-language"], language);
    let text = own.text().await.unwrap();
    assert!(
        text.starts_with(&format!("hello from {language}")) && text.contains("/here?x=1"),
        "{text}"
    );

    for _ in 0..2 {
        let fetched = client.get(node.url("/origin/page")).send().await.unwrap();
        assert_eq!(fetched.status(), 200);
        assert_eq!(
            fetched.text().await.unwrap(),
            transform("cached words from the origin")
        );
    }
    assert_eq!(
        origin.hits("/page").len(),
        1,
        "the second fetch should be an edge-cache hit"
    );
    let missing = client
        .get(node.url("/origin/nothing-here?status=404"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404, "the origin's status passes through");
}

#[tokio::test]
async fn a_python_guest_from_componentize_py_runs_and_fetches_through_the_cache() {
    serve_foreign("python_proxy", "python", |s| s.chars().rev().collect()).await;
}

#[tokio::test]
async fn a_javascript_guest_from_jco_componentize_runs_and_fetches_through_the_cache() {
    serve_foreign("js_proxy", "javascript", |s| s.to_uppercase()).await;
}
