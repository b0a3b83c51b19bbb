//! A service's section: its domains, guest, limits, backends, stores, and the opt-in
//! instance reuse and response cache.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::{BackendConfig, Check, ConfigError};
use crate::host_pattern::HostPattern;

/// One service: the domains it answers, the guest that answers them and what it may reach.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Host names routed here: exact (`shop.example`), wildcard (`*.shop.example`) or `*`.
    pub domains: Vec<HostPattern>,
    /// Path to the guest component (`.wasm`, or `.cwasm` from `outpost compile`),
    /// relative to the config file.
    pub guest: PathBuf,
    /// Per-request limits for this guest.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Named origins the guest may fetch from, as `http://NAME/path`.
    #[serde(default)]
    pub backends: BTreeMap<String, BackendConfig>,
    /// Add a `Server-Timing` header (instantiation and time to response head) to responses.
    #[serde(default = "default_true")]
    pub server_timing: bool,
    /// Hosts the guest may fetch directly (`http://HOST[:PORT]/...`) without a configured
    /// backend: `api.example.com`, `*.example.com`, an IP address, or `*` for any.
    #[serde(default)]
    pub dynamic_backends: Vec<HostPattern>,
    /// Read-only values the guest reads with `outpost::config::get`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Secrets the guest reads with `outpost::config::secret`; never logged or printed.
    #[serde(default)]
    pub secrets: BTreeMap<String, Secret>,
    /// Opt-in: reuse an instance for several requests one after another (faster, but
    /// state survives between requests). Off when absent.
    #[serde(default)]
    pub reuse: Option<ReuseConfig>,
    /// Opt-in: serve the guest's own shared-cacheable answers from the edge cache without
    /// running the guest.
    #[serde(default)]
    pub response_cache: ResponseCacheConfig,
}

impl ServiceConfig {
    /// A service answering `domains` with the guest at `guest`, everything else default.
    pub fn new(domains: Vec<HostPattern>, guest: impl Into<PathBuf>) -> Self {
        Self {
            domains,
            guest: guest.into(),
            limits: LimitsConfig::default(),
            backends: BTreeMap::new(),
            server_timing: true,
            dynamic_backends: Vec::new(),
            config: BTreeMap::new(),
            secrets: BTreeMap::new(),
            reuse: None,
            response_cache: ResponseCacheConfig::default(),
        }
    }

    pub(crate) fn validate(&self, key: &str, check: &Check) -> Result<(), ConfigError> {
        if self.domains.is_empty() {
            return Err(check.invalid(
                format!("{key}.domains"),
                "the service has no domains, so no request can reach it",
                "list host names, e.g. `domains = [\"example.com\"]`, or `[\"*\"]` for every host",
            ));
        }
        check.file(
            &format!("{key}.guest"),
            &self.guest,
            "build the guest (`cargo build --release --target wasm32-wasip2`) and point \
             `guest` at the .wasm file, relative to this config",
        )?;
        self.limits.validate(&format!("{key}.limits"), check)?;
        if let Some(reuse) = &self.reuse {
            reuse.validate(&format!("{key}.reuse"), check, &self.limits)?;
        }
        self.response_cache
            .validate(&format!("{key}.response_cache"), check)?;
        for (name, backend) in &self.backends {
            backend.validate(&format!("{key}.backends.{name}"), name, check)?;
        }
        Ok(())
    }
}

fn default_true() -> bool {
    true
}

/// A secret value: `Debug` and `Display` print `***`, so it never reaches a log.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value, for handing to the guest that owns it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What one request to a guest may consume before it is stopped.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Wall-clock budget for the guest, from instantiation to the end of its response.
    pub deadline_ms: u64,
    /// Linear memory the guest may grow to, in MiB.
    pub memory_mib: u64,
    /// Backend requests one guest request may make.
    pub max_backend_requests: u32,
    /// Largest request body accepted from the client, in bytes; larger gets 413 (before
    /// the guest runs when the length is declared).
    pub max_request_body_bytes: u64,
    /// Guests of this service that may run at once, within the node's
    /// `runtime.max_instances`; further requests wait up to `runtime.queue_timeout_ms`.
    pub max_concurrent: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            deadline_ms: 10_000,
            memory_mib: 128,
            max_backend_requests: 32,
            max_request_body_bytes: 1 << 30,
            max_concurrent: 256,
        }
    }
}

impl LimitsConfig {
    fn validate(&self, key: &str, check: &Check) -> Result<(), ConfigError> {
        check.positive(
            &format!("{key}.deadline_ms"),
            self.deadline_ms,
            "use e.g. 10000 (10 s)",
        )?;
        if self.memory_mib == 0 || self.memory_mib > 4096 {
            return Err(check.invalid(
                format!("{key}.memory_mib"),
                format!("{} MiB is outside 1..=4096", self.memory_mib),
                "use e.g. 128",
            ));
        }
        check.positive(
            &format!("{key}.max_concurrent"),
            u64::from(self.max_concurrent),
            "use e.g. 256 (the default)",
        )
    }
}

/// Opt-in instance reuse: an instance that ended a request cleanly serves the next one of
/// its service, up to these bounds. Anything unclean (trap, timeout, memory limit, an
/// unfinished body, any error) drops it.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReuseConfig {
    /// Requests one instance serves before it is dropped.
    pub max_requests: u32,
    /// How long an idle instance is kept for the next request.
    pub idle_timeout_ms: u64,
    /// How long an instance lives at most, busy or idle.
    pub max_lifetime_ms: u64,
    /// An instance whose memory grew past this (MiB) is dropped after its request
    /// (default: half the service's `limits.memory_mib`).
    pub max_memory_mib: Option<u64>,
    /// Idle instances kept per service.
    pub max_idle: u32,
}

impl Default for ReuseConfig {
    fn default() -> Self {
        Self {
            max_requests: 100,
            idle_timeout_ms: 1_000,
            max_lifetime_ms: 60_000,
            max_memory_mib: None,
            max_idle: 16,
        }
    }
}

impl ReuseConfig {
    fn validate(&self, key: &str, check: &Check, limits: &LimitsConfig) -> Result<(), ConfigError> {
        for (field, value) in [
            ("max_requests", u64::from(self.max_requests)),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("max_lifetime_ms", self.max_lifetime_ms),
            ("max_idle", u64::from(self.max_idle)),
        ] {
            check.positive(
                &format!("{key}.{field}"),
                value,
                "remove the key to use the default",
            )?;
        }
        if let Some(mib) = self.max_memory_mib
            && (mib == 0 || mib > limits.memory_mib)
        {
            return Err(check.invalid(
                format!("{key}.max_memory_mib"),
                format!(
                    "{mib} MiB is outside 1..={} (the service's limits.memory_mib)",
                    limits.memory_mib
                ),
                "remove the key to use half of limits.memory_mib",
            ));
        }
        Ok(())
    }

    /// The memory an instance may have grown to and still be reused, in bytes.
    pub fn max_memory_bytes(&self, limits: &LimitsConfig) -> u64 {
        self.max_memory_mib.unwrap_or(limits.memory_mib.div_ceil(2)) << 20
    }
}

/// Opt-in response cache: the guest's shared-cacheable answers are stored and served to
/// later requests without running the guest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseCacheConfig {
    /// Look answers up before running the guest, and store them.
    pub enabled: bool,
    /// Path prefixes the cache applies to (every path by default).
    pub paths: Vec<String>,
}

impl Default for ResponseCacheConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            paths: vec!["/".into()],
        }
    }
}

impl ResponseCacheConfig {
    fn validate(&self, key: &str, check: &Check) -> Result<(), ConfigError> {
        if let Some(bad) = self.paths.iter().find(|p| !p.starts_with('/')) {
            return Err(check.invalid(
                format!("{key}.paths"),
                format!("`{bad}` is not a path prefix"),
                "write prefixes that start with `/`, e.g. `/static/`",
            ));
        }
        Ok(())
    }

    /// Whether a request for `path` may be answered from (and stored in) the cache.
    pub fn covers(&self, path: &str) -> bool {
        self.enabled
            && self
                .paths
                .iter()
                .any(|prefix| path.starts_with(prefix.as_str()))
    }
}
