//! The simple value cache guests fill themselves (`outpost:edge/cache` `get`, `insert`,
//! `get-or-lock`): bytes under a key, per service, with a TTL and surrogate keys. It shares
//! nothing with the HTTP store but the purges.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use moka::sync::Cache;

use super::purge::PurgeTarget;
use super::store::{ExpireByLifetime, Lifetime};

/// A value's key: its service and the guest's key.
type ValueKey = (Arc<str>, Arc<str>);

/// A stored value.
struct StoredValue {
    bytes: Bytes,
    surrogate_keys: Vec<String>,
    ttl: Duration,
}

impl Lifetime for StoredValue {
    fn lifetime(&self) -> Duration {
        self.ttl
    }
}

/// What [`ValueCache::get_or_lock`] found.
pub enum ValueLookup {
    /// The stored value.
    Hit(Bytes),
    /// Not stored; the caller now holds the key's lock and should insert.
    Locked,
    /// Not stored and someone else holds the lock (the wait ran out); compute anyway.
    Unlocked,
}

/// Guests' own values, with collapsing of concurrent computations per key.
pub struct ValueCache {
    values: Cache<ValueKey, Arc<StoredValue>>,
    locks: Mutex<HashMap<ValueKey, Arc<tokio::sync::Notify>>>,
    max_value_bytes: u64,
}

fn key(service: &str, key: &str) -> ValueKey {
    (service.into(), key.into())
}

impl ValueCache {
    pub(crate) fn new(capacity_bytes: u64, max_value_bytes: u64) -> Self {
        let values = Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|key: &ValueKey, value: &Arc<StoredValue>| {
                (value.bytes.len() + key.0.len() + key.1.len() + 64).min(u32::MAX as usize) as u32
            })
            .expire_after(ExpireByLifetime)
            .build();
        Self {
            values,
            locks: Mutex::default(),
            max_value_bytes,
        }
    }

    /// The value of `service`'s `name`, if stored and not expired.
    pub fn get(&self, service: &str, name: &str) -> Option<Bytes> {
        self.values
            .get(&key(service, name))
            .map(|v| v.bytes.clone())
    }

    /// Stores a value and wakes requests waiting for it. The key's lock stays with whoever
    /// holds it; the holder's [`ValueCache::unlock`] releases it.
    pub fn insert(
        &self,
        service: &str,
        name: &str,
        bytes: Bytes,
        ttl: Duration,
        surrogate_keys: Vec<String>,
    ) {
        let full = key(service, name);
        if !ttl.is_zero() && (bytes.len() as u64) <= self.max_value_bytes {
            self.values.insert(
                full.clone(),
                Arc::new(StoredValue {
                    bytes,
                    surrogate_keys,
                    ttl,
                }),
            );
        }
        let waiting = self.locks.lock().expect("value locks").get(&full).cloned();
        if let Some(notify) = waiting {
            notify.notify_waiters();
        }
    }

    /// Returns the value, or the key's lock, or waits up to `wait` for whoever holds the lock.
    pub async fn get_or_lock(&self, service: &str, name: &str, wait: Duration) -> ValueLookup {
        let full = key(service, name);
        if let Some(value) = self.values.get(&full) {
            return ValueLookup::Hit(value.bytes.clone());
        }
        let holder = {
            let mut locks = self.locks.lock().expect("value locks");
            match locks.get(&full) {
                Some(notify) => Some(notify.clone()),
                None => {
                    locks.insert(full.clone(), Arc::default());
                    None
                }
            }
        };
        let Some(notify) = holder else {
            return ValueLookup::Locked;
        };
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(value) = self.values.get(&full) {
            return ValueLookup::Hit(value.bytes.clone());
        }
        let _ = tokio::time::timeout(wait, notified).await;
        match self.values.get(&full) {
            Some(value) => ValueLookup::Hit(value.bytes.clone()),
            None => ValueLookup::Unlocked,
        }
    }

    /// Releases a key lock and wakes its waiters; only the lock's holder calls this, so a
    /// lock someone else took meanwhile is never released by mistake.
    pub fn unlock(&self, service: &str, name: &str) {
        let notify = self
            .locks
            .lock()
            .expect("value locks")
            .remove(&key(service, name));
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }

    /// Removes the values `target` covers (values have no stale life, so soft is hard).
    pub(crate) fn purge(&self, target: &PurgeTarget) -> usize {
        let mut removed = 0;
        for (key, value) in self.values.iter() {
            let covered = match target {
                PurgeTarget::All => true,
                PurgeTarget::Service(service) => &*key.0 == service,
                PurgeTarget::Keys(_) => false,
                PurgeTarget::SurrogateKey { service, key: tag } => {
                    &*key.0 == service && value.surrogate_keys.iter().any(|k| k == tag)
                }
            };
            if covered {
                self.values.invalidate(key.as_ref());
                removed += 1;
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_computations_collapse_onto_the_lock_holder() {
        let values = Arc::new(ValueCache::new(1 << 20, 1 << 16));
        assert!(matches!(
            values.get_or_lock("svc", "k", Duration::from_secs(1)).await,
            ValueLookup::Locked
        ));
        let waiter = {
            let values = values.clone();
            tokio::spawn(
                async move { values.get_or_lock("svc", "k", Duration::from_secs(5)).await },
            )
        };
        tokio::task::yield_now().await;
        values.insert(
            "svc",
            "k",
            Bytes::from_static(b"v"),
            Duration::from_secs(60),
            vec![],
        );
        values.unlock("svc", "k");
        assert!(matches!(waiter.await.unwrap(), ValueLookup::Hit(v) if &v[..] == b"v"));
    }

    #[test]
    fn purges_stay_within_the_service() {
        let values = ValueCache::new(1 << 20, 1 << 16);
        let ttl = Duration::from_secs(60);
        values.insert("a", "x", Bytes::from_static(b"1"), ttl, vec!["tag".into()]);
        values.insert("b", "x", Bytes::from_static(b"2"), ttl, vec!["tag".into()]);
        let target = PurgeTarget::SurrogateKey {
            service: "a".into(),
            key: "tag".into(),
        };
        assert_eq!(values.purge(&target), 1);
        assert!(values.get("a", "x").is_none());
        assert!(values.get("b", "x").is_some());
    }
}
