//! The node's configuration: the TOML file format, its defaults, and validation.
//!
//! Everything an operator can get wrong is caught here, at load time, with an error that
//! names the file, the key and what to do about it. Each section owns its defaults and its
//! checks (one file per section); nothing downstream re-validates: a [`Config`] that exists
//! is one the node can serve.

mod backend;
mod server;
mod service;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use backend::BackendConfig;
pub use server::{
    AdminConfig, CacheConfig, CertificateConfig, GeoConfig, LogConfig, LogFormat, MetricsConfig,
    RuntimeConfig, ServerConfig, TlsConfig,
};
pub use service::{LimitsConfig, ResponseCacheConfig, ReuseConfig, Secret, ServiceConfig};

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
    /// The admin API (purge, health, reload).
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
    /// The file it was loaded from (what a reload reads again), if any.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

impl Default for Config {
    /// One listener on 127.0.0.1:7676 and no services yet; add services before validating.
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            tls: None,
            runtime: RuntimeConfig::default(),
            services: BTreeMap::new(),
            metrics: MetricsConfig::default(),
            log: LogConfig::default(),
            cache: CacheConfig::default(),
            admin: AdminConfig::default(),
            geo: GeoConfig::default(),
            base_dir: PathBuf::from("."),
            source: "built-in".into(),
            file: None,
        }
    }
}

/// What every section's validation needs: where the config came from, to name it in
/// errors, and where its relative paths resolve from.
pub(crate) struct Check<'a> {
    source: &'a str,
    base_dir: &'a Path,
}

impl Check<'_> {
    /// An error for the value at `key`.
    pub(crate) fn invalid(
        &self,
        key: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: self.source.to_owned(),
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// Resolves a path from the config against the config file's directory.
    pub(crate) fn resolve(&self, path: &Path) -> PathBuf {
        resolve(self.base_dir, path)
    }

    /// Fails unless `path` (resolved) is a file.
    pub(crate) fn file(&self, key: &str, path: &Path, fix: &str) -> Result<(), ConfigError> {
        let resolved = self.resolve(path);
        if resolved.is_file() {
            Ok(())
        } else {
            Err(self.invalid(key, format!("no file at {}", resolved.display()), fix))
        }
    }

    /// Fails unless `value` is above 0.
    pub(crate) fn positive(&self, key: &str, value: u64, fix: &str) -> Result<(), ConfigError> {
        if value == 0 {
            Err(self.invalid(key, "must be above 0", fix))
        } else {
            Ok(())
        }
    }
}

fn resolve(base_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base_dir.join(path)
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        let base_dir = path
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut config = Config::from_toml(&text, &path.display().to_string(), &base_dir)?;
        config.file = Some(path.to_owned());
        Ok(config)
    }

    /// Parses and validates config text; relative paths resolve from `base_dir`, errors
    /// name `source` (the file, or where the text came from).
    pub fn from_toml(text: &str, source: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: PathBuf::from(source),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.base_dir = base_dir.to_owned();
        config.source = source.to_owned();
        if let Some(dir) = &mut config.runtime.compile_cache
            && dir.as_os_str() != "off"
        {
            *dir = resolve(base_dir, dir);
        }
        config.validate()?;
        Ok(config)
    }

    /// The most memory any service's guest may use, in bytes: what the engine's pool
    /// reserves per instance.
    pub fn max_guest_memory(&self) -> u64 {
        let mib = self.services.values().map(|s| s.limits.memory_mib).max();
        mib.unwrap_or(LimitsConfig::default().memory_mib) << 20
    }

    /// The Unix socket listening sockets are handed over on: `server.upgrade_sock`, or one
    /// in the temp directory named after the first listener (two nodes on one host never
    /// share a listener, so they never share this either).
    pub fn upgrade_sock(&self) -> PathBuf {
        if let Some(path) = &self.server.upgrade_sock {
            return self.resolve(path);
        }
        let first = self
            .server
            .listen
            .first()
            .or_else(|| self.tls.as_ref().and_then(|t| t.listen.first()));
        let name = first.map_or_else(
            || "outpost-upgrade.sock".to_owned(),
            |addr| {
                let addr: String = addr
                    .to_string()
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '.' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                format!("outpost-upgrade-{addr}.sock")
            },
        );
        std::env::temp_dir().join(name)
    }

    /// Resolves a path from the config against the config file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        resolve(&self.base_dir, path)
    }

    /// Checks everything serde cannot: files exist, names are sane, nothing clashes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = Check {
            source: &self.source,
            base_dir: &self.base_dir,
        };
        let tls_listeners = self.tls.as_ref().map_or(0, |t| t.listen.len());
        if self.server.listen.is_empty() && tls_listeners == 0 {
            return Err(check.invalid(
                "server.listen",
                "no listener is configured",
                "add `listen = [\"127.0.0.1:7676\"]` under [server] or a [tls] section",
            ));
        }
        if self.services.is_empty() {
            return Err(check.invalid(
                "services",
                "no service is configured, so every request would get 404",
                "add a [services.NAME] table with `domains` and `guest`",
            ));
        }
        self.server.validate(&check)?;
        self.runtime.validate(&check)?;
        self.log.validate(&check)?;
        self.cache.validate(&check)?;
        self.geo.validate(&check)?;
        if let Some(tls) = &self.tls {
            tls.validate(&check)?;
        }
        self.validate_listeners(&check)?;
        let mut owners = crate::host_pattern::HostMap::default();
        for (name, service) in &self.services {
            let key = format!("services.{name}");
            service.validate(&key, &check)?;
            if service.limits.max_concurrent > self.runtime.max_instances {
                return Err(check.invalid(
                    format!("{key}.limits.max_concurrent"),
                    format!(
                        "{} is more than runtime.max_instances ({}), the node's whole pool",
                        service.limits.max_concurrent, self.runtime.max_instances
                    ),
                    "lower it, or raise runtime.max_instances",
                ));
            }
            for domain in &service.domains {
                if let Some(other) = owners.insert(domain, name.as_str()) {
                    return Err(check.invalid(
                        format!("{key}.domains"),
                        format!("`{domain}` is also claimed by service `{other}`"),
                        "give each domain to exactly one service",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every listener needs an address of its own.
    fn validate_listeners(&self, check: &Check) -> Result<(), ConfigError> {
        let mut taken: Vec<(std::net::SocketAddr, &str)> = Vec::new();
        let tls = self.tls.iter().flat_map(|t| t.listen.iter());
        let listeners = self
            .server
            .listen
            .iter()
            .map(|a| (*a, "server.listen"))
            .chain(tls.map(|a| (*a, "tls.listen")))
            .chain(self.metrics.listen.map(|a| (a, "metrics.listen")))
            .chain(self.admin.listen.map(|a| (a, "admin.listen")));
        for (addr, key) in listeners {
            if let Some((_, other)) = taken.iter().find(|(a, _)| *a == addr) {
                return Err(check.invalid(
                    key,
                    format!("{addr} is also used by `{other}`"),
                    "give each listener its own address",
                ));
            }
            taken.push((addr, key));
        }
        if self.admin.listen.is_some() {
            self.admin.validate_token(check)?;
        }
        Ok(())
    }

    /// Problems that do not stop the node but that an operator should hear about (`check`
    /// prints them, `serve` logs them).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (name, service) in &self.services {
            if service.reuse.is_some() && !service.secrets.is_empty() {
                warnings.push(format!(
                    "services.{name}: instance reuse is on and the service reads secrets: a \
                     reused instance keeps whatever its earlier requests left in memory, \
                     secrets and other users' data included (remove [services.{name}.reuse] \
                     for per-request isolation)"
                ));
            }
        }
        warnings
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} service(s))", self.source, self.services.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "bad.toml",
            "[server]\nlisten = []\nlisten_everywhere = true\n",
        );
        let error = Config::load(&path).unwrap_err().to_string();
        assert!(error.contains("bad.toml"), "{error}");
        assert!(error.contains("listen_everywhere"), "{error}");
        assert!(error.contains("line 3"), "{error}");
    }

    #[test]
    fn a_bad_domain_is_refused_at_load_with_its_line_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "g.wasm", "");
        let text = "[services.a]\ndomains = [\"a.*.test\"]\nguest = \"g.wasm\"\n";
        let error = Config::from_toml(text, "t.toml", dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("t.toml") && error.contains("line 2"),
            "{error}"
        );
        assert!(
            error.contains("wildcard") && error.contains("fix:"),
            "{error}"
        );
    }

    #[test]
    fn a_domain_claimed_twice_names_both_services() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "g.wasm", "");
        let text = "[services.a]\ndomains = [\"x.test\"]\nguest = \"g.wasm\"\n\
                    [services.b]\ndomains = [\"X.test.\"]\nguest = \"g.wasm\"\n";
        let error = Config::from_toml(text, "t.toml", dir.path())
            .unwrap_err()
            .to_string();
        assert!(error.contains("services.b.domains"), "{error}");
        assert!(error.contains("service `a`"), "{error}");
    }

    #[test]
    fn listeners_may_not_share_an_address() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "g.wasm", "");
        let text = "[server]\nlisten = [\"127.0.0.1:9000\"]\n[metrics]\nlisten = \"127.0.0.1:9000\"\n\
                    [services.a]\ndomains = [\"*\"]\nguest = \"g.wasm\"\n";
        let error = Config::from_toml(text, "t.toml", dir.path())
            .unwrap_err()
            .to_string();
        assert!(error.contains("`metrics.listen`"), "{error}");
    }

    #[test]
    fn reuse_with_secrets_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "g.wasm", "");
        let text = "[services.a]\ndomains = [\"*\"]\nguest = \"g.wasm\"\nsecrets = { k = \"v\" }\n\
                    [services.a.reuse]\nmax_requests = 10\n";
        let config = Config::from_toml(text, "t.toml", dir.path()).unwrap();
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("secrets"), "{warnings:?}");
    }
}
