//! The request body as a guest reads it: cut off at the service's size limit (the
//! pipeline then answers 413), failed when the client goes quiet between chunks for
//! `server.read_timeout_secs`, and counted for the access log.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use super::exchange::RequestTrace;
use crate::http::IdleTimeout;

/// Wraps `request`'s body (when it has one) in the limit, the idle timeout and the count.
pub(crate) fn limit(
    request: http::Request<WasiBody>,
    limit: u64,
    read_timeout: Duration,
    trace: Arc<RequestTrace>,
) -> http::Request<WasiBody> {
    if request.body().is_end_stream() {
        return request;
    }
    request.map(|body| {
        Limited {
            inner: IdleTimeout::new(body, read_timeout),
            limit,
            seen: 0,
            trace,
        }
        .boxed_unsync()
    })
}

struct Limited {
    inner: IdleTimeout<WasiBody>,
    limit: u64,
    seen: u64,
    trace: Arc<RequestTrace>,
}

impl Body for Limited {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            let len = data.len() as u64;
            this.seen += len;
            this.trace.bytes_in.fetch_add(len, Ordering::Relaxed);
            if this.seen > this.limit {
                this.trace.body_too_large.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(Some(this.seen)))));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
