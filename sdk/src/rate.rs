//! Rate limiting at the edge: count events per entry (a client IP, an API key, a user)
//! over a sliding window, and turn clients away once they pass a limit.
//!
//! Counts live in the node, per service, shared by all requests it serves: the count a
//! guest sees includes other requests' events. They are per node (per POP, in Fastly's
//! terms), not global across nodes, and a window is estimated from two buckets, so a
//! count can be off by a little at bucket edges; a limit is a guard, not an invoice.

use std::time::Duration;

use crate::imports::rate as host;

/// Adds `delta` events for `entry` to the counter `name` and returns the count over the
/// last `window`, these included. `delta` 0 reads without counting. Windows are capped at
/// one day.
///
/// ```no_run
/// use std::time::Duration;
/// let ip = outpost::request_info().client_ip.map(|ip| ip.to_string()).unwrap_or_default();
/// let last_minute = outpost::rate::increment("logins", &ip, 1, Duration::from_secs(60));
/// if last_minute > 20 {
///     outpost::warn!("{ip} tried {last_minute} logins in a minute");
/// }
/// ```
pub fn increment(name: &str, entry: &str, delta: u32, window: Duration) -> u64 {
    host::increment(name, entry, delta, window.as_millis() as u64)
}

/// A limit of `limit` events per `window` for each entry of the counter `name`.
///
/// ```no_run
/// use std::time::Duration;
/// use outpost::rate::RateLimiter;
/// use outpost::{Error, Request, Response};
///
/// #[outpost::main]
/// fn handle(req: Request) -> Result<Response, Error> {
///     let limiter = RateLimiter::new("api", 100, Duration::from_secs(60));
///     let client = outpost::request_info().client_ip.map(|ip| ip.to_string()).unwrap_or_default();
///     let decision = limiter.check(&client);
///     if !decision.allowed {
///         return Ok(decision.too_many_requests());
///     }
///     let mut response = req.send("origin")?;
///     decision.annotate(&mut response);
///     Ok(response)
/// }
/// # fn main() {}
/// ```
#[derive(Debug, Clone)]
pub struct RateLimiter {
    name: String,
    limit: u64,
    window: Duration,
}

/// The outcome of [`RateLimiter::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether this event is within the limit.
    pub allowed: bool,
    /// Events counted for the entry over the window, this one included.
    pub count: u64,
    /// The limit per window.
    pub limit: u64,
    /// The window.
    pub window: Duration,
}

impl RateLimiter {
    /// `limit` events per `window` for each entry.
    ///
    /// ```
    /// let limiter = outpost::rate::RateLimiter::new("api", 100, std::time::Duration::from_secs(60));
    /// assert_eq!(limiter.limit(), 100);
    /// ```
    pub fn new(name: impl Into<String>, limit: u64, window: Duration) -> Self {
        Self {
            name: name.into(),
            limit,
            window,
        }
    }

    /// The limit per window.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Counts one event for `entry` and decides whether it is within the limit. Events
    /// over the limit are counted too, so a client that keeps hammering stays limited
    /// until it slows down.
    pub fn check(&self, entry: &str) -> Decision {
        let count = increment(&self.name, entry, 1, self.window);
        Decision {
            allowed: count <= self.limit,
            count,
            limit: self.limit,
            window: self.window,
        }
    }
}

impl Decision {
    /// How many more events the entry may cause in the current window.
    ///
    /// ```
    /// use std::time::Duration;
    /// let d = outpost::rate::Decision { allowed: true, count: 3, limit: 5, window: Duration::from_secs(60) };
    /// assert_eq!(d.remaining(), 2);
    /// ```
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.count)
    }

    /// Adds `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (the IETF
    /// draft's fields, as GitHub and Cloudflare send them) to `response`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let d = outpost::rate::Decision { allowed: true, count: 3, limit: 5, window: Duration::from_secs(60) };
    /// let mut response = outpost::Response::text("ok");
    /// d.annotate(&mut response);
    /// assert_eq!(response.header("ratelimit-remaining"), Some("2"));
    /// ```
    pub fn annotate(&self, response: &mut crate::Response) {
        response.set_header("ratelimit-limit", self.limit.to_string());
        response.set_header("ratelimit-remaining", self.remaining().to_string());
        response.set_header("ratelimit-reset", self.window.as_secs().max(1).to_string());
    }

    /// A `429 Too Many Requests` with `Retry-After` (the window, in seconds) and the
    /// rate-limit fields.
    ///
    /// ```
    /// use std::time::Duration;
    /// let d = outpost::rate::Decision { allowed: false, count: 6, limit: 5, window: Duration::from_secs(60) };
    /// let response = d.too_many_requests();
    /// assert_eq!(response.status(), 429);
    /// assert_eq!(response.header("retry-after"), Some("60"));
    /// ```
    pub fn too_many_requests(&self) -> crate::Response {
        let mut response = crate::Response::text("too many requests, slow down\n")
            .with_status(http::StatusCode::TOO_MANY_REQUESTS);
        response.set_header("retry-after", self.window.as_secs().max(1).to_string());
        self.annotate(&mut response);
        response
    }
}
