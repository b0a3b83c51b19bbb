//! The edge cache, from a guest: how a fetch uses the HTTP cache, a simple key/value cache
//! for values the guest computes, and purges.
//!
//! Every backend fetch already goes through the node's RFC 9111 cache: fresh responses are
//! served from memory and concurrent misses are collapsed into one origin request. Use a
//! [`CacheOverride`] on a [`Request`](crate::Request) to pass the cache, force a TTL or add
//! surrogate keys; use [`get`], [`insert`] and [`get_or_insert_with`] for your own values.
//! Everything is scoped to your service: other services never see or purge your objects.

use std::time::Duration;

use crate::imports::cache as host;

/// How one backend fetch uses the edge's HTTP cache.
///
/// ```no_run
/// use std::time::Duration;
/// use outpost::cache::CacheOverride;
///
/// # fn demo() -> Result<(), outpost::Error> {
/// let mut req = outpost::Request::get("/products/42");
/// req.set_cache_override(
///     CacheOverride::ttl(Duration::from_secs(300))
///         .with_stale_while_revalidate(Duration::from_secs(60))
///         .with_surrogate_key("product-42"),
/// );
/// let response = req.send("origin")?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheOverride {
    pass: bool,
    ttl: Option<Duration>,
    stale_while_revalidate: Option<Duration>,
    surrogate_keys: Vec<String>,
    key_extra: Option<String>,
}

impl CacheOverride {
    /// Skip the cache for this fetch: no lookup, nothing stored.
    ///
    /// ```
    /// let o = outpost::cache::CacheOverride::pass();
    /// assert!(o.is_pass());
    /// ```
    pub fn pass() -> Self {
        Self {
            pass: true,
            ..Self::default()
        }
    }

    /// Keep the response fresh for exactly `ttl`, whatever the origin's headers say (this
    /// also stores responses the origin marked `private` or `no-store`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let o = outpost::cache::CacheOverride::ttl(Duration::from_secs(60));
    /// assert_eq!(o.ttl_value(), Some(Duration::from_secs(60)));
    /// ```
    pub fn ttl(ttl: Duration) -> Self {
        Self {
            ttl: Some(ttl),
            ..Self::default()
        }
    }

    /// Serve the response stale for up to `window` after it expires while one background
    /// refresh runs.
    ///
    /// ```
    /// use std::time::Duration;
    /// let o = outpost::cache::CacheOverride::default()
    ///     .with_stale_while_revalidate(Duration::from_secs(30));
    /// assert!(!o.is_pass());
    /// ```
    pub fn with_stale_while_revalidate(mut self, window: Duration) -> Self {
        self.stale_while_revalidate = Some(window);
        self
    }

    /// Tag the stored response with a surrogate key, so [`purge_surrogate_key`] (or the
    /// admin API) can remove it together with everything else tagged the same.
    ///
    /// ```
    /// let o = outpost::cache::CacheOverride::default().with_surrogate_key("catalog");
    /// assert_eq!(o.surrogate_keys(), ["catalog"]);
    /// ```
    pub fn with_surrogate_key(mut self, key: impl Into<String>) -> Self {
        self.surrogate_keys.push(key.into());
        self
    }

    /// Mix `extra` into the cache key, e.g. a device class, so one URL stores several
    /// answers without a `Vary` header.
    ///
    /// ```
    /// let o = outpost::cache::CacheOverride::default().with_key("mobile");
    /// assert!(!o.is_pass());
    /// ```
    pub fn with_key(mut self, extra: impl Into<String>) -> Self {
        self.key_extra = Some(extra.into());
        self
    }

    /// Whether this override skips the cache.
    pub fn is_pass(&self) -> bool {
        self.pass
    }

    /// The forced TTL, if any.
    pub fn ttl_value(&self) -> Option<Duration> {
        self.ttl
    }

    /// The surrogate keys added to the stored response.
    pub fn surrogate_keys(&self) -> &[String] {
        &self.surrogate_keys
    }

    /// Hands the override to the host for the very next fetch.
    pub(crate) fn apply(&self) {
        host::set_next_fetch(&host::FetchOptions {
            pass: self.pass,
            ttl_ms: self.ttl.map(millis),
            stale_while_revalidate_ms: self.stale_while_revalidate.map(millis),
            surrogate_keys: self.surrogate_keys.clone(),
            key_extra: self.key_extra.clone(),
        });
    }
}

/// The value stored under `key`, if any and not expired.
///
/// ```no_run
/// if let Some(bytes) = outpost::cache::get("greeting") {
///     println!("cached: {} bytes", bytes.len());
/// }
/// ```
pub fn get(key: &str) -> Option<Vec<u8>> {
    host::get(key)
}

/// Stores `value` under `key` for `ttl`, tagged with `surrogate_keys` for purging. Values
/// larger than the node's `cache.max_object` are not stored.
///
/// ```no_run
/// use std::time::Duration;
/// outpost::cache::insert("greeting", b"hello", Duration::from_secs(60), &["greetings"]);
/// ```
pub fn insert(key: &str, value: impl AsRef<[u8]>, ttl: Duration, surrogate_keys: &[&str]) {
    let keys: Vec<String> = surrogate_keys.iter().map(|k| k.to_string()).collect();
    host::insert(key, value.as_ref(), millis(ttl), &keys);
}

/// How long [`get_or_insert_with`] waits for another request computing the same key.
pub const COMPUTE_WAIT: Duration = Duration::from_secs(10);

/// The value under `key`, computing and storing it with `compute` when missing. Concurrent
/// requests for a missing key are collapsed: one computes, the others wait for its value
/// (up to [`COMPUTE_WAIT`], then compute themselves). An `Err` from `compute` is returned
/// and nothing is stored.
///
/// ```no_run
/// use std::time::Duration;
///
/// # fn demo() -> Result<(), outpost::Error> {
/// let report = outpost::cache::get_or_insert_with("daily-report", Duration::from_secs(3600), || {
///     let body = outpost::Request::get("/report").send("origin")?.take_body().into_bytes()?;
///     Ok::<_, outpost::Error>(body.to_vec())
/// })?;
/// # Ok(()) }
/// ```
pub fn get_or_insert_with<E>(
    key: &str,
    ttl: Duration,
    compute: impl FnOnce() -> Result<Vec<u8>, E>,
) -> Result<Vec<u8>, E> {
    let wait_ms = COMPUTE_WAIT.as_millis() as u32;
    if let host::Lookup::Hit(value) = host::get_or_lock(key, wait_ms) {
        return Ok(value);
    }
    let value = compute()?;
    insert(key, &value, ttl, &[]);
    Ok(value)
}

/// Removes every object of this service tagged with surrogate key `key`: HTTP responses
/// (from the origin's `Surrogate-Key` header or [`CacheOverride::with_surrogate_key`]) and
/// simple-cache values. Returns how many were removed.
///
/// ```no_run
/// let removed = outpost::cache::purge_surrogate_key("product-42");
/// ```
pub fn purge_surrogate_key(key: &str) -> u32 {
    host::purge_surrogate_key(key, false)
}

/// Like [`purge_surrogate_key`], but marks HTTP responses stale instead of removing them, so
/// stale-while-revalidate and stale-if-error still apply.
///
/// ```no_run
/// outpost::cache::soft_purge_surrogate_key("product-42");
/// ```
pub fn soft_purge_surrogate_key(key: &str) -> u32 {
    host::purge_surrogate_key(key, true)
}

/// How the edge may keep the response a handler sends, so later requests for the same URL
/// are answered without running the guest at all (the service's response cache).
///
/// It only has an effect where the operator turned `[services.NAME.response_cache]` on for
/// the request's path; elsewhere the response goes out as usual. Responses with
/// `Set-Cookie`, `Cache-Control: private` or `no-store` are never stored, whatever the
/// policy says. Attach it with [`Response::cache_at_edge`](crate::Response::cache_at_edge)
/// or [`Response::with_edge_cache`](crate::Response::with_edge_cache).
///
/// ```
/// use std::time::Duration;
/// use outpost::cache::EdgePolicy;
///
/// let policy = EdgePolicy::ttl(Duration::from_secs(60))
///     .with_stale_while_revalidate(Duration::from_secs(30))
///     .with_stale_if_error(Duration::from_secs(600))
///     .with_surrogate_key("home");
/// assert_eq!(policy.ttl_value(), Duration::from_secs(60));
/// assert_eq!(policy.surrogate_keys(), ["home"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgePolicy {
    ttl: Duration,
    stale_while_revalidate: Option<Duration>,
    stale_if_error: Option<Duration>,
    surrogate_keys: Vec<String>,
}

impl EdgePolicy {
    /// Fresh for exactly `ttl`; the origin-style headers on the response do not change it.
    pub fn ttl(ttl: Duration) -> Self {
        Self {
            ttl,
            stale_while_revalidate: None,
            stale_if_error: None,
            surrogate_keys: Vec::new(),
        }
    }

    /// After `ttl`, keep answering with the stored response for up to `window` while one
    /// new run of the guest refreshes it in the background.
    pub fn with_stale_while_revalidate(mut self, window: Duration) -> Self {
        self.stale_while_revalidate = Some(window);
        self
    }

    /// After `ttl`, answer with the stored response for up to `window` when a new run
    /// fails (a trap, a timeout or a 5xx).
    pub fn with_stale_if_error(mut self, window: Duration) -> Self {
        self.stale_if_error = Some(window);
        self
    }

    /// Tags the stored response so [`purge_surrogate_key`] or the admin API can remove it.
    pub fn with_surrogate_key(mut self, key: impl Into<String>) -> Self {
        self.surrogate_keys.push(key.into());
        self
    }

    /// How long the stored response stays fresh.
    pub fn ttl_value(&self) -> Duration {
        self.ttl
    }

    /// The surrogate keys the stored response carries.
    pub fn surrogate_keys(&self) -> &[String] {
        &self.surrogate_keys
    }

    /// Hands the policy to the host for the response about to be sent.
    pub(crate) fn apply(&self) {
        host::cache_response(&host::ResponseOptions {
            ttl_ms: millis(self.ttl),
            stale_while_revalidate_ms: self.stale_while_revalidate.map(millis),
            stale_if_error_ms: self.stale_if_error.map(millis),
            surrogate_keys: self.surrogate_keys.clone(),
        });
    }
}

/// A duration in whole milliseconds, saturating.
fn millis(duration: Duration) -> u64 {
    duration.as_millis().min(u64::MAX as u128) as u64
}
