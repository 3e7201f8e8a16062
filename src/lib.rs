//! Podium: a model-serving gateway for ONNX models, served by registry alias
//! over the Open Inference Protocol.
//!
//! Flow of one request: `api` decodes to a protocol-free
//! [`request::InferRequest`] → `serving` resolves the model version (alias →
//! version) and checks the request against its signature → `runtime` runs it
//! on an inference thread → `api` encodes the [`request::InferResponse`].
//!
//! `cli` is the `podium` command line (the binary is a thin `main` over it):
//! serve flags → [`server::ServeOptions`], registry commands, and a typed
//! client of the admin API.

pub mod api;
pub mod cli;
pub mod config;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod inference_table;
pub mod registry;
pub mod request;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod serving;
pub mod telemetry;
pub mod tensor;
