//! The protocols: each decodes to [`crate::request::InferRequest`] and
//! encodes [`crate::request::InferResponse`]; nothing below knows about them.

pub mod error;
pub mod grpc;
pub mod http;

use crate::inference_table::{Entry, InferenceTable, LogPolicy, Protocol};
use crate::serving::Core;

/// The response header (and gRPC metadata key) carrying Podium's id of a
/// request, the inference table's `request_id`.
pub const REQUEST_ID: &str = "x-request-id";

/// The request header (and gRPC metadata key) with the client's own id of a
/// request, the table's `client_request_id` (else the OIP `id` is used).
pub const CLIENT_REQUEST_ID: &str = "x-client-request-id";

/// Shared by every handler of every protocol.
pub struct AppState {
    pub core: Core,
    /// Largest request body (REST) or message (gRPC) accepted, in bytes.
    pub max_request_bytes: usize,
    /// What `POST /invocations` serves when several endpoints exist.
    pub default_endpoint: Option<String>,
    /// Where each request's row goes, when `--table-dir` is set.
    pub table: Option<InferenceTable>,
}

impl AppState {
    /// Starts the inference-table row of a request to `name`, when the
    /// table is on and the endpoint's sampling picks this request.
    pub fn table_entry(&self, request_id: &str, name: &str, protocol: Protocol) -> Option<Entry> {
        let table = self.table.as_ref()?;
        let (known, policy) = match self.core.routes.load().endpoints.get(name) {
            Some(e) => (true, e.log),
            None => (self.core.models.knows(name), LogPolicy::default()),
        };
        table.entry(request_id, name, known, protocol, policy)
    }

    /// Queues a finished row (see [`InferenceTable::submit`]).
    pub fn submit(&self, entry: Option<Entry>, status_code: u16, error: Option<String>) {
        if let (Some(table), Some(entry)) = (&self.table, entry) {
            table.submit(entry, status_code, error);
        }
    }
}
