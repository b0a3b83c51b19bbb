//! Answering before the answer is complete: send the head now, write the body as it is made.
//!
//! The handler's client-facing `response-outparam` waits here while the handler runs.
//! [`Response::stream_to_client`] takes it, sends the head, and hands back a
//! [`StreamingBody`]; otherwise the handler's returned response is sent as usual.

use std::cell::RefCell;

use wasip2::http::types::{OutgoingBody, OutgoingResponse, ResponseOutparam};
use wasip2::io::streams::OutputStream;

use crate::body::Body;
use crate::error::{Error, ErrorKind};
use crate::response::Response;
use crate::wasi::{describe_stream_error, write_all};

/// Where the answer to the current request goes, until something sends it.
pub(crate) struct Downstream {
    pub(crate) out: ResponseOutparam,
    /// The client asked with HEAD (or the status allows no body): the body is dropped.
    pub(crate) head_only: bool,
}

thread_local! {
    static DOWNSTREAM: RefCell<Option<Downstream>> = const { RefCell::new(None) };
}

/// Parks the client's outparam for the duration of the handler.
pub(crate) fn park(downstream: Downstream) {
    DOWNSTREAM.with(|slot| *slot.borrow_mut() = Some(downstream));
}

/// Takes the parked outparam; `None` once a streaming response has taken it.
pub(crate) fn take() -> Option<Downstream> {
    DOWNSTREAM.with(|slot| slot.borrow_mut().take())
}

impl Response {
    /// Sends this response's status and headers to the client now and returns the body to
    /// keep writing; this response's own body (for example a backend's, still streaming)
    /// goes first. Finish with [`StreamingBody::finish`] and return what it gives back.
    ///
    /// No `Content-Length` is added: the body goes out chunked (HTTP/1.1) or as DATA frames
    /// (HTTP/2). A `Content-Length` you set yourself is kept, and the node cuts the
    /// response off if the body does not match it.
    ///
    /// ```no_run
    /// use outpost::{Error, Request, Response};
    ///
    /// #[outpost::main]
    /// fn handle(_req: Request) -> Result<Response, Error> {
    ///     let mut body = Response::text("").stream_to_client()?;
    ///     for i in 0..3 {
    ///         body.write_chunk(format!("line {i}\n"))?; // the client sees each line at once
    ///     }
    ///     body.finish()
    /// }
    /// # fn main() {}
    /// ```
    ///
    /// # Errors
    /// If the response was already sent (`stream_to_client` called twice, or outside a
    /// handler), or its headers are invalid.
    pub fn stream_to_client(mut self) -> Result<StreamingBody, Error> {
        let Some(Downstream { out, head_only }) = take() else {
            return Err(Error::of_kind(
                ErrorKind::Invalid,
                "the response to this request was already sent",
            ));
        };
        let head_only = head_only || !crate::response::allows_body(self.status());
        let fields = self.take_header_fields()?;
        let response = OutgoingResponse::new(fields);
        let _ = response.set_status_code(self.status().as_u16());
        let body = response.body().expect("a new response has a body");
        self.announce_edge_cache();
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().expect("a new body has a stream");
        let mut streaming = StreamingBody {
            stream: Some(stream),
            body: Some(body),
            head_only,
        };
        streaming.append(self.take_body())?;
        Ok(streaming)
    }
}

/// The body of a response whose head is already with the client.
///
/// Write chunks with [`StreamingBody::write_chunk`] (or [`std::io::Write`]), add whole
/// bodies with [`StreamingBody::append`], then call [`StreamingBody::finish`]. Dropping it
/// unfinished tells the client the response broke off (the connection is cut, or an HTTP/2
/// stream reset), never that a short body was complete.
pub struct StreamingBody {
    // Field order matters: the stream is the body's child and must go first.
    stream: Option<OutputStream>,
    body: Option<OutgoingBody>,
    head_only: bool,
}

impl StreamingBody {
    /// Writes `data` to the client, waiting while the client is slower than the guest.
    ///
    /// ```no_run
    /// # fn f(body: &mut outpost::StreamingBody) -> Result<(), outpost::Error> {
    /// body.write_chunk("<p>more</p>")?;
    /// # Ok(()) }
    /// ```
    pub fn write_chunk(&mut self, data: impl AsRef<[u8]>) -> Result<(), Error> {
        if self.head_only {
            return Ok(());
        }
        let stream = self.stream()?;
        write_all(stream, data.as_ref()).map_err(write_failed)?;
        stream
            .blocking_flush()
            .map_err(|e| write_failed(describe_stream_error(e)))
    }

    /// Appends a whole body. A body streaming from a backend is spliced by the host
    /// straight to the client: its bytes never enter guest memory.
    ///
    /// ```no_run
    /// # use outpost::{Error, Request, Response};
    /// # fn f() -> Result<Response, Error> {
    /// let mut page = Response::html("<header>edge</header>").stream_to_client()?;
    /// let mut origin = Request::get("http://origin/article").send("origin")?;
    /// page.append(origin.take_body())?;
    /// page.finish()
    /// # }
    /// ```
    pub fn append(&mut self, body: impl Into<Body>) -> Result<(), Error> {
        if self.head_only {
            return Ok(());
        }
        body.into().write_to(self.stream()?)
    }

    /// Ends the body and returns the response value a handler returns after streaming.
    ///
    /// ```no_run
    /// # fn f(body: outpost::StreamingBody) -> Result<outpost::Response, outpost::Error> {
    /// body.finish()
    /// # }
    /// ```
    pub fn finish(mut self) -> Result<Response, Error> {
        drop(self.stream.take());
        let body = self.body.take().expect("a streaming body is finished once");
        OutgoingBody::finish(body, None).map_err(|code| {
            Error::of_kind(
                ErrorKind::Body,
                format!("finishing the response body failed: {code:?}"),
            )
        })?;
        Ok(Response::already_sent())
    }

    fn stream(&self) -> Result<&OutputStream, Error> {
        self.stream
            .as_ref()
            .ok_or_else(|| write_failed("the body was finished".into()))
    }
}

/// Writes without flushing each call (for writers that produce many small pieces, such as
/// an HTML rewriter); `flush` pushes what was written to the client.
impl std::io::Write for StreamingBody {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.head_only {
            let stream = self.stream().map_err(std::io::Error::other)?;
            write_all(stream, buf).map_err(|e| std::io::Error::other(write_failed(e)))?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.head_only {
            return Ok(());
        }
        let stream = self.stream().map_err(std::io::Error::other)?;
        stream
            .blocking_flush()
            .map_err(|e| std::io::Error::other(write_failed(describe_stream_error(e))))
    }
}

impl Drop for StreamingBody {
    fn drop(&mut self) {
        // Unfinished: drop the stream, then the body without `finish`, which the host
        // reports to the client as a broken response.
        drop(self.stream.take());
        drop(self.body.take());
    }
}

impl std::fmt::Debug for StreamingBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingBody")
            .field("finished", &self.body.is_none())
            .finish()
    }
}

fn write_failed(reason: String) -> Error {
    Error::of_kind(
        ErrorKind::Body,
        format!("writing to the client failed: {reason}"),
    )
}
