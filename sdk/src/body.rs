//! Bodies that are either bytes in guest memory or a stream still arriving from the host.
//!
//! A streaming body is read in chunks of at most [`CHUNK`] bytes, so proxying a 100 MiB
//! response costs 64 KiB of guest memory, not 100 MiB. Reading the whole body
//! ([`Body::into_bytes`]) is there when you need it, and says so in its name.

use bytes::{Bytes, BytesMut};

use crate::error::{Error, ErrorKind};
use crate::wasi::{IncomingStream, describe_stream_error, write_all};

/// The largest chunk read from the host at once.
pub const CHUNK: u64 = 64 * 1024;

/// The most `blocking-write-and-flush` takes in one call.
const SMALL_WRITE: usize = 4096;

/// A request or response body.
///
/// ```
/// use outpost::Body;
///
/// let body = Body::from("hello");
/// assert_eq!(body.into_bytes().unwrap(), "hello");
/// ```
#[derive(Default)]
pub struct Body {
    inner: Inner,
}

#[derive(Default)]
enum Inner {
    #[default]
    Empty,
    Bytes(Bytes),
    Stream(IncomingStream),
}

impl Body {
    /// An empty body.
    pub fn empty() -> Self {
        Self::default()
    }

    pub(crate) fn from_stream(stream: IncomingStream) -> Self {
        Self {
            inner: Inner::Stream(stream),
        }
    }

    /// Whether the body is still arriving from the host (true) or is in guest memory.
    pub fn is_streaming(&self) -> bool {
        matches!(self.inner, Inner::Stream(_))
    }

    /// The length, when known without reading: bytes in memory have one, streams do not.
    ///
    /// ```
    /// assert_eq!(outpost::Body::from(vec![0u8; 3]).known_len(), Some(3));
    /// ```
    pub fn known_len(&self) -> Option<u64> {
        match &self.inner {
            Inner::Empty => Some(0),
            Inner::Bytes(bytes) => Some(bytes.len() as u64),
            Inner::Stream(_) => None,
        }
    }

    /// Reads the next chunk; `None` at the end. Bytes in memory come out as one chunk.
    ///
    /// ```
    /// let mut body = outpost::Body::from("abc");
    /// assert_eq!(body.read_chunk().unwrap().unwrap(), "abc");
    /// assert!(body.read_chunk().unwrap().is_none());
    /// ```
    pub fn read_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        match std::mem::take(&mut self.inner) {
            Inner::Empty => Ok(None),
            Inner::Bytes(bytes) => Ok(Some(bytes)),
            Inner::Stream(mut stream) => match stream.read(CHUNK)? {
                Some(chunk) => {
                    self.inner = Inner::Stream(stream);
                    Ok(Some(chunk))
                }
                None => Ok(None),
            },
        }
    }

    /// Reads the whole body into memory. Prefer [`Body::read_chunk`] for bodies of
    /// unknown size: a guest's memory is limited.
    pub fn into_bytes(mut self) -> Result<Bytes, Error> {
        if let Inner::Bytes(bytes) = &self.inner {
            return Ok(bytes.clone());
        }
        let mut all = BytesMut::new();
        while let Some(chunk) = self.read_chunk()? {
            all.extend_from_slice(&chunk);
        }
        Ok(all.freeze())
    }

    /// Reads the whole body as UTF-8 text; a body that is not UTF-8 is a 400 error.
    ///
    /// ```
    /// assert_eq!(outpost::Body::from("hi").into_string().unwrap(), "hi");
    /// ```
    pub fn into_string(self) -> Result<String, Error> {
        Ok(String::from_utf8(self.into_bytes()?.to_vec())?)
    }

    /// Writes the whole body to a host output stream; a streaming body is spliced by the
    /// host without passing through guest memory.
    pub(crate) fn write_to(
        mut self,
        stream: &wasip2::io::streams::OutputStream,
    ) -> Result<(), Error> {
        match std::mem::take(&mut self.inner) {
            Inner::Empty => {}
            // One call writes and flushes a small body (wasi:io allows 4 KiB at once).
            Inner::Bytes(bytes) if bytes.len() <= SMALL_WRITE => {
                return stream.blocking_write_and_flush(&bytes).map_err(|e| {
                    Error::of_kind(
                        ErrorKind::Body,
                        format!("writing a body failed: {}", describe_stream_error(e)),
                    )
                });
            }
            Inner::Bytes(bytes) => write_all(stream, &bytes).map_err(|e| {
                Error::of_kind(ErrorKind::Body, format!("writing a body failed: {e}"))
            })?,
            // A body still arriving from the host goes back out through the host.
            Inner::Stream(mut input) => while input.splice_to(stream, CHUNK)?.is_some() {},
        }
        match stream.blocking_flush() {
            // The host may already have taken everything and closed its end (a request with
            // a Content-Length is done once that many bytes arrived): nothing was lost.
            Ok(()) | Err(wasip2::io::streams::StreamError::Closed) => Ok(()),
            Err(e) => Err(Error::of_kind(
                ErrorKind::Body,
                format!("flushing a body failed: {e}"),
            )),
        }
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Empty => f.write_str("Body(empty)"),
            Inner::Bytes(bytes) => write!(f, "Body({} bytes)", bytes.len()),
            Inner::Stream(_) => f.write_str("Body(streaming)"),
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            return Body::empty();
        }
        Self {
            inner: Inner::Bytes(bytes),
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Bytes::from(bytes).into()
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Bytes::from(text).into()
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Bytes::from_static(text.as_bytes()).into()
    }
}

impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Self {
        Bytes::from_static(bytes).into()
    }
}

impl From<()> for Body {
    fn from(_: ()) -> Self {
        Body::empty()
    }
}
