//! The response cache, end to end: the `counter` test guest answers `/edge/...` with
//! `run=N`, a node-wide count of its runs for that URL, and lets the edge keep the answer
//! (`Response::with_edge_cache`). A hit must run no guest at all: the body's `run=N` and
//! `outpost_guest_runs_total` both prove it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::support::*;

const TOKEN: &str = "response-cache-admin-token-0123";

struct Edge {
    node: Node,
    admin: SocketAddr,
    metrics: SocketAddr,
    access_log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A node whose one service runs the counter guest with the response cache on for
/// `paths`.
async fn edge(paths: &str) -> Edge {
    let dir = tempfile::tempdir().unwrap();
    let access_log = dir.path().join("access.log");
    let (addr, admin, metrics) = (free_addr(), free_addr(), free_addr());
    let config = format!(
        r#"
[server]
listen = ["{addr}"]

[metrics]
listen = "{metrics}"

[admin]
listen = "{admin}"
token = "{TOKEN}"

[log]
access = {log}

[services.svc]
domains = ["*"]
guest = {guest}

[services.svc.response_cache]
enabled = true
paths = {paths}
"#,
        guest = toml_path(&test_guest("counter")),
        log = toml_path(&access_log),
    );
    let node = Node::start_on(addr, &config, &[addr, admin, metrics]).await;
    Edge {
        node,
        admin,
        metrics,
        access_log,
        _dir: dir,
    }
}

async fn get_with(edge: &Edge, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut builder = http1().get(edge.node.url(path));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    Got::read(builder.send().await.unwrap()).await
}

async fn get(edge: &Edge, path: &str) -> Got {
    get_with(edge, path, &[]).await
}

async fn guest_runs(edge: &Edge) -> f64 {
    let metrics = metrics_at(edge.metrics).await;
    metrics
        .get("outpost_guest_runs_total{service=\"svc\"}")
        .copied()
        .unwrap_or(0.0)
}

async fn purge(edge: &Edge, path: &str) -> String {
    let response = http1()
        .post(format!("http://{}{path}", edge.admin))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "purge {path}");
    response.text().await.unwrap()
}

#[tokio::test]
async fn a_hit_is_answered_without_running_the_guest() {
    let edge = edge(r#"["/"]"#).await;
    let first = get(&edge, "/edge/home?ttl=60000").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body, "run=1 path=/edge/home\n");
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(guest_runs(&edge).await, 1.0);

    for _ in 0..3 {
        let hit = get(&edge, "/edge/home?ttl=60000").await;
        assert_eq!(hit.status, 200);
        assert_eq!(hit.body, "run=1 path=/edge/home\n", "served from the edge");
        assert_eq!(hit.x_cache(), "HIT");
        assert!(hit.headers.contains_key("age"), "a hit says its age");
        assert!(
            hit.header("server-timing")
                .is_some_and(|t| t.contains("guest;desc=none")),
            "Server-Timing says no guest ran: {:?}",
            hit.header("server-timing")
        );
        assert!(hit.headers.contains_key("x-outpost-request-id"));
    }
    assert_eq!(guest_runs(&edge).await, 1.0, "hits ran no guest");
    let metrics = metrics_at(edge.metrics).await;
    assert_eq!(
        metrics.get("outpost_cache_lookups_total{layer=\"response\",result=\"hit\"}"),
        Some(&3.0)
    );
    assert_eq!(
        metrics.get("outpost_cache_lookups_total{layer=\"response\",result=\"miss\"}"),
        Some(&1.0)
    );

    // HEAD is answered from the same object, without a body.
    let head = http1()
        .head(edge.node.url("/edge/home?ttl=60000"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["x-cache"], "HIT");
    assert_eq!(head.text().await.unwrap(), "");

    // Another URL (query included) is another object.
    let other = get(&edge, "/edge/home?ttl=60000&x").await;
    assert_eq!(other.body, "run=1 path=/edge/home\n");
    assert_eq!(other.x_cache(), "MISS");
    assert_eq!(guest_runs(&edge).await, 2.0);

    // The access log says which answers ran a guest.
    let lines: Vec<serde_json::Value> = {
        let mut lines = Vec::new();
        assert!(
            eventually(|| {
                lines = std::fs::read_to_string(&edge.access_log)
                    .unwrap_or_default()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                std::future::ready(lines.len() >= 6)
            })
            .await
        );
        lines
    };
    let hits: Vec<_> = lines
        .iter()
        .filter(|l| l["response_cache"] == "HIT")
        .collect();
    assert_eq!(hits.len(), 4, "three GET hits and one HEAD: {lines:?}");
    assert!(hits.iter().all(|l| l["guest_ms"].is_null()), "{hits:?}");
    let miss = lines
        .iter()
        .find(|l| l["response_cache"] == "MISS")
        .unwrap();
    assert!(miss["guest_ms"].as_f64().is_some(), "{miss:?}");
}

#[tokio::test]
async fn vary_keeps_one_answer_per_variant() {
    let edge = edge(r#"["/"]"#).await;
    let path = "/edge/lang?vary=accept-language";
    let en = get_with(&edge, path, &[("accept-language", "en")]).await;
    assert_eq!(en.body, "run=1 path=/edge/lang accept-language=en\n");
    let de = get_with(&edge, path, &[("accept-language", "de")]).await;
    assert_eq!(de.body, "run=2 path=/edge/lang accept-language=de\n");
    assert_eq!(de.x_cache(), "MISS", "another variant runs the guest");
    let en_again = get_with(&edge, path, &[("accept-language", "en")]).await;
    assert_eq!(en_again.body, en.body);
    assert_eq!(en_again.x_cache(), "HIT");
    let de_again = get_with(&edge, path, &[("accept-language", "de")]).await;
    assert_eq!(de_again.body, de.body);
    assert_eq!(guest_runs(&edge).await, 2.0);
}

#[tokio::test]
async fn purges_by_surrogate_key_url_and_service_remove_answers() {
    let edge = edge(r#"["/"]"#).await;
    let tagged = "/edge/tagged?key=news";
    assert_eq!(get(&edge, tagged).await.body, "run=1 path=/edge/tagged\n");
    assert_eq!(get(&edge, tagged).await.x_cache(), "HIT");
    let purged = purge(&edge, "/services/svc/purge/key/news").await;
    assert!(purged.contains("\"purged\":1"), "{purged}");
    let after = get(&edge, tagged).await;
    assert_eq!(
        after.body, "run=2 path=/edge/tagged\n",
        "the purge removed it"
    );
    assert_eq!(after.x_cache(), "MISS");

    // By URL, as the client asked for it.
    let plain = "/edge/plain";
    assert_eq!(get(&edge, plain).await.body, "run=1 path=/edge/plain\n");
    assert_eq!(get(&edge, plain).await.x_cache(), "HIT");
    let purged = purge(&edge, "/services/svc/purge/url/http://127.0.0.1/edge/plain").await;
    assert!(purged.contains("\"purged\":1"), "{purged}");
    assert_eq!(get(&edge, plain).await.body, "run=2 path=/edge/plain\n");

    // The whole service.
    purge(&edge, "/services/svc/purge/all").await;
    assert_eq!(get(&edge, plain).await.body, "run=3 path=/edge/plain\n");
    assert_eq!(get(&edge, tagged).await.body, "run=3 path=/edge/tagged\n");
}

#[tokio::test]
async fn private_answers_are_never_served_to_another_client() {
    let edge = edge(r#"["/"]"#).await;
    for (path, header) in [
        ("/edge/cookie?cookie", "set-cookie"),
        ("/edge/private?private", "cache-control"),
    ] {
        let first = get(&edge, path).await;
        let second = get(&edge, path).await;
        assert!(first.body.starts_with("run=1 "), "{path}: {}", first.body);
        assert!(
            second.body.starts_with("run=2 "),
            "{path} was stored: {}",
            second.body
        );
        assert_eq!(second.x_cache(), "MISS");
        assert!(second.header(header).is_some(), "{path} keeps its {header}");
    }
    assert_eq!(
        get(&edge, "/edge/cookie?cookie").await.header("set-cookie"),
        Some("session=run3"),
        "each client gets its own cookie"
    );

    // A request with credentials never gets the shared answer, and its own is not stored.
    let shared = "/edge/shared";
    assert_eq!(get(&edge, shared).await.body, "run=1 path=/edge/shared\n");
    let with_auth = get_with(&edge, shared, &[("authorization", "Bearer alice")]).await;
    assert_eq!(
        with_auth.body, "run=2 path=/edge/shared\n",
        "credentials reach the guest"
    );
    assert_eq!(get(&edge, shared).await.body, "run=1 path=/edge/shared\n");

    // Answers without an explicit shared-cache policy are not stored either.
    assert_eq!(get(&edge, "/count").await.x_cache(), "MISS");
    assert_eq!(get(&edge, "/count").await.x_cache(), "MISS");
}

#[tokio::test]
async fn public_max_age_stores_and_uncovered_paths_always_run() {
    let edge = edge(r#"["/edge/covered"]"#).await;
    let covered = "/edge/covered?public";
    assert_eq!(get(&edge, covered).await.body, "run=1 path=/edge/covered\n");
    let hit = get(&edge, covered).await;
    assert_eq!(
        hit.body, "run=1 path=/edge/covered\n",
        "public, max-age is shared"
    );
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(hit.header("cache-control"), Some("public, max-age=60"));

    let uncovered = "/edge/elsewhere";
    assert_eq!(
        get(&edge, uncovered).await.body,
        "run=1 path=/edge/elsewhere\n"
    );
    assert_eq!(
        get(&edge, uncovered).await.body,
        "run=2 path=/edge/elsewhere\n"
    );
}

#[tokio::test]
async fn concurrent_misses_run_the_guest_once() {
    let edge = edge(r#"["/"]"#).await;
    let client = http1();
    let url = edge.node.url("/edge/popular?slow=300");
    let requests = (0..100).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    });
    let answers = futures::future::join_all(requests).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200);
        assert_eq!(body, "run=1 path=/edge/popular\n");
    }
    assert_eq!(
        guest_runs(&edge).await,
        1.0,
        "100 concurrent misses ran one guest"
    );
}

#[tokio::test]
async fn stale_answers_cover_a_refresh_and_a_failing_guest() {
    let edge = edge(r#"["/"]"#).await;

    // stale-while-revalidate: the stale answer goes out at once, one run refreshes it.
    let swr = "/edge/swr?ttl=300&swr=60000";
    assert_eq!(get(&edge, swr).await.body, "run=1 path=/edge/swr\n");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stale = get(&edge, swr).await;
    assert_eq!(stale.body, "run=1 path=/edge/swr\n");
    assert_eq!(stale.x_cache(), "STALE");
    assert!(eventually(|| async { guest_runs(&edge).await == 2.0 }).await);
    let refreshed = get(&edge, swr).await;
    assert_eq!(refreshed.body, "run=2 path=/edge/swr\n");
    assert_eq!(refreshed.x_cache(), "HIT");

    // stale-if-error: the guest panics from its second run on; the stale answer covers it.
    let sie = "/edge/sie?ttl=300&sie=60000&fail_after=1";
    assert_eq!(get(&edge, sie).await.body, "run=1 path=/edge/sie\n");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let covered = get(&edge, sie).await;
    assert_eq!(covered.status, 200);
    assert_eq!(
        covered.body, "run=1 path=/edge/sie\n",
        "stale covers the failure"
    );

    // Without it, the failure is the client's.
    let bare = "/edge/bare?ttl=300&fail_after=1";
    assert_eq!(get(&edge, bare).await.body, "run=1 path=/edge/bare\n");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get(&edge, bare).await.status, 500);
}

#[tokio::test]
async fn streamed_answers_are_stored_whole() {
    let edge = edge(r#"["/"]"#).await;
    let path = "/edge/streamed?stream";
    let first = get(&edge, path).await;
    assert_eq!(first.body, "run=1 path=/edge/streamed\nstreamed ");
    let hit = get(&edge, path).await;
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(hit.body, first.body);
    assert_eq!(guest_runs(&edge).await, 1.0);
}
