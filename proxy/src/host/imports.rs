//! Outpost's own guest imports (sdk/wit/world.wit, world `imports`), implemented on the
//! request's [`EdgeHooks`]:
//!
//! - `outpost:edge/config`: the service's config store and secrets (read-only; secret
//!   values are handed to the guest and never logged);
//! - `outpost:edge/cache`: typed cache control for fetches and for the guest's own answer;
//! - `outpost:edge/request-info`: client IP, HTTP version, TLS, request id, POP name;
//! - `outpost:edge/rate`: the node's rate counters ([`crate::counters`]), per service;
//! - `outpost:edge/geo`: client geolocation ([`crate::geo`]), when the node has a database.
//!
//! `set-next-fetch` stores [`Overrides`] in the request's hooks; the next
//! `outgoing-handler.handle` takes them (see [`super::egress`]). `cache-response` leaves
//! them where the response cache picks them up when it stores the answer. The simple value
//! cache and purges are scoped to the guest's own service, so tenants never see or purge
//! each other's objects. A key lock taken by `get-or-lock` is released by `insert`, or
//! when the request ends, so a guest that dies while computing never blocks the key.

use std::time::Duration;

use super::EdgeHooks;
use crate::cache::{Overrides, PurgeTarget, ValueLookup};

use crate::wit::outpost::edge::cache::{FetchOptions, Host, Lookup, ResponseOptions};
use crate::wit::outpost::edge::{config, geo, rate, request_info};

/// Adds every Outpost import to `linker`, reaching the hooks through `hooks`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    hooks: fn(&mut T) -> &mut EdgeHooks,
) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    crate::wit::outpost::edge::cache::add_to_linker::<T, HasSelf<EdgeHooks>>(linker, hooks)?;
    config::add_to_linker::<T, HasSelf<EdgeHooks>>(linker, hooks)?;
    rate::add_to_linker::<T, HasSelf<EdgeHooks>>(linker, hooks)?;
    geo::add_to_linker::<T, HasSelf<EdgeHooks>>(linker, hooks)?;
    request_info::add_to_linker::<T, HasSelf<EdgeHooks>>(linker, hooks)
}

impl request_info::Host for EdgeHooks {
    async fn get(&mut self) -> request_info::Info {
        let info = self.info();
        request_info::Info {
            client_ip: info.client_ip.map(|ip| ip.to_string()),
            http_version: info.http_version.to_owned(),
            tls_protocol: info.tls.as_ref().map(|t| t.protocol.clone()),
            tls_cipher: info.tls.as_ref().map(|t| t.cipher.clone()),
            tls_sni: info.tls.as_ref().and_then(|t| t.sni.clone()),
            request_id: self.request_id().to_owned(),
            pop: info.pop.to_string(),
        }
    }
}

impl rate::Host for EdgeHooks {
    async fn increment(&mut self, name: String, entry: String, delta: u32, window_ms: u64) -> u64 {
        let grants = self.grants();
        grants.counters.increment(
            &grants.service,
            &name,
            &entry,
            u64::from(delta),
            Duration::from_millis(window_ms),
        )
    }
}

impl geo::Host for EdgeHooks {
    async fn lookup(&mut self, ip: Option<String>) -> Option<geo::Location> {
        let db = self.grants().geo.as_ref()?;
        let ip = match ip {
            Some(text) => text.trim().parse().ok()?,
            None => self.info().client_ip?,
        };
        db.lookup(ip)
    }
}

impl config::Host for EdgeHooks {
    async fn get(&mut self, key: String) -> Option<String> {
        self.grants().stores.config.get(&key).cloned()
    }

    async fn secret(&mut self, key: String) -> Option<String> {
        self.grants()
            .stores
            .secrets
            .get(&key)
            .map(|s| s.expose().to_owned())
    }
}

impl Host for EdgeHooks {
    async fn set_next_fetch(&mut self, options: FetchOptions) {
        self.next_overrides = Overrides {
            pass: options.pass,
            ttl: options.ttl_ms.map(Duration::from_millis),
            stale_while_revalidate: options.stale_while_revalidate_ms.map(Duration::from_millis),
            stale_if_error: None,
            surrogate_keys: options.surrogate_keys,
            key_extra: options.key_extra,
        };
    }

    async fn cache_response(&mut self, options: ResponseOptions) {
        if let Some(policy) = &self.response_policy {
            *policy.lock().expect("response policy lock") = Some(Overrides {
                pass: false,
                ttl: Some(Duration::from_millis(options.ttl_ms)),
                stale_while_revalidate: options
                    .stale_while_revalidate_ms
                    .map(Duration::from_millis),
                stale_if_error: options.stale_if_error_ms.map(Duration::from_millis),
                surrogate_keys: options.surrogate_keys,
                key_extra: None,
            });
        }
    }

    async fn get(&mut self, key: String) -> Option<Vec<u8>> {
        let cache = self.grants().cache.clone()?;
        cache.values().get(self.service(), &key).map(|v| v.to_vec())
    }

    async fn insert(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: u64,
        surrogate_keys: Vec<String>,
    ) {
        if let Some(cache) = self.grants().cache.clone() {
            cache.values().insert(
                self.service(),
                &key,
                value.into(),
                Duration::from_millis(ttl_ms),
                surrogate_keys,
            );
        }
        self.release_lock(&key);
    }

    async fn get_or_lock(&mut self, key: String, wait_ms: u32) -> Lookup {
        let Some(cache) = self.grants().cache.clone() else {
            return Lookup::Compute;
        };
        let wait = Duration::from_millis(u64::from(wait_ms));
        match cache.values().get_or_lock(self.service(), &key, wait).await {
            ValueLookup::Hit(value) => Lookup::Hit(value.to_vec()),
            ValueLookup::Locked => {
                self.hold_lock(key);
                Lookup::Compute
            }
            ValueLookup::Unlocked => Lookup::Compute,
        }
    }

    async fn purge_surrogate_key(&mut self, key: String, soft: bool) -> u32 {
        let Some(cache) = self.grants().cache.clone() else {
            return 0;
        };
        let target = PurgeTarget::SurrogateKey {
            service: self.service().to_owned(),
            key,
        };
        cache.purge(target, soft).min(u32::MAX as usize) as u32
    }
}
