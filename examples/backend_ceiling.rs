//! Raw tract against raw ONNX Runtime on the demo models: each backend's
//! `LoadedModel::run` (Podium's own engine code, tensors in and out, no
//! gateway), on one thread, at batch 1 and 32. Needs the `tract` feature.
//!
//! ```sh
//! cargo run --release --features tract --example backend_ceiling -- [SECONDS=2]
//! ```
//!
//! Prints one JSON line per model, backend and batch size: `{"model",
//! "backend", "batch", "calls", "calls_per_s", "rows_per_s", "p50_us",
//! "p99_us"}`. A model a backend cannot load is printed with its `error`.
//! ONNX Runtime is found as `podium` finds it (`ORT_DYLIB_PATH`, else
//! `.ort/` of the checkout or beside the binary).

use std::path::Path;
use std::time::{Duration, Instant};

use podium::runtime::{Backend, LoadedModel};
use podium::tensor::{Tensor, TensorData};
use podium_loadtest::hist::Latency;

/// The demo models: name, file under `models/`, input width.
const MODELS: [(&str, &str, usize); 4] = [
    ("fraud v1 (logistic regression)", "fraud/v1.onnx", 30),
    ("fraud v2 (gradient-boosted trees)", "fraud/v2.onnx", 30),
    ("mlp", "mlp/v1.onnx", 64),
    ("mlp_large", "mlp_large/v1.onnx", 512),
];

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    if let Err(e) = podium::runtime::ort::init(None) {
        eprintln!("{e}");
        std::process::exit(1);
    }
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    for (name, file, width) in MODELS {
        for backend in [Backend::Ort, Backend::Tract] {
            let loaded =
                LoadedModel::load_on(name, 1, &models.join(file), 1, backend, &Default::default());
            let model = match loaded {
                Ok(model) => model,
                Err(e) => {
                    let line = serde_json::json!({"model": name, "backend": backend.name(), "error": e.to_string()});
                    println!("{line}");
                    continue;
                }
            };
            for batch in [1, 32] {
                let window = Duration::from_secs_f64(seconds);
                let (calls, latency) = run(&model, width, batch, window);
                let per_s = calls as f64 / seconds;
                println!(
                    "{}",
                    serde_json::json!({
                        "model": name,
                        "backend": backend.name(),
                        "batch": batch,
                        "calls": calls,
                        "calls_per_s": per_s,
                        "rows_per_s": per_s * batch as f64,
                        "p50_us": latency.quantile_us(0.5),
                        "p99_us": latency.quantile_us(0.99),
                    })
                );
            }
        }
    }
}

/// Runs `model` on `batch` rows back to back for `window` (after 200 warm-up calls).
fn run(model: &LoadedModel, width: usize, batch: usize, window: Duration) -> (u64, Latency) {
    let input = &model.signature.inputs[0].name;
    let rows: Vec<f32> = (0..width * batch)
        .map(|i| ((i * 7919) % 200) as f32 / 100.0 - 1.0)
        .collect();
    let outputs: Vec<usize> = (0..model.signature.outputs.len()).collect();
    let one = || {
        let tensor = Tensor::new(
            input.clone(),
            vec![batch as i64, width as i64],
            TensorData::Fp32(rows.clone()),
        )
        .expect("input tensor");
        let out = model.run(0, vec![tensor], &outputs).expect("run");
        std::hint::black_box(out);
    };
    for _ in 0..200 {
        one();
    }
    let mut latency = Latency::new();
    let mut count = 0u64;
    let start = Instant::now();
    while start.elapsed() < window {
        let t = Instant::now();
        one();
        latency.record(t.elapsed());
        count += 1;
    }
    (count, latency)
}
