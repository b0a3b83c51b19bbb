//! Storage: a moka cache bounded by bytes. Each key holds its variants (one per `Vary`
//! selection), weighted by size, and expires when the longest stale window of its
//! variants ends; freshness itself is decided by [`super::policy`], not by moka.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::HeaderMap;
use moka::ops::compute::Op;
use moka::sync::Cache;

use super::key::CacheKey;
use super::object::Object;
use super::policy::Heuristics;

/// All variants stored under one key.
pub(crate) struct Variants {
    pub(crate) objects: Vec<Arc<Object>>,
    /// When the longest-lived variant stops being useful.
    keep_for: Duration,
    weight: u32,
}

impl Variants {
    fn new(objects: Vec<Arc<Object>>, key: &CacheKey, heuristics: &Heuristics) -> Arc<Variants> {
        let now = SystemTime::now();
        let keep_for = objects
            .iter()
            .map(|o| o.freshness.keep_for(now, o.has_validators(), heuristics))
            .max()
            .unwrap_or_default();
        let weight = objects.iter().map(|o| o.weight()).sum::<u64>() + key.weight() as u64;
        Arc::new(Variants {
            objects,
            keep_for,
            weight: weight.min(u32::MAX as u64) as u32,
        })
    }
}

/// A stored value that knows how long it stays in the store.
pub(crate) trait Lifetime {
    fn lifetime(&self) -> Duration;
}

impl Lifetime for Variants {
    fn lifetime(&self) -> Duration {
        self.keep_for
    }
}

/// Per-entry expiry for moka stores: an entry lives as long as its value says, counted
/// again from every insert or update.
pub(crate) struct ExpireByLifetime;

impl<K, V: Lifetime> moka::Expiry<K, Arc<V>> for ExpireByLifetime {
    fn expire_after_create(&self, _key: &K, value: &Arc<V>, _at: Instant) -> Option<Duration> {
        Some(value.lifetime())
    }

    fn expire_after_update(
        &self,
        _key: &K,
        value: &Arc<V>,
        _at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.lifetime())
    }
}

/// The HTTP store.
pub(crate) struct Store {
    cache: Cache<CacheKey, Arc<Variants>>,
    heuristics: Heuristics,
    max_variants: usize,
}

impl Store {
    pub(crate) fn new(capacity_bytes: u64, heuristics: Heuristics, max_variants: usize) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|_key: &CacheKey, value: &Arc<Variants>| value.weight)
            .expire_after(ExpireByLifetime)
            .build();
        Self {
            cache,
            heuristics,
            max_variants,
        }
    }

    /// The stored variant of `key` that matches these request headers.
    pub(crate) fn lookup(
        &self,
        key: &CacheKey,
        request_headers: &HeaderMap,
    ) -> Option<Arc<Object>> {
        let variants = self.cache.get(key)?;
        variants
            .objects
            .iter()
            .find(|o| o.matches(request_headers) && !o.body.failed())
            .cloned()
    }

    /// Every variant under `key`.
    pub(crate) fn variants(&self, key: &CacheKey) -> Option<Arc<Variants>> {
        self.cache.get(key)
    }

    /// Stores `object` as a variant of `key`, replacing the variant it selects the same
    /// requests for and any variant that varies on other fields.
    pub(crate) fn insert(&self, key: &CacheKey, object: Arc<Object>) {
        let heuristics = self.heuristics;
        let max_variants = self.max_variants;
        self.cache.entry(key.clone()).and_compute_with(|existing| {
            let mut objects: Vec<Arc<Object>> = existing
                .map(|e| e.into_value().objects.clone())
                .unwrap_or_default();
            objects.retain(|o| {
                !o.same_variant(&object)
                    && o.vary
                        .iter()
                        .map(|(n, _)| n)
                        .eq(object.vary.iter().map(|(n, _)| n))
            });
            objects.insert(0, object.clone());
            objects.truncate(max_variants);
            Op::Put(Variants::new(objects, key, &heuristics))
        });
    }

    /// Weighs `key` again (its object's body length is known now).
    pub(crate) fn reweigh(&self, key: &CacheKey, object: &Arc<Object>) {
        let heuristics = self.heuristics;
        self.cache
            .entry(key.clone())
            .and_compute_with(|existing| match existing {
                Some(entry) if entry.value().objects.iter().any(|o| Arc::ptr_eq(o, object)) => {
                    Op::Put(Variants::new(
                        entry.value().objects.clone(),
                        key,
                        &heuristics,
                    ))
                }
                _ => Op::Nop,
            });
    }

    /// Removes one variant of `key`.
    pub(crate) fn remove_object(&self, key: &CacheKey, object: &Arc<Object>) {
        let heuristics = self.heuristics;
        self.cache.entry(key.clone()).and_compute_with(|existing| {
            let Some(entry) = existing else {
                return Op::Nop;
            };
            let objects: Vec<Arc<Object>> = entry
                .value()
                .objects
                .iter()
                .filter(|o| !Arc::ptr_eq(o, object))
                .cloned()
                .collect();
            if objects.is_empty() {
                Op::Remove
            } else {
                Op::Put(Variants::new(objects, key, &heuristics))
            }
        });
    }

    /// Removes every variant of `key`.
    pub(crate) fn remove(&self, key: &CacheKey) {
        self.cache.invalidate(key);
    }

    /// Removes everything.
    pub(crate) fn clear(&self) -> usize {
        let count = self.cache.iter().map(|(_, v)| v.objects.len()).sum();
        self.cache.invalidate_all();
        count
    }

    /// Every key with its variants (a snapshot, for purges).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Arc<CacheKey>, Arc<Variants>)> + '_ {
        self.cache.iter()
    }

    /// Bytes and objects stored now.
    pub(crate) fn usage(&self) -> (u64, u64) {
        self.cache.run_pending_tasks();
        (
            self.cache.weighted_size(),
            self.cache.iter().map(|(_, v)| v.objects.len() as u64).sum(),
        )
    }
}
