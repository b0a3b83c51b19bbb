//! What operators and guest authors see: Prometheus metrics, Server-Timing, the JSON
//! access log and guests' own output in the node log.

use std::collections::HashMap;

use crate::support::*;

fn observed_config(
    origin: &Origin,
    metrics: std::net::SocketAddr,
    access_log: &std::path::Path,
) -> String {
    format!(
        r#"
[server]
listen = ["{{listen}}"]

[metrics]
listen = "{metrics}"

[log]
access = {access}

[services.hello]
domains = ["hello.test"]
guest = {hello}

[services.quiet]
domains = ["quiet.test"]
guest = {hello}
server_timing = false

[services.trap]
domains = ["trap.test"]
guest = {trap}

[services.proxy]
domains = ["proxy.test"]
guest = {proxy}
[services.proxy.backends.origin]
url = "{origin}"
"#,
        access = toml_path(access_log),
        hello = toml_path(&example("hello")),
        trap = toml_path(&test_guest("trap")),
        proxy = toml_path(&example("origin_proxy")),
        origin = origin.url(),
    )
}

async fn get(node: &Node, host: &str, path: &str) -> reqwest::Response {
    http1()
        .get(node.url(path))
        .header("host", host)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn metrics_count_known_traffic() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let metrics_addr = free_addr();
    let config = observed_config(&origin, metrics_addr, &dir.path().join("access.log"));
    let addr = free_addr();
    let node = Node::start_on(
        addr,
        &config.replace("{listen}", &addr.to_string()),
        &[addr, metrics_addr],
    )
    .await;
    for _ in 0..3 {
        assert_eq!(get(&node, "hello.test", "/").await.status(), 200);
    }
    assert_eq!(get(&node, "trap.test", "/boom").await.status(), 500);
    assert_eq!(get(&node, "proxy.test", "/via").await.status(), 200);
    assert_eq!(get(&node, "nobody.test", "/").await.status(), 404);

    // An exchange is counted when it ends, just after its last byte reached the client:
    // scrape until all five are in (the 404 has no service).
    let mut text = String::new();
    for _ in 0..50 {
        text = get_text(&format!("http://{metrics_addr}/metrics")).await;
        let counted: f64 = scrape(&text)
            .iter()
            .filter(|(k, _)| k.starts_with("outpost_requests_total"))
            .map(|(_, v)| v)
            .sum();
        if counted >= 5.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let m = scrape(&text);
    let value = |key: &str| *m.get(key).unwrap_or_else(|| panic!("no {key} in:\n{text}"));
    assert_eq!(
        value(r#"outpost_requests_total{service="hello",status="2xx"}"#),
        3.0
    );
    assert_eq!(
        value(r#"outpost_requests_total{service="trap",status="5xx"}"#),
        1.0
    );
    assert_eq!(
        value(r#"outpost_requests_total{service="proxy",status="2xx"}"#),
        1.0
    );
    assert_eq!(
        value(r#"outpost_guest_errors_total{kind="trap",service="trap"}"#),
        1.0
    );
    assert_eq!(
        value(r#"outpost_guest_errors_total{kind="timeout",service="trap"}"#),
        0.0
    );
    assert_eq!(
        value(r#"outpost_request_duration_seconds_count{service="hello",status="2xx"}"#),
        3.0
    );
    assert_eq!(
        value(r#"outpost_request_duration_seconds_bucket{service="hello",status="2xx",le="+Inf"}"#),
        3.0
    );
    assert_eq!(value(r#"outpost_guest_instantiate_seconds_count"#), 5.0);
    assert_eq!(
        value(r#"outpost_guest_execution_seconds_count{service="hello"}"#),
        3.0
    );
    assert_eq!(
        value(
            r#"outpost_backend_request_duration_seconds_count{backend="origin",service="proxy",status="2xx"}"#
        ),
        1.0
    );
    assert_eq!(value("outpost_requests_in_flight"), 0.0);
    assert!(
        m.keys()
            .any(|k| k.starts_with("outpost_connections_open{listener=")),
        "connections are counted per listener"
    );
    // Every instantiation lands in the histogram, whose buckets start at microseconds
    // (how fast they are is the load test's business, not a test's).
    assert_eq!(
        value(r#"outpost_guest_instantiate_seconds_bucket{le="+Inf"}"#),
        5.0
    );
    assert!(m.contains_key(r#"outpost_guest_instantiate_seconds_bucket{le="0.000005"}"#));
    assert!(origin.seen().len() == 1);

    let response = http1()
        .get(format!("http://{metrics_addr}/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn server_timing_is_present_plausible_and_switchable() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = observed_config(&origin, free_addr(), &dir.path().join("access.log"));
    let node = Node::start(&config).await;
    let response = get(&node, "proxy.test", "/slow/150").await;
    assert_eq!(response.status(), 200);
    let timing = response.headers()["server-timing"]
        .to_str()
        .unwrap()
        .to_owned();
    let durations: HashMap<&str, f64> = timing
        .split(", ")
        .filter_map(|part| part.split_once(";dur="))
        .map(|(name, ms)| (name, ms.parse().unwrap()))
        .collect();
    let (edge, instantiate, origin_ms) = (
        durations["edge"],
        durations["instantiate"],
        durations["origin"],
    );
    assert!(origin_ms >= 150.0, "{timing}");
    assert!(edge >= origin_ms, "{timing}");
    assert!(instantiate > 0.0 && instantiate < edge, "{timing}");
    // The guest's own share excludes the 150 ms it spent waiting on the origin.
    let guest = durations["guest"];
    assert!((0.0..150.0).contains(&guest), "{timing}");
    assert!(
        (instantiate + guest + origin_ms) <= edge + 0.01,
        "the parts fit in the whole: {timing}"
    );
    assert!(timing.contains("cache;desc=MISS"), "{timing}");

    let response = get(&node, "quiet.test", "/").await;
    assert_eq!(response.status(), 200);
    assert!(!response.headers().contains_key("server-timing"));
}

#[tokio::test]
async fn access_log_lines_are_json_with_the_documented_fields() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("access.log");
    let config = observed_config(&origin, free_addr(), &log_path);
    let node = Node::start(&config).await;
    let response = http1()
        .post(node.url("/upload?x=1"))
        .header("host", "proxy.test")
        .body("twelve bytes")
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-outpost-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.bytes().await.unwrap();
    let missing = get(&node, "nobody.test", "/nothing").await;
    let missing_id = missing.headers()["x-outpost-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    // Lines are written as exchanges end, in any order: find each by its request id.
    let mut lines = Vec::new();
    for _ in 0..50 {
        lines = std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if lines.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let find = |id: &str| {
        parsed
            .iter()
            .find(|v| v["request_id"] == id)
            .unwrap_or_else(|| panic!("{id} not in {lines:?}"))
    };
    let line = find(&id);
    assert_eq!(line["service"], "proxy");
    assert_eq!(line["method"], "POST");
    assert_eq!(line["host"], "proxy.test");
    assert_eq!(line["path"], "/upload?x=1");
    assert_eq!(line["status"], 200);
    assert_eq!(line["client_ip"], "127.0.0.1");
    assert_eq!(line["bytes_in"], 12);
    assert_eq!(line["bytes_out"], body.len() as u64);
    assert_eq!(line["cache"], "PASS", "a POST passes the cache");
    for field in ["duration_ms", "guest_ms", "origin_ms"] {
        assert!(
            line[field].as_f64().is_some_and(|v| v >= 0.0),
            "{field}: {line}"
        );
    }
    assert!(
        line["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{line}"
    );
    let line = find(&missing_id);
    assert_eq!(line["status"], 404);
    assert!(line["service"].is_null());
    assert!(line["cache"].is_null(), "no guest, no fetch: {line}");
}

#[tokio::test]
async fn guest_output_lands_in_the_node_log_tagged_with_service_and_request_id() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&observed_config(
        &origin,
        free_addr(),
        &dir.path().join("a.log"),
    ))
    .await;
    let response = get(&node, "trap.test", "/ok").await;
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-outpost-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let log = node.wait_log("says so on stderr").await;
    let tagged = |text: &str| {
        log.lines().any(|l| {
            l.contains(text)
                && l.contains("outpost::guest")
                && l.contains(&id)
                && l.contains("trap")
        })
    };
    assert!(
        tagged("trap guest is fine on /ok"),
        "stdout line not tagged:\n{log}"
    );
    assert!(
        tagged("and says so on stderr"),
        "stderr line not tagged:\n{log}"
    );
}

/// Every metric the shipped Grafana dashboard queries must exist on a running node.
#[tokio::test]
async fn the_grafana_dashboard_queries_metrics_the_node_exports() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let metrics_addr = free_addr();
    let addr = free_addr();
    let config = observed_config(&origin, metrics_addr, &dir.path().join("a.log"))
        .replace("{listen}", &addr.to_string());
    let node = Node::start_on(addr, &config, &[addr, metrics_addr]).await;
    get(&node, "proxy.test", "/").await;
    let text = get_text(&format!("http://{metrics_addr}/metrics")).await;
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/observability/grafana-dashboard.json"
    ))
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut checked = 0;
    for panel in json["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("outpost_") {
                    assert!(
                        text.contains(&format!("\n{word}")),
                        "dashboard queries `{word}`, which the node does not export"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 9, "only {checked} metric references found");
}
