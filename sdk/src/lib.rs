#![warn(missing_docs)]
//! # Outpost guest SDK
//!
//! Write an edge program as one function from request to response. By default the node
//! runs a fresh instance of it for every request, so there is no state to leak between
//! requests and nothing to clean up.
//!
//! An operator may turn on instance reuse for a service (`[services.NAME.reuse]`): then one
//! instance serves up to `max_requests` requests one after another, and globals, statics
//! and heap contents *stay in memory between requests, which may come from different
//! users*. Never keep per-user data in globals in a guest that may be reused. An instance
//! is never reused after a trap, a timeout or any error.
//!
//! ```no_run
//! use outpost::{Error, Request, Response};
//!
//! #[outpost::main]
//! fn handle(mut req: Request) -> Result<Response, Error> {
//!     if req.path() == "/hello" {
//!         return Ok(Response::text("hello from the edge\n"));
//!     }
//!     // Everything else goes to the backend named `origin` in the node's config.
//!     req.set_header("x-edge", "outpost");
//!     let mut response = req.send("origin")?;
//!     response.set_header("x-served-by", "outpost");
//!     Ok(response)
//! }
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (crate type `cdylib`) and
//! serve it with `outpost serve --guest target/wasm32-wasip2/release/NAME.wasm --backend
//! origin=http://127.0.0.1:8080`.
//!
//! - [`Request`] and [`Response`] use the [`http`] crate's method, status and header types.
//!   Headers are copied into guest memory only when the guest first reads them: a
//!   backend response passed on with a field set or removed never is, and neither is a
//!   client request (or its body) the guest does not look at.
//! - [`Request::send`] fetches from a named backend; bodies stream through in chunks, and
//!   a backend body returned as is (or appended to a [`StreamingBody`]) is spliced by the
//!   host without entering guest memory.
//! - [`Response::stream_to_client`] sends the head at once and returns a [`StreamingBody`]
//!   to keep writing (for example, rewriting a page as it arrives).
//!   [`Request::send_async`] with [`select`] or [`join_all`] runs several fetches at once.
//! - [`cache`] controls the edge cache per fetch ([`cache::CacheOverride`]) and offers a
//!   key/value cache for computed values with collapsing and purge by surrogate key.
//!   [`Response::cache_at_edge`] lets the edge answer later requests for the same URL
//!   from its response cache without running the guest.
//! - [`config::get`] and [`config::secret`] read the service's settings from the node config.
//! - [`rate::RateLimiter`] counts requests per client (or any key) over a sliding window
//!   for rate limiting at the edge; [`rate::increment`] is the raw counter.
//! - [`geo::client_location`] says where the client is (country, region, city,
//!   coordinates, time zone, network) when the operator configured a geo database.
//! - [`request_info`] tells the client IP, HTTP version, TLS details, request id and POP.
//! - [`info!`], [`warn!`], [`error!`] and [`debug!`] log into the node's log, tagged with
//!   the service and request id.
//! - [`Error`] carries the status the client sees when the handler returns `Err`.
//! - A panic becomes a `500` for this request only, with the panic message in the node's log.
//!
//! Any component exporting `wasi:http/incoming-handler` also runs on Outpost; this SDK
//! is one convenient way to write one. The WIT world is in `sdk/wit`.

mod body;
pub mod cache;
pub mod config;
mod error;
pub mod geo;
mod headers;
mod imports;
mod info;
pub mod log;
mod message;
pub mod rate;
mod request;
mod response;
mod streaming;
mod wasi;

pub use body::{Body, CHUNK};
pub use error::{Error, ErrorKind};
pub use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
pub use info::{RequestInfo, request_info};
pub use outpost_macro::main;
pub use request::{PendingRequest, Request, join_all, select};
pub use response::Response;
pub use streaming::StreamingBody;

/// Glue used by `#[outpost::main]`; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use wasip2;
    pub use wasip2::exports::http::incoming_handler::Guest;
    pub use wasip2::http::types::{IncomingRequest, ResponseOutparam};

    use crate::{Error, Request, Response};

    /// Runs `handler` for one incoming request and sends its answer.
    pub fn serve(
        incoming: IncomingRequest,
        out: ResponseOutparam,
        handler: fn(Request) -> Result<Response, Error>,
    ) {
        let request = match Request::from_incoming(incoming) {
            Ok(request) => request,
            Err(error) => {
                return crate::response::error_response(error).send_downstream(out, false);
            }
        };
        let head_only = request.method() == http::Method::HEAD;
        crate::streaming::park(crate::streaming::Downstream { out, head_only });
        let result = handler(request);
        match crate::streaming::take() {
            Some(downstream) => result
                .unwrap_or_else(crate::response::error_response)
                .send_downstream(downstream.out, downstream.head_only),
            // The handler streamed its answer; the client has the head already.
            None => match result {
                Ok(response) if response.is_sent() => {}
                Ok(_) => crate::warn!(
                    "the handler returned a response after streaming one; the streamed one stands"
                ),
                Err(error) => crate::error!(
                    "the handler failed after streaming began, so the client sees the response cut off: {}",
                    error.message()
                ),
            },
        }
    }
}
