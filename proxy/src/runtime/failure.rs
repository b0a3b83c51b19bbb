//! Why a guest did not produce a (complete) response, with one list of kinds shared by the
//! logs and the `outpost_guest_errors_total{kind}` label.

use std::fmt;

/// Why a guest did not produce a (complete) response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestFailure {
    /// The guest trapped: a panic, `unreachable`, a stack overflow, a bad memory access.
    Trap(String),
    /// The guest ran past its wall-clock deadline.
    Timeout,
    /// The guest tried to grow its memory past its limit.
    Memory,
    /// The guest returned without setting a response.
    NoResponse,
    /// The guest answered with an error code instead of a response.
    ErrorCode(String),
    /// The node could not instantiate the guest.
    Instantiate(String),
    /// The guest's response body ended in an error (it could not finish writing it).
    Body(String),
}

/// What kind of failure, as a closed set: the metric label and the log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// [`GuestFailure::Trap`].
    Trap,
    /// [`GuestFailure::Timeout`].
    Timeout,
    /// [`GuestFailure::Memory`].
    Memory,
    /// [`GuestFailure::NoResponse`].
    NoResponse,
    /// [`GuestFailure::ErrorCode`].
    ErrorCode,
    /// [`GuestFailure::Instantiate`].
    Instantiate,
    /// [`GuestFailure::Body`].
    Body,
}

impl FailureKind {
    /// Every kind, in label order: the one list metrics are made from.
    pub const ALL: [FailureKind; 7] = [
        FailureKind::Trap,
        FailureKind::Timeout,
        FailureKind::Memory,
        FailureKind::NoResponse,
        FailureKind::ErrorCode,
        FailureKind::Instantiate,
        FailureKind::Body,
    ];

    /// The `kind` label.
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::Memory => "memory",
            FailureKind::NoResponse => "no_response",
            FailureKind::ErrorCode => "error_code",
            FailureKind::Instantiate => "instantiate",
            FailureKind::Body => "body",
        }
    }

    /// Index into [`FailureKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl GuestFailure {
    /// Which kind of failure this is.
    pub fn kind(&self) -> FailureKind {
        match self {
            GuestFailure::Trap(_) => FailureKind::Trap,
            GuestFailure::Timeout => FailureKind::Timeout,
            GuestFailure::Memory => FailureKind::Memory,
            GuestFailure::NoResponse => FailureKind::NoResponse,
            GuestFailure::ErrorCode(_) => FailureKind::ErrorCode,
            GuestFailure::Instantiate(_) => FailureKind::Instantiate,
            GuestFailure::Body(_) => FailureKind::Body,
        }
    }
}

impl fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestFailure::Trap(why) => write!(f, "guest trapped: {why}"),
            GuestFailure::Timeout => write!(f, "guest exceeded its deadline"),
            GuestFailure::Memory => write!(f, "guest exceeded its memory limit"),
            GuestFailure::NoResponse => write!(f, "guest returned without a response"),
            GuestFailure::ErrorCode(code) => write!(f, "guest answered with error {code}"),
            GuestFailure::Instantiate(why) => write!(f, "guest could not be instantiated: {why}"),
            GuestFailure::Body(why) => write!(f, "guest's response body failed: {why}"),
        }
    }
}

/// Names the limit a failed guest hit. `memory_refused` is the store's own record of a
/// refused memory growth (typed, not read from an error message).
pub(crate) fn classify(error: &wasmtime::Error, memory_refused: bool) -> GuestFailure {
    if memory_refused {
        return GuestFailure::Memory;
    }
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        return match trap {
            wasmtime::Trap::Interrupt => GuestFailure::Timeout,
            wasmtime::Trap::StackOverflow => GuestFailure::Trap("stack overflow".into()),
            other => GuestFailure::Trap(other.to_string()),
        };
    }
    tracing::debug!("guest error detail: {error:?}");
    GuestFailure::Trap(error.root_cause().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_distinct_label_in_index_order() {
        for (i, kind) in FailureKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
        let mut labels: Vec<_> = FailureKind::ALL.iter().map(|k| k.label()).collect();
        labels.dedup();
        assert_eq!(labels.len(), FailureKind::ALL.len());
    }

    #[test]
    fn a_refused_growth_is_a_memory_failure_whatever_the_message() {
        let error = wasmtime::Error::msg("anything at all");
        assert_eq!(classify(&error, true), GuestFailure::Memory);
        assert!(matches!(classify(&error, false), GuestFailure::Trap(_)));
    }
}
