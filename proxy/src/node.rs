//! Assembles a running node from a validated [`Config`]: the runtime, every service's guest
//! and backends, the router, the TLS resolver, and pingora's listeners.
//!
//! All the expensive and fallible work (compiling guests, reading certificates) happens in
//! [`Node::build`], before any listener opens, so `outpost check` and `outpost serve` fail
//! the same way on the same config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pingora_core::listeners::tls::TlsSettings;
use pingora_core::server::Server;
use pingora_core::server::configuration::ServerConf;
use pingora_core::services::listening::Service as ListeningService;

use crate::access_log::AccessLog;
use crate::admin::AdminApi;
use crate::backend::{Backend, BackendError};
use crate::cache::{CacheSettings, EdgeCache};
use crate::config::{Config, normalize_domain};
use crate::counters::Counters;
use crate::geo::{GeoDb, GeoError};
use crate::host::{DynamicBackends, Grants, ServiceStores};
use crate::metrics::{Metrics, MetricsEndpoint};
use crate::runtime::{Guest, Runtime, RuntimeError};
use crate::server::{CountedConnections, EdgeApp, Router, Service};
use crate::tls::{RecordSni, SniResolver, TlsError};

/// Anything that stops a node from starting.
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
    app: EdgeApp,
    sni: Option<Arc<SniResolver>>,
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
    cache: Option<Arc<EdgeCache>>,
    /// Every service with the file its guest came from, for `--watch`.
    guests: Vec<(Arc<Service>, PathBuf)>,
}

impl Node {
    /// Compiles every guest, builds every backend and loads every certificate.
    pub fn build(config: Config) -> Result<Node, NodeError> {
        let max_memory = config
            .services
            .values()
            .map(|s| s.limits.memory_mib)
            .max()
            .unwrap_or(128)
            << 20;
        let runtime = Arc::new(Runtime::new(&config.runtime, max_memory)?);
        let metrics = Metrics::new();
        let cache = (config.cache.memory.as_u64() > 0)
            .then(|| EdgeCache::new(CacheSettings::from(&config.cache), metrics.cache()));
        let counters = Arc::new(Counters::new(COUNTED_ENTRIES));
        let geo = match &config.geo.database {
            Some(path) => Some(Arc::new(GeoDb::open(&config.resolve(path))?)),
            None => None,
        };
        let mut router = Router::default();
        let mut guests = Vec::new();
        for (name, service_config) in &config.services {
            let path = config.resolve(&service_config.guest);
            let guest = Guest::load(&runtime, &path).map_err(|source| NodeError::Guest {
                service: name.clone(),
                source,
            })?;
            let mut backends = BTreeMap::new();
            for (backend_name, backend_config) in &service_config.backends {
                let backend_metrics = metrics.backend(name, backend_name);
                let backend = Backend::new(
                    backend_name,
                    backend_config,
                    &config.base_dir,
                    backend_metrics,
                )
                .map_err(|source| NodeError::Backend {
                    service: name.clone(),
                    source,
                })?;
                backends.insert(backend_name.to_ascii_lowercase(), Arc::new(backend));
            }
            let service = Arc::new(Service {
                name: name.as_str().into(),
                guest: arc_swap::ArcSwap::from_pointee(guest),
                limits: service_config.limits,
                grants: Arc::new(Grants {
                    service: name.as_str().into(),
                    backends,
                    cache: cache.clone(),
                    stores: ServiceStores {
                        config: service_config.config.clone(),
                        secrets: service_config.secrets.clone(),
                    },
                    max_backend_requests: service_config.limits.max_backend_requests,
                    dynamic: DynamicBackends::new(
                        name.as_str().into(),
                        service_config.dynamic_backends.clone(),
                        metrics.clone(),
                    ),
                    counters: counters.clone(),
                    geo: geo.clone(),
                }),
                server_timing: service_config.server_timing,
                metrics: metrics.service(name),
            });
            guests.push((service.clone(), path.clone()));
            for domain in &service_config.domains {
                let domain = normalize_domain(domain).expect("validated by Config::validate");
                router.add(&domain, service.clone());
            }
        }
        let sni = match &config.tls {
            Some(tls) => Some(Arc::new(SniResolver::load(&config, tls)?)),
            None => None,
        };
        let access_log = AccessLog::open(&config.log.access).map_err(|e| NodeError::AccessLog {
            target: config.log.access.clone(),
            source: e,
        })?;
        let app = EdgeApp::new(
            router,
            runtime.clone(),
            config.server.clone(),
            metrics.clone(),
            access_log,
        );
        Ok(Node {
            config,
            app,
            sni,
            runtime,
            metrics,
            cache,
            guests,
        })
    }

    /// Reloads a service's guest whenever its `.wasm` file changes (checked a few times a
    /// second, on a thread of its own). A file that fails to compile or link is reported
    /// and the previous version keeps serving; requests in flight finish on the version
    /// they started with.
    pub fn watch_guests(&self) {
        let runtime = self.runtime.clone();
        let guests = self.guests.clone();
        let stamp = |path: &Path| {
            std::fs::metadata(path)
                .ok()
                .map(|m| (m.modified().ok(), m.len()))
        };
        let mut seen: Vec<_> = guests.iter().map(|(_, path)| stamp(path)).collect();
        std::thread::Builder::new()
            .name("outpost-watch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_millis(300));
                    for ((service, path), last) in guests.iter().zip(seen.iter_mut()) {
                        let now = stamp(path);
                        if now == *last || now.is_none() {
                            continue;
                        }
                        // Let the writer finish: wait until the file stops changing.
                        std::thread::sleep(Duration::from_millis(200));
                        if stamp(path) != now {
                            continue;
                        }
                        *last = now;
                        match Guest::load(&runtime, path) {
                            Ok(guest) => {
                                service.guest.store(Arc::new(guest));
                                tracing::info!(service = %service.name, "reloaded the guest from {}", path.display());
                            }
                            Err(error) => tracing::error!(
                                service = %service.name,
                                "{} changed but cannot be served, keeping the previous version: {error}",
                                path.display()
                            ),
                        }
                    }
                }
            })
            .expect("starting the guest watcher thread");
    }

    /// The service named `name` (for tools that run guests without listeners, such as the
    /// `outpost-test` harness).
    pub fn service(&self, name: &str) -> Option<Arc<Service>> {
        self.guests
            .iter()
            .find(|(service, _)| &*service.name == name)
            .map(|(service, _)| service.clone())
    }

    /// The engine every guest runs in.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.clone()
    }

    /// The edge cache, when the node has one.
    pub fn cache(&self) -> Option<Arc<EdgeCache>> {
        self.cache.clone()
    }

    /// Whether guests run from the pooling allocator (false after a fallback).
    pub fn is_pooling(&self) -> bool {
        self.runtime.is_pooling()
    }

    /// Opens the listeners and serves until SIGINT/SIGTERM. Never returns.
    pub fn run_forever(self) -> ! {
        let threads = match self.config.server.threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let conf = ServerConf {
            threads,
            grace_period_seconds: Some(1),
            graceful_shutdown_timeout_seconds: Some(10),
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(None, conf);
        server.bootstrap();
        let mut service =
            ListeningService::new("outpost edge".to_owned(), CountedConnections::new(self.app));
        for addr in &self.config.server.listen {
            service.add_tcp(&addr.to_string());
        }
        if let (Some(tls), Some(sni)) = (&self.config.tls, &self.sni) {
            for addr in &tls.listen {
                let mut settings = TlsSettings::with_callbacks(Box::new(RecordSni))
                    .expect("TLS settings without files");
                settings.set_cert_resolver(sni.clone());
                settings.enable_h2();
                service.add_tls_with_settings(&addr.to_string(), None, settings);
            }
        }
        server.add_service(service);
        if let Some(addr) = self.config.metrics.listen {
            let cache = self.cache.clone();
            let before_scrape = cache
                .map(|cache| Box::new(move || cache.update_gauges()) as crate::metrics::ScrapeHook);
            let mut metrics = ListeningService::new(
                "outpost metrics".to_owned(),
                MetricsEndpoint::new(self.metrics.clone(), before_scrape),
            );
            metrics.add_tcp(&addr.to_string());
            server.add_service(metrics);
        }
        if let (Some(addr), Some(token)) = (self.config.admin.listen, &self.config.admin.token) {
            let api = AdminApi::new(
                token.clone(),
                self.cache.clone(),
                self.config.services.keys().cloned().collect(),
            );
            let mut admin = ListeningService::new("outpost admin".to_owned(), api);
            admin.add_tcp(&addr.to_string());
            server.add_service(admin);
        }
        server.run_forever()
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
}
