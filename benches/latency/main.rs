//! Where the time of one fraud-model call goes: raw ONNX Runtime against
//! Podium over its OIP REST and gRPC APIs, measured in one process and one run.
//!
//! ```text
//! cargo bench --bench latency
//! ```
//!
//! Six layers, each timed on the same single-row (batch 1) request,
//!
//! 1. `raw ORT`: `Session::run` through the `ort` crate on a session opened
//!    with Podium's own settings (`podium::runtime::ort::open_session`: 1
//!    intra-op thread, 1 inter-op thread, no intra-op spinning), input tensor
//!    built and outputs copied into `Vec`s the way Podium does.
//! 2. `podium runtime`: `LoadedModel::run` on the calling thread (Podium's
//!    tensor conversion in and out, the session mutex).
//! 3. `podium pool`: `InferencePool::run`, i.e. 2 plus the hop to an
//!    inference thread and back through a oneshot channel.
//! 4. `REST JSON`: the real server (`podium::server::serve`, the same code as
//!    `podium serve`) on 127.0.0.1, one keep-alive HTTP/1.1 connection,
//!    concurrency 1, JSON body in and out.
//! 5. `REST binary`: as 4, with Triton's binary tensor extension both ways.
//! 6. `gRPC ModelInfer`: the same server's gRPC listener, a tonic client
//!    generated from the same proto, one HTTP/2 connection, raw input and
//!    output contents (what tritonclient.grpc sends and reads).
//!
//! and diagnostics that split the cost:
//!
//! 7. `REST JSON, bare connection` and 8. `REST binary, bare connection`:
//!    requests 4 and 5 sent over one hyper HTTP/1.1 connection
//!    (`hyper::client::conn::http1`: no pool, no client layers) with a
//!    pre-built request.
//! 9. `GET /v2/health/live`: the reqwest + hyper + loopback round trip with
//!    no inference behind it.
//! 10. `thread ping-pong`: a value sent to another thread and back over std
//!     channels: the price of the two thread wake-ups that layer 3 pays and
//!     that every HTTP request pays several times over.
//!
//! Percentiles come from HDR histograms (`podium_loadtest::hist::Latency`,
//! the load generator's); shared bench code is in `benches/support/`.
//!
//! Every answer is checked (status 200 and fraud v1's known probabilities)
//! after the clock stops, so error responses cannot be measured by mistake.
//! The HTTP and gRPC layers also collect Podium's own `x-podium-{total,inference,
//! queue}-us` response headers. The layers are interleaved in rounds (the
//! order rotates every round) and the report gives medians across rounds,
//! because the machine is shared; it also says how busy the machine was.
//!
//! Knobs (environment variables): `PODIUM_BENCH_ROUNDS` (7),
//! `PODIUM_BENCH_CALLS` (2000: minimum calls per layer per round),
//! `PODIUM_BENCH_MIN_MS` (150: minimum time per layer per round, which the
//! microsecond layers need), `PODIUM_BENCH_WARMUP` (1000 calls per layer),
//! `PODIUM_BENCH_BUDGET_S` (50: no new round starts after this).

#[path = "../support/mod.rs"]
mod support;

mod grpc;
mod http;
mod in_process;
mod report;

use grpc::Grpc;
use http::{BareConnection, Encoding, Http};
use in_process::expect_answer;
use in_process::{pool_batch, runtime_call, time_calls, PingPong, RawSession};
use report::{report, Batch, Layer};

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use ort::value::Tensor as OrtTensor;
use podium::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use podium::api::grpc::proto::model_infer_request::InferInputTensor;
use podium::api::grpc::proto::ModelInferRequest;
use podium::runtime::pool::InferencePool;
use podium::runtime::LoadedModel;
use podium::server::ServeOptions;
use podium::tensor::{Tensor, TensorData};
use podium_loadtest::hist::Latency;
use serde_json::{json, Value};
use support::cpu::CpuSample;
use support::server::{fraud_registry, ready, Servers};
use support::{knob, median, repo, FRAUD_ROW as ROW, FRAUD_V1_PROBABILITIES as EXPECTED};

pub(crate) const EXPECTED_LABEL: i64 = 0;
pub(crate) const TOLERANCE: f32 = 1e-5;

fn main() {
    let rounds = knob("PODIUM_BENCH_ROUNDS", 7) as usize;
    let plan = Plan {
        calls: knob("PODIUM_BENCH_CALLS", 2000) as usize,
        min_time: Duration::from_millis(knob("PODIUM_BENCH_MIN_MS", 150)),
    };
    let warmup = Plan {
        calls: knob("PODIUM_BENCH_WARMUP", 1000) as usize,
        min_time: Duration::ZERO,
    };
    let budget = Duration::from_secs(knob("PODIUM_BENCH_BUDGET_S", 50));
    let started = Instant::now();

    let repo = repo();
    let model_path = repo.join("models/fraud/v1.onnx");
    let lib = podium::runtime::ort::init(None).unwrap_or_else(|e| panic!("{e}"));
    describe_machine(&lib);

    // Layer 1: the raw session.
    let mut raw = RawSession::open(&model_path);
    // Layers 2 and 3: Podium's runtime, in process.
    let model = Arc::new(LoadedModel::load("fraud", 1, &model_path, 1).expect("load fraud v1"));
    let output_index = |name: &str| {
        model
            .signature
            .outputs
            .iter()
            .position(|o| o.name == name)
            .unwrap_or_else(|| panic!("fraud v1 has no output {name}"))
    };
    let outputs = vec![output_index("label"), output_index("probabilities")];
    let pool = InferencePool::start(1, 1024).expect("start an inference thread");
    // The same, letting an idle pool run a call on the caller's thread.
    let on_caller = InferencePool::start(1, 1024)
        .expect("start an inference thread")
        .with_caller_runs(Duration::from_micros(50));

    // Layers 4 to 7: the real server, on its own multi-threaded runtime
    // (worker threads = cores, as `podium serve` builds it).
    let registry_dir = tempfile::tempdir().expect("temp dir");
    // A 90/10 champion/challenger endpoint with a sticky user id, for the
    // split layer; the bench's user lands in the champion arm.
    fraud_registry(registry_dir.path(), true);
    let config_path = registry_dir.path().join("podium.toml");
    std::fs::write(
        &config_path,
        "[[endpoint]]\nname = \"fraud-ab\"\nmodel = \"fraud\"\nexperiment = \"bench\"\n\
         sticky_key = { header = \"x-user-id\" }\n\
         arms = [{ alias = \"champion\", weight = 90 }, { alias = \"challenger\", weight = 10 }]\n",
    )
    .expect("write the endpoint config");
    let mut servers = Servers::new();
    let (addr, grpc_addr) = servers.start(ServeOptions {
        inference_threads: 2,
        config: Some(config_path.clone()),
        ..ServeOptions::new(registry_dir.path())
    });
    // The client gets its own single-threaded runtime on this thread, like a
    // separate client process would have.
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let http = Http::new(addr);
    client_rt.block_on(ready(&http.client, addr, &servers));
    let mut plain = client_rt.block_on(BareConnection::connect(addr, &http, Encoding::Json));
    let mut plain_binary =
        client_rt.block_on(BareConnection::connect(addr, &http, Encoding::Binary));
    let mut grpc = client_rt.block_on(Grpc::connect(grpc_addr));
    let ping = PingPong::start();

    let mut layers: Vec<Layer> = LAYERS.iter().map(|&name| Layer::new(name)).collect();
    let mut run_layer = |index: usize, plan: Plan, record: bool| {
        let batch = match index {
            RAW => time_calls(plan, || raw.run_checked()),
            RUNTIME => time_calls(plan, || runtime_call(&model, &outputs)),
            POOL => client_rt.block_on(pool_batch(plan, &pool, &model, &outputs)),
            POOL_ON_CALLER => client_rt.block_on(pool_batch(plan, &on_caller, &model, &outputs)),
            JSON => client_rt.block_on(http.batch(plan, Encoding::Json)),
            BINARY => client_rt.block_on(http.batch(plan, Encoding::Binary)),
            PLAIN => client_rt.block_on(plain.batch(plan)),
            PLAIN_BINARY => client_rt.block_on(plain_binary.batch(plan)),
            LIVE => client_rt.block_on(http.batch(plan, Encoding::Live)),
            GRPC => client_rt.block_on(grpc.batch(plan)),
            SPLIT => client_rt.block_on(http.batch(plan, Encoding::Split)),
            INVOCATIONS => client_rt.block_on(http.batch(plan, Encoding::Invocations)),
            _ => time_calls(plan, || ping.call()),
        };
        if record {
            layers[index].add(batch);
        }
    };

    eprintln!("warm-up: {} calls per layer", warmup.calls);
    for index in 0..LAYERS.len() {
        run_layer(index, warmup, false);
    }
    let cpu_before = CpuSample::now();
    let mut done = 0;
    for round in 0..rounds {
        if started.elapsed() > budget {
            eprintln!("time budget reached: stopping after {done} rounds");
            break;
        }
        let t = Instant::now();
        for k in 0..LAYERS.len() {
            run_layer((round + k) % LAYERS.len(), plan, true);
        }
        done += 1;
        eprintln!("round {} done in {:.1?}", round + 1, t.elapsed());
    }
    let cpu = CpuSample::now().since(&cpu_before);

    servers.stop();
    drop(pool);

    report(&layers, done, plan, started.elapsed(), cpu);
}

/// How long one layer runs in one round: at least `calls` calls and at least
/// `min_time`, so that the microsecond layers are not judged on a 6 ms window
/// that a single preemption can double.
#[derive(Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) calls: usize,
    pub(crate) min_time: Duration,
}

impl Plan {
    pub(crate) fn more(&self, done: usize, since: Instant) -> bool {
        done < self.calls || since.elapsed() < self.min_time
    }
}

pub(crate) fn describe_machine(lib: &Path) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let version = std::fs::read_to_string(lib.with_file_name("VERSION")).unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!("machine: {cores} cores available ({cpu})");
    println!("ONNX Runtime {} from {}", version.trim(), lib.display());
}

// --------------------------------------------------------------- results

pub(crate) const RAW: usize = 0;
pub(crate) const RUNTIME: usize = 1;
pub(crate) const POOL: usize = 2;
pub(crate) const JSON: usize = 3;
pub(crate) const BINARY: usize = 4;
pub(crate) const PLAIN: usize = 5;
pub(crate) const PLAIN_BINARY: usize = 6;
pub(crate) const LIVE: usize = 7;
pub(crate) const GRPC: usize = 8;
pub(crate) const SPLIT: usize = 9;
pub(crate) const INVOCATIONS: usize = 10;
pub(crate) const POOL_ON_CALLER: usize = 11;
pub(crate) const LAYERS: [&str; 13] = [
    "raw ORT (session.run)",
    "podium runtime (LoadedModel::run)",
    "podium pool (InferencePool::run)",
    "podium REST JSON (reqwest)",
    "podium REST binary (reqwest)",
    "diag: REST JSON, bare connection",
    "diag: REST binary, bare connection",
    "diag: GET /v2/health/live (reqwest)",
    "podium gRPC ModelInfer (tonic)",
    "podium REST JSON, 90/10 split endpoint",
    "podium MLflow /invocations (dataframe_split)",
    "podium pool, run on caller (with_caller_runs 50 us)",
    "diag: thread ping-pong (std mpsc)",
];
