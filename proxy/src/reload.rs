//! Reloading the config while the node serves (SIGHUP, `POST /reload`).
//!
//! A reload reads and validates the file, compiles or loads every guest, builds every
//! backend and loads every certificate, all beside the running site; only when everything
//! succeeded does it swap the site (services, domains, routes, backends and their pools,
//! limits, secrets, config stores, the geo database, connection settings), the
//! certificates and the admin token, each in one atomic store. Requests in flight finish on
//! what they started with; the cache survives, minus the objects of services that are gone.
//!
//! What sizes or binds the process cannot change in place: listener addresses, worker
//! threads, the engine (`[runtime]`), the cache's store (`[cache]`) and logging. A reload
//! that changes them is refused and names the key; such a change needs a restart, or a
//! binary upgrade (`outpost serve --upgrade`), which starts a new process on the same
//! sockets.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::cache::PurgeTarget;
use crate::config::{Config, ConfigError, Secret};
use crate::counters::Counters;
use crate::node::{NodeError, build_site};
use crate::service::{Shared, Site};
use crate::tls::{Certificates, SniResolver};

/// Why a reload was refused. The running config keeps serving in every case.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The node was started without a config file (demo or quick mode).
    #[error(
        "this node was started without a config file, so there is nothing to reload\n  fix: \
         start it with `outpost serve --config FILE`"
    )]
    NoConfigFile,
    /// The file does not load or validate.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A guest, backend, certificate or database named by the file failed.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The file changes something only a new process can.
    #[error(
        "{file}: `{key}` changed, and {why}; the running config stays\n  fix: restart the node, \
         or start the new config with `outpost serve --upgrade` (zero downtime, see README)"
    )]
    NeedsNewProcess {
        /// The config file.
        file: String,
        /// The key (or section) that changed.
        key: &'static str,
        /// Why it cannot change in place.
        why: &'static str,
    },
}

/// Loads the config file again on request and swaps the result in.
pub struct Reloader {
    file: Option<PathBuf>,
    config: ArcSwap<Config>,
    site: Arc<ArcSwap<Site>>,
    shared: Arc<Shared>,
    sni: Option<Arc<SniResolver>>,
    counters: Arc<Counters>,
    admin_token: ArcSwap<Option<Secret>>,
    /// One reload at a time.
    busy: Mutex<()>,
}

impl Reloader {
    /// A reloader for a node built from `config`: reloads read `config.source` when the
    /// config came from a file.
    pub(crate) fn new(
        config: Config,
        site: Arc<ArcSwap<Site>>,
        shared: Arc<Shared>,
        sni: Option<Arc<SniResolver>>,
        counters: Arc<Counters>,
    ) -> Self {
        let file = config.file.clone();
        let admin_token = config.admin.token(&config.base_dir);
        Self {
            file,
            config: ArcSwap::from_pointee(config),
            site,
            shared,
            sni,
            counters,
            admin_token: ArcSwap::from_pointee(admin_token),
            busy: Mutex::new(()),
        }
    }

    /// The config being served.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The site being served.
    pub fn site(&self) -> &Arc<ArcSwap<Site>> {
        &self.site
    }

    /// What every site shares with the node (runtime, cache, metrics, logs).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The TLS listeners' certificate resolver, when the node has TLS.
    pub fn sni(&self) -> Option<&Arc<SniResolver>> {
        self.sni.as_ref()
    }

    /// The admin token of the config being served.
    pub fn admin_token(&self) -> Option<Secret> {
        (**self.admin_token.load()).clone()
    }

    /// Reloads the config file: everything is built first, then swapped in at once. Blocks
    /// while guests compile; counts the result in `outpost_config_reloads_total`.
    pub fn reload(&self) -> Result<String, ReloadError> {
        let _one_at_a_time = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let result = self.build_and_swap();
        self.shared.metrics.config_reloaded(result.is_ok());
        match &result {
            Ok(summary) => {
                tracing::info!("reloaded {summary} in {} ms", started.elapsed().as_millis())
            }
            Err(error) => tracing::error!("reload refused, the running config stays: {error}"),
        }
        result
    }

    fn build_and_swap(&self) -> Result<String, ReloadError> {
        let file = self.file.as_ref().ok_or(ReloadError::NoConfigFile)?;
        let new = Config::load(file)?;
        let old = self.config.load_full();
        needs_new_process(&old, &new)?;
        let site = build_site(&new, &self.shared, &self.counters)?;
        let certificates = match (&new.tls, &self.sni) {
            (Some(tls), Some(_)) => Some(Certificates::load(&new, tls).map_err(NodeError::from)?),
            _ => None,
        };
        // Everything is built: swap.
        if let (Some(sni), Some(certificates)) = (&self.sni, certificates) {
            sni.replace(certificates);
        }
        self.site.store(Arc::new(site));
        self.admin_token
            .store(Arc::new(new.admin.token(&new.base_dir)));
        if let Some(cache) = &self.shared.cache {
            for gone in old
                .services
                .keys()
                .filter(|name| !new.services.contains_key(*name))
            {
                let purged = cache.purge(PurgeTarget::Service(gone.clone()), false);
                tracing::info!(service = %gone, "service removed; purged {purged} object(s)");
            }
        }
        let summary = new.to_string();
        self.config.store(Arc::new(new));
        Ok(summary)
    }
}

/// Refuses a change that only a new process can make, naming the first such key.
fn needs_new_process(old: &Config, new: &Config) -> Result<(), ReloadError> {
    let refuse = |key, why| {
        Err(ReloadError::NeedsNewProcess {
            file: new.source.clone(),
            key,
            why,
        })
    };
    const LISTENER: &str = "listening sockets belong to the process";
    if old.server.listen != new.server.listen {
        return refuse("server.listen", LISTENER);
    }
    let tls_listen = |c: &Config| c.tls.as_ref().map(|t| t.listen.clone());
    if tls_listen(old) != tls_listen(new) {
        return refuse("tls.listen", LISTENER);
    }
    if old.metrics.listen != new.metrics.listen {
        return refuse("metrics.listen", LISTENER);
    }
    if old.admin.listen != new.admin.listen {
        return refuse("admin.listen", LISTENER);
    }
    if old.server.threads != new.server.threads {
        return refuse("server.threads", "worker threads start with the process");
    }
    if old.server.upgrade_sock != new.server.upgrade_sock {
        return refuse(
            "server.upgrade_sock",
            "the running process hands over on the old one",
        );
    }
    if old.runtime != new.runtime {
        return refuse(
            "runtime",
            "the engine and its instance pool are sized at start",
        );
    }
    if new.max_guest_memory() > old.max_guest_memory() {
        return refuse(
            "limits.memory_mib (the largest of any service)",
            "the engine's instance pool reserves that much per instance at start",
        );
    }
    if old.cache != new.cache {
        return refuse("cache", "the cache's store is sized at start");
    }
    if old.log != new.log {
        return refuse("log", "logging is set up at start");
    }
    Ok(())
}
