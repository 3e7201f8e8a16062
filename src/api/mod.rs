//! The protocols: each decodes to [`crate::request::InferRequest`] and
//! encodes [`crate::request::InferResponse`]; nothing below knows about them.

pub mod error;
pub mod grpc;
pub mod http;

use crate::serving::Core;

/// Shared by every handler of every protocol.
pub struct AppState {
    pub core: Core,
    /// Largest request body (REST) or message (gRPC) accepted, in bytes.
    pub max_request_bytes: usize,
    /// What `POST /invocations` serves when several endpoints exist.
    pub default_endpoint: Option<String>,
}
