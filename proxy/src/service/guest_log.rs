//! What a guest run leaves behind, into the node's log and metrics: its output (one log
//! record per line at the level the SDK's macros tagged), its failure, its time.

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::ServiceMetrics;
use crate::runtime::{GuestEnd, GuestReport};

/// Logs `report` for the request `request_id` of `service` and counts it into `metrics`.
pub(crate) fn record(
    service: &str,
    request_id: &str,
    metrics: &ServiceMetrics,
    report: &GuestReport,
) {
    if let Some(instantiate) = report.instantiate {
        metrics.instantiated(instantiate.as_secs_f64());
    }
    if report.lived > Duration::ZERO {
        metrics.executed(report.lived.as_secs_f64());
    }
    metrics.guest_ran(report.instantiate.is_some());
    match &report.end {
        GuestEnd::Failed(failure) => {
            metrics.guest_error(failure.kind());
            let stderr = if report.stderr.is_empty() {
                String::new()
            } else {
                format!("; guest stderr: {}", report.stderr)
            };
            tracing::warn!(
                service,
                request_id,
                kind = failure.kind().label(),
                "{failure}{stderr}"
            );
            // stderr is already part of the warning above.
            log_output(service, request_id, &report.stdout, "");
        }
        GuestEnd::Cancelled => {
            tracing::debug!(
                service,
                request_id,
                "the client went away; the guest was cancelled"
            );
            log_output(service, request_id, &report.stdout, &report.stderr);
        }
        GuestEnd::Clean => log_output(service, request_id, &report.stdout, &report.stderr),
    }
}

/// Logs what a guest printed, one line per log record, tagged with service and request id.
fn log_output(service: &str, request_id: &str, stdout: &str, stderr: &str) {
    for (stream, text) in [("stdout", stdout), ("stderr", stderr)] {
        for line in text.lines() {
            let (level, line) = guest_log_level(line);
            macro_rules! guest_line {
                ($level:expr) => {
                    tracing::event!(target: "outpost::guest", $level, service, request_id, stream, "{line}")
                };
            }
            // tracing needs its level as a constant, hence one arm per level.
            match level {
                tracing::Level::ERROR => guest_line!(tracing::Level::ERROR),
                tracing::Level::WARN => guest_line!(tracing::Level::WARN),
                tracing::Level::DEBUG => guest_line!(tracing::Level::DEBUG),
                _ => guest_line!(tracing::Level::INFO),
            }
        }
    }
}

/// The level of one line of guest output: the SDK's log macros tag lines (`[warn] ...`);
/// untagged output is `info`. Returns the level and the line without its tag.
pub fn guest_log_level(line: &str) -> (tracing::Level, &str) {
    [
        ("[error] ", tracing::Level::ERROR),
        ("[warn] ", tracing::Level::WARN),
        ("[info] ", tracing::Level::INFO),
        ("[debug] ", tracing::Level::DEBUG),
    ]
    .into_iter()
    .find_map(|(tag, level)| line.strip_prefix(tag).map(|rest| (level, rest)))
    .unwrap_or((tracing::Level::INFO, line))
}

/// One guest run, as a [`ReportObserver`] sees it.
pub struct GuestRun<'a> {
    /// The request it ran for.
    pub request_id: &'a str,
    /// How it ended, what it printed, how long it took.
    pub report: &'a GuestReport,
    /// How the edge cache answered its last backend fetch, if it made one.
    pub fetch_cache: Option<crate::cache::CacheState>,
}

/// Called with every guest run, for tools that want what the node logs (the test harness
/// shows a request's log lines on its response).
pub type ReportObserver = Arc<dyn Fn(&GuestRun<'_>) + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_tags_set_the_level_and_untagged_lines_are_info() {
        assert_eq!(guest_log_level("[warn] low"), (tracing::Level::WARN, "low"));
        assert_eq!(guest_log_level("plain"), (tracing::Level::INFO, "plain"));
        assert_eq!(
            guest_log_level("[trace] x"),
            (tracing::Level::INFO, "[trace] x")
        );
    }
}
