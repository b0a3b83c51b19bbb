//! State across requests, for the instance-reuse and response-cache tests.
//!
//! - `/count`: counts requests in this instance's globals and answers `count=N last=V`;
//! - `/remember?V`: keeps `V` in a global, then answers like `/count`;
//! - `/boom?V`: keeps `V` in a global, then panics;
//! - `/edge/...?OPTIONS`: an answer the edge may keep in its response cache, saying how
//!   many times the guest ran for this URL (`run=N`, a node-wide counter). Options, `&`
//!   separated: `ttl=MS` (default 60000), `swr=MS`, `sie=MS`, `key=K` (surrogate key),
//!   `vary=H` (adds `Vary: H` and echoes the request's `H`), `cookie` (adds `Set-Cookie`),
//!   `private` (adds `Cache-Control: private`), `public` (no SDK policy, only
//!   `Cache-Control: public, max-age=60`), `stream` (streams the body), `slow=MS` (sleeps
//!   first), `fail_after=N` (panics from the N+1th run on).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use outpost::cache::EdgePolicy;
use outpost::{Error, Request, Response};

static COUNT: AtomicU64 = AtomicU64::new(0);
static LAST: Mutex<String> = Mutex::new(String::new());

#[outpost::main]
fn main(req: Request) -> Result<Response, Error> {
    let query = req.query().unwrap_or_default().to_owned();
    match req.path() {
        "/count" => Ok(count()),
        "/remember" => {
            *LAST.lock().unwrap() = query;
            Ok(count())
        }
        "/boom" => {
            *LAST.lock().unwrap() = query.clone();
            panic!("boom with {query}");
        }
        path if path.starts_with("/edge/") => edge(&req, &query),
        _ => Ok(Response::from_status(404)),
    }
}

fn count() -> Response {
    let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    let last = LAST.lock().unwrap().clone();
    Response::text(format!("count={n} last={last}\n"))
}

fn edge(req: &Request, query: &str) -> Result<Response, Error> {
    let option = |name: &str| {
        query
            .split('&')
            .find_map(|pair| match pair.split_once('=') {
                Some((key, value)) if key == name => Some(value.to_owned()),
                None if pair == name => Some(String::new()),
                _ => None,
            })
    };
    let millis = |name: &str| {
        option(name)
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
    };
    let url = format!("{}?{query}", req.path());
    let run = outpost::rate::increment("edge-runs", &url, 1, Duration::from_secs(3600));
    if let Some(slow) = millis("slow") {
        std::thread::sleep(slow);
    }
    let limit = option("fail_after").and_then(|v| v.parse::<u64>().ok());
    if limit.is_some_and(|limit| run > limit) {
        panic!("run {run} of {url} fails on purpose");
    }
    let mut text = format!("run={run} path={}", req.path());
    let mut response = Response::new();
    if let Some(name) = option("vary") {
        let value = req.header(&name).unwrap_or_default().to_owned();
        text.push_str(&format!(" {name}={value}"));
        response.set_header("vary", &name);
    }
    if option("cookie").is_some() {
        response.set_header("set-cookie", &format!("session=run{run}"));
    }
    if option("private").is_some() {
        response.set_header("cache-control", "private");
    }
    response.set_header("content-type", "text/plain");
    response.set_body(format!("{text}\n"));
    if option("public").is_some() {
        response.set_header("cache-control", "public, max-age=60");
    } else {
        let ttl = millis("ttl").unwrap_or(Duration::from_secs(60));
        let mut policy = EdgePolicy::ttl(ttl);
        if let Some(window) = millis("swr") {
            policy = policy.with_stale_while_revalidate(window);
        }
        if let Some(window) = millis("sie") {
            policy = policy.with_stale_if_error(window);
        }
        if let Some(key) = option("key") {
            policy = policy.with_surrogate_key(key);
        }
        response = response.with_edge_cache(policy);
    }
    if option("stream").is_some() {
        let mut body = response.stream_to_client()?;
        body.write_chunk("streamed ")?;
        return body.finish();
    }
    Ok(response)
}
