//! The service's read-only settings from the node's config file: plain values
//! (`[services.NAME.config]`) and secrets (`[services.NAME.secrets]`).
//!
//! Values are the operator's, not the guest's: change them in the config and restart the
//! node, no rebuild needed. Secrets come back as [`Secret`], whose `Debug` prints `***`, so
//! logging one by accident does not leak it; the node never logs them either.

use std::fmt;

/// The config store value for `key`.
///
/// ```no_run
/// let banner = outpost::config::get("banner").unwrap_or_else(|| "welcome".into());
/// ```
pub fn get(key: &str) -> Option<String> {
    crate::imports::config::get(key)
}

/// The secret `key`.
///
/// ```no_run
/// let key = outpost::config::secret("api-key").expect("api-key is configured");
/// let header = format!("Bearer {}", key.expose());
/// ```
pub fn secret(key: &str) -> Option<Secret> {
    crate::imports::config::secret(key).map(Secret)
}

/// A secret value; `Debug` prints `***`.
///
/// ```
/// let secret = outpost::config::Secret::new("hunter2");
/// assert_eq!(format!("{secret:?}"), "***");
/// assert_eq!(secret.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value (useful in tests of code that takes secrets).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself; use it where it is needed, never in a log line.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
