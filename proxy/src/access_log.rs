//! The access log: one JSON object per line for every request the node answers.
//!
//! Lines are handed to a writer thread over a bounded queue, so a slow disk never stalls
//! the request path and never costs memory without limit: when the writer falls behind by
//! [`QUEUE_LINES`], further lines are dropped and counted
//! (`outpost_access_log_dropped_total`). The writer flushes whenever it has nothing queued,
//! and reopens its file on request (SIGUSR1, after logrotate moved it).

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use prometheus::IntCounter;

/// Lines the queue holds before new ones are dropped (a few MiB of JSON).
pub const QUEUE_LINES: usize = 16 * 1024;

/// Where access log lines go.
pub struct AccessLog {
    lines: mpsc::SyncSender<String>,
    state: Arc<WriterState>,
    dropped: IntCounter,
}

/// What the request path and the writer thread share.
#[derive(Default)]
struct WriterState {
    /// Lines handed over and not yet written.
    queued: AtomicUsize,
    /// Reopen the file before the next write.
    reopen: AtomicBool,
}

/// Where lines are written: stdout, or a file that can be reopened.
enum Sink {
    Stdout(std::io::Stdout),
    File(PathBuf, std::fs::File),
}

impl Sink {
    fn open_file(path: PathBuf) -> std::io::Result<Sink> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(Sink::File(path, file))
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Stdout(out) => out,
            Sink::File(_, file) => file,
        }
    }

    /// Opens the file at its path again (a rotated file is left to its new name).
    fn reopen(&mut self) {
        if let Sink::File(path, _) = self {
            match Sink::open_file(path.clone()) {
                Ok(reopened) => *self = reopened,
                Err(error) => tracing::error!(
                    "cannot reopen the access log {}: {error}; still writing to the old file",
                    path.display()
                ),
            }
        }
    }
}

/// Everything the node knows about one finished exchange.
#[derive(Debug, Default)]
pub struct AccessRecord<'a> {
    /// The `x-outpost-request-id` of the response.
    pub request_id: &'a str,
    /// The service that handled it, if any matched.
    pub service: Option<&'a str>,
    /// The client's address (the TCP peer).
    pub client: Option<IpAddr>,
    /// Request method.
    pub method: &'a str,
    /// Host the client asked for.
    pub host: &'a str,
    /// Path and query.
    pub path: &'a str,
    /// Response status.
    pub status: u16,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Time from request head to the end of the response.
    pub total: Duration,
    /// Time the guest instance lived, if one ran.
    pub guest: Option<Duration>,
    /// Time spent waiting for backend response heads.
    pub origin: Duration,
    /// How the edge cache answered the latest backend fetch (`HIT`, `MISS`, ...), if any.
    pub cache: Option<&'a str>,
    /// How the response cache answered (`HIT`: no guest ran), when the service uses it.
    pub response_cache: Option<&'a str>,
}

impl AccessLog {
    /// Opens the access log for `target`: `off` (None), `stdout`, or a file path. Dropped
    /// lines are counted in `dropped`.
    pub fn open(target: &str, dropped: IntCounter) -> std::io::Result<Option<AccessLog>> {
        let mut sink = match target {
            "off" | "" => return Ok(None),
            "stdout" => Sink::Stdout(std::io::stdout()),
            path => Sink::open_file(PathBuf::from(path))?,
        };
        let (lines, receiver) = mpsc::sync_channel::<String>(QUEUE_LINES);
        let state = Arc::new(WriterState::default());
        let shared = state.clone();
        std::thread::Builder::new()
            .name("outpost-access-log".into())
            .spawn(move || {
                loop {
                    let line = match receiver.recv_timeout(Duration::from_millis(250)) {
                        Ok(line) => Some(line),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    };
                    if shared.reopen.swap(false, Ordering::Relaxed) {
                        let _ = sink.writer().flush();
                        sink.reopen();
                    }
                    let Some(line) = line else { continue };
                    let _ = sink.writer().write_all(line.as_bytes());
                    shared.queued.fetch_sub(1, Ordering::Relaxed);
                    while let Ok(line) = receiver.try_recv() {
                        let _ = sink.writer().write_all(line.as_bytes());
                        shared.queued.fetch_sub(1, Ordering::Relaxed);
                    }
                    let _ = sink.writer().flush();
                }
            })?;
        Ok(Some(AccessLog {
            lines,
            state,
            dropped,
        }))
    }

    /// Asks the writer to reopen its file before its next line (logrotate's `postrotate`
    /// sends SIGUSR1 for this).
    pub fn reopen(&self) {
        self.state.reopen.store(true, Ordering::Relaxed);
    }

    /// Waits, at most `limit`, until every queued line is written (before the node exits).
    pub fn flush(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.state.queued.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Queues one line for `record`.
    pub fn write(&self, record: &AccessRecord<'_>) {
        let ms = |d: Duration| (d.as_secs_f64() * 1_000_000.0).round() / 1000.0;
        let mut line = serde_json::json!({
            "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            "request_id": record.request_id,
            "service": record.service,
            "client_ip": record.client.map(|ip| ip.to_string()),
            "method": record.method,
            "host": record.host,
            "path": record.path,
            "status": record.status,
            "bytes_in": record.bytes_in,
            "bytes_out": record.bytes_out,
            "duration_ms": ms(record.total),
            "guest_ms": record.guest.map(ms),
            "origin_ms": ms(record.origin),
            "cache": record.cache,
            "response_cache": record.response_cache,
        })
        .to_string();
        line.push('\n');
        self.state.queued.fetch_add(1, Ordering::Relaxed);
        if self.lines.try_send(line).is_err() {
            self.state.queued.fetch_sub(1, Ordering::Relaxed);
            self.dropped.inc();
        }
    }
}
