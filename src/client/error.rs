//! How a call to a model endpoint fails as a whole (a batch-level failure): the client's
//! own failures (timeout, connection, an answer that is not HTTP) and the endpoint
//! protocols' (a non-200 status, a malformed batch answer). Per-input failures are
//! `models::ModelError`.

/// A batch-level failure of an endpoint call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// No answer within the endpoint's timeout.
    #[error("timed out")]
    Timeout,
    /// The connection could not be made or broke.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The endpoint answered with a non-200 status (and this message in its body).
    #[error("answered HTTP {status}: {message}")]
    Status {
        /// The status code.
        status: u16,
        /// The error message of the body (see `item::error_message`).
        message: String,
    },
    /// The answer was not a valid batch response.
    #[error("invalid response: {0}")]
    Protocol(String),
}

impl EndpointError {
    /// The kinds of failure, indexed by [`EndpointError::reason_index`].
    pub const REASONS: [&'static str; 4] = ["timeout", "connect", "status", "protocol"];

    /// The position in [`EndpointError::REASONS`] of this failure's kind (the `reason` label
    /// of `ai_endpoint_errors_total`).
    pub fn reason_index(&self) -> usize {
        match self {
            EndpointError::Timeout => 0,
            EndpointError::Connect(_) => 1,
            EndpointError::Status { .. } => 2,
            EndpointError::Protocol(_) => 3,
        }
    }
}
