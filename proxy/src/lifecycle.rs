//! The node's life as a process: the signals an operator sends, how it tells systemd, and
//! how it leaves.
//!
//! | signal | effect |
//! |---|---|
//! | `SIGHUP` | reload the config file ([`crate::reload`]) |
//! | `SIGUSR1` | reopen the access log file (after logrotate moved it) |
//! | `SIGTERM` | drain: `/ready` fails, keep serving for `server.drain_grace_secs`, then close the listeners and give what is in flight `server.drain_timeout_secs` |
//! | `SIGQUIT` | hand the listening sockets to a new binary started with `serve --upgrade`, then drain |
//! | `SIGUSR2` | start that new binary itself (the same command line plus `--upgrade`), then as `SIGQUIT` |
//! | `SIGINT` | stop now |
//!
//! pingora owns the listening sockets and their handoff; this module is the
//! `ShutdownSignalWatch` it asks which shutdown an operator wants, plus the watcher that
//! ends the process as soon as the last connection is done instead of waiting out the
//! whole drain timeout.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch};
use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::broadcast;

use crate::access_log::AccessLog;
use crate::reload::Reloader;
use crate::server::Drain;

/// The signals an operator sends to a serving node, turned into reloads, log reopens and
/// pingora's shutdown kinds.
pub(crate) struct Signals {
    pub reloader: Arc<Reloader>,
    pub drain: Drain,
    pub access_log: Option<Arc<AccessLog>>,
    /// How long to keep accepting after SIGTERM while `/ready` fails.
    pub grace: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let listen = |kind| signal(kind).expect("installing a signal handler");
        let mut hangup = listen(SignalKind::hangup());
        let mut user1 = listen(SignalKind::user_defined1());
        let mut user2 = listen(SignalKind::user_defined2());
        let mut terminate = listen(SignalKind::terminate());
        let mut quit = listen(SignalKind::quit());
        let mut interrupt = listen(SignalKind::interrupt());
        loop {
            tokio::select! {
                _ = hangup.recv() => {
                    notify(&[NotifyState::Reloading]);
                    let reloader = self.reloader.clone();
                    // Compiling guests blocks; the result is logged and counted there.
                    let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
                    notify(&[NotifyState::Ready]);
                }
                _ = user1.recv() => {
                    if let Some(log) = &self.access_log {
                        log.reopen();
                        tracing::info!("reopening the access log");
                    }
                }
                _ = user2.recv() => match spawn_successor() {
                    Ok(pid) => {
                        tracing::info!(
                            "started the new binary (pid {pid}); handing over the listening sockets"
                        );
                        self.drain.start();
                        return ShutdownSignal::GracefulUpgrade;
                    }
                    Err(error) => {
                        tracing::error!("cannot start the new binary, still serving: {error}");
                    }
                },
                _ = quit.recv() => {
                    tracing::info!("handing the sockets to the new binary, then draining");
                    self.drain.start();
                    notify(&[NotifyState::Stopping]);
                    return ShutdownSignal::GracefulUpgrade;
                }
                _ = terminate.recv() => {
                    tracing::info!(
                        "draining: /ready fails now, the listeners close in {:?}",
                        self.grace
                    );
                    self.drain.start();
                    notify(&[NotifyState::Stopping]);
                    tokio::select! {
                        () = tokio::time::sleep(self.grace) => {}
                        _ = interrupt.recv() => return ShutdownSignal::FastShutdown,
                    }
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = interrupt.recv() => return ShutdownSignal::FastShutdown,
            }
        }
    }
}

/// Ends the process once pingora has closed the listeners and no connection is left
/// (pingora itself would wait out the whole drain timeout). Flushes the access log first.
pub(crate) fn exit_when_drained(
    mut phases: broadcast::Receiver<ExecutionPhase>,
    drain: Drain,
    access_log: Option<Arc<AccessLog>>,
) {
    std::thread::Builder::new()
        .name("outpost-drain".into())
        .spawn(move || {
            loop {
                match phases.blocking_recv() {
                    Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
            while drain.open_connections() > 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Some(log) = &access_log {
                log.flush(Duration::from_secs(2));
            }
            tracing::info!("drained: every connection is closed; exiting");
            std::process::exit(0);
        })
        .expect("starting the drain watcher");
}

/// Starts this binary again with the same arguments plus `--upgrade`: the new process waits
/// for the listening sockets that this one is about to hand over.
fn spawn_successor() -> std::io::Result<u32> {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let program = successor_program(args.first().cloned())?;
    let mut rest = args.split_off(1);
    if !rest.iter().any(|a| a == "--upgrade") {
        rest.push("--upgrade".into());
    }
    let child = std::process::Command::new(program)
        .args(rest)
        .stdin(std::process::Stdio::null())
        .spawn()?;
    Ok(child.id())
}

/// The binary to start: the path this one was started as (after a package upgrade that is
/// the new binary; `/proc/self/exe` would still name the deleted old one).
fn successor_program(argv0: Option<OsString>) -> std::io::Result<PathBuf> {
    let argv0 = argv0.map(PathBuf::from);
    match argv0 {
        Some(path) if path.components().count() > 1 => Ok(path),
        _ => std::env::current_exe(),
    }
}

/// Tells systemd (`Type=notify`) about the node's state; nothing without `$NOTIFY_SOCKET`.
pub(crate) fn notify(states: &[NotifyState]) {
    let mut states = states.to_vec();
    if states.iter().any(|s| matches!(s, NotifyState::Reloading))
        && let Ok(now) = NotifyState::monotonic_usec_now()
    {
        states.push(now);
    }
    if let Err(error) = sd_notify::notify(false, &states) {
        tracing::warn!("cannot notify systemd: {error}");
    }
}

/// A node that took its sockets over from an old one becomes systemd's main process.
pub(crate) fn notify_ready(upgraded: bool) {
    if upgraded {
        notify(&[NotifyState::MainPid(std::process::id()), NotifyState::Ready]);
    } else {
        notify(&[NotifyState::Ready]);
    }
}
