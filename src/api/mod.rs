//! The protocols: each decodes to [`crate::request::InferRequest`] and
//! encodes [`crate::request::InferResponse`]; nothing below knows about them.
//! Every inference call, whatever its protocol, goes through the one
//! pipeline in [`call`].

pub mod call;
pub mod config_reload;
pub mod console;
pub mod deadline;
pub mod error;
pub mod experiment_controls;
pub mod grpc;
pub mod http;
pub mod keys;
mod payload;
pub mod rollout_controls;
pub mod trace_context;
pub mod triton;

pub use call::{CLIENT_REQUEST_ID, REQUEST_ID};
pub use payload::OipJson;

use crate::inference_table::{FeedbackTable, InferenceTable};
use crate::serving::Core;

/// Shared by every handler of every protocol.
pub struct AppState {
    pub core: Core,
    /// Largest request body (REST) or message (gRPC) accepted, in bytes.
    pub max_request_bytes: usize,
    /// Bytes of REST bodies being read and decoded at once, across requests.
    pub body_budget: std::sync::Arc<http::budget::BodyBudget>,
    /// What `POST /invocations` serves when several endpoints exist.
    pub default_endpoint: Option<String>,
    /// Where each request's row goes, when `--table-dir` is set.
    pub table: Option<InferenceTable>,
    /// Where accepted feedback goes (`<table-dir>/_feedback`), when `--table-dir` is set.
    pub feedback_table: Option<FeedbackTable>,
    /// How the admin API takes new versions: uploads, and paths inside
    /// `--admin-register-dir`, up to `--max-model-bytes`.
    pub registration: http::Registration,
    /// The API keys prediction calls need, when `--api-keys` is set.
    pub api_keys: Option<std::sync::Arc<crate::auth::ApiKeys>>,
    /// The live readouts of endpoints with an experiment readout, if any.
    pub experiments: Option<std::sync::Arc<crate::experiments::Experiments>>,
    /// Each arm's calls, errors and latency over the last minutes (the
    /// console's charts, `GET /admin/overview`).
    pub series: std::sync::Arc<crate::telemetry::ArmSeries>,
    /// This replica's name, shown in `GET /admin/status`.
    pub replica: crate::replica::ReplicaId,
    /// The `--config` file, which SIGHUP and `POST /admin/config/reload` read again.
    pub config_file: Option<std::sync::Arc<crate::serving::ConfigFile>>,
}
