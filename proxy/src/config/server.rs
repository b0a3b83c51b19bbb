//! Node-wide sections: listeners and connection limits, TLS, the runtime's sizing, the
//! cache, metrics, admin, geolocation and logging.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::{Check, ConfigError};
use crate::host_pattern::HostPattern;

/// Plain-HTTP listeners (HTTP/1.1 and h2c) and what one connection may cost.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Addresses to accept plain HTTP on.
    pub listen: Vec<SocketAddr>,
    /// Worker threads for the listeners (0 = one per core).
    pub threads: usize,
    /// Largest request head (request line plus headers) accepted, in bytes; larger gets
    /// 431, counted while it arrives. Also HTTP/2's header-list limit.
    pub max_header_bytes: usize,
    /// Time from a request's first byte to the end of its head (nginx's
    /// `client_header_timeout`); also bounds the h2c preface and the HTTP/2 handshake.
    pub header_timeout_ms: u64,
    /// How long a connection may sit idle between requests before it is closed.
    pub keepalive_timeout_secs: u64,
    /// How long one read of a request body may wait before the request fails.
    pub read_timeout_secs: u64,
    /// How long one write to the client may take before the connection is dropped.
    pub write_timeout_secs: u64,
    /// Open client connections per listener; more are closed at once and counted.
    pub max_connections: usize,
    /// Open client connections per client address and listener (0: no per-address limit).
    pub max_connections_per_ip: usize,
    /// Concurrent HTTP/2 streams one connection may open.
    pub h2_max_concurrent_streams: u32,
    /// This node's point-of-presence name, which guests read from their request info.
    pub pop: String,
    /// The Unix socket a new binary takes the listening sockets over on (`serve --upgrade`);
    /// give each node on a host its own.
    pub upgrade_sock: Option<PathBuf>,
    /// On SIGTERM/SIGQUIT, how long the node keeps accepting while load balancers notice
    /// that `/ready` fails.
    pub drain_grace_secs: u64,
    /// Then how long requests in flight get to finish before the node exits.
    pub drain_timeout_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 7676))],
            threads: 0,
            max_header_bytes: 64 * 1024,
            header_timeout_ms: 15_000,
            keepalive_timeout_secs: 60,
            read_timeout_secs: 30,
            write_timeout_secs: 30,
            max_connections: 10_000,
            max_connections_per_ip: 0,
            h2_max_concurrent_streams: 100,
            pop: "outpost".into(),
            upgrade_sock: None,
            drain_grace_secs: 1,
            drain_timeout_secs: 10,
        }
    }
}

impl ServerConfig {
    pub(crate) fn validate(&self, check: &Check) -> Result<(), ConfigError> {
        if self.max_header_bytes < 1024 {
            return Err(check.invalid(
                "server.max_header_bytes",
                "below 1 KiB ordinary browsers fail",
                "use 65536 (the default)",
            ));
        }
        if self.max_header_bytes > 1 << 20 {
            return Err(check.invalid(
                "server.max_header_bytes",
                "above 1 MiB a few hundred slow clients could hold the node's memory",
                "use 65536 (the default)",
            ));
        }
        for (key, value) in [
            ("server.header_timeout_ms", self.header_timeout_ms),
            ("server.keepalive_timeout_secs", self.keepalive_timeout_secs),
            ("server.read_timeout_secs", self.read_timeout_secs),
            ("server.write_timeout_secs", self.write_timeout_secs),
            ("server.max_connections", self.max_connections as u64),
            (
                "server.h2_max_concurrent_streams",
                u64::from(self.h2_max_concurrent_streams),
            ),
        ] {
            check.positive(key, value, "remove the key to use the default")?;
        }
        Ok(())
    }
}

/// HTTPS listeners; the certificate is picked by SNI among `certificates`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Addresses to accept TLS on (HTTP/2 and HTTP/1.1 by ALPN).
    pub listen: Vec<SocketAddr>,
    /// Certificates; the first is also served to clients that send no SNI.
    pub certificates: Vec<CertificateConfig>,
}

impl TlsConfig {
    pub(crate) fn validate(&self, check: &Check) -> Result<(), ConfigError> {
        if self.certificates.is_empty() {
            return Err(check.invalid(
                "tls.certificates",
                "TLS listeners need at least one certificate",
                "add [[tls.certificates]] with `domains`, `cert` and `key`",
            ));
        }
        for (i, cert) in self.certificates.iter().enumerate() {
            let key = format!("tls.certificates[{i}]");
            for (field, path) in [("cert", &cert.cert), ("key", &cert.key)] {
                check.file(
                    &format!("{key}.{field}"),
                    path,
                    "point it at a PEM file, relative to this config",
                )?;
            }
            if cert.domains.is_empty() {
                return Err(check.invalid(
                    format!("{key}.domains"),
                    "empty",
                    "list the SNI names this certificate serves",
                ));
            }
        }
        Ok(())
    }
}

/// One certificate chain and key, and the names it serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// SNI names this certificate answers for: `example.com` or `*.example.com`.
    pub domains: Vec<HostPattern>,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Sizing of the shared wasmtime engine.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Guests that may run at once across all services; also the pooling allocator's size.
    pub max_instances: u32,
    /// How long a request may wait for an instance slot (its service's or the node's)
    /// before it gets 503 with `Retry-After`.
    pub queue_timeout_ms: u64,
    /// WebAssembly stack per instance, in KiB.
    pub max_stack_kib: usize,
    /// Use the pooling allocator (falls back to on-demand with a warning if it cannot reserve).
    pub pooling: bool,
    /// Directory of compiled guests, keyed by guest digest and engine; `serve`, `check`,
    /// `--watch` and reloads load from it instead of compiling again. `"off"` disables
    /// it. Default: systemd's `$CACHE_DIRECTORY`, else `$XDG_CACHE_HOME/outpost`, else
    /// `$HOME/.cache/outpost`.
    pub compile_cache: Option<PathBuf>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_instances: 1000,
            queue_timeout_ms: 2_000,
            max_stack_kib: 512,
            pooling: true,
            compile_cache: None,
        }
    }
}

impl RuntimeConfig {
    /// The compile cache directory in effect, or `None` when it is off or no default
    /// location exists (no `$HOME`).
    pub fn compile_cache_dir(&self) -> Option<PathBuf> {
        if let Some(dir) = &self.compile_cache {
            return (dir.as_os_str() != "off").then(|| dir.clone());
        }
        let env = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        env("CACHE_DIRECTORY")
            .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("outpost")))
            .or_else(|| env("HOME").map(|d| d.join(".cache").join("outpost")))
    }

    pub(crate) fn validate(&self, check: &Check) -> Result<(), ConfigError> {
        if self.max_instances == 0 {
            return Err(check.invalid(
                "runtime.max_instances",
                "must be at least 1",
                "remove the key to use 1000",
            ));
        }
        if self.max_stack_kib < 64 {
            return Err(check.invalid(
                "runtime.max_stack_kib",
                "below 64 KiB no real guest runs",
                "use 512 (the default) or more",
            ));
        }
        check.positive(
            "runtime.queue_timeout_ms",
            self.queue_timeout_ms,
            "remove the key to use 2000",
        )
    }
}

/// Where Prometheus scrapes `/metrics`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the metrics listener; no listener when absent.
    pub listen: Option<SocketAddr>,
}

/// The edge cache: memory bound and behaviour knobs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Total memory for stored responses, e.g. `"512MiB"`; `0` turns the cache off.
    pub memory: bytesize::ByteSize,
    /// Largest single response stored, e.g. `"16MiB"`; larger ones pass through.
    pub max_object: bytesize::ByteSize,
    /// How long a request waits for a concurrent fetch of the same object before going to
    /// the origin itself.
    pub collapse_wait_ms: u64,
    /// How long an uncacheable answer lets its URL skip request collapsing.
    pub hit_for_miss_secs: u64,
    /// How long a stale response with validators is kept for revalidation.
    pub keep_stale_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            memory: bytesize::ByteSize::mib(256),
            max_object: bytesize::ByteSize::mib(16),
            collapse_wait_ms: 15_000,
            hit_for_miss_secs: 120,
            keep_stale_secs: 600,
        }
    }
}

impl CacheConfig {
    pub(crate) fn validate(&self, check: &Check) -> Result<(), ConfigError> {
        if self.memory.as_u64() > 0 && self.max_object > self.memory {
            return Err(check.invalid(
                "cache.max_object",
                format!(
                    "{} is larger than cache.memory ({})",
                    self.max_object, self.memory
                ),
                "make max_object at most a fraction of memory, e.g. 16MiB",
            ));
        }
        if self.max_object.as_u64() > u32::MAX as u64 / 2 {
            return Err(check.invalid(
                "cache.max_object",
                format!("{} is more than one object may weigh", self.max_object),
                "use at most 2GiB",
            ));
        }
        Ok(())
    }
}

/// The admin API: purge, health, readiness and reload, on its own listener, behind a
/// bearer token.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin listener; no listener when absent.
    pub listen: Option<SocketAddr>,
    /// The bearer token every admin request must carry (`Authorization: Bearer …`).
    pub token: Option<super::Secret>,
    /// A file holding the token instead (a mounted Kubernetes Secret, say); read at load.
    pub token_file: Option<PathBuf>,
}

impl AdminConfig {
    pub(crate) fn validate_token(&self, check: &Check) -> Result<(), ConfigError> {
        if self.token.is_some() && self.token_file.is_some() {
            return Err(check.invalid(
                "admin.token_file",
                "both `token` and `token_file` are set",
                "keep one of them",
            ));
        }
        if let Some(file) = &self.token_file {
            check.file(
                "admin.token_file",
                file,
                "point it at a file holding the token, relative to this config",
            )?;
        }
        let token = match (&self.token, &self.token_file) {
            (Some(token), _) => token.expose().to_owned(),
            (None, Some(file)) => std::fs::read_to_string(check.resolve(file)).map_err(|e| {
                check.invalid("admin.token_file", e.to_string(), "make it readable")
            })?,
            (None, None) => String::new(),
        };
        if token.trim().len() < 16 {
            return Err(check.invalid(
                "admin.token",
                "the admin listener needs a bearer token of at least 16 characters",
                "set `token = \"...\"` under [admin], e.g. the output of `openssl rand -hex 24`",
            ));
        }
        Ok(())
    }

    /// The token, from `token` or `token_file` (read again, so a reload sees a new one).
    pub fn token(&self, check_base: &std::path::Path) -> Option<super::Secret> {
        match (&self.token, &self.token_file) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(file)) => std::fs::read_to_string(super::resolve(check_base, file))
                .ok()
                .map(|t| super::Secret::new(t.trim().to_owned())),
            (None, None) => None,
        }
    }
}

/// Client geolocation: a MaxMind-format database guests look client IPs up in.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoConfig {
    /// The `.mmdb` file (GeoLite2/GeoIP2 City or Country, or compatible), relative to this
    /// config; guests get no locations when absent.
    pub database: Option<PathBuf>,
}

impl GeoConfig {
    pub(crate) fn validate(&self, check: &Check) -> Result<(), ConfigError> {
        match &self.database {
            Some(database) => check.file(
                "geo.database",
                database,
                "point it at a MaxMind-format .mmdb file (e.g. GeoLite2-City.mmdb), relative \
                 to this config, or remove [geo]",
            ),
            None => Ok(()),
        }
    }
}

/// Logging: the node's own log and the JSON access log.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// The node log filter (`tracing` syntax, e.g. `info` or `info,outpost::guest=debug`);
    /// the `OUTPOST_LOG` environment variable wins over it.
    pub level: String,
    /// How the node's own log is written: `text` for people, `json` for log shippers.
    pub format: LogFormat,
    /// Where the access log goes: `off`, `stdout`, or a file path (appended to; reopened
    /// on SIGUSR1 for logrotate).
    pub access: String,
}

/// The node log's line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event.
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
            access: "off".into(),
        }
    }
}

impl LogConfig {
    pub(crate) fn validate(&self, check: &Check) -> Result<(), ConfigError> {
        if tracing_subscriber::EnvFilter::try_new(&self.level).is_err() {
            return Err(check.invalid(
                "log.level",
                format!("`{}` is not a log filter", self.level),
                "use a level such as `info` or `warn`, optionally with targets: \
                 `info,outpost::guest=debug`",
            ));
        }
        Ok(())
    }
}
