//! The seam between the cache and whatever answers its misses: a backend for guests'
//! fetches, the guest itself for the response cache, a scripted origin in unit tests.
//! The cache never does I/O of its own; every fill goes through an [`Origin`].

use std::future::Future;
use std::pin::Pin;

use wasmtime_wasi_http::{Error as HttpError, WasiBody};

/// What [`Origin::send`] returns.
pub type OriginFuture<'a> =
    Pin<Box<dyn Future<Output = Result<http::Response<WasiBody>, HttpError>> + Send + 'a>>;

/// Answers requests the cache cannot.
pub trait Origin: Send + Sync {
    /// Sends `request` and resolves to the response head (the body may still stream). A
    /// response may carry [`super::Overrides`] in its extensions: instructions for
    /// storing it that only the origin knows (the response cache's guest sets them).
    fn send(&self, request: http::Request<WasiBody>) -> OriginFuture<'_>;
}
