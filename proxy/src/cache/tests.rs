//! The cache's orchestration against a scripted origin, in process: collapsing,
//! hit-for-miss, stale-while-revalidate, stale-if-error, a purge during a fill, bodies
//! that break off, and objects too large to keep. Timing comes from the script, not from
//! a network.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

use super::*;
use crate::metrics::Metrics;

/// One scripted answer.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: &'static str,
    /// The head arrives after this long.
    delay: Duration,
    /// The body breaks off after its first half.
    break_off: bool,
}

impl Reply {
    fn ok(body: &'static str, cache_control: &'static str) -> Reply {
        Reply {
            status: 200,
            headers: vec![("cache-control", cache_control)],
            body,
            delay: Duration::ZERO,
            break_off: false,
        }
    }

    fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// An origin that answers from a script (the last entry repeats) and counts its calls.
struct Scripted {
    replies: Mutex<Vec<Reply>>,
    calls: AtomicUsize,
}

impl Scripted {
    fn new(replies: Vec<Reply>) -> Arc<Scripted> {
        Arc::new(Scripted {
            replies: Mutex::new(replies),
            calls: AtomicUsize::new(0),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Origin for Scripted {
    fn send(&self, _request: http::Request<WasiBody>) -> OriginFuture<'_> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let reply = {
            let replies = self.replies.lock().unwrap();
            replies[n.min(replies.len() - 1)].clone()
        };
        Box::pin(async move {
            tokio::time::sleep(reply.delay).await;
            let mut builder = http::Response::builder().status(reply.status);
            for (name, value) in &reply.headers {
                builder = builder.header(*name, *value);
            }
            let half = reply.body.len() / 2;
            let frames: Vec<Result<Frame<Bytes>, HttpError>> = if reply.break_off {
                vec![
                    Ok(Frame::data(Bytes::from_static(
                        &reply.body.as_bytes()[..half],
                    ))),
                    Err(HttpError::HttpProtocolError),
                ]
            } else {
                vec![
                    Ok(Frame::data(Bytes::from_static(
                        &reply.body.as_bytes()[..half],
                    ))),
                    Ok(Frame::data(Bytes::from_static(
                        &reply.body.as_bytes()[half..],
                    ))),
                ]
            };
            let body = StreamBody::new(futures::stream::iter(frames)).boxed_unsync();
            Ok(builder.body(body).expect("a scripted response"))
        })
    }
}

fn cache(max_object_bytes: u64) -> Arc<EdgeCache> {
    let metrics = Metrics::new();
    EdgeCache::new(
        CacheSettings {
            memory_bytes: 16 << 20,
            max_object_bytes,
            collapse_wait: Duration::from_secs(5),
            hit_for_miss: Duration::from_secs(60),
            heuristics: Heuristics::default(),
            max_variants: 8,
        },
        metrics.cache(&lookup_labels()),
    )
}

/// One GET through the cache: its state and its whole body (or the body's error).
async fn get(
    cache: &Arc<EdgeCache>,
    origin: &Arc<Scripted>,
    overrides: Overrides,
) -> (CacheState, Result<Bytes, HttpError>) {
    let service: Arc<str> = "svc".into();
    let request = http::Request::get("http://origin/page")
        .body(empty_body())
        .unwrap();
    let origin: Arc<dyn Origin> = origin.clone();
    let (response, state) = cache
        .fetch(&service, origin, request, overrides)
        .await
        .unwrap();
    // A body nobody streams in would hang the test instead of failing it.
    let body = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect())
        .await
        .expect("the body ends within 5 s")
        .map(|c| c.to_bytes());
    (state, body)
}

fn ttl(fresh: Duration) -> Overrides {
    Overrides {
        ttl: Some(fresh),
        ..Overrides::default()
    }
}

#[tokio::test]
async fn concurrent_misses_make_one_origin_request() {
    let cache = cache(1 << 20);
    let origin = Scripted::new(vec![
        Reply::ok("shared body", "max-age=60").after(Duration::from_millis(100)),
    ]);
    let gets = (0..20).map(|_| get(&cache, &origin, Overrides::default()));
    let answers = futures::future::join_all(gets).await;
    assert_eq!(origin.calls(), 1);
    let misses = answers
        .iter()
        .filter(|(s, _)| *s == CacheState::Miss)
        .count();
    assert_eq!(misses, 1, "one leader, the rest waited for its head");
    for (_, body) in answers {
        assert_eq!(body.unwrap(), "shared body");
    }
}

#[tokio::test]
async fn hit_for_miss_requests_fetch_alone_until_the_answer_may_be_stored_again() {
    let cache = cache(1 << 20);
    let origin = Scripted::new(vec![
        Reply::ok("mine alone", "private"),
        Reply::ok("left behind", "private").after(Duration::from_millis(200)),
        Reply::ok("first alone", "private").after(Duration::from_millis(200)),
        Reply::ok("second alone", "private").after(Duration::from_millis(200)),
        Reply::ok("shared again", "max-age=60"),
    ]);
    let (state, body) = get(&cache, &origin, Overrides::default()).await;
    assert_eq!(
        (state, body.unwrap()),
        (CacheState::Miss, "mine alone".into())
    );

    // A requester that gives up on its fill (there is no flight others wait on) costs
    // nobody else anything: the requests after it are answered as usual.
    let left = tokio::time::timeout(
        Duration::from_millis(20),
        get(&cache, &origin, Overrides::default()),
    );
    assert!(left.await.is_err(), "the requester gave up first");

    // Hit-for-miss: concurrent requests do not wait for each other, and none is served
    // another's private answer.
    let alone =
        futures::future::join_all((0..2).map(|_| get(&cache, &origin, Overrides::default())));
    let started = tokio::time::Instant::now();
    let mut bodies = Vec::new();
    for (state, body) in alone.await {
        assert_eq!(state, CacheState::Miss);
        bodies.push(body.unwrap());
    }
    bodies.sort();
    assert_eq!(
        bodies,
        ["first alone", "second alone"],
        "each got its own answer"
    );
    assert!(
        started.elapsed() < Duration::from_millis(390),
        "the two fetches ran side by side, not one after the other"
    );

    // Once the origin's answer may be stored it is, and its body streams in whole.
    let (state, body) = get(&cache, &origin, Overrides::default()).await;
    assert_eq!(
        (state, body.unwrap()),
        (CacheState::Miss, "shared again".into())
    );
    let (state, body) = get(&cache, &origin, Overrides::default()).await;
    assert_eq!(
        (state, body.unwrap()),
        (CacheState::Hit, "shared again".into())
    );
    assert_eq!(origin.calls(), 5);
}

#[tokio::test]
async fn stale_while_revalidate_answers_stale_and_refreshes_once() {
    let cache = cache(1 << 20);
    let origin = Scripted::new(vec![
        Reply::ok("v1", "max-age=60"),
        Reply::ok("v2", "max-age=60").after(Duration::from_millis(50)),
    ]);
    let swr = Overrides {
        stale_while_revalidate: Some(Duration::from_secs(60)),
        ..ttl(Duration::from_millis(300))
    };
    assert_eq!(get(&cache, &origin, swr.clone()).await.1.unwrap(), "v1");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let stale = futures::future::join_all((0..5).map(|_| get(&cache, &origin, swr.clone()))).await;
    for (state, body) in stale {
        assert_eq!(
            (state, body.unwrap()),
            (CacheState::Stale, Bytes::from("v1"))
        );
    }
    for _ in 0..100 {
        if origin.calls() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        origin.calls(),
        2,
        "one background refresh for five stale answers"
    );
    // Until the refresh lands, answers stay stale (and start no second refresh).
    let mut answer = get(&cache, &origin, Overrides::default()).await;
    for _ in 0..100 {
        if answer.0 != CacheState::Stale {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        answer = get(&cache, &origin, Overrides::default()).await;
    }
    assert_eq!(
        (answer.0, answer.1.unwrap()),
        (CacheState::Hit, Bytes::from("v2"))
    );
    assert_eq!(origin.calls(), 2);
}

#[tokio::test]
async fn stale_if_error_covers_a_failing_origin_and_only_within_its_window() {
    let cache = cache(1 << 20);
    let mut failing = Reply::ok("origin down", "no-store");
    failing.status = 503;
    let origin = Scripted::new(vec![Reply::ok("v1", "max-age=60"), failing]);
    let covered = Overrides {
        stale_if_error: Some(Duration::from_secs(60)),
        ..ttl(Duration::from_millis(30))
    };
    assert_eq!(get(&cache, &origin, covered.clone()).await.1.unwrap(), "v1");
    tokio::time::sleep(Duration::from_millis(60)).await;
    let (state, body) = get(&cache, &origin, Overrides::default()).await;
    assert_eq!(
        (state, body.unwrap()),
        (CacheState::Stale, Bytes::from("v1"))
    );

    // Without the window the failure is the client's.
    let cache = super::tests::cache(1 << 20);
    let mut failing = Reply::ok("origin down", "no-store");
    failing.status = 503;
    let origin = Scripted::new(vec![Reply::ok("v1", "max-age=60"), failing]);
    let (_, first) = get(&cache, &origin, ttl(Duration::from_millis(30))).await;
    assert_eq!(first.unwrap(), "v1");
    tokio::time::sleep(Duration::from_millis(60)).await;
    let (_, body) = get(&cache, &origin, Overrides::default()).await;
    assert_eq!(body.unwrap(), "origin down");
}

#[tokio::test]
async fn a_purge_during_a_fill_keeps_the_fill_from_storing() {
    let cache = cache(1 << 20);
    let origin = Scripted::new(vec![
        Reply::ok("before the purge", "max-age=60").after(Duration::from_millis(100)),
        Reply::ok("after the purge", "max-age=60"),
    ]);
    let filling = get(&cache, &origin, Overrides::default());
    let purging = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        cache.purge(PurgeTarget::All, false);
    };
    let ((_, body), ()) = tokio::join!(filling, purging);
    assert_eq!(
        body.unwrap(),
        "before the purge",
        "the requester still gets its answer"
    );
    let (state, body) = get(&cache, &origin, Overrides::default()).await;
    assert_eq!(
        (state, body.unwrap()),
        (CacheState::Miss, Bytes::from("after the purge"))
    );
    assert_eq!(origin.calls(), 2);
}

#[tokio::test]
async fn a_body_that_breaks_off_reaches_the_client_broken_and_is_not_stored() {
    let cache = cache(1 << 20);
    let mut broken = Reply::ok("a body that never finishes", "max-age=60");
    broken.break_off = true;
    let origin = Scripted::new(vec![broken, Reply::ok("whole", "max-age=60")]);
    let (_, body) = get(&cache, &origin, Overrides::default()).await;
    assert!(body.is_err(), "never made to look complete");
    let (state, body) = get(&cache, &origin, Overrides::default()).await;
    assert_eq!(
        (state, body.unwrap()),
        (CacheState::Miss, Bytes::from("whole"))
    );
}

#[tokio::test]
async fn objects_over_max_object_pass_through_unstored() {
    let cache = cache(8);
    let origin = Scripted::new(vec![Reply::ok("more than eight bytes", "max-age=60")]);
    for _ in 0..2 {
        let (_, body) = get(&cache, &origin, Overrides::default()).await;
        assert_eq!(body.unwrap(), "more than eight bytes");
    }
    assert_eq!(origin.calls(), 2);
}
