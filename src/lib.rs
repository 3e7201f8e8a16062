//! Podium: a model-serving gateway for ONNX models, served by registry alias
//! over the Open Inference Protocol.
//!
//! ```text
//! client ─REST/gRPC/invocations─▶ api codec (http/oip, grpc, http/mlflow)
//!                                   │ decode to request::InferRequest
//!                                   ▼
//!                  api::call::Call: ONE pipeline for every protocol
//!                  request id · route once · metrics · response metadata
//!                  · error classification · the inference-table row
//!                                   │
//!                                   ▼
//!     serving::Core: routing (plain values in, arm out) ▸ slot ▸ runtime
//!                                   │
//!                                   ▼
//!     runtime: (dynamic batch) ▸ bounded queue ▸ ONNX Runtime on Podium's
//!              inference threads
//!
//!     --config ◀─SIGHUP / admin reload─ serving::ConfigFile ─one store─▶ endpoints
//!     registry ◀─poll─ serving's reconciler ─load, validate, warm─▶ slot swap
//!                      (--memory-limit: versions beyond it load on demand,
//!                      the least recently used are evicted; --preload stays)
//!                      (and each poll: loaded versions' files checked for drift)
//!     inference_table: protocol-free rows, payload rendering handed in by api;
//!                      open files journaled, replayed at start after a crash;
//!                      the feedback table (_feedback) through the same writer
//!     experiments: per-arm readout of endpoints with one (calls, latency,
//!                  feedback joined through a bounded ledger, statistics)
//! ```
//!
//! Several replicas on one registry agree: traffic changes are stored in
//! the registry and followed like aliases (`serving::Core::follow_stored_traffic`);
//! [`replica::ReplicaId`] names each replica's table files and rows.
//! [`request_id`] makes Podium's request ids (a random per-process prefix
//! and a sequence number); the experiment ledger finds a call by its id's
//! sequence number.
//!
//! Module arrows point one way: `api → serving → (routing, runtime,
//! registry)`; `inference_table`, `experiments` and `routing` import none
//! of `api`, `serving`. `listener` admits and times connections on both ports
//! (header, idle and body timeouts, the connection limit, shutdown, TLS
//! with certificate reload) before hyper and tonic see them. `auth` (API
//! keys, admin tokens, the audit log) is protocol-free; `api` asks it before
//! a call reaches the pipeline. `api::console` is the web console at `/ui`:
//! static files compiled in, reading and acting through the admin API like
//! any client. `offline` scores files (`podium batch`,
//! `podium compare`) with the same registry and runtime as serving, and
//! monitors drift and quality over the inference table (`podium monitor`), and
//! reports an experiment from the tables (`podium experiment report`). `cli` is the `podium` command line (the binary is a thin
//! `main` over it): serve flags → [`server::ServeOptions`], registry
//! commands, and a typed client of the admin API.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod experiments;
#[cfg(test)]
mod fuzz;
pub mod inference_table;
pub mod json_lines;
pub mod listener;
pub mod offline;
pub mod registry;
pub mod replica;
pub mod request;
pub mod request_id;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod serving;
pub mod telemetry;
pub mod tensor;
