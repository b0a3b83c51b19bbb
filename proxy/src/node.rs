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
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server};
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
use crate::lifecycle;
use crate::metrics::{Metrics, MetricsEndpoint};
use crate::reload::Reloader;
use crate::runtime::{Compiled, Guest, Runtime, RuntimeError};
use crate::server::{ConnSettings, Drain, EdgeHandler, Handler, Listener};
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
    /// A listening address cannot be opened.
    #[error(
        "cannot listen on {addr}: {source}\n  fix: stop whatever holds the address or pick \
         another; to replace a running Outpost without downtime, start the new one with \
         `outpost serve --upgrade` and send the old one SIGQUIT"
    )]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The access log could not be opened.
    #[error("log.access: cannot open `{target}`: {source}")]
    AccessLog {
        /// The configured target.
        target: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl NodeError {
    /// Whether the config (or a file it names) is at fault, rather than the machine.
    pub fn is_config_fault(&self) -> bool {
        !matches!(self, NodeError::Listen { .. })
    }
}

/// How a node starts serving.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Take the listening sockets over from a running node (`serve --upgrade`) instead of
    /// opening them.
    pub upgrade: bool,
}

/// How many rate-counter entries (service, counter, client) the node keeps at most; the
/// least used beyond that are evicted. A couple of hundred bytes each.
const COUNTED_ENTRIES: u64 = 200_000;

/// A node ready to serve: everything compiled and loaded, no socket open yet.
pub struct Node {
    /// Holds everything that outlives a reload: the site, the shared parts, certificates.
    reloader: Arc<Reloader>,
    drain: Drain,
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
        let runtime = Arc::new(Runtime::new(&config.runtime, config.max_guest_memory())?);
        let metrics = Metrics::new();
        let cache = (config.cache.memory.as_u64() > 0).then(|| {
            EdgeCache::new(
                cache_settings(&config.cache),
                metrics.cache(&lookup_labels()),
            )
        });
        let access_log = AccessLog::open(&config.log.access, metrics.access_log_dropped.clone())
            .map_err(|e| NodeError::AccessLog {
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
        shared.metrics.config_started();
        let reloader = Reloader::new(
            config,
            Arc::new(ArcSwap::from_pointee(site)),
            shared,
            sni,
            counters,
        );
        Ok(Node {
            reloader: Arc::new(reloader),
            drain: Drain::default(),
        })
    }

    /// The site being served now (requests keep the one they started with).
    pub fn site(&self) -> Arc<Site> {
        self.reloader.site().load_full()
    }

    /// What every site shares with the node.
    pub fn shared(&self) -> &Arc<Shared> {
        self.reloader.shared()
    }

    /// Whether guests run from the pooling allocator (false after a fallback).
    pub fn is_pooling(&self) -> bool {
        self.shared().runtime.is_pooling()
    }

    /// The config being served (it changes on reload).
    pub fn config(&self) -> Arc<Config> {
        self.reloader.config()
    }

    /// Reloads a service's guest whenever its `.wasm` file changes (checked a few times a
    /// second, on a thread of its own; the paths follow config reloads). A file that fails
    /// to compile or link is reported and the previous version keeps serving; requests in
    /// flight finish on the version they started with.
    pub fn watch_guests(&self) {
        let reloader = self.reloader.clone();
        let runtime = self.shared().runtime.clone();
        let stamp = |path: &Path| {
            std::fs::metadata(path)
                .ok()
                .map(|m| (m.modified().ok(), m.len()))
        };
        let mut seen: BTreeMap<PathBuf, _> = BTreeMap::new();
        std::thread::Builder::new()
            .name("outpost-watch".into())
            .spawn(move || {
                loop {
                    let config = reloader.config();
                    for (name, service) in &config.services {
                        let path = config.resolve(&service.guest);
                        let now = stamp(&path);
                        let last = seen.entry(path.clone()).or_insert(now);
                        if now == *last || now.is_none() {
                            continue;
                        }
                        // Let the writer finish: wait until the file stops changing.
                        std::thread::sleep(Duration::from_millis(200));
                        if stamp(&path) != now {
                            continue;
                        }
                        *last = now;
                        let site = reloader.site().load();
                        let Some(service) = site.service(name) else {
                            continue;
                        };
                        match Compiled::load(&runtime, &path) {
                            Ok((compiled, provenance)) => {
                                let reuse = service.reuse.as_ref().map(|r| (r, &service.limits));
                                let guest = Guest::new(&runtime, compiled, reuse);
                                service.guest.store(Arc::new(guest));
                                tracing::info!(
                                    service = %name,
                                    "reloaded the guest from {} ({provenance})",
                                    path.display()
                                );
                            }
                            Err(error) => tracing::error!(
                                service = %name,
                                "{} changed but cannot be served, keeping the previous \
                                 version: {error}",
                                path.display()
                            ),
                        }
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
            .expect("starting the guest watcher thread");
    }

    /// Opens the listeners (or, with `options.upgrade`, takes them over from the running
    /// node) and serves until a signal ends the process ([`crate::lifecycle`]). Returns only
    /// when a listener cannot be opened.
    pub fn run(self, options: RunOptions) -> Result<(), NodeError> {
        let config = self.reloader.config();
        if !options.upgrade {
            check_listeners(&config)?;
        }
        let threads = match config.server.threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let conf = ServerConf {
            threads,
            // pingora waits this long after closing the listeners; the drain watcher ends
            // the process sooner, as soon as no connection is left.
            grace_period_seconds: Some(config.server.drain_timeout_secs),
            graceful_shutdown_timeout_seconds: Some(1),
            upgrade_sock: config.upgrade_sock().display().to_string(),
            upgrade_sock_connect_accept_max_retries: Some(UPGRADE_WAIT_SECS),
            // One single-threaded runtime per worker; pingora spreads accepted connections
            // over them. A guest runs inside its connection's task and yields every epoch
            // tick, so no thread starves. Measured: ~10% less CPU per request on the fetch
            // and pass paths, the same for hello (loadtest/README.md).
            work_stealing: false,
            ..ServerConf::default()
        };
        let opt = pingora_core::server::configuration::Opt {
            upgrade: options.upgrade,
            ..Default::default()
        };
        let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
        if options.upgrade {
            tracing::info!(
                "waiting up to {UPGRADE_WAIT_SECS} s for the running node's sockets on {} \
                 (send it SIGQUIT)",
                config.upgrade_sock().display()
            );
        }
        server.bootstrap();
        let site = self.reloader.site().clone();
        let settings: Arc<dyn Fn() -> Arc<ConnSettings> + Send + Sync> =
            Arc::new(move || site.load().conn.clone());
        let edge = EdgeHandler::new(self.reloader.site().clone());
        for addr in &config.server.listen {
            let listener = self.listener(edge.clone(), settings.clone(), addr);
            let mut service = ListeningService::new(format!("outpost {addr}"), listener);
            service.add_tcp(&addr.to_string());
            server.add_service(service);
        }
        if let (Some(tls), Some(sni)) = (&config.tls, self.reloader.sni()) {
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
        if let Some(addr) = config.metrics.listen {
            let before_scrape =
                self.shared().cache.clone().map(|cache| {
                    Arc::new(move || cache.update_gauges()) as crate::metrics::ScrapeHook
                });
            let endpoint = MetricsEndpoint::new(self.shared().metrics.clone(), before_scrape);
            let listener = self.listener(endpoint, plain.clone(), &addr);
            let mut service = ListeningService::new("outpost metrics".to_owned(), listener);
            service.add_tcp(&addr.to_string());
            server.add_service(service);
        }
        if let Some(addr) = config.admin.listen {
            let api = AdminApi::new(Arc::new(NodeAdmin {
                reloader: self.reloader.clone(),
                drain: self.drain.clone(),
            }));
            let listener = self.listener(api, plain, &addr);
            let mut service = ListeningService::new("outpost admin".to_owned(), listener);
            service.add_tcp(&addr.to_string());
            server.add_service(service);
        }
        lifecycle::exit_when_drained(
            server.watch_execution_phase(),
            self.drain.clone(),
            self.shared().access_log.clone(),
        );
        lifecycle::notify_ready(options.upgrade);
        server.run(RunArgs {
            shutdown_signal: Box::new(lifecycle::Signals {
                reloader: self.reloader.clone(),
                drain: self.drain.clone(),
                access_log: self.shared().access_log.clone(),
                grace: Duration::from_secs(config.server.drain_grace_secs),
            }),
        });
        std::process::exit(0)
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
            self.shared().metrics.listener(&addr.to_string()),
            self.drain.clone(),
        )
    }

    /// The URLs the listeners answer on, for the startup banner.
    pub fn urls(&self) -> Vec<String> {
        let config = self.reloader.config();
        let mut urls: Vec<String> = config
            .server
            .listen
            .iter()
            .map(|a| format!("http://{a}/"))
            .collect();
        if let Some(tls) = &config.tls {
            urls.extend(tls.listen.iter().map(|a| format!("https://{a}/")));
        }
        urls
    }
}

/// How long a node started with `--upgrade` waits for the old one's sockets, and the old
/// one tries to hand them over.
const UPGRADE_WAIT_SECS: usize = 30;

/// Opens and closes every listening address first, so a taken address fails the start
/// with a clear error instead of a listener that never comes up.
fn check_listeners(config: &Config) -> Result<(), NodeError> {
    let tls = config.tls.iter().flat_map(|t| t.listen.iter());
    let others = [config.metrics.listen, config.admin.listen];
    for addr in config
        .server
        .listen
        .iter()
        .chain(tls)
        .chain(others.iter().flatten())
    {
        std::net::TcpListener::bind(addr).map_err(|source| NodeError::Listen {
            addr: *addr,
            source,
        })?;
    }
    Ok(())
}

/// The admin API's view of the node.
struct NodeAdmin {
    reloader: Arc<Reloader>,
    drain: Drain,
}

impl crate::admin::AdminTarget for NodeAdmin {
    fn cache(&self) -> Option<Arc<EdgeCache>> {
        self.reloader.shared().cache.clone()
    }

    fn has_service(&self, name: &str) -> bool {
        self.reloader.site().load().service(name).is_some()
    }

    fn ready(&self) -> bool {
        !self.drain.is_draining()
    }

    fn reload(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send>> {
        let reloader = self.reloader.clone();
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || reloader.reload()).await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(panicked) => Err(format!("the reload failed: {panicked}")),
            }
        })
    }

    fn token(&self) -> Option<crate::config::Secret> {
        self.reloader.admin_token()
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
pub(crate) fn build_site(
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
        let (compiled, provenance) = Compiled::load(runtime, &path).map_err(guest_error)?;
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        tracing::info!(
            service = %name,
            "guest {} ({} KiB) {provenance}",
            path.display(),
            size.div_ceil(1024)
        );
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
