//! The raw ONNX Runtime ceiling that gateway throughput is compared with:
//! `Session::run` on the same model, in one process, with no gateway code,
//! one session per thread opened with Podium's settings (1 intra-op thread,
//! no spinning), batch 1, input built and outputs copied out per call.
//!
//! ```sh
//! cargo run --release --example ort_ceiling -- MODEL.onnx WIDTH [SECONDS] [THREADS,...]
//! cargo run --release --example ort_ceiling -- models/fraud/v1.onnx 30 2 1,2
//! ```
//!
//! Prints one JSON line per thread count: `{"threads", "calls", "seconds",
//! "calls_per_s", "p50_us", "p99_us"}` (latency of one call on one thread).
//! `loadtest/bench.sh` uses it for the ratio Podium / raw ORT. It finds
//! ONNX Runtime as `podium` does ([`podium::runtime::ort::init`]):
//! `ORT_DYLIB_PATH` if set, else `.ort/` of the checkout or beside the binary.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ort::value::Tensor as OrtTensor;
use podium_loadtest::hist::Latency;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: ort_ceiling MODEL.onnx INPUT_WIDTH [SECONDS=2] [THREADS=1,2]";
    let (Some(model), Some(width)) = (
        args.first(),
        args.get(1).and_then(|w| w.parse::<i64>().ok()),
    ) else {
        eprintln!("{usage}");
        std::process::exit(1);
    };
    let seconds: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let threads: Vec<usize> = args
        .get(3)
        .map(|t| t.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2]);
    let model = PathBuf::from(model);
    if let Err(e) = podium::runtime::ort::init(None) {
        eprintln!("{e}");
        std::process::exit(1);
    }
    for n in threads {
        let window = Duration::from_secs_f64(seconds);
        let results: Vec<(u64, Latency)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|_| s.spawn(|| calls(&model, width, window)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        let total: u64 = results.iter().map(|(c, _)| c).sum();
        let mut latency = Latency::new();
        for (_, l) in &results {
            latency.merge(l);
        }
        println!(
            "{}",
            serde_json::json!({
                "threads": n,
                "calls": total,
                "seconds": seconds,
                "calls_per_s": total as f64 / seconds,
                "p50_us": latency.quantile_us(0.5),
                "p99_us": latency.quantile_us(0.99),
            })
        );
    }
}

/// Calls the model back to back for `window` (after 1000 warm-up calls).
fn calls(model: &std::path::Path, width: i64, window: Duration) -> (u64, Latency) {
    let mut session =
        podium::runtime::ort::open_session(model, "ceiling").unwrap_or_else(|e| panic!("{e}"));
    let input_name = session.inputs()[0].name().to_string();
    let names: Vec<String> = session
        .outputs()
        .iter()
        .map(|o| o.name().to_string())
        .collect();
    let row: Vec<f32> = (0..width)
        .map(|i| ((i * 7919) % 200) as f32 / 100.0 - 1.0)
        .collect();
    let mut one = || {
        let input = OrtTensor::from_array((vec![1i64, width], row.clone())).expect("input");
        let outputs = session
            .run(ort::inputs![input_name.as_str() => input])
            .expect("run");
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
        std::hint::black_box(copied);
    };
    for _ in 0..1000 {
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
