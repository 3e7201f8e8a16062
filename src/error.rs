//! The one error type of the serving core. Protocol code maps each variant to
//! its status (HTTP in `api::error`); messages name the problem and the fix.

/// What went wrong with a request or an operation, in words a client can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The request is malformed or does not fit the model (HTTP 400).
    #[error("{0}")]
    InvalidInput(String),
    /// No such model, version or alias (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The caller may not do this here, e.g. register a file outside
    /// `--admin-register-dir` (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// The call needs an API key and carries none, or one this server does
    /// not know (HTTP 401 with `WWW-Authenticate: Bearer`).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller's key is over its rate limit (HTTP 429 with `Retry-After`).
    #[error("{message}")]
    RateLimited {
        message: String,
        /// When a call would be accepted again, in whole seconds (at least 1).
        retry_after_secs: u64,
    },
    /// The request body is over the configured limit (HTTP 413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request uses an encoding or format Podium does not speak (HTTP 415).
    #[error("{0}")]
    Unsupported(String),
    /// An operation refused to protect what is serving: an incompatible
    /// signature, a failed warm-up, the memory limit (HTTP 409).
    #[error("{0}")]
    Refused(String),
    /// The inference queue is full; the client should retry shortly (HTTP 503 + Retry-After).
    #[error("{0}")]
    Overloaded(String),
    /// The request's deadline passed before it could be answered (HTTP 504).
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The client did not send the request body within the body-read
    /// timeout (HTTP 408; the listener answers it and closes the connection).
    #[error("{0}")]
    RequestTimeout(String),
    /// The model exists but cannot serve right now, e.g. it failed to load (HTTP 503).
    #[error("{0}")]
    Unavailable(String),
    /// The version is loaded on demand and is not loaded yet: the load did
    /// not finish within `--load-wait-secs`, or it has no room yet (HTTP 503
    /// with `Retry-After`, gRPC UNAVAILABLE).
    #[error("{message}")]
    Loading {
        message: String,
        /// When to try again, in whole seconds (at least 1).
        retry_after_secs: u64,
    },
    /// The registry (MLflow) could not be reached, timed out, refused the
    /// credentials or failed; what is serving keeps serving (HTTP 502).
    #[error("{0}")]
    Registry(String),
    /// A fault inside Podium or ONNX Runtime; the message says which (HTTP 500).
    #[error("{0}")]
    Internal(String),
}
