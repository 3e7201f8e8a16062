//! `podium-loadtest`: a load generator for Open Inference Protocol servers
//! (Podium or any other). It speaks OIP REST (JSON and Triton's binary
//! extension), OIP gRPC and MLflow's `/invocations`; runs a closed loop
//! (fixed concurrency) or an open loop (fixed arrival rate, latency from
//! the intended send time); reports HDR percentiles, errors by class and
//! answers by endpoint/arm/version; runs the alias-flip drill; and replays
//! the requests recorded in an inference table (`--replay`).
//!
//! The library is what the binary runs, so tests and benches can drive a
//! run in-process: build a [`run::RunConfig`], get inputs, call [`run::run`].

pub mod cli;
pub mod flip;
pub mod grpc;
pub mod hist;
pub mod http;
pub mod input;
pub mod outcome;
pub mod protocol;
pub mod replay;
pub mod report;
pub mod run;
pub mod schedule;
pub mod stats;

/// Client code generated from `../proto/grpc_service.proto`.
pub mod proto {
    tonic::include_proto!("inference");
}
