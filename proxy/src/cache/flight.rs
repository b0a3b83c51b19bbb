//! Request collapsing: at most one fill per key goes to the origin; concurrent requests
//! for the key wait for its response head and then read the body as it arrives.
//!
//! Rules learned the hard way: release waiters at the response head, never share an
//! uncacheable answer, and decide join-or-lead under one lock while re-checking the store
//! there, so a request whose lookup raced a finishing fill never starts a second fetch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::key::CacheKey;
use super::object::{CacheState, Object};

/// How a fill ended, as seen by requests that waited for it.
#[derive(Clone)]
pub(crate) enum FlightState {
    Pending,
    /// Serve this object with this state.
    Done(Arc<Object>, CacheState),
    /// Nothing stored: fetch on your own.
    NotStored,
}

/// Where a request stands with the fill of its key.
pub(crate) enum Flight {
    /// Another request's fill is under way: wait for it.
    Join(watch::Receiver<FlightState>),
    /// This request leads a new fill.
    Lead(watch::Sender<FlightState>),
    /// A fill finished since the lookup: serve what it stored.
    Stored(Arc<Object>),
}

/// The fills under way, by key.
#[derive(Default)]
pub(crate) struct Flights {
    running: Mutex<HashMap<CacheKey, watch::Receiver<FlightState>>>,
}

impl Flights {
    /// Joins the fill of `key` under way, or registers a new one the caller leads. When
    /// `stored` finds a usable object (looked up under the lock), that is returned instead:
    /// a fill stores before it leaves the map, so this closes the window in which a late
    /// request would start a second origin fetch.
    pub(crate) fn join_or_lead(
        &self,
        key: &CacheKey,
        stored: Option<&dyn Fn() -> Option<Arc<Object>>>,
    ) -> Flight {
        let mut running = self.running.lock().expect("flights lock");
        if let Some(rx) = running
            .get(key)
            .filter(|rx| matches!(*rx.borrow(), FlightState::Pending))
        {
            return Flight::Join(rx.clone());
        }
        if let Some(object) = stored.and_then(|find| find()) {
            return Flight::Stored(object);
        }
        let (tx, rx) = watch::channel(FlightState::Pending);
        running.insert(key.clone(), rx);
        Flight::Lead(tx)
    }

    fn forget(&self, key: &CacheKey, tx: &watch::Sender<FlightState>) {
        let mut running = self.running.lock().expect("flights lock");
        if running
            .get(key)
            .is_some_and(|rx| rx.same_channel(&tx.subscribe()))
        {
            running.remove(key);
        }
    }
}

/// A led flight: marks it finished when the fill ends, however it ends, and forgets it.
pub(crate) struct FlightGuard<'a> {
    flights: &'a Flights,
    key: &'a CacheKey,
    tx: Option<watch::Sender<FlightState>>,
}

impl<'a> FlightGuard<'a> {
    pub(crate) fn new(
        flights: &'a Flights,
        key: &'a CacheKey,
        tx: Option<watch::Sender<FlightState>>,
    ) -> Self {
        Self { flights, key, tx }
    }

    /// Releases the waiters with `state`.
    pub(crate) fn done(mut self, state: FlightState) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(state);
            self.flights.forget(self.key, &tx);
        }
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(FlightState::NotStored);
            self.flights.forget(self.key, &tx);
        }
    }
}
