//! What a purge names, and the short memory of recent purges that keeps a fill which
//! started before a purge from storing what the purge meant to remove.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::key::CacheKey;
use super::object::Object;

/// What to purge. Every target but `All` is scoped to one service: tenants never purge
/// each other's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeTarget {
    /// Every object of every service.
    All,
    /// Every object of one service.
    Service(String),
    /// Every variant stored under these keys (a URL in each layer, for a purge by URL).
    Keys(Vec<CacheKey>),
    /// Every object of `service` tagged with surrogate key `key`.
    SurrogateKey {
        /// The owning service.
        service: String,
        /// The surrogate key.
        key: String,
    },
}

impl PurgeTarget {
    /// Whether an object stored under `key` is covered by this purge.
    pub fn covers(&self, key: &CacheKey, object: &Object) -> bool {
        match self {
            PurgeTarget::All => true,
            PurgeTarget::Service(service) => key.service() == service,
            PurgeTarget::Keys(keys) => keys.contains(key),
            PurgeTarget::SurrogateKey { service, key: tag } => {
                key.service() == service && object.surrogate_keys.iter().any(|k| k == tag)
            }
        }
    }
}

/// How many recent purges are remembered; a fill older than that is never stored.
const REMEMBERED: usize = 4096;

/// Sequence-numbered recent purges.
#[derive(Default)]
pub struct PurgeLog {
    seq: AtomicU64,
    recent: Mutex<VecDeque<(u64, PurgeTarget)>>,
}

impl PurgeLog {
    /// The number of purges so far; a fill remembers it when it starts.
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    /// Records a purge (before its objects are removed, so no fill slips between).
    pub fn record(&self, target: PurgeTarget) {
        let mut recent = self.recent.lock().expect("purge log lock");
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        recent.push_back((seq, target));
        while recent.len() > REMEMBERED {
            recent.pop_front();
        }
    }

    /// Whether a fill that started at `since` may store `object` under `key`.
    pub fn allows(&self, since: u64, key: &CacheKey, object: &Object) -> bool {
        if self.seq() == since {
            return true;
        }
        let recent = self.recent.lock().expect("purge log lock");
        if recent
            .front()
            .is_some_and(|(oldest, _)| *oldest > since + 1)
        {
            // Purges were forgotten since the fill started: be safe, store nothing.
            return false;
        }
        !recent
            .iter()
            .filter(|(seq, _)| *seq > since)
            .any(|(_, target)| target.covers(key, object))
    }
}
