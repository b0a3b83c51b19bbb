//! Host-name patterns, parsed once when the config loads, and the map that matches host
//! names against them. One rule for service routing, TLS certificates by SNI and the
//! dynamic-backend allow-list.
//!
//! A pattern is `*` (any host), `*.example.com` (any name one or more labels below
//! `example.com`, not `example.com` itself), an IP address, or an exact name. Patterns are
//! lower-cased and lose a trailing dot when parsed; hosts are looked up the same way, so
//! `Example.COM.` matches `example.com`. Exact names win over wildcards, longer wildcard
//! suffixes over shorter ones, and `*` comes last.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

/// A validated host-name pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum HostPattern {
    /// `*`: every host.
    Any,
    /// `*.example.com`, stored as the suffix `.example.com`.
    Subdomains(String),
    /// An exact name or IP address (IPv6 without brackets).
    Exact(String),
}

impl HostPattern {
    /// Parses `text`, explaining what is wrong with it.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let trimmed = text.trim().trim_end_matches('.');
        if trimmed == "*" {
            return Ok(HostPattern::Any);
        }
        let bare = trimmed.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(HostPattern::Exact(ip.to_string()));
        }
        let lower = trimmed.to_ascii_lowercase();
        let (wildcard, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        if name.is_empty() {
            return Err(format!("`{text}` is empty"));
        }
        if name.contains('*') {
            return Err(format!(
                "`{text}` may only have a wildcard as its first label"
            ));
        }
        if name.contains(':') || name.contains('/') {
            return Err(format!(
                "`{text}` must be a bare host name, without port or path"
            ));
        }
        let valid_label = |label: &str| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !name.split('.').all(valid_label) {
            return Err(format!(
                "`{text}` has characters or empty labels that cannot appear in a host name"
            ));
        }
        Ok(if wildcard {
            HostPattern::Subdomains(format!(".{name}"))
        } else {
            HostPattern::Exact(name.to_owned())
        })
    }
}

impl TryFrom<String> for HostPattern {
    type Error = String;

    /// Config files parse patterns through this: the message carries the fix as well.
    fn try_from(text: String) -> Result<Self, String> {
        HostPattern::parse(&text).map_err(|problem| {
            format!(
                "{problem}\n  fix: use a host name such as `example.com`, `*.example.com`, \
                 an IP address, or `*`"
            )
        })
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Any => f.write_str("*"),
            HostPattern::Subdomains(suffix) => write!(f, "*{suffix}"),
            HostPattern::Exact(name) => f.write_str(name),
        }
    }
}

/// A host as it is looked up: lower-case, without a trailing dot or IPv6 brackets.
/// Borrows when the host is already in that form, as almost every host is.
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let host = host.trim_end_matches('.');
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// Values keyed by [`HostPattern`], looked up by host name.
#[derive(Debug, Clone)]
pub struct HostMap<T> {
    exact: HashMap<String, T>,
    subdomains: HashMap<String, T>,
    any: Option<T>,
}

impl<T> Default for HostMap<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            subdomains: HashMap::new(),
            any: None,
        }
    }
}

impl<T> HostMap<T> {
    /// Maps `pattern` to `value`; returns the value it replaced, if the pattern was taken.
    pub fn insert(&mut self, pattern: &HostPattern, value: T) -> Option<T> {
        match pattern {
            HostPattern::Any => self.any.replace(value),
            HostPattern::Subdomains(suffix) => self.subdomains.insert(suffix.clone(), value),
            HostPattern::Exact(name) => self.exact.insert(name.clone(), value),
        }
    }

    /// The value for `host` (normalised as by [`normalize_host`]): exact name, then the
    /// longest wildcard suffix, then `*`.
    pub fn get(&self, host: &str) -> Option<&T> {
        let host = normalize_host(host);
        if let Some(value) = self.exact.get(host.as_ref()) {
            return Some(value);
        }
        if !self.subdomains.is_empty() {
            let mut rest = host.as_ref();
            while let Some(dot) = rest.find('.') {
                // Only a suffix below at least one label counts: `*.a.b` never matches `a.b`.
                if dot > 0
                    && let Some(value) = self.subdomains.get(&rest[dot..])
                {
                    return Some(value);
                }
                rest = &rest[dot + 1..];
            }
        }
        self.any.as_ref()
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.subdomains.is_empty() && self.any.is_none()
    }
}

/// An allow-list of host patterns.
pub type HostSet = HostMap<()>;

impl HostSet {
    /// An allow-list of `patterns`.
    pub fn of(patterns: &[HostPattern]) -> HostSet {
        let mut set = HostSet::default();
        for pattern in patterns {
            set.insert(pattern, ());
        }
        set
    }

    /// Whether `host` matches one of the patterns.
    pub fn allows(&self, host: &str) -> bool {
        self.get(host).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> HostPattern {
        HostPattern::parse(text).unwrap()
    }

    #[test]
    fn patterns_are_normalised_and_checked() {
        assert_eq!(
            p("Shop.Example.COM."),
            HostPattern::Exact("shop.example.com".into())
        );
        assert_eq!(
            p("*.example.com"),
            HostPattern::Subdomains(".example.com".into())
        );
        assert_eq!(p("*"), HostPattern::Any);
        assert_eq!(p("10.0.0.7"), HostPattern::Exact("10.0.0.7".into()));
        assert_eq!(p("[::1]"), HostPattern::Exact("::1".into()));
        assert_eq!(p("*.example.com").to_string(), "*.example.com");
        for bad in [
            "a.*.com",
            "example.com:80",
            "",
            "exa mple.com",
            "a..b",
            "*.a..b",
            "x/y",
        ] {
            assert!(
                HostPattern::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn exact_beats_longest_wildcard_beats_any() {
        let mut map = HostMap::default();
        map.insert(&p("shop.test"), "exact");
        map.insert(&p("*.shop.test"), "wild");
        map.insert(&p("*.eu.shop.test"), "deeper");
        assert_eq!(map.get("shop.test"), Some(&"exact"));
        assert_eq!(map.get("WWW.Shop.Test."), Some(&"wild"));
        assert_eq!(map.get("a.b.shop.test"), Some(&"wild"));
        assert_eq!(map.get("x.eu.shop.test"), Some(&"deeper"));
        assert_eq!(map.get("eu.shop.test"), Some(&"wild"));
        assert_eq!(map.get("other.test"), None);
        assert_eq!(
            map.get(".shop.test"),
            None,
            "an empty first label is no subdomain"
        );
        map.insert(&p("*"), "any");
        assert_eq!(map.get("other.test"), Some(&"any"));
    }

    #[test]
    fn a_wildcard_does_not_cover_its_own_apex() {
        let set = HostSet::of(&[p("*.example.com"), p("10.0.0.7"), p("::1")]);
        assert!(set.allows("api.example.com"));
        assert!(!set.allows("example.com"));
        assert!(!set.allows("evil-example.com"));
        assert!(set.allows("10.0.0.7"));
        assert!(set.allows("[::1]"));
        assert!(!set.allows("10.0.0.8"));
    }

    #[test]
    fn a_second_pattern_for_the_same_hosts_is_reported() {
        let mut map = HostMap::default();
        assert!(map.insert(&p("a.test"), 1).is_none());
        assert_eq!(map.insert(&p("A.test."), 2), Some(1));
    }
}
