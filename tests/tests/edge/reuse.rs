//! Opt-in instance reuse, end to end with the `counter` test guest, whose globals count
//! the requests its instance served: isolation stays the default, reuse counts up, and an
//! instance that failed is never seen again.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::*;

/// A node running the counter guest with `reuse` as the service's `[reuse]` section
/// (none: reuse off).
async fn node(reuse: Option<&str>) -> (Node, SocketAddr) {
    let (addr, metrics) = (free_addr(), free_addr());
    let reuse = reuse.map_or(String::new(), |r| format!("[services.svc.reuse]\n{r}\n"));
    let config = format!(
        "[server]\nlisten = [\"{addr}\"]\n\n[metrics]\nlisten = \"{metrics}\"\n\n\
         [services.svc]\ndomains = [\"*\"]\nguest = {}\n\n{reuse}",
        toml_path(&test_guest("counter"))
    );
    (
        Node::start_on(addr, &config, &[addr, metrics]).await,
        metrics,
    )
}

async fn fetch(node: &Node, path: &str) -> (u16, String) {
    let response = http1().get(node.url(path)).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// `(instances created, guest runs)` for the service.
async fn instances_and_runs(metrics: SocketAddr) -> (f64, f64) {
    let m = metrics_at(metrics).await;
    let value = |name: &str| {
        m.get(&format!("{name}{{service=\"svc\"}}"))
            .copied()
            .unwrap_or(0.0)
    };
    (
        value("outpost_guest_instances_created_total"),
        value("outpost_guest_runs_total"),
    )
}

#[tokio::test]
async fn without_reuse_every_request_gets_a_fresh_instance() {
    let (node, metrics) = node(None).await;
    assert_eq!(
        fetch(&node, "/remember?mine").await.1,
        "count=1 last=mine\n"
    );
    for _ in 0..10 {
        assert_eq!(
            fetch(&node, "/count").await,
            (200, "count=1 last=\n".to_owned()),
            "no request sees another's globals"
        );
    }
    assert_eq!(instances_and_runs(metrics).await, (11.0, 11.0));
}

#[tokio::test]
async fn with_reuse_globals_persist_until_a_trap() {
    let (node, metrics) = node(Some("max_requests = 100")).await;
    assert_eq!(fetch(&node, "/remember?a").await.1, "count=1 last=a\n");
    assert_eq!(fetch(&node, "/count").await.1, "count=2 last=a\n");
    assert_eq!(fetch(&node, "/count").await.1, "count=3 last=a\n");

    // A panic costs only its own request, and its instance is gone afterwards.
    let (status, body) = fetch(&node, "/boom?secret-of-the-failed-request").await;
    assert_eq!(status, 500);
    assert!(!body.contains("count="), "{body}");
    let (status, body) = fetch(&node, "/count").await;
    assert_eq!(status, 200);
    assert_eq!(body, "count=1 last=\n", "a fresh instance after the trap");
    assert!(!body.contains("secret"));
    assert_eq!(fetch(&node, "/count").await.1, "count=2 last=\n");

    let (created, runs) = instances_and_runs(metrics).await;
    assert_eq!(runs, 6.0);
    assert_eq!(created, 2.0, "one instance before the trap, one after");
}

#[tokio::test]
async fn reuse_stops_at_the_request_count_and_the_idle_timeout() {
    let (node, metrics) = node(Some("max_requests = 3\nidle_timeout_ms = 300")).await;
    let counts: Vec<String> = {
        let mut counts = Vec::new();
        for _ in 0..7 {
            counts.push(fetch(&node, "/count").await.1);
        }
        counts
    };
    let expected: Vec<String> = [1, 2, 3, 1, 2, 3, 1]
        .iter()
        .map(|n| format!("count={n} last=\n"))
        .collect();
    assert_eq!(counts, expected);

    // Idle past the timeout: the next request starts over.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(fetch(&node, "/count").await.1, "count=1 last=\n");
    assert_eq!(instances_and_runs(metrics).await, (4.0, 8.0));
}

#[tokio::test]
async fn concurrent_requests_never_share_an_instance() {
    let (node, _metrics) = node(Some("max_requests = 1000")).await;
    let client = http1();
    let requests = (0..20).map(|i| {
        let (client, url) = (client.clone(), node.url(&format!("/remember?r{i}")));
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    });
    let bodies = futures::future::join_all(requests).await;
    for (i, body) in bodies.iter().enumerate() {
        assert!(body.ends_with(&format!(" last=r{i}\n")), "{body}");
    }
}

#[tokio::test]
async fn check_warns_when_a_reused_service_reads_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reuse.toml");
    let config = format!(
        "[services.svc]\ndomains = [\"*\"]\nguest = {}\n\n[services.svc.secrets]\napi_key = \"s3cret-value\"\n\n[services.svc.reuse]\nmax_requests = 10\n",
        toml_path(&test_guest("counter"))
    );
    std::fs::write(&path, config).unwrap();
    let (ok, out) = run_cli(&["check", "--config", path.to_str().unwrap()]);
    assert!(ok, "a warning does not fail the check: {out}");
    assert!(
        out.contains("instance reuse is on and the service reads secrets"),
        "{out}"
    );
    assert!(!out.contains("s3cret-value"), "{out}");
}
