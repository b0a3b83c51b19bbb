//! Rate counters for guests: how many events an entry (a client IP, an API key) caused
//! over the last N seconds, for rate limiting at the edge.
//!
//! Each counter keeps two fixed buckets the length of its window and estimates the sliding
//! window from them (the previous bucket weighted by how much of it the window still
//! covers), the way Cloudflare's and nginx-style limiters do: constant memory per entry,
//! no timestamps per event. Counts are per node, like Fastly's per-POP rate counters.
//! Entries live in a bounded moka cache and expire two windows after their last event
//! (after that they could only count 0), so a flood of distinct entries costs bounded
//! memory and evicts the least used.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;

/// Identifies one counted entry: service, counter name, window length and entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CounterKey {
    service: Arc<str>,
    name: String,
    window_ms: u64,
    entry: String,
}

/// Two adjacent buckets of one entry.
#[derive(Debug, Clone, Copy, Default)]
struct Buckets {
    /// Index of the current bucket (time since the node's epoch divided by the window).
    index: u64,
    current: u64,
    previous: u64,
}

impl Buckets {
    /// Moves the buckets forward to `index`, dropping what fell out of the window.
    fn roll(self, index: u64) -> Buckets {
        match index.saturating_sub(self.index) {
            0 => self,
            1 => Buckets {
                index,
                current: 0,
                previous: self.current,
            },
            _ => Buckets {
                index,
                current: 0,
                previous: 0,
            },
        }
    }

    /// The sliding-window estimate when `into` of the current bucket has passed.
    fn estimate(&self, into: f64) -> u64 {
        let weight = (1.0 - into).clamp(0.0, 1.0);
        self.current + (self.previous as f64 * weight).floor() as u64
    }
}

/// Forgets an entry two of its windows after its last event.
struct TwoWindows;

impl Expiry<CounterKey, Buckets> for TwoWindows {
    fn expire_after_create(&self, key: &CounterKey, _: &Buckets, _: Instant) -> Option<Duration> {
        Some(Duration::from_millis(key.window_ms.saturating_mul(2)))
    }

    fn expire_after_update(
        &self,
        key: &CounterKey,
        _: &Buckets,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(Duration::from_millis(key.window_ms.saturating_mul(2)))
    }
}

/// The node's rate counters, shared by all services (keys are per service).
pub struct Counters {
    entries: Cache<CounterKey, Buckets>,
    epoch: Instant,
}

impl Counters {
    /// Keeps at most `max_entries` counted entries.
    pub fn new(max_entries: u64) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(max_entries)
                .expire_after(TwoWindows)
                .build(),
            epoch: Instant::now(),
        }
    }

    /// Adds `delta` events for `entry` in counter `name` of `service` and returns the count
    /// over the last `window` (these events included). `delta` 0 only reads.
    pub fn increment(
        &self,
        service: &Arc<str>,
        name: &str,
        entry: &str,
        delta: u64,
        window: Duration,
    ) -> u64 {
        let window_ms = window
            .as_millis()
            .clamp(1, u128::from(MAX_WINDOW_SECS * 1000)) as u64;
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        let index = now_ms / window_ms;
        let into = (now_ms % window_ms) as f64 / window_ms as f64;
        let key = CounterKey {
            service: Arc::clone(service),
            name: name.to_owned(),
            window_ms,
            entry: entry.to_owned(),
        };
        if delta == 0 {
            return self
                .entries
                .get(&key)
                .map_or(0, |b| b.roll(index).estimate(into));
        }
        let updated = self.entries.entry(key).and_upsert_with(|existing| {
            let mut buckets = existing
                .map(|e| e.into_value())
                .unwrap_or(Buckets {
                    index,
                    ..Buckets::default()
                })
                .roll(index);
            buckets.current = buckets.current.saturating_add(delta);
            buckets
        });
        updated.into_value().estimate(into)
    }
}

/// The longest window a counter may have: one day.
pub const MAX_WINDOW_SECS: u64 = 24 * 3600;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_within_a_window_and_stay_apart_per_entry_name_and_service() {
        let counters = Counters::new(1000);
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let minute = Duration::from_secs(60);
        for expected in 1..=5 {
            assert_eq!(counters.increment(&a, "rl", "1.2.3.4", 1, minute), expected);
        }
        assert_eq!(counters.increment(&a, "rl", "1.2.3.4", 0, minute), 5);
        assert_eq!(counters.increment(&a, "rl", "5.6.7.8", 1, minute), 1);
        assert_eq!(counters.increment(&a, "other", "1.2.3.4", 1, minute), 1);
        assert_eq!(counters.increment(&b, "rl", "1.2.3.4", 1, minute), 1);
        assert_eq!(counters.increment(&a, "rl", "1.2.3.4", 3, minute), 8);
    }

    #[test]
    fn the_previous_bucket_fades_out_as_the_window_slides() {
        let buckets = Buckets {
            index: 10,
            current: 4,
            previous: 0,
        };
        // Next bucket: the old current becomes previous and counts fully at its start...
        let next = buckets.roll(11);
        assert_eq!(next.estimate(0.0), 4);
        // ...half at the middle, and not at all at its end.
        assert_eq!(next.estimate(0.5), 2);
        assert_eq!(next.estimate(1.0), 0);
        // Two buckets on, nothing is left.
        assert_eq!(buckets.roll(12).estimate(0.0), 0);
        // The same bucket keeps its counts.
        assert_eq!(buckets.roll(10).estimate(0.9), 4);
    }

    #[test]
    fn a_short_window_forgets_quickly() {
        let counters = Counters::new(10);
        let service: Arc<str> = "s".into();
        let window = Duration::from_millis(50);
        assert_eq!(counters.increment(&service, "n", "e", 3, window), 3);
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(counters.increment(&service, "n", "e", 0, window), 0);
    }
}
