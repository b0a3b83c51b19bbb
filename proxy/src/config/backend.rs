//! A backend's section: where a named origin is and how long it may take.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Check, ConfigError};

/// A named origin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Where the origin is: `http://host:port` or `https://host:port`, optionally with a
    /// path prefix that is prepended to every request path.
    pub url: String,
    /// Host header (and TLS SNI) to send instead of the URL's host.
    pub host: Option<String>,
    /// PEM file of extra CA certificates trusted for this backend (besides webpki roots).
    pub ca: Option<PathBuf>,
    /// Time allowed to establish the connection (TCP and TLS).
    #[serde(default = "BackendConfig::default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time allowed from sending the request to the response head.
    #[serde(default = "BackendConfig::default_first_byte_timeout_ms")]
    pub first_byte_timeout_ms: u64,
    /// Time allowed between two chunks of the response body.
    #[serde(default = "BackendConfig::default_between_bytes_timeout_ms")]
    pub between_bytes_timeout_ms: u64,
    /// Idle keep-alive connections kept per origin host.
    #[serde(default = "BackendConfig::default_max_idle")]
    pub max_idle_connections: usize,
}

impl BackendConfig {
    fn default_connect_timeout_ms() -> u64 {
        1_000
    }
    fn default_first_byte_timeout_ms() -> u64 {
        15_000
    }
    fn default_between_bytes_timeout_ms() -> u64 {
        10_000
    }
    fn default_max_idle() -> usize {
        64
    }

    /// A backend at `url` with every other setting at its default (quick mode, and
    /// dynamic backends).
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            host: None,
            ca: None,
            connect_timeout_ms: Self::default_connect_timeout_ms(),
            first_byte_timeout_ms: Self::default_first_byte_timeout_ms(),
            between_bytes_timeout_ms: Self::default_between_bytes_timeout_ms(),
            max_idle_connections: Self::default_max_idle(),
        }
    }

    pub(crate) fn validate(&self, key: &str, name: &str, check: &Check) -> Result<(), ConfigError> {
        if http::uri::Authority::try_from(name).is_err() || name.contains(':') {
            return Err(check.invalid(
                key,
                format!("`{name}` cannot be used as the host of a URL"),
                "name backends with letters, digits, `-` and `.` (guests fetch `http://NAME/...`)",
            ));
        }
        let url_key = format!("{key}.url");
        let uri: http::Uri = self.url.parse().map_err(|e| {
            check.invalid(
                &url_key,
                format!("`{}` is not a URL: {e}", self.url),
                "write it as `http://host:port` or `https://host`",
            )
        })?;
        if !matches!(uri.scheme_str(), Some("http") | Some("https")) {
            return Err(check.invalid(
                &url_key,
                format!("`{}` needs an http:// or https:// scheme", self.url),
                "write it as `http://host:port` or `https://host`",
            ));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(check.invalid(
                &url_key,
                format!("`{}` has no host", self.url),
                "write it as `http://host:port`",
            ));
        }
        if uri.query().is_some() {
            return Err(check.invalid(
                &url_key,
                "a backend URL cannot carry a query",
                "move the query into the guest's request",
            ));
        }
        if let Some(ca) = &self.ca {
            check.file(
                &format!("{key}.ca"),
                ca,
                "point it at a PEM file of CA certificates",
            )?;
        }
        for (field, value) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("first_byte_timeout_ms", self.first_byte_timeout_ms),
            ("between_bytes_timeout_ms", self.between_bytes_timeout_ms),
        ] {
            check.positive(
                &format!("{key}.{field}"),
                value,
                "remove the key to use the default",
            )?;
        }
        Ok(())
    }
}
