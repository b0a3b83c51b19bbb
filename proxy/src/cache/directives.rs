//! Cache-Control style directive lists (RFC 9111 section 5.2), for requests, responses and
//! the edge-targeted fields `CDN-Cache-Control` (RFC 9213) and `Surrogate-Control`.
//!
//! `Cache-Control` and `Surrogate-Control` are parsed leniently, the way RFC 9111 asks:
//! unknown directives are ignored, quoted values are accepted where tokens are expected, a
//! delta-seconds value that does not parse counts as 0 (so the response is stale rather
//! than fresh forever), values beyond 2^31 saturate, and a directive given twice keeps its
//! most restrictive (smallest) value.
//!
//! `CDN-Cache-Control` is a Structured Field (RFC 9213 section 2.1, RFC 9651): a field that
//! does not parse as a Dictionary, or whose known directives have values of the wrong type,
//! is ignored whole ([`Directives::from_structured`]).

use http::HeaderMap;
use http::header::{AsHeaderName, HeaderName};

/// The largest delta-seconds value a cache must handle (RFC 9111 section 1.2.2).
const DELTA_SECONDS_MAX: u64 = 2_147_483_648;

/// The directives of one Cache-Control-like field.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `max-age=N`.
    pub max_age: Option<u64>,
    /// `s-maxage=N` (shared caches only).
    pub s_maxage: Option<u64>,
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache`: `Some(empty)` unqualified, `Some(fields)` qualified with field names.
    pub no_cache: Option<Vec<HeaderName>>,
    /// `private`: `Some(empty)` unqualified, `Some(fields)` qualified with field names.
    pub private: Option<Vec<HeaderName>>,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `proxy-revalidate`.
    pub proxy_revalidate: bool,
    /// `stale-while-revalidate=N` (RFC 5861).
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error=N` (RFC 5861).
    pub stale_if_error: Option<u64>,
    /// `max-stale` with an optional limit (request only); `Some(None)` accepts any staleness.
    pub max_stale: Option<Option<u64>>,
    /// `min-fresh=N` (request only).
    pub min_fresh: Option<u64>,
    /// `only-if-cached` (request only).
    pub only_if_cached: bool,
    /// Whether the field was present at all.
    pub present: bool,
}

impl Directives {
    /// Parses every instance of the field `name` in `headers` as one list.
    pub fn from_headers(headers: &HeaderMap, name: impl AsHeaderName) -> Directives {
        let mut directives = Directives::default();
        for value in headers.get_all(name) {
            directives.present = true;
            // A value that is not visible ASCII cannot hold directives we understand.
            if let Ok(text) = value.to_str() {
                directives.parse_list(text);
            }
        }
        directives
    }

    /// Parses every instance of the Structured Field `name` as one Dictionary; `None` when
    /// the field is absent, is not a valid Dictionary, or gives a known directive a value
    /// of the wrong type (all of which mean: ignore the field).
    pub fn from_structured(headers: &HeaderMap, name: impl AsHeaderName) -> Option<Directives> {
        let mut lines = headers.get_all(name).iter().peekable();
        lines.peek()?;
        let mut text = String::new();
        for line in lines {
            if !text.is_empty() {
                text.push_str(", ");
            }
            text.push_str(line.to_str().ok()?);
        }
        let dictionary: sfv::Dictionary = sfv::Parser::new(&text).parse().ok()?;
        let mut directives = Directives {
            present: true,
            ..Directives::default()
        };
        for (key, entry) in &dictionary {
            let sfv::ListEntry::Item(item) = entry else {
                // Inner lists are no directive value we know; unknown names are ignored.
                if is_known(key.as_str()) {
                    return None;
                }
                continue;
            };
            let value = &item.bare_item;
            let seconds = || match value {
                sfv::BareItem::Integer(n) => u64::try_from(i64::from(*n))
                    .ok()
                    .map(|n| n.min(DELTA_SECONDS_MAX)),
                _ => None,
            };
            let flag = || match value {
                sfv::BareItem::Boolean(b) => Some(*b),
                _ => None,
            };
            let fields = || match value {
                sfv::BareItem::Boolean(true) => Some(Vec::new()),
                sfv::BareItem::String(list) => Some(
                    list.as_str()
                        .split(',')
                        .filter_map(|f| HeaderName::try_from(f.trim()).ok())
                        .collect(),
                ),
                _ => None,
            };
            match key.as_str() {
                "max-age" => directives.max_age = Some(seconds()?),
                "s-maxage" => directives.s_maxage = Some(seconds()?),
                "stale-while-revalidate" => directives.stale_while_revalidate = Some(seconds()?),
                "stale-if-error" => directives.stale_if_error = Some(seconds()?),
                "no-store" => directives.no_store = flag()?,
                "public" => directives.public = flag()?,
                "must-revalidate" => directives.must_revalidate = flag()?,
                "proxy-revalidate" => directives.proxy_revalidate = flag()?,
                "no-cache" => directives.no_cache = Some(fields()?),
                "private" => directives.private = Some(fields()?),
                _ => {}
            }
        }
        Some(directives)
    }

    /// Parses one field value such as `max-age=60, no-cache="set-cookie"`.
    pub fn parse(text: &str) -> Directives {
        let mut directives = Directives {
            present: true,
            ..Directives::default()
        };
        directives.parse_list(text);
        directives
    }

    fn parse_list(&mut self, text: &str) {
        for (name, value) in split_directives(text) {
            let seconds = || value.as_deref().map_or(0, delta_seconds);
            match name.to_ascii_lowercase().as_str() {
                "max-age" => keep_min(&mut self.max_age, seconds()),
                "s-maxage" => keep_min(&mut self.s_maxage, seconds()),
                "no-store" => self.no_store = true,
                "no-cache" => merge_fields(&mut self.no_cache, value.as_deref()),
                "private" => merge_fields(&mut self.private, value.as_deref()),
                "public" => self.public = true,
                "must-revalidate" => self.must_revalidate = true,
                "proxy-revalidate" => self.proxy_revalidate = true,
                "stale-while-revalidate" => keep_min(&mut self.stale_while_revalidate, seconds()),
                "stale-if-error" => keep_min(&mut self.stale_if_error, seconds()),
                "max-stale" => {
                    let limit = value.as_deref().map(delta_seconds);
                    self.max_stale = Some(match (self.max_stale, limit) {
                        (Some(Some(a)), Some(b)) => Some(a.min(b)),
                        (Some(Some(a)), None) => Some(a),
                        (_, limit) => limit,
                    });
                }
                "min-fresh" => {
                    let n = seconds();
                    self.min_fresh = Some(self.min_fresh.map_or(n, |m| m.max(n)));
                }
                "only-if-cached" => self.only_if_cached = true,
                _ => {}
            }
        }
    }

    /// Whether this list forbids serving the response stale (shared-cache reading: `s-maxage`
    /// implies `proxy-revalidate`, RFC 9111 section 5.2.2.10).
    pub fn forbids_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.s_maxage.is_some()
    }
}

/// Whether `name` is a directive whose value type a Structured Field must respect.
fn is_known(name: &str) -> bool {
    matches!(
        name,
        "max-age"
            | "s-maxage"
            | "stale-while-revalidate"
            | "stale-if-error"
            | "no-store"
            | "public"
            | "must-revalidate"
            | "proxy-revalidate"
            | "no-cache"
            | "private"
    )
}

fn keep_min(slot: &mut Option<u64>, value: u64) {
    *slot = Some(slot.map_or(value, |old| old.min(value)));
}

fn merge_fields(slot: &mut Option<Vec<HeaderName>>, value: Option<&str>) {
    let named: Vec<HeaderName> = value
        .into_iter()
        .flat_map(|list| list.split(','))
        .filter_map(|f| HeaderName::try_from(f.trim()).ok())
        .collect();
    match slot {
        // First instance: qualified if it names fields, unqualified otherwise.
        None => *slot = Some(named),
        // Already unqualified: stays so.
        Some(fields) if fields.is_empty() => {}
        // An unqualified instance makes the whole directive unqualified.
        Some(fields) if named.is_empty() => fields.clear(),
        Some(fields) => fields.extend(named),
    }
}

/// Parses delta-seconds leniently: digits only, saturating at 2^31; anything else is 0.
fn delta_seconds(text: &str) -> u64 {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    text.parse::<u64>()
        .unwrap_or(DELTA_SECONDS_MAX)
        .min(DELTA_SECONDS_MAX)
}

/// Splits `a, b=1, c="x, y"` into `(name, value)` pairs, honouring quoted strings.
fn split_directives(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return out;
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            name.push(c);
            chars.next();
        }
        let mut value = None;
        if chars.peek() == Some(&'=') {
            chars.next();
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let mut text = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => text.extend(chars.next()),
                        c => text.push(c),
                    }
                }
                // Skip anything between the closing quote and the next comma.
                while chars.peek().is_some_and(|c| *c != ',') {
                    chars.next();
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    text.push(c);
                    chars.next();
                }
            }
            value = Some(text.trim().to_owned());
        }
        let name = name.trim();
        if !name.is_empty() {
            out.push((name.to_owned(), value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_response_directives() {
        let d = Directives::parse(
            "public, max-age=60, s-maxage=\"30\", stale-while-revalidate=10, no-cache=\"Set-Cookie, X-A\"",
        );
        assert!(d.public);
        assert_eq!(d.max_age, Some(60));
        assert_eq!(d.s_maxage, Some(30));
        assert_eq!(d.stale_while_revalidate, Some(10));
        assert_eq!(
            d.no_cache.as_deref(),
            Some(
                &[
                    HeaderName::from_static("set-cookie"),
                    HeaderName::from_static("x-a")
                ][..]
            )
        );
        assert!(d.forbids_stale(), "s-maxage implies proxy-revalidate");
    }

    #[test]
    fn invalid_and_duplicate_values_err_on_the_safe_side() {
        assert_eq!(Directives::parse("max-age=abc").max_age, Some(0));
        assert_eq!(Directives::parse("max-age=-5").max_age, Some(0));
        assert_eq!(
            Directives::parse("max-age=3600, max-age=5").max_age,
            Some(5)
        );
        assert_eq!(
            Directives::parse("max-age=99999999999999999999").max_age,
            Some(DELTA_SECONDS_MAX)
        );
        // An unqualified no-cache wins over a qualified one.
        assert_eq!(
            Directives::parse("no-cache=\"a\", no-cache").no_cache,
            Some(vec![])
        );
    }

    #[test]
    fn parses_request_directives() {
        let d = Directives::parse("max-stale, min-fresh=5, only-if-cached");
        assert_eq!(d.max_stale, Some(None));
        assert_eq!(d.min_fresh, Some(5));
        assert!(d.only_if_cached);
        assert_eq!(Directives::parse("max-stale=7").max_stale, Some(Some(7)));
    }

    #[test]
    fn structured_fields_are_all_or_nothing() {
        let structured = |text: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("cdn-cache-control", text.parse().unwrap());
            Directives::from_structured(&headers, "cdn-cache-control")
        };
        let d = structured("max-age=600, private=\"x-a\", foobar").unwrap();
        assert_eq!(d.max_age, Some(600));
        assert_eq!(d.private, Some(vec![HeaderName::from_static("x-a")]));
        assert!(structured("no-store").unwrap().no_store);
        assert_eq!(
            structured("max-age=99999999999").unwrap().max_age,
            Some(DELTA_SECONDS_MAX)
        );
        assert!(
            structured("max-age=10000, &&&&&").is_none(),
            "not a dictionary"
        );
        assert!(
            structured("max-age=\"10000\"").is_none(),
            "a string where an integer goes"
        );
        assert!(structured("max-age=-1").is_none(), "a negative age");
        assert!(structured("MaX-aGe=3600").is_none(), "keys are lower-case");
        assert!(Directives::from_structured(&HeaderMap::new(), "cdn-cache-control").is_none());
    }

    #[test]
    fn gathers_every_field_instance() {
        let mut headers = HeaderMap::new();
        headers.append("cache-control", "max-age=10".parse().unwrap());
        headers.append("cache-control", "private".parse().unwrap());
        let d = Directives::from_headers(&headers, "cache-control");
        assert_eq!(d.max_age, Some(10));
        assert_eq!(d.private, Some(vec![]));
        assert!(!Directives::from_headers(&HeaderMap::new(), "cache-control").present);
    }
}
