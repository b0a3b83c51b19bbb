//! Deadlines for every state a client connection can be in, enforced on its bytes.
//!
//! [`ConnIo`] sits between the socket (or TLS stream) and the HTTP codec. It knows which
//! state the connection is in ([`ConnState`], set by the codec's side as requests start
//! and end) and fails a read that waits past that state's deadline, so the codec sees an
//! I/O error and closes the connection:
//!
//! | state | deadline (config) | starts |
//! |---|---|---|
//! | preface: before the protocol is known (h2c sniffing, the HTTP/2 preface) | `header_timeout_ms` | at accept |
//! | idle: between requests on a kept-alive HTTP/1 connection | `keepalive_timeout_secs` | when a response ends |
//! | head: a request head is arriving | `header_timeout_ms` | at its first byte |
//! | busy: a request is being served | none (the guest's deadline and `read_timeout_secs` between body chunks apply) | when the head is complete |
//!
//! Writes that make no progress for `write_timeout_secs` fail in every state, so a client
//! that stops reading cannot hold a response (and its guest) forever. The TLS handshake
//! before all this is bounded by pingora (60 s).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use pingora_core::protocols::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The HTTP/2 connection preface (RFC 9113 section 3.4).
pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const PREFACE: u8 = 0;
const IDLE: u8 = 1;
const HEAD: u8 = 2;
const BUSY: u8 = 3;

/// A connection's deadlines, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    pub(crate) header: Duration,
    pub(crate) keepalive: Duration,
    pub(crate) write: Duration,
}

/// Where a connection stands, shared between its I/O and the requests served on it.
pub(crate) struct ConnState {
    phase: AtomicU8,
    /// When the current phase began, in nanoseconds since `epoch`.
    since: AtomicU64,
    epoch: Instant,
    deadlines: Deadlines,
}

impl ConnState {
    fn new(deadlines: Deadlines) -> Arc<Self> {
        Arc::new(Self {
            phase: AtomicU8::new(PREFACE),
            since: AtomicU64::new(0),
            epoch: Instant::now(),
            deadlines,
        })
    }

    fn set(&self, phase: u8) {
        self.since
            .store(self.epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.phase.store(phase, Ordering::Release);
    }

    /// A request's head is complete: no read deadline while it is served.
    pub(crate) fn busy(&self) {
        self.set(BUSY);
    }

    /// A response ended on an HTTP/1 connection: it may idle until the next request.
    pub(crate) fn idle(&self) {
        self.set(IDLE);
    }

    /// The protocol is known and has its own timers (HTTP/2): no read deadline.
    pub(crate) fn open(&self) {
        self.set(BUSY);
    }

    /// The deadline reads now have, if any.
    fn read_deadline(&self) -> Option<Instant> {
        let limit = match self.phase.load(Ordering::Acquire) {
            PREFACE | HEAD => self.deadlines.header,
            IDLE => self.deadlines.keepalive,
            _ => return None,
        };
        let since = Duration::from_nanos(self.since.load(Ordering::Relaxed));
        Some(self.epoch + since + limit)
    }

    /// Bytes arrived: an idle connection starts a request head.
    fn bytes_arrived(&self) {
        if self.phase.load(Ordering::Acquire) == IDLE {
            self.set(HEAD);
        }
    }
}

/// The client stream with its deadlines (see the module doc).
pub(crate) struct ConnIo {
    inner: Stream,
    state: Arc<ConnState>,
    /// Bytes read while sniffing the protocol, served again first.
    prefix: BytesMut,
    /// HTTP/2 preface bytes still to arrive; when they have, the connection is open.
    h2_preface_left: usize,
    read_timer: Pin<Box<Sleep>>,
    read_armed: Option<Instant>,
    write_timer: Pin<Box<Sleep>>,
    write_armed: bool,
}

/// What the first bytes of a plaintext connection say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sniffed {
    /// The HTTP/2 preface: h2c with prior knowledge.
    H2,
    /// Anything else: HTTP/1 (which then parses it, or refuses it).
    H1,
    /// The client closed (or timed out) before sending anything.
    Gone,
}

impl ConnIo {
    pub(crate) fn new(inner: Stream, deadlines: Deadlines) -> (Self, Arc<ConnState>) {
        let state = ConnState::new(deadlines);
        let io = Self {
            inner,
            state: state.clone(),
            prefix: BytesMut::new(),
            h2_preface_left: 0,
            read_timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            read_armed: None,
            write_timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            write_armed: false,
        };
        (io, state)
    }

    /// Reads just enough to tell the HTTP/2 preface from an HTTP/1 request: stops at the
    /// first byte that differs from the preface, so a short HTTP/1 request (an 18-byte
    /// `GET / HTTP/1.0`) is never left waiting for bytes that will not come. What was read
    /// is served again to the codec.
    pub(crate) async fn sniff(&mut self) -> Sniffed {
        let deadline =
            tokio::time::Instant::from_std(self.state.read_deadline().unwrap_or_else(Instant::now));
        let mut buf = [0u8; 24];
        let mut have = 0;
        while have < H2_PREFACE.len() {
            let read = tokio::time::timeout_at(deadline, self.inner.read(&mut buf[have..])).await;
            match read {
                Ok(Ok(n)) if n > 0 => {
                    self.prefix.extend_from_slice(&buf[have..have + n]);
                    have += n;
                    if buf[..have] != H2_PREFACE[..have] {
                        return Sniffed::H1;
                    }
                }
                // Closed or timed out: HTTP/1 gets to answer what it has (a 400), if
                // anything arrived at all.
                _ if have > 0 => return Sniffed::H1,
                _ => return Sniffed::Gone,
            }
        }
        Sniffed::H2
    }

    /// The connection speaks HTTP/2: the preface deadline holds until its 24-byte preface
    /// arrived, then HTTP/2's own timers (PING, idle) take over.
    pub(crate) fn expect_h2_preface(&mut self) {
        self.h2_preface_left = H2_PREFACE.len();
    }

    /// Notes `n` bytes handed to the codec.
    fn delivered(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.state.bytes_arrived();
        if self.h2_preface_left > 0 {
            self.h2_preface_left = self.h2_preface_left.saturating_sub(n);
            if self.h2_preface_left == 0 {
                self.state.open();
            }
        }
    }
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("client {what} timed out"),
    )
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            this.delivered(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.read_armed = None;
                this.delivered(buf.filled().len() - before);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some(deadline) = this.state.read_deadline() else {
                    this.read_armed = None;
                    return Poll::Pending;
                };
                if this.read_armed != Some(deadline) {
                    this.read_armed = Some(deadline);
                    this.read_timer
                        .as_mut()
                        .reset(tokio::time::Instant::from_std(deadline));
                }
                ready!(this.read_timer.as_mut().poll(cx));
                Poll::Ready(Err(timed_out("read")))
            }
        }
    }
}

impl ConnIo {
    /// Runs a write-side poll, failing it once it has made no progress for the write
    /// timeout.
    fn write_with_deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut Stream>, &mut Context<'_>) -> Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match op(Pin::new(&mut self.inner), cx) {
            Poll::Ready(result) => {
                self.write_armed = false;
                Poll::Ready(result)
            }
            Poll::Pending => {
                if !self.write_armed {
                    self.write_armed = true;
                    let at = tokio::time::Instant::now() + self.state.deadlines.write;
                    self.write_timer.as_mut().reset(at);
                }
                ready!(self.write_timer.as_mut().poll(cx));
                Poll::Ready(Err(timed_out("write")))
            }
        }
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut()
            .write_with_deadline(cx, |inner, cx| inner.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut()
            .write_with_deadline(cx, |inner, cx| inner.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut()
            .write_with_deadline(cx, |inner, cx| inner.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut()
            .write_with_deadline(cx, |inner, cx| inner.poll_shutdown(cx))
    }
}
