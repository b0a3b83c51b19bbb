//! Logging into the node's log: [`info!`](crate::info), [`warn!`](crate::warn),
//! [`error!`](crate::error) and [`debug!`](crate::debug).
//!
//! Each call writes one line to the guest's stderr with a level tag (`[warn] ...`); the node
//! captures it when the request ends and logs it under target `outpost::guest` at that
//! level, tagged with the service and the request id. Lines without a tag (plain `println!`
//! or `eprintln!`) are logged at `info`.

use std::fmt;
use std::io::Write;

/// How important a log line is; the node logs it at the matching `tracing` level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something failed.
    Error,
    /// Something looks wrong.
    Warn,
    /// Normal operation.
    Info,
    /// Detail for debugging (shown when the node's log level includes `debug`).
    Debug,
}

impl Level {
    /// The tag that starts the line, which the node reads back.
    pub fn tag(self) -> &'static str {
        match self {
            Level::Error => "[error] ",
            Level::Warn => "[warn] ",
            Level::Info => "[info] ",
            Level::Debug => "[debug] ",
        }
    }
}

/// Writes one tagged line; the macros call this.
///
/// ```
/// outpost::log::write(outpost::log::Level::Info, format_args!("cache warmed in {} ms", 3));
/// ```
pub fn write(level: Level, message: fmt::Arguments<'_>) {
    let line = format!("{}{}\n", level.tag(), message);
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Logs at `info`: `outpost::info!("fetched {} items", n)`.
///
/// ```
/// outpost::info!("served {} from the cache", "/index.html");
/// ```
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($arg)*)) };
}

/// Logs at `warn`: `outpost::warn!("origin slow: {} ms", ms)`.
///
/// ```
/// outpost::warn!("origin took {} ms", 1200);
/// ```
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warn, format_args!($($arg)*)) };
}

/// Logs at `error`: `outpost::error!("bad token: {}", reason)`.
///
/// ```
/// outpost::error!("token rejected: {}", "expired");
/// ```
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($arg)*)) };
}

/// Logs at `debug` (visible when the node runs with `OUTPOST_LOG=outpost::guest=debug`).
///
/// ```
/// outpost::debug!("cache key: {}", "v1/home");
/// ```
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Debug, format_args!($($arg)*)) };
}
