//! Assembles a running node from a validated [`Config`]: the runtime, the cache, every
//! service's guest and backends (a [`Site`]), the TLS resolver, and pingora's listeners.
//!
//! All the expensive and fallible work (compiling guests, reading certificates) happens
//! before anything is swapped in or any listener opens, so `outpost check`, `outpost
//! serve` and a reload fail the same way on the same config, and a reload that fails
//! leaves the running site untouched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::server::Server;
use pingora_core::server::configuration::ServerConf;
use pingora_core::services::listening::Service as ListeningService;

use crate::access_log::AccessLog;
use crate::admin::AdminApi;
use crate::backend::{Backend, BackendError};
use crate::cache::policy::Heuristics;
use crate::cache::{CacheSettings, EdgeCache, lookup_labels};
use crate::config::Config;
use crate::counters::Counters;
use crate::geo::{GeoDb, GeoError};
use crate::host::{DynamicBackends, Grants, ServiceStores};
use crate::metrics::{Metrics, MetricsEndpoint};
use crate::runtime::{Compiled, Guest, Runtime, RuntimeError};
use crate::server::{ConnSettings, EdgeHandler, Handler, Listener};
use crate::service::{ReportObserver, RequestIds, Service, Shared, Site};
use crate::tls::{Certificates, RecordSni, SniResolver, TlsError};

/// Anything that stops a node from starting (or a config from being loaded).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A guest or the engine failed.
    #[error("service `{service}`: {source}")]
    Guest {
        /// The service whose guest failed.
        service: String,
        /// What failed.
        source: RuntimeError,
    },
    /// The engine itself failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A backend could not be built.
    #[error("service `{service}`: {source}")]
    Backend {
        /// The service that owns the backend.
        service: String,
        /// What failed.
        source: BackendError,
    },
    /// Certificates could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The geolocation database could not be loaded.
    #[error(transparent)]
    Geo(#[from] GeoError),
    /// The access log could not be opened.
    #[error("log.access: cannot open `{target}`: {source}")]
    AccessLog {
        /// The configured target.
        target: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// How many rate-counter entries (service, counter, client) the node keeps at most; the
/// least used beyond that are evicted. A couple of hundred bytes each.
const COUNTED_ENTRIES: u64 = 200_000;

/// A node ready to serve: everything compiled and loaded, no socket open yet.
pub struct Node {
    config: Config,
    shared: Arc<Shared>,
    site: Arc<ArcSwap<Site>>,
    sni: Option<Arc<SniResolver>>,
    counters: Arc<Counters>,
}

impl Node {
    /// Compiles every guest, builds every backend and loads every certificate.
    pub fn build(config: Config) -> Result<Node, NodeError> {
        Node::build_observed(config, None)
    }

    /// Like [`Node::build`], with an observer that sees every guest report (the test
    /// harness shows guests' log lines on its responses).
    pub fn build_observed(
        config: Config,
        observer: Option<ReportObserver>,
    ) -> Result<Node, NodeError> {
        let max_memory = config
            .services
            .values()
            .map(|s| s.limits.memory_mib)
            .max()
            .unwrap_or(128)
            << 20;
        let runtime = Arc::new(Runtime::new(&config.runtime, max_memory)?);
        let metrics = Metrics::new();
        let cache = (config.cache.memory.as_u64() > 0).then(|| {
            EdgeCache::new(
                cache_settings(&config.cache),
                metrics.cache(&lookup_labels()),
            )
        });
        let access_log = AccessLog::open(&config.log.access).map_err(|e| NodeError::AccessLog {
            target: config.log.access.clone(),
            source: e,
        })?;
        let shared = Arc::new(Shared {
            runtime,
            cache,
            access_log: access_log.map(Arc::new),
            ids: RequestIds::default(),
            metrics,
            observer,
        });
        let counters = Arc::new(Counters::new(COUNTED_ENTRIES));
        let site = build_site(&config, &shared, &counters)?;
        let sni = match &config.tls {
            Some(tls) => Some(Arc::new(SniResolver::new(Certificates::load(
                &config, tls,
            )?))),
            None => None,
        };
        Ok(Node {
            config,
            shared,
            site: Arc::new(ArcSwap::from_pointee(site)),
            sni,
            counters,
        })
    }

    /// The site being served now (requests keep the one they started with).
    pub fn site(&self) -> Arc<Site> {
        self.site.load_full()
    }

    /// What every site shares with the node.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Whether guests run from the pooling allocator (false after a fallback).
    pub fn is_pooling(&self) -> bool {
        self.shared.runtime.is_pooling()
    }

    /// Reloads a service's guest whenever its `.wasm` file changes (checked a few times a
    /// second, on a thread of its own). A file that fails to compile or link is reported
    /// and the previous version keeps serving; requests in flight finish on the version
    /// they started with.
    pub fn watch_guests(&self) {
        let site = self.site.clone();
        let runtime = self.shared.runtime.clone();
        let paths: BTreeMap<String, PathBuf> = self
            .config
            .services
            .iter()
            .map(|(name, s)| (name.clone(), self.config.resolve(&s.guest)))
            .collect();
        let stamp = |path: &Path| {
            std::fs::metadata(path)
                .ok()
                .map(|m| (m.modified().ok(), m.len()))
        };
        let mut seen: BTreeMap<String, _> = paths
            .iter()
            .map(|(name, path)| (name.clone(), stamp(path)))
            .collect();
        std::thread::Builder::new()
            .name("outpost-watch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_millis(300));
                    for (name, path) in &paths {
                        let now = stamp(path);
                        let last = seen.entry(name.clone()).or_default();
                        if now == *last || now.is_none() {
                            continue;
                        }
                        // Let the writer finish: wait until the file stops changing.
                        std::thread::sleep(Duration::from_millis(200));
                        if stamp(path) != now {
                            continue;
                        }
                        *last = now;
                        let current = site.load();
                        let Some(service) = current.service(name) else {
                            continue;
                        };
                        let loaded = std::fs::read(path)
                            .map_err(|source| RuntimeError::Read {
                                path: path.display().to_string(),
                                source,
                            })
                            .and_then(|bytes| {
                                Compiled::from_wasm(&runtime, &path.display().to_string(), &bytes)
                            });
                        match loaded {
                            Ok(compiled) => {
                                let reuse = service.reuse.as_ref().map(|r| (r, &service.limits));
                                service.guest.store(Arc::new(Guest::new(&runtime, compiled, reuse)));
                                tracing::info!(service = %name, "reloaded the guest from {}", path.display());
                            }
                            Err(error) => tracing::error!(
                                service = %name,
                                "{} changed but cannot be served, keeping the previous version: {error}",
                                path.display()
                            ),
                        }
                    }
                }
            })
            .expect("starting the guest watcher thread");
    }

    /// Opens the listeners and serves until SIGINT/SIGTERM. Never returns.
    pub fn run_forever(self) -> ! {
        let threads = match self.config.server.threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let conf = ServerConf {
            threads,
            grace_period_seconds: Some(self.config.server.drain_grace_secs),
            graceful_shutdown_timeout_seconds: Some(self.config.server.drain_timeout_secs),
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(None, conf);
        server.bootstrap();
        let site = self.site.clone();
        let settings: Arc<dyn Fn() -> Arc<ConnSettings> + Send + Sync> =
            Arc::new(move || site.load().conn.clone());
        let edge = EdgeHandler::new(self.site.clone());
        for addr in &self.config.server.listen {
            let listener = self.listener(edge.clone(), settings.clone(), addr);
            let mut service = ListeningService::new(format!("outpost {addr}"), listener);
            service.add_tcp(&addr.to_string());
            server.add_service(service);
        }
        if let (Some(tls), Some(sni)) = (&self.config.tls, &self.sni) {
            for addr in &tls.listen {
                let listener = self.listener(edge.clone(), settings.clone(), addr);
                let mut service = ListeningService::new(format!("outpost tls {addr}"), listener);
                let mut tls_settings = TlsSettings::with_callbacks(Box::new(RecordSni))
                    .expect("TLS settings without files");
                tls_settings.set_cert_resolver(sni.clone());
                tls_settings.enable_h2();
                service.add_tls_with_settings(&addr.to_string(), None, tls_settings);
                server.add_service(service);
            }
        }
        let plain: Arc<dyn Fn() -> Arc<ConnSettings> + Send + Sync> = {
            let defaults = Arc::new(ConnSettings::new(&crate::config::ServerConfig::default()));
            Arc::new(move || defaults.clone())
        };
        if let Some(addr) = self.config.metrics.listen {
            let before_scrape =
                self.shared.cache.clone().map(|cache| {
                    Arc::new(move || cache.update_gauges()) as crate::metrics::ScrapeHook
                });
            let endpoint = MetricsEndpoint::new(self.shared.metrics.clone(), before_scrape);
            let listener = self.listener(endpoint, plain.clone(), &addr);
            let mut service = ListeningService::new("outpost metrics".to_owned(), listener);
            service.add_tcp(&addr.to_string());
            server.add_service(service);
        }
        if let Some(addr) = self.config.admin.listen {
            let api = AdminApi::new(Arc::new(self.admin_target()));
            let listener = self.listener(api, plain, &addr);
            let mut service = ListeningService::new("outpost admin".to_owned(), listener);
            service.add_tcp(&addr.to_string());
            server.add_service(service);
        }
        server.run_forever()
    }

    fn listener<H: Handler>(
        &self,
        handler: H,
        settings: Arc<dyn Fn() -> Arc<ConnSettings> + Send + Sync>,
        addr: &std::net::SocketAddr,
    ) -> Listener<H> {
        Listener::new(
            handler,
            settings,
            self.shared.metrics.listener(&addr.to_string()),
        )
    }

    fn admin_target(&self) -> NodeAdmin {
        NodeAdmin {
            site: self.site.clone(),
            shared: self.shared.clone(),
            token: self.config.admin.token(&self.config.base_dir),
        }
    }

    /// The URLs the listeners answer on, for the startup banner.
    pub fn urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = self
            .config
            .server
            .listen
            .iter()
            .map(|a| format!("http://{a}/"))
            .collect();
        if let Some(tls) = &self.config.tls {
            urls.extend(tls.listen.iter().map(|a| format!("https://{a}/")));
        }
        urls
    }

    /// The rate counters (kept across reloads).
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }
}

/// The admin API's view of the node.
struct NodeAdmin {
    site: Arc<ArcSwap<Site>>,
    shared: Arc<Shared>,
    token: Option<crate::config::Secret>,
}

impl crate::admin::AdminTarget for NodeAdmin {
    fn cache(&self) -> Option<Arc<EdgeCache>> {
        self.shared.cache.clone()
    }

    fn has_service(&self, name: &str) -> bool {
        self.site.load().service(name).is_some()
    }

    fn ready(&self) -> bool {
        true
    }

    fn reload(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send>> {
        Box::pin(async { Err("reload is not available".to_owned()) })
    }

    fn token(&self) -> Option<crate::config::Secret> {
        self.token.clone()
    }
}

/// The cache's runtime settings from `[cache]`.
fn cache_settings(config: &crate::config::CacheConfig) -> CacheSettings {
    CacheSettings {
        memory_bytes: config.memory.as_u64(),
        max_object_bytes: config.max_object.as_u64(),
        collapse_wait: Duration::from_millis(config.collapse_wait_ms),
        hit_for_miss: Duration::from_secs(config.hit_for_miss_secs),
        heuristics: Heuristics {
            keep_stale: Duration::from_secs(config.keep_stale_secs),
            ..Heuristics::default()
        },
        max_variants: 32,
    }
}

/// Builds every service of `config` into a site: compiles guests, builds backends.
fn build_site(
    config: &Config,
    shared: &Arc<Shared>,
    counters: &Arc<Counters>,
) -> Result<Site, NodeError> {
    let runtime = &shared.runtime;
    let metrics = &shared.metrics;
    let geo = match &config.geo.database {
        Some(path) => Some(Arc::new(GeoDb::open(&config.resolve(path))?)),
        None => None,
    };
    let mut services = Vec::new();
    for (name, service_config) in &config.services {
        let path = config.resolve(&service_config.guest);
        let guest_error = |source| NodeError::Guest {
            service: name.clone(),
            source,
        };
        let bytes = std::fs::read(&path)
            .map_err(|source| RuntimeError::Read {
                path: path.display().to_string(),
                source,
            })
            .map_err(guest_error)?;
        let compiled = Compiled::from_wasm(runtime, &path.display().to_string(), &bytes)
            .map_err(guest_error)?;
        let reuse = service_config
            .reuse
            .as_ref()
            .map(|r| (r, &service_config.limits));
        let guest = Guest::new(runtime, compiled, reuse);
        let mut backends = BTreeMap::new();
        for (backend_name, backend_config) in &service_config.backends {
            let backend = Backend::new(
                backend_name,
                backend_config,
                &config.base_dir,
                metrics.backend(name, backend_name),
            )
            .map_err(|source| NodeError::Backend {
                service: name.clone(),
                source,
            })?;
            backends.insert(backend_name.to_ascii_lowercase(), Arc::new(backend));
        }
        let service_name: Arc<str> = name.as_str().into();
        let grants = Arc::new(Grants {
            service: service_name.clone(),
            backends,
            cache: shared.cache.clone(),
            stores: ServiceStores {
                config: service_config.config.clone(),
                secrets: service_config.secrets.clone(),
            },
            max_backend_requests: service_config.limits.max_backend_requests,
            dynamic: DynamicBackends::new(
                service_name.clone(),
                &service_config.dynamic_backends,
                metrics.backend(name, "dynamic"),
            ),
            counters: counters.clone(),
            geo: geo.clone(),
        });
        let service = Arc::new(Service::new(
            service_name,
            guest,
            service_config,
            grants,
            metrics.service(name),
        ));
        services.push((service, service_config.domains.clone()));
    }
    Ok(Site::new(services, &config.server, shared.clone()))
}
