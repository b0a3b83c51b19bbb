//! RFC 9111 as a shared cache: whether a response may be stored, how long it stays fresh,
//! how old it is, and whether a stored response may answer a given request.
//!
//! Everything here is a pure function of headers and clock readings, so each rule is unit
//! tested without a network. The order of authority for the edge is: the guest's override,
//! then an edge-targeted field (`CDN-Cache-Control`, RFC 9213, then `Surrogate-Control`),
//! then `Cache-Control` and `Expires`, then the Last-Modified heuristic.

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderName};
use http::{HeaderMap, StatusCode};

use super::directives::Directives;
use super::key::Layer;

/// The edge-targeted fields this cache obeys and never forwards to clients.
pub const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");
/// Fastly/Akamai style edge control field, obeyed when `CDN-Cache-Control` is absent.
pub const SURROGATE_CONTROL: HeaderName = HeaderName::from_static("surrogate-control");

/// Operator settings that shape freshness when the origin says nothing explicit.
#[derive(Debug, Clone, Copy)]
pub struct Heuristics {
    /// Share of the time since Last-Modified a response is considered fresh (RFC 9111
    /// section 4.2.2 suggests 10%).
    pub fraction: f64,
    /// Upper bound of a heuristic lifetime.
    pub max_lifetime: Duration,
    /// How long a stale response with validators is kept for revalidation.
    pub keep_stale: Duration,
}

impl Default for Heuristics {
    fn default() -> Self {
        Self {
            fraction: 0.1,
            max_lifetime: Duration::from_secs(86_400),
            keep_stale: Duration::from_secs(600),
        }
    }
}

/// What a guest asked of this fetch, or of the response cache for its own answer (typed
/// WIT calls; see `host`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Never look up or store: go to the origin.
    pub pass: bool,
    /// Fresh for exactly this long, whatever the origin says.
    pub ttl: Option<Duration>,
    /// Stale-while-revalidate window, whatever the origin says.
    pub stale_while_revalidate: Option<Duration>,
    /// Stale-if-error window, whatever the origin says.
    pub stale_if_error: Option<Duration>,
    /// Surrogate keys added to the stored object.
    pub surrogate_keys: Vec<String>,
    /// Extra text mixed into the cache key.
    pub key_extra: Option<String>,
}

/// What the cache needs to know about the request that caused a fill.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts {
    /// The request carried `Authorization`.
    pub authorization: bool,
    /// The request said `Cache-Control: no-store`.
    pub no_store: bool,
}

/// How a stored response ages and may be reused: fixed when it arrives (or is revalidated).
#[derive(Debug, Clone, PartialEq)]
pub struct Freshness {
    /// Freshness lifetime.
    pub lifetime: Duration,
    /// Corrected initial age (RFC 9111 section 4.2.3): the origin's Age plus transit.
    pub initial_age: Duration,
    /// When the response arrived.
    pub response_time: SystemTime,
    /// How long it may be served stale while one refresh runs in the background.
    pub stale_while_revalidate: Duration,
    /// How long it may be served stale when the origin fails.
    pub stale_if_error: Duration,
    /// `must-revalidate`, `proxy-revalidate` or `s-maxage`: never serve it stale.
    pub no_stale: bool,
    /// `no-cache`: stored, but every reuse is revalidated first.
    pub always_revalidate: bool,
}

impl Freshness {
    /// The response's age now: its initial age plus the time it has been resident.
    pub fn age(&self, now: SystemTime) -> Duration {
        self.initial_age
            + now
                .duration_since(self.response_time)
                .unwrap_or(Duration::ZERO)
    }

    /// How long the object is worth keeping from `now`: fresh time left plus the longest
    /// stale window in which it may still be served or revalidated.
    pub fn keep_for(&self, now: SystemTime, has_validators: bool, h: &Heuristics) -> Duration {
        let remaining = self.lifetime.saturating_sub(self.age(now));
        let mut stale = if self.no_stale {
            Duration::ZERO
        } else {
            self.stale_while_revalidate.max(self.stale_if_error)
        };
        if has_validators {
            stale = stale.max(h.keep_stale);
        }
        remaining + stale
    }
}

/// The outcome of judging a response for storage.
#[derive(Debug, Clone, PartialEq)]
pub enum Storability {
    /// Store it with this freshness, removing these fields from the stored copy.
    Store {
        /// How it ages.
        freshness: Freshness,
        /// Fields named by qualified `no-cache` / `private`, never stored.
        strip: Vec<HeaderName>,
    },
    /// Do not store it, for this reason (shown in debug logs).
    DoNotStore(&'static str),
}

/// Statuses that may get a heuristic lifetime (RFC 9110 section 15.1).
fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

fn date_header(headers: &HeaderMap, name: HeaderName) -> Option<SystemTime> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    httpdate::parse_http_date(first.to_str().ok()?.trim()).ok()
}

/// The directives that govern this cache: an edge-targeted field when present (and, for
/// `CDN-Cache-Control`, a valid Structured Field), else Cache-Control. Returns whether a
/// targeted field was used.
pub fn governing_directives(headers: &HeaderMap) -> (Directives, bool) {
    if let Some(cdn) = Directives::from_structured(headers, CDN_CACHE_CONTROL) {
        return (cdn, true);
    }
    let surrogate = Directives::from_headers(headers, SURROGATE_CONTROL);
    if surrogate.present {
        return (surrogate, true);
    }
    (
        Directives::from_headers(headers, header::CACHE_CONTROL),
        false,
    )
}

/// Judges a response received at `response_time` for a request sent at `request_time`.
///
/// The response layer (a guest's own answers) stores only what is explicitly meant for
/// shared caches: an edge-targeted field, `s-maxage`, `public` with `max-age`, or the
/// guest's `cache-response`; never a response with `Set-Cookie`, `private` or
/// `no-store`, and nothing by heuristic.
#[allow(clippy::too_many_arguments)]
pub fn storability(
    layer: Layer,
    request: RequestFacts,
    status: StatusCode,
    headers: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
    overrides: &Overrides,
    heuristics: &Heuristics,
) -> Storability {
    if status.is_informational()
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Storability::DoNotStore("status is not a storable final response");
    }
    let vary_star = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|f| f.trim() == "*");
    if vary_star {
        return Storability::DoNotStore("Vary: * never matches a later request");
    }
    if request.no_store && overrides.ttl.is_none() {
        return Storability::DoNotStore("request said no-store");
    }
    let (cc, targeted) = governing_directives(headers);
    if layer == Layer::Response {
        let plain = Directives::from_headers(headers, header::CACHE_CONTROL);
        if headers.contains_key(header::SET_COOKIE) {
            return Storability::DoNotStore("a guest answer with Set-Cookie is never shared");
        }
        for directives in [&cc, &plain] {
            if directives.no_store || directives.private.as_ref().is_some_and(Vec::is_empty) {
                return Storability::DoNotStore("the guest marked its answer private or no-store");
            }
        }
        let explicit = overrides.ttl.is_some()
            || targeted
            || cc.s_maxage.is_some()
            || (cc.public && cc.max_age.is_some());
        if !explicit {
            return Storability::DoNotStore(
                "a guest answer is stored only when explicitly cacheable for shared caches",
            );
        }
    }
    let initial_age = initial_age(headers, request_time, response_time);

    let mut freshness = Freshness {
        lifetime: Duration::ZERO,
        initial_age,
        response_time,
        stale_while_revalidate: Duration::from_secs(cc.stale_while_revalidate.unwrap_or(0)),
        stale_if_error: Duration::from_secs(cc.stale_if_error.unwrap_or(0)),
        no_stale: cc.forbids_stale(),
        always_revalidate: cc.no_cache.as_ref().is_some_and(Vec::is_empty),
    };
    let mut strip: Vec<HeaderName> = Vec::new();
    strip.extend(cc.no_cache.iter().flatten().cloned());
    strip.extend(cc.private.iter().flatten().cloned());

    if let Some(ttl) = overrides.ttl {
        // The guest decided: fresh for exactly `ttl` from now, whatever the origin said.
        freshness.lifetime = ttl;
        freshness.initial_age = Duration::ZERO;
        freshness.always_revalidate = false;
        freshness.no_stale = false;
        if let Some(swr) = overrides.stale_while_revalidate {
            freshness.stale_while_revalidate = swr;
        }
        if let Some(sie) = overrides.stale_if_error {
            freshness.stale_if_error = sie;
        }
        if layer == Layer::Response && request.authorization {
            return Storability::DoNotStore(
                "request had Authorization and the guest's answer does not allow sharing",
            );
        }
        return Storability::Store { freshness, strip };
    }
    if let Some(swr) = overrides.stale_while_revalidate {
        freshness.stale_while_revalidate = swr;
    }
    if let Some(sie) = overrides.stale_if_error {
        freshness.stale_if_error = sie;
    }
    if cc.no_store {
        return Storability::DoNotStore("no-store");
    }
    if cc.private.as_ref().is_some_and(Vec::is_empty) {
        return Storability::DoNotStore("private");
    }
    let explicitly_shared = cc.public || cc.s_maxage.is_some() || targeted;
    if request.authorization && !(explicitly_shared || cc.must_revalidate) {
        return Storability::DoNotStore(
            "request had Authorization and the response does not allow sharing",
        );
    }
    if headers.contains_key(header::SET_COOKIE) && !explicitly_shared {
        return Storability::DoNotStore("Set-Cookie without public or s-maxage");
    }

    let explicit = cc
        .s_maxage
        .or(cc.max_age)
        .map(Duration::from_secs)
        .or_else(|| {
            if targeted || !headers.contains_key(header::EXPIRES) {
                return None;
            }
            // An Expires that does not parse (or repeats) means already expired.
            let expires = date_header(headers, header::EXPIRES);
            let date = date_header(headers, header::DATE).unwrap_or(response_time);
            Some(
                expires
                    .and_then(|e| e.duration_since(date).ok())
                    .unwrap_or(Duration::ZERO),
            )
        });
    freshness.lifetime = match explicit {
        Some(lifetime) => lifetime,
        None if layer == Layer::Response => {
            return Storability::DoNotStore("no explicit freshness for a guest answer");
        }
        None => {
            if !(heuristically_cacheable(status) || cc.public) {
                return Storability::DoNotStore(
                    "no explicit freshness and the status is not heuristically cacheable",
                );
            }
            heuristic_lifetime(headers, response_time, heuristics)
        }
    };
    let has_validators =
        headers.contains_key(header::ETAG) || headers.contains_key(header::LAST_MODIFIED);
    if freshness.lifetime <= freshness.initial_age
        && !has_validators
        && (freshness.no_stale
            || (freshness.stale_while_revalidate.is_zero() && freshness.stale_if_error.is_zero()))
    {
        return Storability::DoNotStore("never fresh and nothing to revalidate with");
    }
    Storability::Store { freshness, strip }
}

/// 10% (configurable) of the time since Last-Modified, capped (RFC 9111 section 4.2.2).
fn heuristic_lifetime(
    headers: &HeaderMap,
    response_time: SystemTime,
    heuristics: &Heuristics,
) -> Duration {
    let Some(last_modified) = date_header(headers, header::LAST_MODIFIED) else {
        return Duration::ZERO;
    };
    let date = date_header(headers, header::DATE).unwrap_or(response_time);
    date.duration_since(last_modified)
        .map(|since| since.mul_f64(heuristics.fraction))
        .unwrap_or(Duration::ZERO)
        .min(heuristics.max_lifetime)
}

/// The corrected initial age of RFC 9111 section 4.2.3.
fn initial_age(
    headers: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Duration {
    let age_value = age_header(headers);
    let apparent_age = date_header(headers, header::DATE)
        .and_then(|date| response_time.duration_since(date).ok())
        .unwrap_or(Duration::ZERO);
    let response_delay = response_time
        .duration_since(request_time)
        .unwrap_or(Duration::ZERO);
    apparent_age.max(age_value + response_delay)
}

/// The `Age` a response says it has: the first member of the first `Age` line, so a list
/// like `7200, 0` counts as 7200 (stale), not 0. Values past 2^31 saturate; a value that
/// is not a whole number of seconds is ignored (RFC 9111 section 5.1).
fn age_header(headers: &HeaderMap) -> Duration {
    let Some(first) = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
    else {
        return Duration::ZERO;
    };
    let text = first.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Duration::ZERO;
    }
    Duration::from_secs(text.parse::<u64>().unwrap_or(u64::MAX).min(1 << 31))
}

/// How a stored response may answer a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Fresh enough for this request.
    Fresh,
    /// Stale, but servable while one background refresh runs (stale-while-revalidate).
    StaleWhileRevalidate,
    /// Stale, and the client said it accepts that (max-stale).
    StaleAccepted,
    /// Must be revalidated (or refetched) before use; on origin failure, stale-if-error
    /// may still allow it.
    Revalidate,
}

/// Decides how a stored response may answer a request with directives `request`.
/// `purged_at` is set when the object was soft-purged: stale from then on.
pub fn reuse(
    freshness: &Freshness,
    request: &Directives,
    now: SystemTime,
    purged_at: Option<SystemTime>,
) -> Reuse {
    if freshness.always_revalidate || request.no_cache.is_some() {
        return Reuse::Revalidate;
    }
    let age = freshness.age(now);
    if request
        .max_age
        .is_some_and(|max| age > Duration::from_secs(max))
    {
        return Reuse::Revalidate;
    }
    let min_fresh = Duration::from_secs(request.min_fresh.unwrap_or(0));
    let mut stale_by = age.checked_sub(freshness.lifetime);
    if let Some(purged) = purged_at {
        let since = now.duration_since(purged).unwrap_or(Duration::ZERO);
        stale_by = Some(stale_by.map_or(since, |s| s.max(since)));
    }
    let Some(stale_by) = stale_by else {
        return if freshness.lifetime >= age + min_fresh {
            Reuse::Fresh
        } else {
            Reuse::Revalidate
        };
    };
    if freshness.no_stale {
        return Reuse::Revalidate;
    }
    match request.max_stale {
        Some(None) => return Reuse::StaleAccepted,
        Some(Some(limit)) if stale_by <= Duration::from_secs(limit) => {
            return Reuse::StaleAccepted;
        }
        _ => {}
    }
    if stale_by <= freshness.stale_while_revalidate && request.max_age.is_none() {
        return Reuse::StaleWhileRevalidate;
    }
    Reuse::Revalidate
}

/// Whether a stale response may stand in for an origin failure that happened `now`.
pub fn may_serve_on_error(
    freshness: &Freshness,
    request: &Directives,
    now: SystemTime,
    purged_at: Option<SystemTime>,
) -> bool {
    if freshness.no_stale {
        return false;
    }
    let age = freshness.age(now);
    let mut stale_by = age.saturating_sub(freshness.lifetime);
    if let Some(purged) = purged_at {
        stale_by = stale_by.max(now.duration_since(purged).unwrap_or(Duration::ZERO));
    }
    let window = request
        .stale_if_error
        .map(Duration::from_secs)
        .unwrap_or(freshness.stale_if_error);
    stale_by <= window
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::http::test_headers as headers;

    fn judge(pairs: &[(&str, &str)]) -> Storability {
        let now = SystemTime::now();
        storability(
            Layer::Fetch,
            RequestFacts::default(),
            StatusCode::OK,
            &headers(pairs),
            now,
            now,
            &Overrides::default(),
            &Heuristics::default(),
        )
    }

    fn lifetime(pairs: &[(&str, &str)]) -> Option<Duration> {
        match judge(pairs) {
            Storability::Store { freshness, .. } => Some(freshness.lifetime),
            Storability::DoNotStore(_) => None,
        }
    }

    fn http_date(t: SystemTime) -> String {
        httpdate::fmt_http_date(t)
    }

    #[test]
    fn s_maxage_beats_max_age_beats_expires() {
        let now = SystemTime::now();
        let expires = http_date(now + Duration::from_secs(500));
        let date = http_date(now);
        assert_eq!(
            lifetime(&[
                ("cache-control", "max-age=10, s-maxage=20"),
                ("expires", &expires)
            ]),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            lifetime(&[("cache-control", "max-age=10"), ("expires", &expires)]),
            Some(Duration::from_secs(10))
        );
        let from_expires = lifetime(&[("expires", &expires), ("date", &date)]).unwrap();
        assert!(
            from_expires >= Duration::from_secs(499) && from_expires <= Duration::from_secs(501)
        );
        assert_eq!(
            lifetime(&[("expires", "garbage"), ("etag", "\"a\"")]),
            Some(Duration::ZERO),
            "an invalid Expires means already expired"
        );
    }

    #[test]
    fn edge_targeted_fields_win() {
        assert_eq!(
            lifetime(&[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=30")
            ]),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            lifetime(&[
                ("cache-control", "max-age=30"),
                ("cdn-cache-control", "no-store")
            ]),
            None
        );
        assert_eq!(
            lifetime(&[
                ("cache-control", "private"),
                ("surrogate-control", "max-age=40")
            ]),
            Some(Duration::from_secs(40))
        );
    }

    #[test]
    fn refuses_what_must_not_be_shared() {
        assert_eq!(lifetime(&[("cache-control", "no-store, max-age=60")]), None);
        assert_eq!(lifetime(&[("cache-control", "private, max-age=60")]), None);
        assert_eq!(
            lifetime(&[("cache-control", "max-age=60"), ("vary", "*")]),
            None
        );
        assert_eq!(
            lifetime(&[("cache-control", "max-age=60"), ("set-cookie", "a=b")]),
            None
        );
        assert!(
            lifetime(&[
                ("cache-control", "public, max-age=60"),
                ("set-cookie", "a=b")
            ])
            .is_some()
        );
        assert_eq!(lifetime(&[]), None, "no freshness, no validators");
        let now = SystemTime::now();
        let with_auth = |cc: &str| {
            storability(
                Layer::Fetch,
                RequestFacts {
                    authorization: true,
                    no_store: false,
                },
                StatusCode::OK,
                &headers(&[("cache-control", cc)]),
                now,
                now,
                &Overrides::default(),
                &Heuristics::default(),
            )
        };
        assert!(matches!(
            with_auth("max-age=60"),
            Storability::DoNotStore(_)
        ));
        assert!(matches!(
            with_auth("max-age=60, public"),
            Storability::Store { .. }
        ));
        assert!(matches!(
            with_auth("s-maxage=60"),
            Storability::Store { .. }
        ));
        assert!(matches!(
            with_auth("max-age=60, must-revalidate"),
            Storability::Store { .. }
        ));
    }

    #[test]
    fn heuristic_freshness_from_last_modified() {
        let now = SystemTime::now();
        let lm = http_date(now - Duration::from_secs(1000));
        let date = http_date(now);
        let life = lifetime(&[("last-modified", &lm), ("date", &date)]).unwrap();
        assert!(
            life >= Duration::from_secs(99) && life <= Duration::from_secs(101),
            "{life:?}"
        );
        let now_judge = |status: u16| {
            storability(
                Layer::Fetch,
                RequestFacts::default(),
                StatusCode::from_u16(status).unwrap(),
                &headers(&[("last-modified", &lm), ("date", &date)]),
                now,
                now,
                &Overrides::default(),
                &Heuristics::default(),
            )
        };
        assert!(matches!(now_judge(404), Storability::Store { .. }));
        assert!(matches!(now_judge(302), Storability::DoNotStore(_)));
        assert!(matches!(now_judge(206), Storability::DoNotStore(_)));
    }

    #[test]
    fn age_is_subtracted() {
        let now = SystemTime::now();
        let Storability::Store { freshness, .. } = storability(
            Layer::Fetch,
            RequestFacts::default(),
            StatusCode::OK,
            &headers(&[("cache-control", "max-age=100"), ("age", "90")]),
            now,
            now,
            &Overrides::default(),
            &Heuristics::default(),
        ) else {
            panic!("storable")
        };
        assert_eq!(freshness.age(now), Duration::from_secs(90));
        let none = Directives::default();
        assert_eq!(reuse(&freshness, &none, now, None), Reuse::Fresh);
        assert_eq!(
            reuse(&freshness, &none, now + Duration::from_secs(11), None),
            Reuse::Revalidate
        );
    }

    fn fresh_for(lifetime: u64, swr: u64) -> Freshness {
        Freshness {
            lifetime: Duration::from_secs(lifetime),
            initial_age: Duration::ZERO,
            response_time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
            stale_while_revalidate: Duration::from_secs(swr),
            stale_if_error: Duration::from_secs(30),
            no_stale: false,
            always_revalidate: false,
        }
    }

    #[test]
    fn request_directives_shape_reuse() {
        let f = fresh_for(100, 10);
        let t = |secs: u64| f.response_time + Duration::from_secs(secs);
        let req = |text: &str| Directives::parse(text);
        assert_eq!(reuse(&f, &req(""), t(50), None), Reuse::Fresh);
        assert_eq!(reuse(&f, &req("no-cache"), t(50), None), Reuse::Revalidate);
        assert_eq!(
            reuse(&f, &req("max-age=40"), t(50), None),
            Reuse::Revalidate
        );
        assert_eq!(
            reuse(&f, &req("min-fresh=60"), t(50), None),
            Reuse::Revalidate
        );
        assert_eq!(
            reuse(&f, &req(""), t(105), None),
            Reuse::StaleWhileRevalidate
        );
        assert_eq!(reuse(&f, &req(""), t(120), None), Reuse::Revalidate);
        assert_eq!(
            reuse(&f, &req("max-stale=30"), t(120), None),
            Reuse::StaleAccepted
        );
        assert_eq!(
            reuse(&f, &req("max-stale"), t(9999), None),
            Reuse::StaleAccepted
        );
        // A soft purge makes it stale from the purge on; SWR still applies.
        assert_eq!(
            reuse(&f, &req(""), t(50), Some(t(45))),
            Reuse::StaleWhileRevalidate
        );
        assert_eq!(reuse(&f, &req(""), t(60), Some(t(45))), Reuse::Revalidate);
        assert!(may_serve_on_error(&f, &req(""), t(120), None));
        assert!(!may_serve_on_error(&f, &req(""), t(140), None));
        let strict = Freshness {
            no_stale: true,
            ..f.clone()
        };
        assert_eq!(
            reuse(&strict, &req("max-stale"), t(105), None),
            Reuse::Revalidate
        );
        assert!(!may_serve_on_error(&strict, &req(""), t(101), None));
    }

    #[test]
    fn an_age_list_counts_its_first_member_and_junk_is_ignored() {
        let age = |value: &str| age_header(&headers(&[("age", value)]));
        assert_eq!(age("7200, 0"), Duration::from_secs(7200));
        assert_eq!(age("0, 7200"), Duration::ZERO);
        assert_eq!(age("abc"), Duration::ZERO);
        assert_eq!(age("-7200"), Duration::ZERO);
        assert_eq!(age("7200.0"), Duration::ZERO);
        assert_eq!(age("2147483649"), Duration::from_secs(1 << 31));
        let two = headers(&[("age", "7200"), ("age", "0")]);
        assert_eq!(
            age_header(&two),
            Duration::from_secs(7200),
            "the first line counts"
        );
    }

    #[test]
    fn an_invalid_cdn_cache_control_falls_back_to_cache_control() {
        for cdn in ["max-age=10000, &&&&&", "max-age=\"10000\""] {
            assert_eq!(
                lifetime(&[("cdn-cache-control", cdn), ("cache-control", "no-store")]),
                None,
                "{cdn}"
            );
        }
    }

    #[test]
    fn guest_answers_are_stored_only_when_explicitly_shared() {
        let now = SystemTime::now();
        let judge = |pairs: &[(&str, &str)], ttl: Option<u64>| {
            let overrides = Overrides {
                ttl: ttl.map(Duration::from_secs),
                ..Overrides::default()
            };
            matches!(
                storability(
                    Layer::Response,
                    RequestFacts::default(),
                    StatusCode::OK,
                    &headers(pairs),
                    now,
                    now,
                    &overrides,
                    &Heuristics::default(),
                ),
                Storability::Store { .. }
            )
        };
        assert!(
            !judge(&[("cache-control", "max-age=60")], None),
            "max-age alone"
        );
        assert!(judge(&[("cache-control", "public, max-age=60")], None));
        assert!(judge(&[("cache-control", "s-maxage=60")], None));
        assert!(judge(&[("cdn-cache-control", "max-age=60")], None));
        assert!(judge(&[], Some(60)), "cache-response");
        assert!(!judge(
            &[("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT")],
            None
        ));
        assert!(!judge(
            &[
                ("cache-control", "public, max-age=60"),
                ("set-cookie", "a=b")
            ],
            None
        ));
        assert!(!judge(&[("cache-control", "private")], Some(60)));
        assert!(!judge(&[("cache-control", "no-store")], Some(60)));
    }

    #[test]
    fn guest_ttl_overrides_origin() {
        let now = SystemTime::now();
        let result = storability(
            Layer::Fetch,
            RequestFacts::default(),
            StatusCode::OK,
            &headers(&[("cache-control", "private, no-store")]),
            now,
            now,
            &Overrides {
                ttl: Some(Duration::from_secs(5)),
                ..Overrides::default()
            },
            &Heuristics::default(),
        );
        assert!(
            matches!(result, Storability::Store { freshness, .. } if freshness.lifetime == Duration::from_secs(5))
        );
    }
}
