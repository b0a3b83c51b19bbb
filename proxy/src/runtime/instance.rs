//! One guest instance's state inside its `Store`: the request's hooks, WASI and wasi-http
//! contexts, the resource table, a memory limiter that remembers what it refused, and the
//! captured stdout/stderr.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::host::EdgeHooks;

/// Guest stdout and stderr kept per request (panic messages land in stderr), in bytes each;
/// more is dropped, never a reason to fail the guest.
const OUTPUT_CAPTURE_BYTES: usize = 16 * 1024;

/// Per-instance state inside a guest's `Store`.
pub struct GuestState {
    // `hooks` drops before `table`: a guest that did not end cleanly is marked failed
    // before its unfinished outgoing bodies (in the table) close.
    pub(crate) hooks: EdgeHooks,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    pub(crate) memory: MemoryLimit,
    pub(crate) stdout: OutputCapture,
    pub(crate) stderr: OutputCapture,
}

impl GuestState {
    /// State for a new instance serving its first request with `hooks`, allowed
    /// `memory_bytes` of linear memory.
    pub fn new(hooks: EdgeHooks, memory_bytes: usize) -> Self {
        let stdout = OutputCapture::default();
        let stderr = OutputCapture::default();
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        Self {
            hooks,
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            memory: MemoryLimit::new(memory_bytes),
            stdout,
            stderr,
        }
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// The store's memory limiter: refuses growth past the service's limit and remembers that
/// it did, so the failure is classified from this flag rather than from error text. It
/// also knows how big the memory has grown, which decides whether an instance is reused.
pub(crate) struct MemoryLimit {
    max_bytes: usize,
    /// The largest size any of the instance's memories has grown to.
    pub(crate) grown_to: usize,
    /// Set when a growth was refused.
    pub(crate) refused: bool,
}

/// Table elements one instance may grow its tables to (function references; Rust guests
/// use a few hundred).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl MemoryLimit {
    fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            grown_to: 0,
            refused: false,
        }
    }

    /// Applies a new limit (for a reused instance whose service's limit changed).
    pub(crate) fn set_max(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
    }
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.refused = true;
            return Err(wasmtime::Error::msg(format!(
                "memory limit: the guest asked for {desired} bytes, {} allowed",
                self.max_bytes
            )));
        }
        self.grown_to = self.grown_to.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// A guest's stdout or stderr, captured in memory and taken after each request. Output
/// past [`OUTPUT_CAPTURE_BYTES`] is dropped and the capture says so.
#[derive(Clone, Default)]
pub(crate) struct OutputCapture {
    buffer: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    bytes: BytesMut,
    dropped: usize,
}

impl OutputCapture {
    /// What the guest wrote since the last take, trimmed, as text.
    pub(crate) fn take(&self) -> String {
        let mut captured = self.buffer.lock().expect("output capture lock");
        let bytes = std::mem::take(&mut captured.bytes);
        let dropped = std::mem::take(&mut captured.dropped);
        let mut text = String::from_utf8_lossy(&bytes).trim_end().to_owned();
        if dropped > 0 {
            text.push_str(&format!("\n[{dropped} more bytes of output dropped]"));
        }
        text
    }

    fn append(&self, data: &[u8]) {
        let mut captured = self.buffer.lock().expect("output capture lock");
        let room = OUTPUT_CAPTURE_BYTES.saturating_sub(captured.bytes.len());
        let keep = room.min(data.len());
        captured.bytes.extend_from_slice(&data[..keep]);
        captured.dropped += data.len() - keep;
    }
}

impl IsTerminal for OutputCapture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputCapture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for OutputCapture {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always room: what does not fit is dropped, not refused.
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for OutputCapture {
    async fn ready(&mut self) {}
}

impl AsyncWrite for OutputCapture {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_output_is_taken_once_and_bounded() {
        let capture = OutputCapture::default();
        capture.append(b"hello\n");
        assert_eq!(capture.take(), "hello");
        assert_eq!(capture.take(), "");
        capture.append(&vec![b'x'; OUTPUT_CAPTURE_BYTES + 10]);
        let text = capture.take();
        assert!(
            text.ends_with("[10 more bytes of output dropped]"),
            "{text}"
        );
    }

    #[test]
    fn the_limiter_records_what_it_refused_and_how_far_memory_grew() {
        let mut limit = MemoryLimit::new(1 << 20);
        assert!(limit.memory_growing(0, 65536, None).unwrap());
        assert_eq!(limit.grown_to, 65536);
        assert!(!limit.refused);
        assert!(limit.memory_growing(65536, 2 << 20, None).is_err());
        assert!(limit.refused);
    }
}
