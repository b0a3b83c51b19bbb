//! Opt-in instance reuse: instances that ended a request cleanly wait here for the next
//! request of the same guest version, within a count, lifetime, idle time and memory cap.
//!
//! An instance only gets here through [`InstancePool::put`], which the response body calls
//! once the guest has ended cleanly *and* its body was delivered whole; anything else
//! (trap, timeout, memory limit, error code, unfinished body, client gone) drops it. State
//! that survives is the guest's own memory: that is the documented trade-off of reuse.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use super::instance::GuestState;
use crate::config::{LimitsConfig, ReuseConfig};

/// How often the reaper looks for idle instances past their idle timeout.
const REAP_EVERY: Duration = Duration::from_millis(250);

/// A live instance: its store and its exports.
pub(crate) struct Instance {
    pub(crate) store: Store<GuestState>,
    pub(crate) proxy: Proxy,
    /// When it was instantiated.
    pub(crate) born: Instant,
    /// Requests it has served, the one in flight included.
    pub(crate) served: u32,
}

struct Idle {
    instance: Instance,
    since: Instant,
}

/// The bounds of reuse, resolved from a service's config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReusePolicy {
    max_requests: u32,
    idle_timeout: Duration,
    max_lifetime: Duration,
    max_memory_bytes: u64,
    max_idle: usize,
}

impl ReusePolicy {
    pub(crate) fn new(config: &ReuseConfig, limits: &LimitsConfig) -> Self {
        Self {
            max_requests: config.max_requests,
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
            max_lifetime: Duration::from_millis(config.max_lifetime_ms),
            max_memory_bytes: config.max_memory_bytes(limits),
            max_idle: config.max_idle as usize,
        }
    }
}

/// One guest version's idle instances.
pub(crate) struct InstancePool {
    policy: ReusePolicy,
    idle: Mutex<Vec<Idle>>,
    reaper: Arc<Reaper>,
}

impl InstancePool {
    pub(crate) fn new(policy: ReusePolicy, reaper: &Arc<Reaper>) -> Arc<Self> {
        let pool = Arc::new(Self {
            policy,
            idle: Mutex::new(Vec::new()),
            reaper: reaper.clone(),
        });
        reaper.watch(&pool);
        pool
    }

    /// The most recently used idle instance that is still within its bounds.
    pub(crate) fn take(&self) -> Option<Instance> {
        let now = Instant::now();
        let mut expired = Vec::new();
        let found = {
            let mut idle = self.idle.lock().expect("instance pool lock");
            let mut found = None;
            while let Some(entry) = idle.pop() {
                self.reaper.idle.fetch_sub(1, Ordering::Relaxed);
                if self.expired(&entry, now) {
                    expired.push(entry);
                } else {
                    found = Some(entry.instance);
                    break;
                }
            }
            found
        };
        // Dropping a store resets its memory slot: not under the lock.
        drop(expired);
        found
    }

    /// Keeps `instance` for the next request if it is within every bound; drops it
    /// otherwise. Returns whether it was kept.
    pub(crate) fn put(&self, instance: Instance) -> bool {
        let grown = instance.store.data().memory.grown_to as u64;
        if instance.served >= self.policy.max_requests
            || instance.born.elapsed() >= self.policy.max_lifetime
            || grown > self.policy.max_memory_bytes
        {
            return false;
        }
        let mut idle = self.idle.lock().expect("instance pool lock");
        if idle.len() >= self.policy.max_idle || !self.reaper.reserve() {
            return false;
        }
        idle.push(Idle {
            instance,
            since: Instant::now(),
        });
        true
    }

    fn expired(&self, entry: &Idle, now: Instant) -> bool {
        now.duration_since(entry.since) >= self.policy.idle_timeout
            || now.duration_since(entry.instance.born) >= self.policy.max_lifetime
    }

    /// Drops idle instances past their idle timeout or lifetime.
    fn reap(&self) {
        let now = Instant::now();
        let expired: Vec<Idle> = {
            let mut idle = self.idle.lock().expect("instance pool lock");
            let (gone, kept): (Vec<Idle>, Vec<Idle>) =
                idle.drain(..).partition(|entry| self.expired(entry, now));
            *idle = kept;
            gone
        };
        self.reaper.idle.fetch_sub(expired.len(), Ordering::Relaxed);
    }

    /// Idle instances now (for tests and metrics).
    pub(crate) fn idle_count(&self) -> usize {
        self.idle.lock().expect("instance pool lock").len()
    }
}

impl Drop for InstancePool {
    fn drop(&mut self) {
        let idle = self.idle.get_mut().map(|v| v.len()).unwrap_or(0);
        self.reaper.idle.fetch_sub(idle, Ordering::Relaxed);
    }
}

/// The node's one reaper thread, and the cap on idle instances across all pools.
pub(crate) struct Reaper {
    pools: Mutex<Vec<Weak<InstancePool>>>,
    idle: AtomicUsize,
    max_idle: usize,
}

impl Reaper {
    pub(crate) fn start(max_idle: usize) -> Arc<Self> {
        let reaper = Arc::new(Self {
            pools: Mutex::new(Vec::new()),
            idle: AtomicUsize::new(0),
            max_idle,
        });
        let weak = Arc::downgrade(&reaper);
        std::thread::Builder::new()
            .name("outpost-reaper".into())
            .spawn(move || {
                while let Some(reaper) = weak.upgrade() {
                    reaper.reap_all();
                    drop(reaper);
                    std::thread::sleep(REAP_EVERY);
                }
            })
            .expect("spawning the instance reaper thread");
        reaper
    }

    fn watch(&self, pool: &Arc<InstancePool>) {
        self.pools
            .lock()
            .expect("reaper lock")
            .push(Arc::downgrade(pool));
    }

    fn reap_all(&self) {
        let pools: Vec<Arc<InstancePool>> = {
            let mut pools = self.pools.lock().expect("reaper lock");
            pools.retain(|p| p.strong_count() > 0);
            pools.iter().filter_map(Weak::upgrade).collect()
        };
        for pool in pools {
            pool.reap();
        }
    }

    /// Counts one more idle instance if the node-wide cap allows it.
    fn reserve(&self) -> bool {
        self.idle
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_idle).then_some(n + 1)
            })
            .is_ok()
    }
}
