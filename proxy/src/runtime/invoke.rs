//! Running one request in a guest instance, inside the caller's task.
//!
//! [`Runtime::run`] sets up (or takes from the reuse pool) an instance, instantiates it,
//! and drives the guest until it sets its response head; the rest of the guest's work is
//! driven by whoever reads the response body ([`GuestBody`]). There is no task per request
//! and no channel beyond the one `wasi:http` needs for the head, so dropping the request's
//! future or body cancels the guest and its origin fetches at once (a cache fill shared
//! with other requests runs in its own task and keeps going).
//!
//! Every run ends in exactly one [`GuestReport`], handed to the caller's sink: a clean end,
//! a failure (with the guest's output, time and instantiation time, also when it answered
//! with an error code), or a cancellation.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme as WasiScheme};
use wasmtime_wasi_http::{Error as HttpError, WasiBody, WasiHttpView};

use super::Runtime;
use super::engine::Admission;
use super::failure::{GuestFailure, classify};
use super::guest::Guest;
use super::instance::GuestState;
use super::pool::Instance;
use crate::config::LimitsConfig;
use crate::host::EdgeHooks;

/// How a guest's work for one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestEnd {
    /// It ended cleanly and its response was delivered whole.
    Clean,
    /// It failed (before or after its response head).
    Failed(GuestFailure),
    /// Its request went away (client gone) before it was done.
    Cancelled,
}

/// What one guest run left behind, handed to the caller's [`ReportSink`] exactly once.
#[derive(Debug)]
pub struct GuestReport {
    /// How it ended.
    pub end: GuestEnd,
    /// What the guest wrote to stderr (panic messages land here), trimmed.
    pub stderr: String,
    /// What the guest wrote to stdout, trimmed.
    pub stdout: String,
    /// Store setup plus instantiation, for a fresh instance that got that far.
    pub instantiate: Option<Duration>,
    /// From setup to the guest's end (time queued for a slot excluded).
    pub lived: Duration,
    /// Whether the instance had served earlier requests.
    pub reused: bool,
}

/// Receives a run's [`GuestReport`].
pub type ReportSink = Box<dyn FnOnce(GuestReport) + Send>;

/// One request for a guest.
pub struct GuestRequest {
    /// The request's host-side state (grants, request id, info).
    pub hooks: EdgeHooks,
    /// The service's limits (deadline, memory).
    pub limits: LimitsConfig,
    /// The request, its body possibly still streaming in.
    pub request: hyper::Request<WasiBody>,
    /// Whether the client came over TLS.
    pub scheme: http::uri::Scheme,
    /// The slots this run holds until the guest ends.
    pub admission: Admission,
    /// Where the run's report goes.
    pub on_end: ReportSink,
}

/// A guest's response head, with the body that drives the rest of the guest.
pub struct GuestResponse {
    /// The head and the streaming body.
    pub response: http::Response<GuestBody>,
    /// Store setup plus instantiation, for a fresh instance.
    pub instantiate: Option<Duration>,
    /// Whether the instance had served earlier requests.
    pub reused: bool,
}

type Running = Pin<Box<dyn Future<Output = Finished> + Send>>;

/// The guest's end as its own future sees it.
struct Finished {
    outcome: Result<(), GuestFailure>,
    instance: Option<Instance>,
    stdout: String,
    stderr: String,
    lived: Duration,
}

/// What the run knows before the guest ends, to build its report. Dropped unreported
/// (the request went away while the guest ran), it reports a cancellation.
struct Pending {
    guest: Arc<Guest>,
    on_end: Option<ReportSink>,
    instantiate: Option<Duration>,
    reused: bool,
    started: Instant,
}

impl Pending {
    fn report(mut self, end: GuestEnd, finished: Option<Finished>) {
        self.send(end, finished);
    }

    fn send(&mut self, end: GuestEnd, finished: Option<Finished>) {
        let Some(on_end) = self.on_end.take() else {
            return;
        };
        let (stdout, stderr, lived, instance) = match finished {
            Some(f) => (f.stdout, f.stderr, f.lived, f.instance),
            None => (String::new(), String::new(), self.started.elapsed(), None),
        };
        if end == GuestEnd::Clean
            && let (Some(pool), Some(instance)) = (&self.guest.pool, instance)
        {
            pool.put(instance);
        }
        on_end(GuestReport {
            end,
            stdout,
            stderr,
            instantiate: self.instantiate,
            lived,
            reused: self.reused,
        });
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.send(GuestEnd::Cancelled, None);
    }
}

impl Runtime {
    /// Creates a store and instantiates `guest` in it without calling it: the fixed cost of
    /// a fresh instance, which the micro-benchmark (`outpost-bench`) reports on its own.
    pub async fn instantiate_only(
        &self,
        guest: &Guest,
        hooks: EdgeHooks,
        memory_bytes: usize,
    ) -> Result<Duration, GuestFailure> {
        let started = Instant::now();
        let mut store = Store::new(&self.engine, GuestState::new(hooks, memory_bytes));
        store.limiter(|state| &mut state.memory);
        store.set_epoch_deadline(1 << 30);
        match guest.compiled.pre.instantiate_async(&mut store).await {
            Ok(_) => Ok(started.elapsed()),
            Err(e) => Err(classify(&e, store.data().memory.refused)),
        }
    }

    /// Runs `call` in an instance of `guest` until the guest sets its response head (the
    /// body then streams through [`GuestBody`]) or fails. A failure before the head is
    /// reported to the sink and returned.
    pub async fn run(
        &self,
        guest: Arc<Guest>,
        call: GuestRequest,
    ) -> Result<GuestResponse, GuestFailure> {
        let GuestRequest {
            hooks,
            limits,
            request,
            scheme,
            admission,
            on_end,
        } = call;
        let setup_started = Instant::now();
        let deadline = Duration::from_millis(limits.deadline_ms);
        let memory_bytes = (limits.memory_mib as usize).saturating_mul(1 << 20);
        let reusable = guest.pool.as_ref().and_then(|pool| pool.take());
        let reused = reusable.is_some();
        let mut pending = Pending {
            guest: guest.clone(),
            on_end: Some(on_end),
            instantiate: None,
            reused,
            started: setup_started,
        };
        let (mut store, proxy, born, served) = match reusable {
            Some(mut instance) => {
                let state = instance.store.data_mut();
                state.hooks = hooks;
                state.memory.set_max(memory_bytes);
                (
                    instance.store,
                    Some(instance.proxy),
                    instance.born,
                    instance.served,
                )
            }
            None => {
                let mut store = Store::new(&self.engine, GuestState::new(hooks, memory_bytes));
                store.limiter(|state| &mut state.memory);
                (store, None, Instant::now(), 0)
            }
        };
        // Every tick the guest yields to the scheduler, so a guest burning CPU cannot
        // starve other requests on its worker thread; past its deadline it is interrupted.
        let deadline_at = setup_started + deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline_at {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });

        let (head_tx, mut head_rx) = oneshot::channel();
        let resources = {
            let mut http = store.data_mut().http();
            http.new_incoming_request(wasi_scheme(&scheme), request)
                .and_then(|incoming| Ok((incoming, http.new_response_outparam(head_tx)?)))
        };
        let (incoming, outparam) = match resources {
            Ok(resources) => resources,
            Err(e) => {
                let failure = GuestFailure::Instantiate(format!("{e:#}"));
                pending.report(GuestEnd::Failed(failure.clone()), None);
                return Err(failure);
            }
        };
        let proxy = match proxy {
            Some(proxy) => proxy,
            None => {
                let instantiated = tokio::time::timeout(
                    deadline,
                    guest.compiled.pre.instantiate_async(&mut store),
                )
                .await;
                match instantiated {
                    Ok(Ok(proxy)) => {
                        pending.instantiate = Some(setup_started.elapsed());
                        proxy
                    }
                    Ok(Err(e)) => {
                        let refused = store.data().memory.refused;
                        let failure = match classify(&e, refused) {
                            GuestFailure::Trap(why) => GuestFailure::Instantiate(why),
                            other => other,
                        };
                        let finished = finish(&mut store, Err(failure.clone()), setup_started);
                        pending.report(GuestEnd::Failed(failure.clone()), Some(finished));
                        return Err(failure);
                    }
                    Err(_elapsed) => {
                        let finished =
                            finish(&mut store, Err(GuestFailure::Timeout), setup_started);
                        pending.report(GuestEnd::Failed(GuestFailure::Timeout), Some(finished));
                        return Err(GuestFailure::Timeout);
                    }
                }
            }
        };

        let left = deadline.saturating_sub(setup_started.elapsed());
        let mut running: Running = Box::pin(async move {
            // The slots are the guest's until it ends.
            let _admission = admission;
            let called = tokio::time::timeout(
                left,
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, outparam),
            )
            .await;
            let outcome = match called {
                Err(_elapsed) => Err(GuestFailure::Timeout),
                Ok(Err(e)) => Err(classify(&e, store.data().memory.refused)),
                Ok(Ok(())) => Ok(()),
            };
            if outcome.is_ok() {
                store.data_mut().hooks.ended_cleanly();
            }
            let mut finished = finish(&mut store, outcome, setup_started);
            if finished.outcome.is_ok() {
                finished.instance = Some(Instance {
                    store,
                    proxy,
                    born,
                    served: served + 1,
                });
            }
            finished
        });

        // Drive the guest until its head arrives or it ends.
        type Head = Result<Result<hyper::Response<WasiBody>, ErrorCode>, ()>;
        enum First {
            Head(Head),
            Ended(Finished),
        }
        let first = std::future::poll_fn(|cx| {
            if let Poll::Ready(head) = Pin::new(&mut head_rx).poll(cx) {
                return Poll::Ready(First::Head(head.map_err(|_closed| ())));
            }
            if let Poll::Ready(finished) = running.as_mut().poll(cx) {
                return Poll::Ready(First::Ended(finished));
            }
            Poll::Pending
        })
        .await;
        let (head, running, finished) = match first {
            First::Head(head) => (head, Some(running), None),
            First::Ended(finished) => {
                // The guest may have set its head and returned at once.
                let head: Head = head_rx.try_recv().map_err(|_empty| ());
                (head, None, Some(finished))
            }
        };
        match head {
            Ok(Ok(response)) => {
                let instantiate = pending.instantiate;
                let (parts, body) = response.into_parts();
                let body = GuestBody {
                    inner: body,
                    running,
                    finished,
                    pending: Some(pending),
                };
                Ok(GuestResponse {
                    response: http::Response::from_parts(parts, body),
                    instantiate,
                    reused,
                })
            }
            Ok(Err(code)) => {
                // Keep the guest's output and time: let it finish (within its deadline).
                let finished = match (running, finished) {
                    (Some(running), _) => running.await,
                    (None, Some(finished)) => finished,
                    (None, None) => unreachable!("a run either runs or has finished"),
                };
                let failure = GuestFailure::ErrorCode(format!("{code:?}"));
                pending.report(GuestEnd::Failed(failure.clone()), Some(finished));
                Err(failure)
            }
            Err(_closed) => {
                let finished = match (running, finished) {
                    (Some(running), _) => running.await,
                    (None, Some(finished)) => finished,
                    (None, None) => unreachable!("a run either runs or has finished"),
                };
                let failure = match &finished.outcome {
                    Err(failure) => failure.clone(),
                    Ok(()) => GuestFailure::NoResponse,
                };
                pending.report(GuestEnd::Failed(failure.clone()), Some(finished));
                Err(failure)
            }
        }
    }
}

/// Collects what the guest printed and how long it lived.
fn finish(
    store: &mut Store<GuestState>,
    outcome: Result<(), GuestFailure>,
    setup_started: Instant,
) -> Finished {
    let state = store.data();
    Finished {
        outcome,
        instance: None,
        stdout: state.stdout.take(),
        stderr: state.stderr.take(),
        lived: setup_started.elapsed(),
    }
}

fn wasi_scheme(scheme: &http::uri::Scheme) -> WasiScheme {
    if *scheme == http::uri::Scheme::HTTPS {
        WasiScheme::Https
    } else {
        WasiScheme::Http
    }
}

/// A guest's response body. Reading it drives the guest, which keeps running in the
/// reader's task after its head; the body ends only once the guest itself has ended
/// cleanly, so a guest that dies mid-body cuts the response off instead of making it look
/// complete. Dropping it early cancels the guest.
pub struct GuestBody {
    inner: WasiBody,
    running: Option<Running>,
    finished: Option<Finished>,
    pending: Option<Pending>,
}

impl GuestBody {
    fn end(&mut self, end: GuestEnd) {
        if let Some(pending) = self.pending.take() {
            pending.report(end, self.finished.take());
        }
    }

    /// The client has the whole response (its codec stopped at the declared length): let
    /// the guest end in its own time instead of cancelling it, and judge it then.
    pub fn detach(mut self) {
        if self.running.is_none() {
            let end = match self.finished.as_ref().map(|f| &f.outcome) {
                Some(Err(failure)) => GuestEnd::Failed(failure.clone()),
                _ => GuestEnd::Clean,
            };
            self.end(end);
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                use http_body_util::BodyExt;
                while let Some(frame) = self.frame().await {
                    if frame.is_err() {
                        break;
                    }
                }
            });
        }
    }
}

impl Body for GuestBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.get_mut();
        if let Some(running) = this.running.as_mut()
            && let Poll::Ready(finished) = running.as_mut().poll(cx)
        {
            this.running = None;
            this.finished = Some(finished);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(error))) => {
                let failure = match this.finished.as_ref().map(|f| &f.outcome) {
                    Some(Err(failure)) => failure.clone(),
                    _ => GuestFailure::Body(error.to_string()),
                };
                this.running = None;
                this.end(GuestEnd::Failed(failure));
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                if this.running.is_some() {
                    // The body is done; the guest is not yet (it was polled above).
                    return Poll::Pending;
                }
                match this.finished.as_ref().map(|f| f.outcome.clone()) {
                    Some(Err(failure)) => {
                        this.end(GuestEnd::Failed(failure.clone()));
                        Poll::Ready(Some(Err(HttpError::InternalError(Some(
                            failure.to_string(),
                        )))))
                    }
                    _ => {
                        this.end(GuestEnd::Clean);
                        Poll::Ready(None)
                    }
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        // Only once the guest is judged: the end is reported by a poll.
        false
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for GuestBody {
    fn drop(&mut self) {
        if self.pending.is_none() {
            return;
        }
        let end = match self.finished.as_ref().map(|f| &f.outcome) {
            Some(Err(failure)) => GuestEnd::Failed(failure.clone()),
            // Finished cleanly but its body was not read to the end, or still running:
            // the reader went away.
            _ => GuestEnd::Cancelled,
        };
        // Drop the guest first (cancelling it) so its output is what it wrote by now.
        self.running = None;
        self.end(end);
    }
}
