//! Cache keys: built once per lookup from the service, the layer, the URL and any extra
//! key text the guest adds, and never taken apart again.

use std::fmt;
use std::sync::Arc;

/// Which of the two caches that share the store a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// Responses of backends to guests' fetches (`http://backend/path`).
    Fetch,
    /// The guests' own answers to clients, where a service opted in
    /// (`https://host/path`).
    Response,
}

impl Layer {
    /// Both layers, in metric label order.
    pub const ALL: [Layer; 2] = [Layer::Response, Layer::Fetch];

    /// The `layer` label of `outpost_cache_lookups_total`.
    pub fn label(self) -> &'static str {
        match self {
            Layer::Fetch => "fetch",
            Layer::Response => "response",
        }
    }

    /// Index into [`Layer::ALL`].
    pub fn index(self) -> usize {
        match self {
            Layer::Response => 0,
            Layer::Fetch => 1,
        }
    }
}

/// The key every variant of one URL is stored under: cheap to clone and compare.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(Arc<KeyParts>);

#[derive(PartialEq, Eq, Hash)]
struct KeyParts {
    service: Arc<str>,
    layer: Layer,
    /// `scheme://authority/path?query`, the authority lower-cased.
    url: Box<str>,
    /// Text the guest mixed into the key (`CacheOverride::with_key`).
    extra: Option<Box<str>>,
}

impl CacheKey {
    /// The key of `path_and_query` at `scheme://authority` for `service` in `layer`.
    pub fn new(
        service: &Arc<str>,
        layer: Layer,
        scheme: &str,
        authority: &str,
        path_and_query: &str,
        extra: Option<&str>,
    ) -> CacheKey {
        let mut url =
            String::with_capacity(scheme.len() + 3 + authority.len() + path_and_query.len());
        url.push_str(scheme);
        url.push_str("://");
        url.extend(authority.chars().map(|c| c.to_ascii_lowercase()));
        url.push_str(path_and_query);
        CacheKey(Arc::new(KeyParts {
            service: service.clone(),
            layer,
            url: url.into(),
            extra: extra.map(Into::into),
        }))
    }

    /// The key of a request's URI (absolute, or a path at `default_authority`).
    pub fn of_uri(
        service: &Arc<str>,
        layer: Layer,
        uri: &http::Uri,
        default_authority: &str,
        extra: Option<&str>,
    ) -> CacheKey {
        CacheKey::new(
            service,
            layer,
            uri.scheme_str().unwrap_or("http"),
            uri.authority().map_or(default_authority, |a| a.as_str()),
            uri.path_and_query().map_or("/", |p| p.as_str()),
            extra,
        )
    }

    /// The key of an absolute URL as written (`http://backend/path?query`), without extra
    /// key text: what an admin purge by URL names.
    pub fn of_url(service: &Arc<str>, layer: Layer, url: &str) -> Option<CacheKey> {
        let uri: http::Uri = url.parse().ok()?;
        uri.authority()?;
        Some(CacheKey::of_uri(service, layer, &uri, "", None))
    }

    /// The service the key belongs to.
    pub fn service(&self) -> &str {
        &self.0.service
    }

    /// The layer the key belongs to.
    pub fn layer(&self) -> Layer {
        self.0.layer
    }

    /// The same URL at another path and query (for invalidating `Location` targets).
    pub fn with_path(&self, path_and_query: &str) -> CacheKey {
        let url = &self.0.url;
        let origin_end = url
            .find("://")
            .and_then(|s| url[s + 3..].find('/').map(|p| s + 3 + p))
            .unwrap_or(url.len());
        CacheKey(Arc::new(KeyParts {
            service: self.0.service.clone(),
            layer: self.0.layer,
            url: format!("{}{path_and_query}", &url[..origin_end]).into(),
            extra: None,
        }))
    }

    /// Bytes the key itself takes, for the store's weigher.
    pub fn weight(&self) -> usize {
        self.0.service.len() + self.0.url.len() + self.0.extra.as_ref().map_or(0, |e| e.len()) + 48
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.0.service,
            self.0.layer.label(),
            self.0.url
        )?;
        if let Some(extra) = &self.0.extra {
            write!(f, " +{extra}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_service_layer_url_and_extra() {
        let shop: Arc<str> = "shop".into();
        let blog: Arc<str> = "blog".into();
        let key = |s: &Arc<str>, l, p, e| CacheKey::new(s, l, "http", "Origin", p, e);
        let base = key(&shop, Layer::Fetch, "/a?x=1", None);
        assert_eq!(base, key(&shop, Layer::Fetch, "/a?x=1", None));
        assert_eq!(
            base,
            CacheKey::of_url(&shop, Layer::Fetch, "http://origin/a?x=1").unwrap()
        );
        assert_ne!(base, key(&blog, Layer::Fetch, "/a?x=1", None));
        assert_ne!(base, key(&shop, Layer::Response, "/a?x=1", None));
        assert_ne!(base, key(&shop, Layer::Fetch, "/a?x=2", None));
        assert_ne!(base, key(&shop, Layer::Fetch, "/a?x=1", Some("mobile")));
        assert_eq!(base.service(), "shop");
        assert_eq!(base.to_string(), "shop fetch http://origin/a?x=1");
    }

    #[test]
    fn with_path_keeps_the_origin() {
        let shop: Arc<str> = "shop".into();
        let key = CacheKey::new(&shop, Layer::Fetch, "http", "origin", "/a/b?x", Some("m"));
        assert_eq!(
            key.with_path("/c"),
            CacheKey::new(&shop, Layer::Fetch, "http", "origin", "/c", None)
        );
    }
}
