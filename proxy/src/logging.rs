//! The node's own log: `tracing` events to stderr, as text for people or JSON for log
//! shippers, filtered by `log.level` or `OUTPOST_LOG`.
//!
//! Events that anyone on the internet can cause without authenticating (pingora's reports
//! of failed TLS handshakes, say) are rate-limited per target: at most
//! [`BURST`] per [`WINDOW`], the rest dropped and counted
//! (`outpost_log_events_suppressed_total`), so a flood of garbage connections cannot flood
//! the log. The node's own code never logs request heads, tokens or cookies.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Events per target allowed within one [`WINDOW`].
const BURST: u32 = 20;
/// The rate limit's window.
const WINDOW: Duration = Duration::from_secs(10);

/// Events dropped by the rate limit so far.
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// How many log events the rate limit has dropped.
pub fn suppressed() -> u64 {
    SUPPRESSED.load(Ordering::Relaxed)
}

/// Starts the node's log on stderr. `OUTPOST_LOG` (tracing filter syntax) wins over the
/// configured `level`; pingora's own chatter is kept at warnings unless asked for.
pub fn init(level: &str, format: LogFormat) {
    // Global filters (not per-layer ones), so the subscriber's level hint stays what the
    // filter says and disabled `log`/`tracing` call sites in dependencies cost nothing.
    let filter = EnvFilter::try_from_env("OUTPOST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},pingora_core=warn")));
    let layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            // Colours for a terminal only: a file or a journal gets plain text.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(RateLimit::default())
        .with(layer)
        .try_init();
}

/// Drops events from targets clients can trigger unauthenticated beyond [`BURST`] per
/// [`WINDOW`].
#[derive(Default)]
struct RateLimit {
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

/// Whether events of `target` are rate-limited: they come from the listener library,
/// which logs what connecting clients get wrong.
fn limited(target: &str) -> bool {
    target.starts_with("pingora")
}

impl RateLimit {
    fn admit(&self, target: &str, now: Instant) -> bool {
        let mut windows = self.windows.lock().expect("log rate limit lock");
        let (since, count) = windows.entry(target.to_owned()).or_insert((now, 0));
        if now.duration_since(*since) >= WINDOW {
            *since = now;
            *count = 0;
        }
        *count += 1;
        if *count > BURST {
            SUPPRESSED.fetch_add(1, Ordering::Relaxed);
            false
        } else {
            true
        }
    }
}

impl<S: Subscriber> Layer<S> for RateLimit {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if limited(meta.target()) {
            // Decided per event, not once per call site.
            Interest::sometimes()
        } else {
            Interest::always()
        }
    }

    /// Called for each event of a limited target (and for each `log` record, which is how
    /// pingora logs).
    fn enabled(&self, meta: &Metadata<'_>, _cx: Context<'_, S>) -> bool {
        !meta.is_event() || !limited(meta.target()) || self.admit(meta.target(), Instant::now())
    }
}

/// Lets the node open as many connections as its hard limit on file descriptors allows
/// (servers such as nginx raise their soft limit the same way).
pub fn raise_open_files_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!("cannot raise the open files limit: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_from_one_target_is_cut_to_a_burst_per_window() {
        let limit = RateLimit::default();
        let start = Instant::now();
        let admitted = (0..100)
            .filter(|_| limit.admit("pingora_core::services", start))
            .count();
        assert_eq!(admitted, BURST as usize);
        assert!(
            limit.admit("pingora_core::other", start),
            "targets count apart"
        );
        assert!(
            limit.admit("pingora_core::services", start + WINDOW),
            "a new window"
        );
    }
}
