//! The guest's error type: every failure carries the HTTP status the client should see.

use std::fmt;

use http::StatusCode;

/// What kind of failure an [`Error`] is, so a guest can react to some (retry, fall back)
/// and pass others on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The backend name is not configured for this service; the node refused the fetch.
    BackendNotAllowed,
    /// The backend did not answer in time (connect, first byte or between bytes).
    BackendTimeout,
    /// The backend could not be reached or broke the connection.
    BackendUnavailable,
    /// The node's per-request backend budget is spent.
    BackendLimit,
    /// Reading or writing a body failed.
    Body,
    /// A request or response could not be built (bad header, bad URL).
    Invalid,
    /// Anything else, including errors made by the guest with [`Error::new`].
    Other,
}

/// An error that knows which status it maps to.
///
/// Returning `Err(error)` from the `#[outpost::main]` function answers the client with
/// [`Error::status`] and the message as a plain-text body.
///
/// ```
/// use outpost::{Error, StatusCode};
///
/// let error = Error::new(StatusCode::FORBIDDEN, "members only");
/// assert_eq!(error.status(), StatusCode::FORBIDDEN);
/// assert_eq!(error.to_string(), "members only");
/// ```
#[derive(Debug, Clone)]
pub struct Error {
    status: StatusCode,
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// An error answered with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            kind: ErrorKind::Other,
            message: message.into(),
        }
    }

    /// An error of a given kind; the status follows from the kind.
    ///
    /// ```
    /// use outpost::{Error, ErrorKind, StatusCode};
    ///
    /// let error = Error::of_kind(ErrorKind::BackendTimeout, "origin is slow");
    /// assert_eq!(error.status(), StatusCode::GATEWAY_TIMEOUT);
    /// ```
    pub fn of_kind(kind: ErrorKind, message: impl Into<String>) -> Self {
        let status = match kind {
            ErrorKind::BackendTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::BackendNotAllowed
            | ErrorKind::BackendUnavailable
            | ErrorKind::BackendLimit => StatusCode::BAD_GATEWAY,
            ErrorKind::Body | ErrorKind::Invalid | ErrorKind::Other => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    /// The status the client gets for this error.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Returns the same error answered with another status.
    ///
    /// ```
    /// use outpost::{Error, StatusCode};
    ///
    /// let error = Error::new(StatusCode::BAD_GATEWAY, "no").with_status(StatusCode::SERVICE_UNAVAILABLE);
    /// assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
    /// ```
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<http::Error> for Error {
    fn from(error: http::Error) -> Self {
        Error::of_kind(ErrorKind::Invalid, error.to_string())
    }
}

impl From<std::string::FromUtf8Error> for Error {
    fn from(error: std::string::FromUtf8Error) -> Self {
        Error::new(
            StatusCode::BAD_REQUEST,
            format!("body is not UTF-8: {error}"),
        )
    }
}
