//! The gateway's pieces, timed apart with criterion, next to the ceiling
//! they are compared with: the raw ONNX Runtime call on the same model in
//! the same process.
//!
//! ```text
//! cargo bench --bench gateway            # all groups
//! cargo bench --bench gateway -- codec   # one group
//! ```
//!
//! - `codec`: decoding an OIP REST body (JSON, and Triton's binary
//!   extension) into Podium's `InferRequest`, and encoding an answer, for
//!   the fraud row (1×30 FP32 in; label + 2 probabilities out) and the MLP
//!   (1×64 in, 10 logits out).
//! - `in_process`: one `POST /v2/models/{m}/infer` through Podium's whole
//!   axum handler stack (decode, route, signature check, the hop to an
//!   inference thread and back, encode, headers), called as a tower service
//!   with no socket and no HTTP parsing.
//! - `raw_ort`: `Session::run` through the `ort` crate on a session opened
//!   with Podium's settings (1 intra-op thread, no spinning), input built
//!   and outputs copied out.
//!
//! Routing assignment has its own bench (`benches/routing.rs`).

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http_body_util::BodyExt;
use ort::value::Tensor as OrtTensor;
use podium::api::http::{decode, encode, router, AdminAccess, HEADER_LENGTH};
use podium::api::AppState;
use podium::registry::local::LocalRegistry;
use podium::registry::Registry;
use podium::request::{InferResponse, Timing};
use podium::routing::RouteTable;
use podium::runtime::pool::InferencePool;
use podium::serving::{Core, History, ModelStore, Reconciler, StoreOptions};
use podium::tensor::{Tensor, TensorData};
use serde_json::json;
use support::repo;
use tower::ServiceExt;

/// A model of the bench: its file, input width and outputs.
struct Model {
    name: &'static str,
    file: &'static str,
    width: usize,
}

const MODELS: [Model; 2] = [
    Model {
        name: "fraud",
        file: "models/fraud/v1.onnx",
        width: 30,
    },
    Model {
        name: "mlp",
        file: "models/mlp/v1.onnx",
        width: 64,
    },
];

fn row(width: usize) -> Vec<f32> {
    (0..width)
        .map(|i| ((i * 7919) % 200) as f32 / 100.0 - 1.0)
        .collect()
}

fn json_body(width: usize) -> Vec<u8> {
    json_rows(width, 1)
}

/// `rows` rows as nested ("natural") JSON data.
fn json_rows(width: usize, rows: usize) -> Vec<u8> {
    let data: Vec<Vec<f32>> = (0..rows).map(|_| row(width)).collect();
    serde_json::to_vec(&json!({
        "inputs": [{"name": "input", "shape": [rows, width], "datatype": "FP32", "data": data}]
    }))
    .unwrap()
}

fn binary_body(width: usize) -> (Vec<u8>, usize) {
    let mut body = serde_json::to_vec(&json!({
        "inputs": [{"name": "input", "shape": [1, width], "datatype": "FP32",
                    "parameters": {"binary_data_size": width * 4}}],
        "parameters": {"binary_data_output": true}
    }))
    .unwrap();
    let n = body.len();
    body.extend(row(width).iter().flat_map(|f| f.to_le_bytes()));
    (body, n)
}

/// The answer of `model` to its row, as the pool gives it.
fn answer(model: &Model, outputs: Vec<Tensor>) -> InferResponse {
    InferResponse {
        model_name: model.name.into(),
        model_version: 1,
        id: None,
        outputs,
        timing: Timing::default(),
    }
}

fn codec(c: &mut Criterion) {
    let _ = podium::runtime::ort::init(None).unwrap_or_else(|e| panic!("{e}"));
    let mut g = c.benchmark_group("codec");
    for m in &MODELS {
        let json = json_body(m.width);
        let (binary, n) = binary_body(m.width);
        let n_text = n.to_string();
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("decode json", m.name), |b| {
            b.iter(|| decode(std::hint::black_box(&json), None).unwrap())
        });
        // The first step of the decoder before issue 16 (the whole body
        // into serde_json::Value), a lower bound of what it cost.
        g.bench_function(BenchmarkId::new("json to Value only", m.name), |b| {
            b.iter(|| {
                serde_json::from_slice::<serde_json::Value>(std::hint::black_box(&json)).unwrap()
            })
        });
        g.bench_function(BenchmarkId::new("decode binary", m.name), |b| {
            b.iter(|| decode(std::hint::black_box(&binary), Some(&n_text)).unwrap())
        });
        // Real outputs of the model, for the encoders.
        let loaded = podium::runtime::LoadedModel::load(m.name, 1, &repo().join(m.file), 1)
            .expect("load the model");
        let all: Vec<usize> = (0..loaded.signature.outputs.len()).collect();
        let input = Tensor::new(
            "input".into(),
            vec![1, m.width as i64],
            TensorData::Fp32(row(m.width)),
        )
        .expect("input tensor");
        let outputs = loaded.run(0, vec![input], &all).expect("run");
        let response = answer(m, outputs);
        let as_json = decode(&json, None).unwrap().encoding;
        let as_binary = decode(&binary, Some(&n_text)).unwrap().encoding;
        g.bench_function(BenchmarkId::new("encode json", m.name), |b| {
            b.iter(|| encode(std::hint::black_box(&response), &as_json))
        });
        g.bench_function(BenchmarkId::new("encode binary", m.name), |b| {
            b.iter(|| encode(std::hint::black_box(&response), &as_binary))
        });
    }
    g.finish();

    // A large body (1000 rows), per byte: the typed decoder against parsing
    // into serde_json::Value alone.
    let mut g = c.benchmark_group("codec 1000 rows");
    for m in &MODELS {
        let json = json_rows(m.width, 1000);
        g.throughput(Throughput::Bytes(json.len() as u64));
        g.bench_function(BenchmarkId::new("decode json", m.name), |b| {
            b.iter(|| decode(std::hint::black_box(&json), None).unwrap())
        });
        g.bench_function(BenchmarkId::new("json to Value only", m.name), |b| {
            b.iter(|| {
                serde_json::from_slice::<serde_json::Value>(std::hint::black_box(&json)).unwrap()
            })
        });
    }
    g.finish();
}

/// Podium's REST router over a registry with fraud v1 and mlp v1 as
/// `champion`, with 2 inference threads as `podium serve` has on 2 cores.
fn app(rt: &tokio::runtime::Runtime, dir: &Path) -> axum::Router {
    let registry = LocalRegistry::new(dir);
    for m in &MODELS {
        let v = registry
            .register(m.name, &repo().join(m.file))
            .expect("register");
        registry.set_alias(m.name, "champion", v).expect("alias");
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pool = InferencePool::start(workers, 1024).expect("inference threads");
    let models = Arc::new(ModelStore::new(
        Arc::new(registry),
        StoreOptions {
            workers,
            keep_previous: 1,
            memory_limit: None,
            preload: Vec::new(),
            load_wait: podium::serving::DEFAULT_LOAD_WAIT,
            watch: None,
            batching: Default::default(),
            ort: Default::default(),
            backends: Default::default(),
        },
        History::new(dir.join(".history.jsonl")),
    ));
    let _guard = rt.enter();
    let reconciler = Reconciler::spawn(Arc::clone(&models), Duration::from_secs(3600))
        .expect("start the reconciler");
    rt.block_on(models.refresh()).expect("load the models");
    // Nothing moves during a bench: the loaded slots are all it needs.
    drop(reconciler);
    let state = Arc::new(AppState {
        core: Core::new(models, pool, None, RouteTable::default()),
        max_request_bytes: 64 << 20,
        body_budget: podium::api::http::budget::BodyBudget::new(256 << 20),
        default_endpoint: None,
        table: None,
        feedback_table: None,
        registration: Default::default(),
        experiments: None,
        api_keys: None,
        series: Default::default(),
        replica: "bench".parse().expect("a valid replica id"),
        config_file: None,
    });
    podium::telemetry::install();
    router(state, AdminAccess::Disabled, false)
}

fn in_process(c: &mut Criterion) {
    let _ = podium::runtime::ort::init(None).unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = app(&rt, dir.path());
    let mut g = c.benchmark_group("in_process");
    g.throughput(Throughput::Elements(1));
    for m in &MODELS {
        let path = format!("/v2/models/{}/infer", m.name);
        let json = bytes::Bytes::from(json_body(m.width));
        let (binary, n) = binary_body(m.width);
        let binary = bytes::Bytes::from(binary);
        for (kind, body, header_length) in [("json", json, None), ("binary", binary, Some(n))] {
            let call = || {
                let mut request =
                    axum::http::Request::post(&path).header("content-type", "application/json");
                if let Some(n) = header_length {
                    request = request.header(HEADER_LENGTH, n);
                }
                let request = request.body(Body::from(body.clone())).unwrap();
                let app = app.clone();
                async move {
                    let response = app.oneshot(request).await.unwrap();
                    assert_eq!(response.status(), 200);
                    response.into_body().collect().await.unwrap().to_bytes()
                }
            };
            g.bench_function(BenchmarkId::new(format!("REST {kind}"), m.name), |b| {
                b.iter(|| rt.block_on(call()))
            });
        }
    }
    g.finish();
}

fn raw_ort(c: &mut Criterion) {
    let _ = podium::runtime::ort::init(None).unwrap_or_else(|e| panic!("{e}"));
    let mut g = c.benchmark_group("raw_ort");
    g.throughput(Throughput::Elements(1));
    for m in &MODELS {
        let mut session = podium::runtime::ort::open_session(&repo().join(m.file), m.name)
            .unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<String> = session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        let data = row(m.width);
        g.bench_function(BenchmarkId::new("Session::run", m.name), |b| {
            b.iter(|| {
                let input = OrtTensor::from_array((vec![1i64, m.width as i64], data.clone()))
                    .expect("input tensor");
                let outputs = session.run(ort::inputs!["input" => input]).expect("run");
                // Copied out, as Podium does.
                let mut copied = 0usize;
                for name in &names {
                    copied += match outputs[name.as_str()].try_extract_tensor::<f32>() {
                        Ok((_, v)) => v.to_vec().len(),
                        Err(_) => outputs[name.as_str()]
                            .try_extract_tensor::<i64>()
                            .map(|(_, v)| v.to_vec().len())
                            .unwrap_or(0),
                    };
                }
                copied
            })
        });
    }
    g.finish();
}

criterion_group!(benches, codec, in_process, raw_ort);
criterion_main!(benches);
