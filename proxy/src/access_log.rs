//! The access log: one JSON object per line for every request the node answers.
//!
//! Lines are handed to a writer thread over a channel, so a slow disk never stalls the
//! request path; the thread flushes whenever it has nothing queued.

use std::io::Write;
use std::net::IpAddr;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

/// Where access log lines go.
pub struct AccessLog {
    lines: mpsc::Sender<String>,
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
    /// Opens the access log for `target`: `off` (None), `stdout`, or a file path.
    pub fn open(target: &str) -> std::io::Result<Option<AccessLog>> {
        let mut sink: Box<dyn Write + Send> = match target {
            "off" | "" => return Ok(None),
            "stdout" => Box::new(std::io::stdout()),
            path => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (lines, receiver) = mpsc::channel::<String>();
        std::thread::Builder::new()
            .name("outpost-access-log".into())
            .spawn(move || {
                while let Ok(line) = receiver.recv() {
                    let _ = sink.write_all(line.as_bytes());
                    while let Ok(line) = receiver.try_recv() {
                        let _ = sink.write_all(line.as_bytes());
                    }
                    let _ = sink.flush();
                }
            })?;
        Ok(Some(AccessLog { lines }))
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
        let _ = self.lines.send(line);
    }
}
