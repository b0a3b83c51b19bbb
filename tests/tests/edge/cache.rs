//! The edge cache, end to end: the `origin-proxy` guest in the real node in front of an
//! origin that counts what reaches it, so every test proves whether the origin was asked.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::*;

const TOKEN: &str = "test-admin-token-0123456789";

struct Edge {
    node: Node,
    admin: SocketAddr,
    metrics: SocketAddr,
}

async fn edge(origin: &Origin, cache_section: &str) -> Edge {
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

[cache]
{cache_section}

[services.svc]
domains = ["*"]
guest = {guest}

[services.svc.backends.origin]
url = "{origin}"
"#,
        guest = toml_path(&example("origin_proxy")),
        origin = origin.url(),
    );
    let node = Node::start_on(addr, &config, &[addr, admin, metrics]).await;
    Edge {
        node,
        admin,
        metrics,
    }
}

async fn request(edge: &Edge, method: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut builder = http1().request(method.parse().unwrap(), edge.node.url(path));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    Got::read(builder.send().await.unwrap()).await
}

async fn get(edge: &Edge, path: &str) -> Got {
    request(edge, "GET", path, &[]).await
}

async fn admin(edge: &Edge, path: &str, soft: bool) -> (u16, String) {
    let mut builder = http1()
        .post(format!("http://{}{path}", edge.admin))
        .header("authorization", format!("Bearer {TOKEN}"));
    if soft {
        builder = builder.header("outpost-soft-purge", "1");
    }
    let response = builder.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn fresh_responses_are_served_from_memory_with_age_and_head() {
    let origin = Origin::start().await;
    origin.set(
        "/page",
        Canned::ok(
            "cached page",
            &[("cache-control", "max-age=60"), ("age", "5")],
        ),
    );
    let edge = edge(&origin, "").await;

    let first = get(&edge, "/page").await;
    assert_eq!((first.status, first.x_cache()), (200, "MISS"));
    let second = get(&edge, "/page").await;
    assert_eq!((second.status, second.x_cache()), (200, "HIT"));
    assert_eq!(second.body, "cached page");
    let age: u64 = second.header("age").unwrap().parse().unwrap();
    assert!((5..60).contains(&age), "age counts the origin's Age: {age}");
    // The guest's own header is still added on hits: the guest runs, the origin does not.
    assert_eq!(second.header("x-edge"), Some("outpost"));

    let head = request(&edge, "HEAD", "/page", &[]).await;
    assert_eq!(
        (head.status, head.x_cache(), head.body.as_str()),
        (200, "HIT", "")
    );
    assert_eq!(
        origin.hits("/page").len(),
        1,
        "one origin request for GET, GET, HEAD"
    );
}

#[tokio::test]
async fn what_must_not_be_shared_is_never_stored() {
    let origin = Origin::start().await;
    let cases = [
        ("/no-store", vec![("cache-control", "no-store, max-age=60")]),
        ("/private", vec![("cache-control", "private, max-age=60")]),
        (
            "/cookie",
            vec![("cache-control", "max-age=60"), ("set-cookie", "id=1")],
        ),
        (
            "/vary-star",
            vec![("cache-control", "max-age=60"), ("vary", "*")],
        ),
        ("/nothing", vec![]),
    ];
    for (path, headers) in &cases {
        origin.set(path, Canned::ok("x", headers));
    }
    let edge = edge(&origin, "").await;
    for (path, _) in &cases {
        for _ in 0..2 {
            let got = get(&edge, path).await;
            assert_eq!((got.status, got.x_cache()), (200, "MISS"), "{path}");
        }
        assert_eq!(
            origin.hits(path).len(),
            2,
            "{path} reached the origin every time"
        );
    }
    // With Authorization, only an explicitly shareable response is stored.
    origin.set("/auth", Canned::ok("a", &[("cache-control", "max-age=60")]));
    origin.set(
        "/auth-public",
        Canned::ok("a", &[("cache-control", "public, max-age=60")]),
    );
    for path in ["/auth", "/auth-public"] {
        for _ in 0..2 {
            request(&edge, "GET", path, &[("authorization", "Bearer x")]).await;
        }
    }
    assert_eq!(origin.hits("/auth").len(), 2);
    assert_eq!(origin.hits("/auth-public").len(), 1);
}

#[tokio::test]
async fn expired_responses_are_revalidated_and_a_304_updates_the_head() {
    let origin = Origin::start().await;
    origin.set(
        "/doc",
        Canned::ok(
            "document v1",
            &[
                ("cache-control", "max-age=1"),
                ("etag", "\"v1\""),
                ("x-rev", "1"),
            ],
        ),
    );
    let edge = edge(&origin, "").await;
    assert_eq!(get(&edge, "/doc").await.x_cache(), "MISS");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // The origin answers 304 to the stored validator, with a new header value.
    origin.set(
        "/doc",
        Canned::ok(
            "never sent",
            &[
                ("cache-control", "max-age=60"),
                ("etag", "\"v1\""),
                ("x-rev", "2"),
            ],
        ),
    );
    let got = get(&edge, "/doc").await;
    assert_eq!((got.status, got.x_cache()), (200, "REVALIDATED"));
    assert_eq!(got.body, "document v1", "body kept from the cache");
    assert_eq!(got.header("x-rev"), Some("2"), "head updated from the 304");
    let hits = origin.hits("/doc");
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[1].header("if-none-match"), Some("\"v1\""));
    // Fresh again for 60 s.
    assert_eq!(get(&edge, "/doc").await.x_cache(), "HIT");
    assert_eq!(origin.hits("/doc").len(), 2);
}

#[tokio::test]
async fn vary_keeps_variants_apart() {
    let origin = Origin::start().await;
    origin.set(
        "/greeting",
        Canned {
            echo_header: Some("accept-language".into()),
            ..Canned::ok(
                "hello in ",
                &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
            )
        },
    );
    let edge = edge(&origin, "").await;
    let lang = |l: &'static str| [("accept-language", l)];
    for (language, state) in [("en", "MISS"), ("fr", "MISS"), ("en", "HIT"), ("fr", "HIT")] {
        let got = request(&edge, "GET", "/greeting", &lang(language)).await;
        assert_eq!(got.x_cache(), state, "{language}");
        assert_eq!(got.body, format!("hello in {language}"));
    }
    assert_eq!(origin.hits("/greeting").len(), 2);
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let origin = Origin::start().await;
    origin.set(
        "/feed",
        Canned::ok(
            "feed v1",
            &[("cache-control", "max-age=1, stale-while-revalidate=60")],
        ),
    );
    let edge = edge(&origin, "").await;
    get(&edge, "/feed").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    origin.set(
        "/feed",
        Canned {
            delay: Duration::from_millis(500),
            ..Canned::ok(
                "feed v2",
                &[("cache-control", "max-age=60, stale-while-revalidate=60")],
            )
        },
    );
    let stale = futures::future::join_all((0..5).map(|_| get(&edge, "/feed"))).await;
    for got in &stale {
        assert_eq!((got.x_cache(), got.body.as_str()), ("STALE", "feed v1"));
    }
    assert!(
        eventually(|| std::future::ready(origin.hits("/feed").len() == 2)).await,
        "one background refresh"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let fresh = get(&edge, "/feed").await;
    assert_eq!((fresh.x_cache(), fresh.body.as_str()), ("HIT", "feed v2"));
    assert_eq!(
        origin.hits("/feed").len(),
        2,
        "exactly one refresh for five stale hits"
    );
}

#[tokio::test]
async fn stale_if_error_covers_a_failing_origin() {
    let origin = Origin::start().await;
    origin.set(
        "/price",
        Canned::ok("42", &[("cache-control", "max-age=1, stale-if-error=60")]),
    );
    origin.set(
        "/strict",
        Canned::ok("7", &[("cache-control", "max-age=1, must-revalidate")]),
    );
    let edge = edge(&origin, "").await;
    get(&edge, "/price").await;
    get(&edge, "/strict").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let broken = Canned {
        status: 503,
        ..Canned::ok("down", &[])
    };
    origin.set("/price", broken.clone());
    origin.set("/strict", broken);
    let got = get(&edge, "/price").await;
    assert_eq!(
        (got.status, got.x_cache(), got.body.as_str()),
        (200, "STALE", "42")
    );
    let strict = get(&edge, "/strict").await;
    assert_eq!(strict.status, 503, "must-revalidate forbids serving stale");
    assert_eq!(origin.hits("/price").len(), 2, "the origin was tried");
}

#[tokio::test]
async fn a_hundred_concurrent_misses_reach_the_origin_once() {
    let origin = Origin::start().await;
    origin.set(
        "/hot",
        Canned {
            delay: Duration::from_millis(400),
            ..Canned::ok("hot object", &[("cache-control", "max-age=60")])
        },
    );
    origin.set(
        "/uncacheable",
        Canned {
            delay: Duration::from_millis(300),
            ..Canned::ok("private", &[("cache-control", "private")])
        },
    );
    let edge = edge(&origin, "").await;
    let client = http1();
    let fetch = |path: &'static str| {
        let client = client.clone();
        let url = edge.node.url(path);
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let answers = futures::future::join_all((0..100).map(|_| fetch("/hot"))).await;
    assert!(answers.iter().all(|(s, b)| *s == 200 && b == "hot object"));
    assert_eq!(
        origin.hits("/hot").len(),
        1,
        "collapsed into one origin request"
    );

    // An uncacheable answer is not shared: everyone who waited gets their own.
    let answers = futures::future::join_all((0..10).map(|_| fetch("/uncacheable"))).await;
    assert!(answers.iter().all(|(s, b)| *s == 200 && b == "private"));
    assert_eq!(origin.hits("/uncacheable").len(), 10);
}

#[tokio::test]
async fn a_second_client_reads_an_object_that_is_still_arriving() {
    let origin = Origin::start().await;
    let body = "x".repeat(64 * 1024);
    origin.set(
        "/big",
        Canned {
            trickle: Some(Duration::from_millis(800)),
            ..Canned::ok(&body, &[("cache-control", "max-age=60")])
        },
    );
    let edge = edge(&origin, "").await;
    let first = tokio::spawn({
        let url = edge.node.url("/big");
        async move { http1().get(url).send().await.unwrap().text().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = get(&edge, "/big").await;
    assert_eq!(second.x_cache(), "HIT");
    assert_eq!(second.body, body);
    assert_eq!(first.await.unwrap(), body);
    assert_eq!(origin.hits("/big").len(), 1);
    // The origin sent no length; once the body is complete, hits carry it.
    let later = get(&edge, "/big").await;
    assert_eq!(later.header("content-length"), Some("65536"));
}

#[tokio::test]
async fn unsafe_methods_invalidate_the_url_and_its_location() {
    let origin = Origin::start().await;
    for path in ["/cart", "/cart/summary"] {
        origin.set(path, Canned::ok("cart", &[("cache-control", "max-age=60")]));
    }
    let edge = edge(&origin, "").await;
    for path in ["/cart", "/cart/summary", "/cart", "/cart/summary"] {
        get(&edge, path).await;
    }
    assert_eq!(origin.hits("/cart").len(), 1);
    origin.set(
        "/cart",
        Canned {
            status: 201,
            ..Canned::ok("", &[("location", "/cart/summary")])
        },
    );
    let post = request(&edge, "POST", "/cart", &[]).await;
    assert_eq!((post.status, post.x_cache()), (201, "PASS"));
    origin.set(
        "/cart",
        Canned::ok("cart", &[("cache-control", "max-age=60")]),
    );
    assert_eq!(get(&edge, "/cart").await.x_cache(), "MISS");
    assert_eq!(get(&edge, "/cart/summary").await.x_cache(), "MISS");
    let gets = |path| {
        origin
            .hits(path)
            .iter()
            .filter(|s| s.method == "GET")
            .count()
    };
    assert_eq!((gets("/cart"), gets("/cart/summary")), (2, 2));
}

#[tokio::test]
async fn ranges_and_conditionals_are_answered_from_the_full_object() {
    let origin = Origin::start().await;
    origin.set(
        "/file",
        Canned::ok(
            "0123456789abcdefghij",
            &[("cache-control", "max-age=60"), ("etag", "\"f1\"")],
        ),
    );
    let edge = edge(&origin, "").await;
    let partial = request(&edge, "GET", "/file", &[("range", "bytes=10-14")]).await;
    assert_eq!(partial.status, 206);
    assert_eq!(partial.body, "abcde");
    assert_eq!(partial.header("content-range"), Some("bytes 10-14/20"));
    let tail = request(&edge, "GET", "/file", &[("range", "bytes=-3")]).await;
    assert_eq!(
        (tail.status, tail.body.as_str(), tail.x_cache()),
        (206, "hij", "HIT")
    );
    let beyond = request(&edge, "GET", "/file", &[("range", "bytes=50-")]).await;
    assert_eq!(beyond.status, 416);
    let not_modified = request(&edge, "GET", "/file", &[("if-none-match", "\"f1\"")]).await;
    assert_eq!((not_modified.status, not_modified.body.as_str()), (304, ""));
    let hits = origin.hits("/file");
    assert_eq!(hits.len(), 1, "the origin sent the full object once");
    assert_eq!(
        hits[0].header("range"),
        None,
        "the cache fetched the whole object"
    );
}

#[tokio::test]
async fn edge_targeted_fields_win_and_stay_at_the_edge() {
    let origin = Origin::start().await;
    origin.set(
        "/cdn",
        Canned::ok(
            "cdn",
            &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=60"),
                ("surrogate-key", "product-1 catalog"),
            ],
        ),
    );
    origin.set(
        "/surrogate",
        Canned::ok(
            "s",
            &[
                ("cache-control", "private"),
                ("surrogate-control", "max-age=60"),
            ],
        ),
    );
    let edge = edge(&origin, "").await;
    for path in ["/cdn", "/surrogate"] {
        get(&edge, path).await;
        let got = get(&edge, path).await;
        assert_eq!(got.x_cache(), "HIT", "{path}");
        assert_eq!(origin.hits(path).len(), 1);
        for field in ["cdn-cache-control", "surrogate-control", "surrogate-key"] {
            assert_eq!(got.header(field), None, "{field} is not forwarded");
        }
    }
    assert_eq!(
        get(&edge, "/cdn").await.header("cache-control"),
        Some("no-store")
    );
}

#[tokio::test]
async fn request_directives_and_heuristic_freshness() {
    let origin = Origin::start().await;
    let last_modified = http_date_ago(10 * 86_400);
    origin.set(
        "/heuristic",
        Canned::ok("h", &[("last-modified", last_modified.as_str())]),
    );
    origin.set(
        "/fresh",
        Canned::ok("f", &[("cache-control", "max-age=60")]),
    );
    let edge = edge(&origin, "").await;
    get(&edge, "/heuristic").await;
    assert_eq!(
        get(&edge, "/heuristic").await.x_cache(),
        "HIT",
        "10% of 10 days is fresh"
    );
    assert_eq!(origin.hits("/heuristic").len(), 1);

    get(&edge, "/fresh").await;
    let forced = request(&edge, "GET", "/fresh", &[("cache-control", "no-cache")]).await;
    assert_ne!(
        forced.x_cache(),
        "HIT",
        "no-cache from the client goes to the origin"
    );
    assert_eq!(origin.hits("/fresh").len(), 2);
    let only = request(
        &edge,
        "GET",
        "/absent",
        &[("cache-control", "only-if-cached")],
    )
    .await;
    assert_eq!(only.status, 504);
    assert!(origin.hits("/absent").is_empty());
}

/// An IMF-fixdate `secs` seconds in the past.
fn http_date_ago(secs: u64) -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(secs))
}

/// The cache-tests suite's last required failures, each as the suite sends it.
#[tokio::test]
async fn age_lists_dates_and_invalid_cdn_cache_control_follow_rfc_9111() {
    let origin = Origin::start().await;
    let edge = edge(&origin, "").await;

    // `Age: 7200, 0`: the first member counts, so an hour's max-age is already stale.
    origin.set(
        "/age-list",
        Canned::ok(
            "old",
            &[("cache-control", "max-age=3600"), ("age", "7200, 0")],
        ),
    );
    get(&edge, "/age-list").await;
    assert_eq!(get(&edge, "/age-list").await.x_cache(), "MISS");
    assert_eq!(
        origin.hits("/age-list").len(),
        2,
        "a stale object is not served"
    );

    // A served hit keeps the origin's Date, with or without Expires.
    let date = http_date_ago(30);
    let expires = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(570));
    origin.set(
        "/dated",
        Canned::ok(
            "dated",
            &[("cache-control", "max-age=600"), ("date", &date)],
        ),
    );
    origin.set(
        "/expires",
        Canned::ok("expires", &[("date", &date), ("expires", &expires)]),
    );
    for path in ["/dated", "/expires"] {
        get(&edge, path).await;
        let hit = get(&edge, path).await;
        assert_eq!(hit.x_cache(), "HIT", "{path}");
        assert_eq!(
            hit.header("date"),
            Some(date.as_str()),
            "{path} keeps its Date"
        );
        let age: u64 = hit.header("age").unwrap().parse().unwrap();
        assert!(age >= 30, "{path}: the Date counts into Age: {age}");
    }

    // CDN-Cache-Control that is not a valid Structured Field is ignored as a whole, so
    // Cache-Control (here: no-store) governs.
    for (path, cdn) in [
        ("/cdn-junk", "max-age=10000, &&&&&"),
        ("/cdn-type", "max-age=\"10000\""),
    ] {
        origin.set(
            path,
            Canned::ok(
                "x",
                &[("cache-control", "no-store"), ("cdn-cache-control", cdn)],
            ),
        );
        get(&edge, path).await;
        assert_eq!(get(&edge, path).await.x_cache(), "MISS", "{path}");
        assert_eq!(origin.hits(path).len(), 2, "{path}: `{cdn}` is not obeyed");
    }
    // The same field, valid, is obeyed over Cache-Control.
    origin.set(
        "/cdn-valid",
        Canned::ok(
            "x",
            &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=600"),
            ],
        ),
    );
    get(&edge, "/cdn-valid").await;
    assert_eq!(get(&edge, "/cdn-valid").await.x_cache(), "HIT");
}

/// An origin that sends `103 Early Hints` before its final response: the final response is
/// what the client gets and what is stored; the interim one is never stored. (It is not
/// forwarded either: see README, "HTTP conformance".)
#[tokio::test]
async fn interim_responses_from_the_origin_are_never_stored() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin_addr = listener.local_addr().unwrap();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = served.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let answer = "HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n\
                              HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 5\r\n\
                              connection: close\r\n\r\nfinal";
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    let (addr, metrics) = (free_addr(), free_addr());
    let config = format!(
        "[server]\nlisten = [\"{addr}\"]\n[metrics]\nlisten = \"{metrics}\"\n\
         [services.svc]\ndomains = [\"*\"]\nguest = {}\n\
         [services.svc.backends.origin]\nurl = \"http://{origin_addr}\"\n",
        toml_path(&example("origin_proxy"))
    );
    let node = Node::start_on(addr, &config, &[addr, metrics]).await;
    for expected in ["MISS", "HIT"] {
        let response = http1().get(node.url("/hinted")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-cache"], expected);
        assert!(response.headers().get("link").is_none());
        assert_eq!(response.text().await.unwrap(), "final");
    }
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn purges_by_url_surrogate_key_and_service_hard_and_soft() {
    let origin = Origin::start().await;
    for (path, keys) in [("/a", "group-1"), ("/b", "group-1"), ("/c", "group-2")] {
        origin.set(
            path,
            Canned::ok(
                path,
                &[
                    ("cache-control", "max-age=60, stale-while-revalidate=60"),
                    ("surrogate-key", keys),
                ],
            ),
        );
    }
    let edge = edge(&origin, "").await;
    let warm = async || {
        for path in ["/a", "/b", "/c"] {
            get(&edge, path).await;
        }
    };
    warm().await;

    let unauthorized = http1()
        .post(format!("http://{}/purge/all", edge.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);
    assert_eq!(
        get(&edge, "/a").await.x_cache(),
        "HIT",
        "an unauthorised purge does nothing"
    );

    let (status, body) = admin(&edge, "/services/svc/purge/url/http://origin/a", false).await;
    assert_eq!((status, body.trim()), (200, r#"{"purged":1,"soft":false}"#));
    assert_eq!(get(&edge, "/a").await.x_cache(), "MISS");
    assert_eq!(get(&edge, "/b").await.x_cache(), "HIT");

    let (_, body) = admin(&edge, "/services/svc/purge/key/group-1", false).await;
    assert!(body.contains(r#""purged":2"#), "{body}");
    assert_eq!(get(&edge, "/a").await.x_cache(), "MISS");
    assert_eq!(get(&edge, "/b").await.x_cache(), "MISS");
    assert_eq!(get(&edge, "/c").await.x_cache(), "HIT");

    // Soft: stale from now on, so stale-while-revalidate still answers at once.
    admin(&edge, "/services/svc/purge/key/group-2", true).await;
    assert_eq!(get(&edge, "/c").await.x_cache(), "STALE");
    assert!(
        eventually(|| std::future::ready(origin.hits("/c").len() == 2)).await,
        "refreshed in the background"
    );

    let (status, _) = admin(&edge, "/services/nope/purge/all", false).await;
    assert_eq!(status, 404);
    admin(&edge, "/services/svc/purge/all", false).await;
    for path in ["/a", "/b", "/c"] {
        assert_eq!(get(&edge, path).await.x_cache(), "MISS", "{path}");
    }
}

#[tokio::test]
async fn a_purge_during_a_background_refresh_is_not_undone_by_it() {
    let origin = Origin::start().await;
    origin.set(
        "/news",
        Canned::ok(
            "v1",
            &[("cache-control", "max-age=1, stale-while-revalidate=60")],
        ),
    );
    let edge = edge(&origin, "").await;
    get(&edge, "/news").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    origin.set(
        "/news",
        Canned {
            delay: Duration::from_millis(800),
            ..Canned::ok("v2", &[("cache-control", "max-age=60")])
        },
    );
    assert_eq!(get(&edge, "/news").await.x_cache(), "STALE");
    // The refresh is now waiting on the origin; purge underneath it.
    admin(&edge, "/services/svc/purge/url/http://origin/news", false).await;
    assert!(eventually(|| std::future::ready(origin.hits("/news").len() == 2)).await);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    origin.set(
        "/news",
        Canned::ok("v3", &[("cache-control", "max-age=60")]),
    );
    let after = get(&edge, "/news").await;
    assert_eq!(
        (after.x_cache(), after.body.as_str()),
        ("MISS", "v3"),
        "the refresh that started before the purge was not stored"
    );
}

#[tokio::test]
async fn memory_pressure_evicts_and_metrics_show_cache_results() {
    let origin = Origin::start().await;
    let body = "y".repeat(100 * 1024);
    for i in 0..30 {
        origin.set(
            &format!("/obj/{i}"),
            Canned::ok(&body, &[("cache-control", "max-age=300")]),
        );
    }
    let edge = edge(&origin, "memory = \"1MiB\"\nmax_object = \"256KiB\"").await;
    for i in 0..30 {
        get(&edge, &format!("/obj/{i}")).await;
    }
    let mut hits = 0;
    for i in 0..30 {
        if get(&edge, &format!("/obj/{i}")).await.x_cache() == "HIT" {
            hits += 1;
        }
    }
    assert!(hits < 30, "3 MiB of objects cannot all stay in 1 MiB");
    let text = http1()
        .get(format!("http://{}/metrics", edge.metrics))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    };
    let bytes = value("outpost_cache_bytes ");
    assert!(
        bytes > 0.0 && bytes <= 1024.0 * 1024.0,
        "stored bytes within the bound: {bytes}"
    );
    assert!(value("outpost_cache_objects ") <= 10.0);
    assert_eq!(
        value(r#"outpost_cache_lookups_total{layer="fetch",result="hit"} "#),
        hits as f64
    );
    assert_eq!(
        value(r#"outpost_cache_lookups_total{layer="fetch",result="miss"} "#),
        (60 - hits) as f64
    );
}

#[tokio::test]
async fn server_timing_names_the_cache_result() {
    let origin = Origin::start().await;
    origin.set("/t", Canned::ok("t", &[("cache-control", "max-age=60")]));
    let edge = edge(&origin, "").await;
    let miss = get(&edge, "/t").await;
    assert!(
        miss.header("server-timing")
            .unwrap()
            .contains("cache;desc=MISS")
    );
    let hit = get(&edge, "/t").await;
    assert!(
        hit.header("server-timing")
            .unwrap()
            .contains("cache;desc=HIT")
    );
}

/// A node running the `cache-api` test guest, which drives the SDK's cache calls.
async fn guest_edge(origin: &Origin) -> Node {
    Node::start(&one_service(
        &test_guest("cache_api"),
        "",
        &[("origin", format!("url = \"{}\"", origin.url()))],
    ))
    .await
}

#[tokio::test]
async fn guests_force_ttl_pass_key_and_purge_through_the_sdk() {
    let origin = Origin::start().await;
    // The origin forbids storing; the guest's TTL override wins.
    origin.set(
        "/item",
        Canned::ok("item", &[("cache-control", "no-store")]),
    );
    origin.set(
        "/shared",
        Canned::ok("shared", &[("cache-control", "max-age=60")]),
    );
    let node = guest_edge(&origin).await;
    let x_cache = async |path: &str| {
        let response = http1().get(node.url(path)).send().await.unwrap();
        let state = response
            .headers()
            .get("x-cache")
            .map_or("(none)", |v| v.to_str().unwrap())
            .to_owned();
        (state, response.text().await.unwrap())
    };
    assert_eq!(x_cache("/ttl/item").await, ("MISS".into(), "item".into()));
    assert_eq!(x_cache("/ttl/item").await, ("HIT".into(), "item".into()));
    assert_eq!(origin.hits("/item").len(), 1);

    assert_eq!(x_cache("/pass/shared").await.0, "PASS");
    assert_eq!(x_cache("/pass/shared").await.0, "PASS");
    assert_eq!(origin.hits("/shared").len(), 2, "pass never stores");

    for (query, state) in [("a", "MISS"), ("b", "MISS"), ("a", "HIT")] {
        assert_eq!(
            x_cache(&format!("/keyed/shared?{query}")).await.0,
            state,
            "{query}"
        );
    }
    assert_eq!(origin.hits("/shared").len(), 4);

    let (_, purged) = x_cache("/purge").await;
    assert_eq!(purged, "purged 1", "the object tagged by the guest");
    // The SDK's warn! lands in the node log at WARN, tagged with the service.
    let log = node.wait_log("guest purge removed 1 object(s)").await;
    let line = log
        .lines()
        .find(|l| l.contains("guest purge removed"))
        .unwrap_or_else(|| panic!("no guest log line:\n{log}"));
    assert!(line.contains("WARN") && line.contains("svc"), "{line}");
    assert!(
        !line.contains("[warn]"),
        "the tag becomes the level: {line}"
    );
    assert_eq!(x_cache("/ttl/item").await.0, "MISS");
    assert_eq!(origin.hits("/item").len(), 2);
}

#[tokio::test]
async fn get_or_insert_with_computes_once_for_concurrent_guests() {
    let origin = Origin::start().await;
    origin.set(
        "/compute",
        Canned {
            delay: Duration::from_millis(300),
            ..Canned::ok("expensive answer", &[("cache-control", "no-store")])
        },
    );
    let node = guest_edge(&origin).await;
    let client = http1();
    let answers = futures::future::join_all((0..20).map(|_| {
        let request = client.get(node.url("/memo")).send();
        async move { request.await.unwrap().text().await.unwrap() }
    }))
    .await;
    assert!(
        answers.iter().all(|a| a == "expensive answer"),
        "{answers:?}"
    );
    assert_eq!(
        origin.hits("/compute").len(),
        1,
        "one guest computed, the rest waited"
    );
}
