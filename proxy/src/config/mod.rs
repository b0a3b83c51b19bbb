//! The node's configuration: the TOML file format, its defaults, and validation.
//!
//! Everything an operator can get wrong is caught here, at load time, with an error that
//! names the file, the key and what to do about it. Nothing downstream re-validates: a
//! [`Config`] that exists is one the node can serve.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A configuration problem, phrased for the operator who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{file}: cannot read the config file: {source}")]
    Read {
        /// The file that was asked for.
        file: PathBuf,
        /// Why the read failed.
        source: std::io::Error,
    },
    /// The TOML did not parse or did not match the schema (unknown key, wrong type).
    #[error("{file}: {message}")]
    Parse {
        /// The file being parsed.
        file: PathBuf,
        /// toml's message, which names the line, column and key.
        message: String,
    },
    /// A value parsed but makes no sense (a missing guest file, a bad URL, a clash).
    #[error("{file}: `{key}`: {problem}\n  fix: {fix}")]
    Invalid {
        /// The file that holds the value ("command line" in quick mode).
        file: String,
        /// The dotted key of the bad value.
        key: String,
        /// What is wrong.
        problem: String,
        /// What to do about it.
        fix: String,
    },
}

/// The whole node: listeners, runtime sizing and services.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners and connection-level limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// HTTPS listeners and certificates.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Sizing of the WebAssembly runtime shared by all services.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// Services by name. Each owns a set of domains, a guest and its backends.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
    /// The Prometheus metrics listener.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The node's own log and the access log.
    #[serde(default)]
    pub log: LogConfig,
    /// The edge cache shared by all services.
    #[serde(default)]
    pub cache: CacheConfig,
    /// The admin API (purge, health).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Client geolocation for guests.
    #[serde(default)]
    pub geo: GeoConfig,
    /// Where relative paths in this config are resolved from (the file's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Where this config came from, for error messages.
    #[serde(skip)]
    pub source: String,
}

/// Plain-HTTP listeners (HTTP/1.1 and h2c) and connection limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Addresses to accept plain HTTP on.
    pub listen: Vec<SocketAddr>,
    /// Worker threads for the listeners (0 = one per core).
    pub threads: usize,
    /// Largest request head (request line plus headers) accepted, in bytes; larger gets 431.
    pub max_header_bytes: usize,
    /// How long a connection may sit idle between requests before it is closed.
    pub keepalive_timeout_secs: u64,
    /// How long one read from the client may take before the request fails.
    pub read_timeout_secs: u64,
    /// How long one write to the client may take before the connection is dropped.
    pub write_timeout_secs: u64,
    /// This node's point-of-presence name, which guests read from their request info.
    pub pop: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 7676))],
            threads: 0,
            max_header_bytes: 64 * 1024,
            keepalive_timeout_secs: 60,
            read_timeout_secs: 30,
            write_timeout_secs: 30,
            pop: "outpost".into(),
        }
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
#[derive(Debug, Clone, Deserialize)]
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

/// The admin API: purge and health, on its own listener, behind a bearer token.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin listener; no listener when absent.
    pub listen: Option<SocketAddr>,
    /// The bearer token every admin request must carry (`Authorization: Bearer …`).
    pub token: Option<String>,
}

/// Client geolocation: a MaxMind-format database guests look client IPs up in.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoConfig {
    /// The `.mmdb` file (GeoLite2/GeoIP2 City or Country, or compatible), relative to this
    /// config; guests get no locations when absent.
    pub database: Option<PathBuf>,
}

/// Logging: the node's own log level and the JSON access log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// The node log filter (`tracing` syntax, e.g. `info` or `info,outpost::guest=debug`);
    /// the `OUTPOST_LOG` environment variable wins over it.
    pub level: String,
    /// Where the access log goes: `off`, `stdout`, or a file path (appended to).
    pub access: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            access: "off".into(),
        }
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

/// One certificate chain and key, and the names it serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// SNI names this certificate answers for: `example.com` or `*.example.com`.
    pub domains: Vec<String>,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Sizing of the shared wasmtime engine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Guests that may run at once across all services; also the pooling allocator's size.
    pub max_instances: u32,
    /// WebAssembly stack per instance, in KiB.
    pub max_stack_kib: usize,
    /// Use the pooling allocator (falls back to on-demand with a warning if it cannot reserve).
    pub pooling: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_instances: 1000,
            max_stack_kib: 512,
            pooling: true,
        }
    }
}

/// One service: the domains it answers, the guest that answers them and what it may reach.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Host names routed here: exact (`shop.example`), wildcard (`*.shop.example`) or `*`.
    pub domains: Vec<String>,
    /// Path to the guest component (`.wasm`), relative to the config file.
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
    pub dynamic_backends: Vec<String>,
    /// Read-only values the guest reads with `outpost::config::get`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Secrets the guest reads with `outpost::config::secret`; never logged or printed.
    #[serde(default)]
    pub secrets: BTreeMap<String, Secret>,
}

/// A secret value: `Debug` and `Display` print `***`, so it never reaches a log.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
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

fn default_true() -> bool {
    true
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
    /// Largest request body accepted from the client, in bytes; larger gets 413.
    pub max_request_body_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            deadline_ms: 10_000,
            memory_mib: 128,
            max_backend_requests: 32,
            max_request_body_bytes: 1 << 30,
        }
    }
}

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

    /// A backend at `url` with every other setting at its default (quick mode).
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
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            file: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.base_dir = path
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        config.source = path.display().to_string();
        config.validate()?;
        Ok(config)
    }

    /// Parses and validates config text that did not come from a file (tools and the
    /// test harness); relative paths resolve from `base_dir`, errors name `source`.
    pub fn from_toml(text: &str, source: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: PathBuf::from(source),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.base_dir = base_dir.to_owned();
        config.source = source.to_owned();
        config.validate()?;
        Ok(config)
    }

    /// Resolves a path from the config against the config file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        }
    }

    fn invalid(
        &self,
        key: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: self.source.clone(),
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// Checks everything serde cannot: files exist, names are sane, nothing clashes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let tls_listeners = self.tls.as_ref().map_or(0, |t| t.listen.len());
        if self.server.listen.is_empty() && tls_listeners == 0 {
            return Err(self.invalid(
                "server.listen",
                "no listener is configured",
                "add `listen = [\"127.0.0.1:7676\"]` under [server] or a [tls] section",
            ));
        }
        if self.services.is_empty() {
            return Err(self.invalid(
                "services",
                "no service is configured, so every request would get 404",
                "add a [services.NAME] table with `domains` and `guest`",
            ));
        }
        if self.runtime.max_instances == 0 {
            return Err(self.invalid(
                "runtime.max_instances",
                "must be at least 1",
                "remove the key to use 1000",
            ));
        }
        if self.runtime.max_stack_kib < 64 {
            return Err(self.invalid(
                "runtime.max_stack_kib",
                "below 64 KiB no real guest runs",
                "use 512 (the default) or more",
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(self.invalid(
                "log.level",
                format!("`{}` is not a log filter", self.log.level),
                "use a level such as `info` or `warn`, optionally with targets: `info,outpost::guest=debug`",
            ));
        }
        if let (Some(metrics), true) = (
            self.metrics.listen,
            self.server
                .listen
                .iter()
                .any(|a| Some(*a) == self.metrics.listen),
        ) {
            return Err(self.invalid(
                "metrics.listen",
                format!("{metrics} is also a server listener"),
                "give the metrics listener its own port",
            ));
        }
        if let Some(admin) = self.admin.listen {
            if self
                .admin
                .token
                .as_deref()
                .is_none_or(|t| t.trim().len() < 16)
            {
                return Err(self.invalid(
                    "admin.token",
                    "the admin listener needs a bearer token of at least 16 characters",
                    "set `token = \"...\"` under [admin], e.g. the output of `openssl rand -hex 24`",
                ));
            }
            if self.server.listen.contains(&admin) || self.metrics.listen == Some(admin) {
                return Err(self.invalid(
                    "admin.listen",
                    format!("{admin} is already used by another listener"),
                    "give the admin listener its own port",
                ));
            }
        }
        if self.cache.memory.as_u64() > 0 && self.cache.max_object > self.cache.memory {
            return Err(self.invalid(
                "cache.max_object",
                format!(
                    "{} is larger than cache.memory ({})",
                    self.cache.max_object, self.cache.memory
                ),
                "make max_object at most a fraction of memory, e.g. 16MiB",
            ));
        }
        if self.cache.max_object.as_u64() > u32::MAX as u64 / 2 {
            return Err(self.invalid(
                "cache.max_object",
                format!(
                    "{} is more than one object may weigh",
                    self.cache.max_object
                ),
                "use at most 2GiB",
            ));
        }
        if self.server.max_header_bytes < 1024 {
            return Err(self.invalid(
                "server.max_header_bytes",
                "below 1 KiB ordinary browsers fail",
                "use 65536 (the default)",
            ));
        }
        if let Some(tls) = &self.tls {
            self.validate_tls(tls)?;
        }
        self.validate_geo()?;
        let mut owners: BTreeMap<String, &str> = BTreeMap::new();
        for (name, service) in &self.services {
            let key = format!("services.{name}");
            if service.domains.is_empty() {
                return Err(self.invalid(
                    format!("{key}.domains"),
                    "the service has no domains, so no request can reach it",
                    "list host names, e.g. `domains = [\"example.com\"]`, or `[\"*\"]` for every host",
                ));
            }
            for domain in &service.domains {
                let normalized = normalize_domain(domain).map_err(|problem| {
                    self.invalid(
                        format!("{key}.domains"),
                        format!("`{domain}` {problem}"),
                        "use a host name such as `example.com`, `*.example.com`, or `*`",
                    )
                })?;
                if let Some(other) = owners.insert(normalized.clone(), name) {
                    return Err(self.invalid(
                        format!("{key}.domains"),
                        format!("`{normalized}` is also claimed by service `{other}`"),
                        "give each domain to exactly one service",
                    ));
                }
            }
            let guest = self.resolve(&service.guest);
            if !guest.is_file() {
                return Err(self.invalid(
                    format!("{key}.guest"),
                    format!("no file at {}", guest.display()),
                    "build the guest (`cargo build --release --target wasm32-wasip2`) and point `guest` at the .wasm file, relative to this config",
                ));
            }
            let limits = &service.limits;
            if limits.deadline_ms == 0 {
                return Err(self.invalid(
                    format!("{key}.limits.deadline_ms"),
                    "must be above 0",
                    "use e.g. 10000 (10 s)",
                ));
            }
            if limits.memory_mib == 0 || limits.memory_mib > 4096 {
                return Err(self.invalid(
                    format!("{key}.limits.memory_mib"),
                    format!("{} MiB is outside 1..=4096", limits.memory_mib),
                    "use e.g. 128",
                ));
            }
            for pattern in &service.dynamic_backends {
                let bare = pattern.strip_prefix("*.").unwrap_or(pattern);
                let ip = bare.parse::<std::net::IpAddr>().is_ok();
                if !(pattern == "*" || ip || normalize_domain(pattern).is_ok_and(|d| d == *pattern))
                {
                    return Err(self.invalid(
                        format!("{key}.dynamic_backends"),
                        format!(
                            "`{pattern}` is not a lower-case host name, wildcard or IP address"
                        ),
                        "list hosts such as `api.example.com`, `*.example.com` or `10.0.0.7`",
                    ));
                }
            }
            for (backend_name, backend) in &service.backends {
                self.validate_backend(
                    &format!("{key}.backends.{backend_name}"),
                    backend_name,
                    backend,
                )?;
            }
        }
        Ok(())
    }

    fn validate_geo(&self) -> Result<(), ConfigError> {
        if let Some(database) = &self.geo.database {
            let resolved = self.resolve(database);
            if !resolved.is_file() {
                return Err(self.invalid(
                    "geo.database",
                    format!("no file at {}", resolved.display()),
                    "point it at a MaxMind-format .mmdb file (e.g. GeoLite2-City.mmdb), relative to this config, or remove [geo]",
                ));
            }
        }
        Ok(())
    }

    fn validate_tls(&self, tls: &TlsConfig) -> Result<(), ConfigError> {
        if tls.certificates.is_empty() {
            return Err(self.invalid(
                "tls.certificates",
                "TLS listeners need at least one certificate",
                "add [[tls.certificates]] with `domains`, `cert` and `key`",
            ));
        }
        for (i, cert) in tls.certificates.iter().enumerate() {
            let key = format!("tls.certificates[{i}]");
            for (field, path) in [("cert", &cert.cert), ("key", &cert.key)] {
                let resolved = self.resolve(path);
                if !resolved.is_file() {
                    return Err(self.invalid(
                        format!("{key}.{field}"),
                        format!("no file at {}", resolved.display()),
                        "point it at a PEM file, relative to this config",
                    ));
                }
            }
            if cert.domains.is_empty() {
                return Err(self.invalid(
                    format!("{key}.domains"),
                    "empty",
                    "list the SNI names this certificate serves",
                ));
            }
        }
        Ok(())
    }

    fn validate_backend(
        &self,
        key: &str,
        name: &str,
        backend: &BackendConfig,
    ) -> Result<(), ConfigError> {
        if http::uri::Authority::try_from(name).is_err() || name.contains(':') {
            return Err(self.invalid(
                key,
                format!("`{name}` cannot be used as the host of a URL"),
                "name backends with letters, digits, `-` and `.` (guests fetch `http://NAME/...`)",
            ));
        }
        let uri: http::Uri = backend.url.parse().map_err(|e| {
            self.invalid(
                format!("{key}.url"),
                format!("`{}` is not a URL: {e}", backend.url),
                "write it as `http://host:port` or `https://host`",
            )
        })?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => {
                return Err(self.invalid(
                    format!("{key}.url"),
                    format!("`{}` needs an http:// or https:// scheme", backend.url),
                    "write it as `http://host:port` or `https://host`",
                ));
            }
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(self.invalid(
                format!("{key}.url"),
                format!("`{}` has no host", backend.url),
                "write it as `http://host:port`",
            ));
        }
        if uri.query().is_some() {
            return Err(self.invalid(
                format!("{key}.url"),
                "a backend URL cannot carry a query",
                "move the query into the guest's request",
            ));
        }
        if let Some(ca) = &backend.ca
            && !self.resolve(ca).is_file()
        {
            return Err(self.invalid(
                format!("{key}.ca"),
                format!("no file at {}", self.resolve(ca).display()),
                "point it at a PEM file of CA certificates",
            ));
        }
        for (field, value) in [
            ("connect_timeout_ms", backend.connect_timeout_ms),
            ("first_byte_timeout_ms", backend.first_byte_timeout_ms),
            ("between_bytes_timeout_ms", backend.between_bytes_timeout_ms),
        ] {
            if value == 0 {
                return Err(self.invalid(
                    format!("{key}.{field}"),
                    "must be above 0",
                    "remove the key to use the default",
                ));
            }
        }
        Ok(())
    }
}

/// Lower-cases a configured domain and checks its shape; `*` and `*.suffix` are allowed.
pub fn normalize_domain(domain: &str) -> Result<String, &'static str> {
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if domain == "*" {
        return Ok(domain);
    }
    let bare = domain.strip_prefix("*.").unwrap_or(&domain);
    if bare.is_empty() {
        return Err("is empty");
    }
    if bare.contains('*') {
        return Err("may only have a wildcard as its first label");
    }
    if bare.contains(':') || bare.contains('/') {
        return Err("must be a bare host name, without port or path");
    }
    if !bare
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        return Err("has characters that cannot appear in a host name");
    }
    Ok(domain)
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} service(s))", self.source, self.services.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_normalised_and_checked() {
        assert_eq!(
            normalize_domain("Shop.Example.COM.").unwrap(),
            "shop.example.com"
        );
        assert_eq!(normalize_domain("*.example.com").unwrap(), "*.example.com");
        assert_eq!(normalize_domain("*").unwrap(), "*");
        assert!(normalize_domain("a.*.com").is_err());
        assert!(normalize_domain("example.com:80").is_err());
        assert!(normalize_domain("").is_err());
        assert!(normalize_domain("exa mple.com").is_err());
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let dir = std::env::temp_dir().join(format!("outpost-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[server]\nlisten = []\nlisten_everywhere = true\n").unwrap();
        let error = Config::load(&path).unwrap_err().to_string();
        assert!(error.contains("bad.toml"), "{error}");
        assert!(error.contains("listen_everywhere"), "{error}");
        assert!(error.contains("line 3"), "{error}");
    }
}
