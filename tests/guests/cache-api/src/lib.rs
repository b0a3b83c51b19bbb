//! Exercises the SDK's cache API against the `origin` backend:
//!
//! - `/ttl/...`: fetch with a forced 60 s TTL and surrogate key `guest-tag`;
//! - `/pass/...`: fetch passing the cache;
//! - `/keyed/...?k=X`: fetch with `X` mixed into the cache key;
//! - `/memo`: a value computed once from the origin's `/compute`, via `get_or_insert_with`;
//! - `/purge`: purge surrogate key `guest-tag`, answering how many objects went.

use std::time::Duration;

use outpost::cache::{self, CacheOverride};
use outpost::{Error, Request, Response};

#[outpost::main]
fn main(req: Request) -> Result<Response, Error> {
    let path = req.path().to_owned();
    if path == "/memo" {
        let value = cache::get_or_insert_with("memo", Duration::from_secs(60), || {
            let body = Request::get("/compute").send("origin")?.take_body();
            Ok::<_, Error>(body.into_bytes()?.to_vec())
        })?;
        return Ok(Response::text(String::from_utf8_lossy(&value).into_owned()));
    }
    if path == "/purge" {
        let removed = cache::purge_surrogate_key("guest-tag");
        outpost::warn!("guest purge removed {removed} object(s)");
        return Ok(Response::text(format!("purged {removed}")));
    }
    let (cache_override, rest) = if let Some(rest) = path.strip_prefix("/ttl") {
        (
            CacheOverride::ttl(Duration::from_secs(60)).with_surrogate_key("guest-tag"),
            rest,
        )
    } else if let Some(rest) = path.strip_prefix("/pass") {
        (CacheOverride::pass(), rest)
    } else if let Some(rest) = path.strip_prefix("/keyed") {
        let extra = req.query().unwrap_or_default().to_owned();
        (CacheOverride::default().with_key(extra), rest)
    } else {
        return Ok(Response::from_status(404));
    };
    let mut fetch = Request::get(rest);
    fetch.set_cache_override(cache_override);
    fetch.send("origin")
}
