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
//! 7. `REST JSON, minimal client` and 8. `REST binary, minimal client`:
//!    requests 4 and 5 sent from a blocking socket with a pre-built request
//!    and a hand-parsed response (no client library).
//! 9. `GET /v2/health/live`: the reqwest + hyper + loopback round trip with
//!    no inference behind it.
//! 10. `thread ping-pong`: a value sent to another thread and back over std
//!     channels: the price of the two thread wake-ups that layer 3 pays and
//!     that every HTTP request pays several times over.
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

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ort::value::Tensor as OrtTensor;
use podium::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use podium::api::grpc::proto::model_infer_request::InferInputTensor;
use podium::api::grpc::proto::ModelInferRequest;
use podium::registry::local::LocalRegistry;
use podium::registry::Registry;
use podium::runtime::pool::InferencePool;
use podium::runtime::LoadedModel;
use podium::server::{serve, ServeOptions};
use podium::tensor::{Tensor, TensorData};
use serde_json::{json, Value};

/// The fraud model's first demo row, shared with the integration tests.
#[path = "../tests/common/mod.rs"]
mod common;
use common::FRAUD_ROW as ROW;
/// What fraud v1 answers for [`ROW`].
const EXPECTED: [f32; 2] = [0.620_603_44, 0.379_396_53];
const EXPECTED_LABEL: i64 = 0;
const TOLERANCE: f32 = 1e-5;

fn main() {
    let rounds = knob("PODIUM_BENCH_ROUNDS", 7);
    let plan = Plan {
        calls: knob("PODIUM_BENCH_CALLS", 2000),
        min_time: Duration::from_millis(knob("PODIUM_BENCH_MIN_MS", 150) as u64),
    };
    let warmup = Plan {
        calls: knob("PODIUM_BENCH_WARMUP", 1000),
        min_time: Duration::ZERO,
    };
    let budget = Duration::from_secs(knob("PODIUM_BENCH_BUDGET_S", 50) as u64);
    let started = Instant::now();

    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
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

    // Layers 4 to 7: the real server, on its own multi-threaded runtime
    // (worker threads = cores, as `podium serve` builds it).
    let registry_dir = tempfile::tempdir().expect("temp dir");
    let registry = LocalRegistry::new(registry_dir.path());
    assert_eq!(
        registry.register("fraud", &model_path).expect("register"),
        1
    );
    registry
        .set_alias("fraud", "champion", 1)
        .expect("set alias");
    // A 90/10 champion/challenger endpoint with a sticky user id, for the
    // split layer; the bench's user lands in the champion arm.
    registry
        .register("fraud", &repo.join("models/fraud/v2.onnx"))
        .expect("register v2");
    registry
        .set_alias("fraud", "challenger", 2)
        .expect("set challenger");
    let config_path = registry_dir.path().join("podium.toml");
    std::fs::write(
        &config_path,
        "[[endpoint]]\nname = \"fraud-ab\"\nmodel = \"fraud\"\nexperiment = \"bench\"\n\
         sticky_key = { header = \"x-user-id\" }\n\
         arms = [{ alias = \"champion\", weight = 90 }, { alias = \"challenger\", weight = 10 }]\n",
    )
    .expect("write the endpoint config");
    let addr = free_port();
    let grpc_addr = free_port();
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("server runtime");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = server_rt.spawn(serve(
        ServeOptions {
            listen: addr,
            grpc_listen: grpc_addr,
            inference_threads: 2,
            config: Some(config_path.clone()),
            ..ServeOptions::new(registry_dir.path())
        },
        async move {
            let _ = stopped.await;
        },
    ));
    // The client gets its own single-threaded runtime on this thread, like a
    // separate client process would have.
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let http = Http::new(addr);
    client_rt.block_on(http.wait_ready(&server));
    let mut plain = PlainClient::connect(addr, &http, Encoding::Json);
    let mut plain_binary = PlainClient::connect(addr, &http, Encoding::Binary);
    let mut grpc = client_rt.block_on(Grpc::connect(grpc_addr));
    let ping = PingPong::start();

    let mut layers: Vec<Layer> = LAYERS.iter().map(|&name| Layer::new(name)).collect();
    let mut run_layer = |index: usize, plan: Plan, record: bool| {
        let batch = match index {
            RAW => time_calls(plan, || raw.run_checked()),
            RUNTIME => time_calls(plan, || runtime_call(&model, &outputs)),
            POOL => client_rt.block_on(pool_batch(plan, &pool, &model, &outputs)),
            JSON => client_rt.block_on(http.batch(plan, Encoding::Json)),
            BINARY => client_rt.block_on(http.batch(plan, Encoding::Binary)),
            PLAIN => plain.batch(plan),
            PLAIN_BINARY => plain_binary.batch(plan),
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

    let _ = stop.send(());
    match server_rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), server).await }) {
        Ok(Ok(Ok(()))) => {}
        other => eprintln!("server did not stop cleanly: {other:?}"),
    }
    drop(pool);
    server_rt.shutdown_timeout(Duration::from_secs(2));

    report(&layers, done, plan, started.elapsed(), cpu);
}

/// How long one layer runs in one round: at least `calls` calls and at least
/// `min_time`, so that the microsecond layers are not judged on a 6 ms window
/// that a single preemption can double.
#[derive(Clone, Copy)]
struct Plan {
    calls: usize,
    min_time: Duration,
}

impl Plan {
    fn more(&self, done: usize, since: Instant) -> bool {
        done < self.calls || since.elapsed() < self.min_time
    }
}

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn describe_machine(lib: &Path) {
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

/// A port that was free a moment ago (the server binds it right after).
fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr")
}

// ---------------------------------------------------------------- layer 1

/// Layer 1: ONNX Runtime itself through `ort`, on a session opened with
/// Podium's own settings (`podium::runtime::ort::open_session`: one intra-op
/// thread, no spinning), with no Podium code in the call.
struct RawSession {
    session: ort::session::Session,
}

impl RawSession {
    fn open(path: &Path) -> RawSession {
        let session = podium::runtime::ort::open_session(path, "fraud v1 (raw)")
            .unwrap_or_else(|e| panic!("{e}"));
        RawSession { session }
    }

    /// One call: tensor in, `run`, outputs copied out (as Podium's `run`).
    fn run(&mut self, row: &[f32]) -> (Vec<i64>, Vec<f32>) {
        let input = OrtTensor::from_array((vec![1i64, 30], row.to_vec())).expect("input tensor");
        let outputs = self
            .session
            .run(ort::inputs!["input" => input])
            .expect("run");
        let (_, label) = outputs["label"].try_extract_tensor::<i64>().expect("label");
        let (_, probabilities) = outputs["probabilities"]
            .try_extract_tensor::<f32>()
            .expect("probabilities");
        (label.to_vec(), probabilities.to_vec())
    }

    fn run_checked(&mut self) -> impl FnOnce() {
        let (label, probabilities) = self.run(&ROW);
        move || expect_answer(&label, &probabilities, "raw ORT")
    }
}

fn fraud_inputs() -> Vec<Tensor> {
    vec![Tensor::new("input".into(), vec![1, 30], TensorData::Fp32(ROW.to_vec())).expect("tensor")]
}

fn check_tensors(out: &[Tensor], layer: &'static str) {
    match (&out[0].data, &out[1].data) {
        (TensorData::Int64(label), TensorData::Fp32(p)) => expect_answer(label, p, layer),
        other => panic!("{layer}: unexpected outputs {other:?}"),
    }
}

fn runtime_call(model: &LoadedModel, outputs: &[usize]) -> impl FnOnce() {
    let out = model
        .run(0, fraud_inputs(), outputs)
        .expect("LoadedModel::run");
    move || check_tensors(&out, "podium runtime")
}

async fn pool_batch(
    plan: Plan,
    pool: &InferencePool,
    model: &Arc<LoadedModel>,
    outputs: &[usize],
) -> Batch {
    let mut batch = Batch::with_capacity(plan.calls);
    let t = Instant::now();
    while plan.more(batch.latencies.len(), t) {
        let t0 = Instant::now();
        let (out, _) = pool
            .run(Arc::clone(model), fraud_inputs(), outputs.to_vec())
            .await
            .expect("InferencePool::run");
        batch.latencies.push(t0.elapsed());
        check_tensors(&out, "podium pool");
    }
    batch.wall = t.elapsed();
    batch
}

/// Times calls of `call` as `plan` says; the closure `call` returns checks
/// the answer after the clock has stopped.
fn time_calls<C: FnOnce()>(plan: Plan, mut call: impl FnMut() -> C) -> Batch {
    let mut batch = Batch::with_capacity(plan.calls);
    let t = Instant::now();
    while plan.more(batch.latencies.len(), t) {
        let t0 = Instant::now();
        let verify = call();
        batch.latencies.push(t0.elapsed());
        verify();
    }
    batch.wall = t.elapsed();
    batch
}

fn expect_answer(label: &[i64], probabilities: &[f32], layer: &str) {
    let close = probabilities.len() == 2
        && probabilities
            .iter()
            .zip(EXPECTED)
            .all(|(a, b)| (a - b).abs() <= TOLERANCE);
    assert!(
        close && label == [EXPECTED_LABEL],
        "{layer}: fraud v1 answered label {label:?}, probabilities {probabilities:?}; expected {EXPECTED_LABEL}, {EXPECTED:?}"
    );
}

// ------------------------------------------------------------ layers 4, 5

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Json,
    Binary,
    /// JSON through the 90/10 sticky endpoint `fraud-ab` (routing included).
    Split,
    /// MLflow `POST /serving-endpoints/fraud/invocations`, `dataframe_split`.
    Invocations,
    /// `GET /v2/health/live`: the HTTP round trip with no inference.
    Live,
}

struct Http {
    client: reqwest::Client,
    base: String,
    json_body: Bytes,
    invocations_body: Bytes,
    binary_body: Bytes,
    binary_header_length: String,
}

impl Http {
    fn new(addr: SocketAddr) -> Http {
        let json_body = serde_json::to_vec(&json!({
            "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": ROW}]
        }))
        .expect("JSON body");
        let head = serde_json::to_vec(&json!({
            "inputs": [{
                "name": "input", "shape": [1, 30], "datatype": "FP32",
                "parameters": {"binary_data_size": ROW.len() * 4}
            }],
            "outputs": [
                {"name": "label", "parameters": {"binary_data": true}},
                {"name": "probabilities", "parameters": {"binary_data": true}}
            ]
        }))
        .expect("binary header");
        let mut binary_body = head.clone();
        for x in ROW {
            binary_body.extend_from_slice(&x.to_le_bytes());
        }
        Http {
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("HTTP client"),
            base: format!("http://{addr}"),
            json_body: Bytes::from(json_body),
            invocations_body: Bytes::from(
                serde_json::to_vec(&json!({"dataframe_split": {
                    "columns": (0..30).map(|i| format!("f{i}")).collect::<Vec<_>>(),
                    "data": [ROW],
                }}))
                .expect("invocations body"),
            ),
            binary_body: Bytes::from(binary_body),
            binary_header_length: head.len().to_string(),
        }
    }

    async fn wait_ready(&self, server: &tokio::task::JoinHandle<anyhow::Result<()>>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("{}/v2/health/ready", self.base);
        loop {
            assert!(!server.is_finished(), "podium serve exited early");
            if let Ok(r) = self.client.get(&url).send().await {
                if r.status() == reqwest::StatusCode::OK {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "server not ready after 60 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn batch(&self, plan: Plan, encoding: Encoding) -> Batch {
        let url = format!("{}/v2/models/fraud/infer", self.base);
        let split = format!("{}/v2/models/fraud-ab/infer", self.base);
        let invocations = format!("{}/serving-endpoints/fraud/invocations", self.base);
        let live = format!("{}/v2/health/live", self.base);
        let mut batch = Batch::with_capacity(plan.calls);
        let mut known_good: Option<Bytes> = None;
        let t = Instant::now();
        while plan.more(batch.latencies.len(), t) {
            let t0 = Instant::now();
            let request = match encoding {
                Encoding::Live => self.client.get(&live),
                Encoding::Invocations => self
                    .client
                    .post(&invocations)
                    .header("content-type", "application/json")
                    .body(self.invocations_body.clone()),
                Encoding::Split => self
                    .client
                    .post(&split)
                    .header("content-type", "application/json")
                    .header("x-user-id", champion_user())
                    .body(self.json_body.clone()),
                Encoding::Json => self
                    .client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(self.json_body.clone()),
                Encoding::Binary => self
                    .client
                    .post(&url)
                    .header("content-type", "application/octet-stream")
                    .header(
                        "inference-header-content-length",
                        &self.binary_header_length,
                    )
                    .body(self.binary_body.clone()),
            };
            let response = request.send().await.expect("HTTP request");
            let status = response.status();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
            };
            let server = [
                header("x-podium-total-us"),
                header("x-podium-inference-us"),
                header("x-podium-queue-us"),
            ];
            let header_length = header("inference-header-content-length");
            let body = response.bytes().await.expect("response body");
            batch.latencies.push(t0.elapsed());

            assert_eq!(
                status,
                reqwest::StatusCode::OK,
                "infer failed: {}",
                String::from_utf8_lossy(&body)
            );
            if encoding != Encoding::Live {
                for (slot, value) in batch.server.iter_mut().zip(server) {
                    slot.push(Duration::from_micros(
                        value.expect("x-podium timing header"),
                    ));
                }
            }
            // Deterministic model, same input: once a body has been checked,
            // identical bytes need no second parse.
            if known_good.as_ref() != Some(&body) {
                match encoding {
                    Encoding::Json | Encoding::Split => check_json(&body),
                    Encoding::Invocations => check_predictions(&body),
                    Encoding::Binary => check_binary(&body, header_length),
                    Encoding::Live => assert_eq!(&body[..], br#"{"live":true}"#),
                }
                known_good = Some(body);
            }
        }
        batch.wall = t.elapsed();
        batch
    }
}

/// A user id that the `fraud-ab` endpoint (experiment "bench", 90/10)
/// assigns to the champion, so the split layer's answers are v1's.
fn champion_user() -> &'static str {
    static USER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    USER.get_or_init(|| {
        let bounds = podium::routing::split::bounds(&[90.0, 10.0]).expect("weights");
        (0..)
            .map(|i| format!("user-{i}"))
            .find(|u| {
                podium::routing::split::pick(&bounds, podium::routing::split::bucket("bench", u))
                    == 0
            })
            .expect("a champion user")
    })
}

// ------------------------------------------------------------ gRPC layer

/// `ModelInfer` with raw input contents (as tritonclient.grpc sends), through
/// a tonic client generated from the same proto, over one HTTP/2 connection.
struct Grpc {
    client: GrpcInferenceServiceClient<tonic::transport::Channel>,
    request: ModelInferRequest,
}

impl Grpc {
    async fn connect(addr: SocketAddr) -> Grpc {
        let client = GrpcInferenceServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect to gRPC");
        let request = ModelInferRequest {
            model_name: "fraud".into(),
            inputs: vec![InferInputTensor {
                name: "input".into(),
                datatype: "FP32".into(),
                shape: vec![1, 30],
                ..Default::default()
            }],
            raw_input_contents: vec![ROW.iter().flat_map(|x| x.to_le_bytes()).collect()],
            ..Default::default()
        };
        Grpc { client, request }
    }

    async fn batch(&mut self, plan: Plan) -> Batch {
        let mut batch = Batch::with_capacity(plan.calls);
        let t = Instant::now();
        while plan.more(batch.latencies.len(), t) {
            let t0 = Instant::now();
            let response = self
                .client
                .model_infer(self.request.clone())
                .await
                .expect("ModelInfer");
            batch.latencies.push(t0.elapsed());
            let server_us = |key: &str| {
                let v = response
                    .metadata()
                    .get(key)
                    .expect("x-podium timing metadata");
                Duration::from_micros(v.to_str().unwrap().parse().unwrap())
            };
            let server = [
                server_us("x-podium-total-us"),
                server_us("x-podium-inference-us"),
                server_us("x-podium-queue-us"),
            ];
            for (slot, value) in batch.server.iter_mut().zip(server) {
                slot.push(value);
            }
            let r = response.into_inner();
            let label: Vec<i64> = r.raw_output_contents[0]
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let probabilities: Vec<f32> = r.raw_output_contents[1]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            expect_answer(&label, &probabilities, "gRPC ModelInfer");
        }
        batch.wall = t.elapsed();
        batch
    }
}

fn output<'a>(head: &'a Value, name: &str) -> (usize, &'a Value) {
    head["outputs"]
        .as_array()
        .and_then(|outs| outs.iter().enumerate().find(|(_, o)| o["name"] == name))
        .unwrap_or_else(|| panic!("response has no output {name}: {head}"))
}

/// An MLflow answer: `{"predictions": {"label": [0], "probabilities": [[p0, p1]]}}`.
fn check_predictions(body: &[u8]) {
    let v: Value = serde_json::from_slice(body).expect("invocations answer is JSON");
    let label: Vec<i64> = serde_json::from_value(v["predictions"]["label"].clone()).expect("label");
    let probabilities: Vec<f32> =
        serde_json::from_value(v["predictions"]["probabilities"][0].clone())
            .expect("probabilities");
    expect_answer(&label, &probabilities, "MLflow /invocations");
}

fn check_json(body: &[u8]) {
    let v: Value = serde_json::from_slice(body).expect("response JSON");
    let floats = |name: &str| -> Vec<f64> {
        output(&v, name).1["data"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no data: {v}"))
            .iter()
            .map(|x| x.as_f64().expect("number"))
            .collect()
    };
    let label: Vec<i64> = floats("label").iter().map(|&x| x as i64).collect();
    let probabilities: Vec<f32> = floats("probabilities").iter().map(|&x| x as f32).collect();
    expect_answer(&label, &probabilities, "REST JSON");
}

fn check_binary(body: &[u8], header_length: Option<u64>) {
    let n =
        header_length.expect("binary response without Inference-Header-Content-Length") as usize;
    let head: Value = serde_json::from_slice(&body[..n]).expect("response JSON header");
    let mut offset = n;
    let mut raw = std::collections::HashMap::new();
    for out in head["outputs"].as_array().expect("outputs") {
        let size = out["parameters"]["binary_data_size"]
            .as_u64()
            .unwrap_or_else(|| panic!("output not binary: {out}")) as usize;
        raw.insert(
            out["name"].as_str().expect("name").to_string(),
            &body[offset..offset + size],
        );
        offset += size;
    }
    assert_eq!(offset, body.len(), "binary response length mismatch");
    let _ = output(&head, "label");
    let label: Vec<i64> = raw["label"]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let probabilities: Vec<f32> = raw["probabilities"]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    expect_answer(&label, &probabilities, "REST binary");
}

// ------------------------------------------- diagnostic: minimal client

/// The smallest possible HTTP/1.1 keep-alive client: a blocking socket on
/// this thread, one pre-built request, a hand-parsed response. Compared with
/// the reqwest layer it shows what the client side costs.
struct PlainClient {
    stream: TcpStream,
    request: Vec<u8>,
    encoding: Encoding,
    buf: Vec<u8>,
}

impl PlainClient {
    fn connect(addr: SocketAddr, http: &Http, encoding: Encoding) -> PlainClient {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let (kind, extra, body) = match encoding {
            Encoding::Json => ("application/json", String::new(), &http.json_body),
            _ => (
                "application/octet-stream",
                format!(
                    "inference-header-content-length: {}\r\n",
                    http.binary_header_length
                ),
                &http.binary_body,
            ),
        };
        let mut request = format!(
            "POST /v2/models/fraud/infer HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {kind}\r\n{extra}content-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        PlainClient {
            stream,
            request,
            encoding,
            buf: Vec::with_capacity(4096),
        }
    }

    /// One request; returns the status, the server timing headers, the
    /// binary header length if any, and the body's range in `self.buf`.
    fn call(&mut self) -> (u16, [Option<u64>; 3], Option<u64>, std::ops::Range<usize>) {
        self.stream.write_all(&self.request).expect("send");
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = self.stream.read(&mut chunk).expect("receive");
            assert!(n > 0, "server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).expect("ASCII head");
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let header = |name: &str| {
            head.split("\r\n").find_map(|line| {
                let (k, v) = line.split_once(':')?;
                k.eq_ignore_ascii_case(name)
                    .then(|| v.trim().parse::<u64>().ok())
                    .flatten()
            })
        };
        let length = header("content-length").expect("content-length") as usize;
        let timing = [
            header("x-podium-total-us"),
            header("x-podium-inference-us"),
            header("x-podium-queue-us"),
        ];
        let header_length = header("inference-header-content-length");
        while self.buf.len() < head_end + length {
            let n = self.stream.read(&mut chunk).expect("receive");
            assert!(n > 0, "server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(self.buf.len(), head_end + length, "unexpected extra bytes");
        (status, timing, header_length, head_end..head_end + length)
    }

    fn batch(&mut self, plan: Plan) -> Batch {
        let mut batch = Batch::with_capacity(plan.calls);
        let mut known_good: Option<Vec<u8>> = None;
        let t = Instant::now();
        while plan.more(batch.latencies.len(), t) {
            let t0 = Instant::now();
            let (status, timing, header_length, body) = self.call();
            batch.latencies.push(t0.elapsed());
            let body = &self.buf[body];
            assert_eq!(
                status,
                200,
                "infer failed: {}",
                String::from_utf8_lossy(body)
            );
            for (slot, value) in batch.server.iter_mut().zip(timing) {
                slot.push(Duration::from_micros(
                    value.expect("x-podium timing header"),
                ));
            }
            if known_good.as_deref() != Some(body) {
                match self.encoding {
                    Encoding::Json => check_json(body),
                    _ => check_binary(body, header_length),
                }
                known_good = Some(body.to_vec());
            }
        }
        batch.wall = t.elapsed();
        batch
    }
}

// ------------------------------------------ diagnostic: thread wake-ups

/// A thread that echoes what it is sent; both sides block, so each round
/// trip is two wake-ups, like the hop to an inference thread and back.
struct PingPong {
    tx: std::sync::mpsc::Sender<u64>,
    rx: std::sync::mpsc::Receiver<u64>,
}

impl PingPong {
    fn start() -> PingPong {
        let (tx, their_rx) = std::sync::mpsc::channel::<u64>();
        let (their_tx, rx) = std::sync::mpsc::channel::<u64>();
        std::thread::Builder::new()
            .name("bench-echo".into())
            .spawn(move || {
                for v in their_rx {
                    if their_tx.send(v).is_err() {
                        break;
                    }
                }
            })
            .expect("start echo thread");
        PingPong { tx, rx }
    }

    fn call(&self) -> impl FnOnce() {
        self.tx.send(7).expect("echo thread alive");
        let v = self.rx.recv().expect("echo");
        move || assert_eq!(v, 7)
    }
}

// ------------------------------------------------------------ CPU usage

/// Jiffies from /proc/stat (whole machine) and /proc/self/stat (this
/// process), to say how much of the machine others used during the run.
struct CpuSample {
    total: u64,
    idle: u64,
    steal: u64,
    ours: u64,
}

impl CpuSample {
    fn now() -> CpuSample {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cpu: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|x| x.parse().ok())
            .collect();
        let at = |i: usize| cpu.get(i).copied().unwrap_or(0);
        let me = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let fields: Vec<&str> = me
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        // After the command name come state (field 3) … utime (14), stime
        // (15): indexes 11 and 12 here. All threads of the process count.
        let field = |i: usize| -> u64 { fields.get(i).and_then(|x| x.parse().ok()).unwrap_or(0) };
        let ours = field(11) + field(12);
        CpuSample {
            total: cpu.iter().sum(),
            idle: at(3) + at(4),
            steal: at(7),
            ours,
        }
    }

    /// Shares of the machine over the interval: (this process, others,
    /// idle, steal), each 0..=1.
    fn since(&self, before: &CpuSample) -> [f64; 4] {
        let total = self.total.saturating_sub(before.total).max(1) as f64;
        let idle = self.idle.saturating_sub(before.idle) as f64;
        let steal = self.steal.saturating_sub(before.steal) as f64;
        let ours = self.ours.saturating_sub(before.ours) as f64;
        let busy = total - idle - steal;
        [
            ours / total,
            (busy - ours).max(0.0) / total,
            idle / total,
            steal / total,
        ]
    }
}

// --------------------------------------------------------------- results

const RAW: usize = 0;
const RUNTIME: usize = 1;
const POOL: usize = 2;
const JSON: usize = 3;
const BINARY: usize = 4;
const PLAIN: usize = 5;
const PLAIN_BINARY: usize = 6;
const LIVE: usize = 7;
const GRPC: usize = 8;
const SPLIT: usize = 9;
const INVOCATIONS: usize = 10;
const LAYERS: [&str; 12] = [
    "raw ORT (session.run)",
    "podium runtime (LoadedModel::run)",
    "podium pool (InferencePool::run)",
    "podium REST JSON (reqwest)",
    "podium REST binary (reqwest)",
    "diag: REST JSON, minimal client",
    "diag: REST binary, minimal client",
    "diag: GET /v2/health/live (reqwest)",
    "podium gRPC ModelInfer (tonic)",
    "podium REST JSON, 90/10 split endpoint",
    "podium MLflow /invocations (dataframe_split)",
    "diag: thread ping-pong (std mpsc)",
];

struct Batch {
    latencies: Vec<Duration>,
    wall: Duration,
    /// Server-reported total, inference and queue time (infer layers only).
    server: [Vec<Duration>; 3],
}

impl Batch {
    fn with_capacity(n: usize) -> Batch {
        Batch {
            latencies: Vec::with_capacity(n),
            wall: Duration::ZERO,
            server: Default::default(),
        }
    }
}

/// One round's summary of one layer, in microseconds and calls per second.
#[derive(Clone, Copy)]
struct Summary {
    calls: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    mean: f64,
    rate: f64,
    server: [Option<f64>; 3],
}

struct Layer {
    name: &'static str,
    rounds: Vec<Summary>,
}

impl Layer {
    fn new(name: &'static str) -> Layer {
        Layer {
            name,
            rounds: Vec::new(),
        }
    }

    fn add(&mut self, mut batch: Batch) {
        let n = batch.latencies.len();
        let mut server = [None; 3];
        for (slot, samples) in server.iter_mut().zip(batch.server.iter_mut()) {
            if !samples.is_empty() {
                *slot = Some(percentile(samples, 0.50));
            }
        }
        let sum: Duration = batch.latencies.iter().sum();
        self.rounds.push(Summary {
            calls: n as f64,
            p50: percentile(&mut batch.latencies, 0.50),
            p90: percentile(&mut batch.latencies, 0.90),
            p99: percentile(&mut batch.latencies, 0.99),
            mean: sum.as_secs_f64() * 1e6 / n as f64,
            rate: n as f64 / batch.wall.as_secs_f64(),
            server,
        });
    }

    fn median(&self, f: impl Fn(&Summary) -> f64) -> f64 {
        median(self.rounds.iter().map(f).collect())
    }
}

/// Nearest-rank percentile, in microseconds.
fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort_unstable();
    let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1].as_secs_f64() * 1e6
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn report(layers: &[Layer], rounds: usize, plan: Plan, elapsed: Duration, cpu: [f64; 4]) {
    println!();
    println!(
        "fraud v1, batch 1, concurrency 1: {rounds} rounds; per layer and round at least {} calls and {} ms; medians across rounds (whole run {:.1} s)",
        plan.calls,
        plan.min_time.as_millis(),
        elapsed.as_secs_f64()
    );
    println!(
        "CPU during the measured rounds (share of all cores): this process {:.0}%, other processes {:.0}%, idle {:.0}%, steal {:.0}%",
        cpu[0] * 100.0,
        cpu[1] * 100.0,
        cpu[2] * 100.0,
        cpu[3] * 100.0
    );
    println!();
    println!(
        "| {:<35} | {:>7} | {:>8} | {:>8} | {:>8} | {:>8} | {:>9} |",
        "layer", "calls", "p50 µs", "p90 µs", "p99 µs", "mean µs", "calls/s"
    );
    println!(
        "|{:-<37}|{:->9}|{:->10}|{:->10}|{:->10}|{:->10}|{:->11}|",
        "", "", "", "", "", "", ""
    );
    for layer in layers {
        println!(
            "| {:<35} | {:>7.0} | {:>8.1} | {:>8.1} | {:>8.1} | {:>8.1} | {:>9.0} |",
            layer.name,
            layer.median(|s| s.calls),
            layer.median(|s| s.p50),
            layer.median(|s| s.p90),
            layer.median(|s| s.p99),
            layer.median(|s| s.mean),
            layer.median(|s| s.rate),
        );
    }

    println!();
    println!("p50 per round (µs), to show the spread:");
    for layer in layers {
        let per_round: Vec<String> = layer
            .rounds
            .iter()
            .map(|s| format!("{:.1}", s.p50))
            .collect();
        println!("  {:<35} {}", layer.name, per_round.join("  "));
    }

    println!();
    println!(
        "server-side x-podium-*-us headers (median of per-round p50, µs; whole-µs resolution):"
    );
    for layer in [
        &layers[JSON],
        &layers[BINARY],
        &layers[PLAIN],
        &layers[PLAIN_BINARY],
    ] {
        let get = |i: usize| layer.median(|s| s.server[i].unwrap_or(f64::NAN));
        println!(
            "  {:<35} total {:>6.1}  inference {:>6.1}  queue {:>6.1}  | client p50 {:>6.1}, outside the handler {:>6.1}",
            layer.name,
            get(0),
            get(1),
            get(2),
            layer.median(|s| s.p50),
            layer.median(|s| s.p50 - s.server[0].unwrap_or(f64::NAN)),
        );
    }

    let raw = &layers[RAW];
    // Per-round differences and ratios, then the median across rounds.
    let per_round = |other: &Layer, f: &dyn Fn(&Summary, &Summary) -> f64| {
        median(
            raw.rounds
                .iter()
                .zip(&other.rounds)
                .map(|(r, o)| f(r, o))
                .collect(),
        )
    };
    println!();
    println!(
        "| {:<35} | {:>8} | {:>12} | {:>14} |",
        "vs raw ORT (per-round, then median)", "p50 µs", "added p50 µs", "raw calls/s ÷"
    );
    println!("|{:-<37}|{:->10}|{:->14}|{:->16}|", "", "", "", "");
    for layer in layers {
        println!(
            "| {:<35} | {:>8.1} | {:>12.1} | {:>13.1}x |",
            layer.name,
            layer.median(|s| s.p50),
            per_round(layer, &|r, o| o.p50 - r.p50),
            per_round(layer, &|r, o| r.rate / o.rate),
        );
    }
}
