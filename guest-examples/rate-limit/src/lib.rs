//! A per-client request limit in front of the backend `origin`.
//!
//! Each client (its IP, or the value of the header named by config key `key_header`, for
//! API keys) may make `limit` requests per `window_secs` seconds (config keys; 10 per 60 s
//! by default). Past that it gets `429 Too Many Requests` with `Retry-After`, and the
//! origin never sees the request. Allowed responses carry `RateLimit-*` fields.

use std::time::Duration;

use outpost::rate::RateLimiter;
use outpost::{Error, Request, Response, config};

#[outpost::main]
fn main(req: Request) -> Result<Response, Error> {
    let limit = setting("limit", 10);
    let window = Duration::from_secs(setting("window_secs", 60));
    let client = config::get("key_header")
        .and_then(|name| req.header(&name).map(|key| format!("key:{key}")))
        .or_else(|| {
            outpost::request_info()
                .client_ip
                .map(|ip| format!("ip:{ip}"))
        })
        .unwrap_or_else(|| "unknown".to_owned());

    let decision = RateLimiter::new("requests", limit, window).check(&client);
    if !decision.allowed {
        outpost::info!(
            "limited {client}: {} requests in {window:?}",
            decision.count
        );
        return Ok(decision.too_many_requests());
    }
    let mut response = req.send("origin")?;
    decision.annotate(&mut response);
    Ok(response)
}

/// A number from the config store, or `default` when unset or not a number.
fn setting(key: &str, default: u64) -> u64 {
    config::get(key)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}
