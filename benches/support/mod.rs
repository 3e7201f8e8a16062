//! What the benches share: knobs from the environment, the fraud demo row
//! and its known answer, a real Podium server in this process, and the
//! machine's CPU accounting. Pulled into each bench with `mod support;`.
#![allow(dead_code, unused_imports)]

pub mod cpu;
pub mod server;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

/// The fraud model's first demo row and fraud v1's answer to it, shared
/// with the integration tests.
#[path = "../../tests/common/fraud.rs"]
mod fraud;
pub use fraud::{FRAUD_ROW, FRAUD_V1_PROBABILITIES};

/// Rows in the benches' pool of distinct fraud inputs: a row recurs only
/// this many requests later, far beyond a 128 KiB Parquet page, so no codec
/// can take a row for its predecessor (identical bodies row after row
/// flattered every codec and made file sizes meaningless).
pub const DISTINCT_ROWS: usize = 1024;

/// [`DISTINCT_ROWS`] fraud feature rows, each the demo row scaled feature
/// by feature (seeded, the same every run), and one more number in [0, 1)
/// per row for whoever needs a made-up answer.
pub fn varied_fraud_rows() -> Vec<(Vec<f32>, f32)> {
    let mut rng = fastrand::Rng::with_seed(16);
    (0..DISTINCT_ROWS)
        .map(|_| {
            let row = FRAUD_ROW.iter().map(|x| x * (0.5 + rng.f32())).collect();
            (row, rng.f32())
        })
        .collect()
}

/// The repository root (models live under `models/`).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The number in environment variable `name`, or `default` when it is
/// unset or not a number.
pub fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A port on 127.0.0.1 that was free a moment ago (the server binds it
/// right after).
pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
}

/// The median of a few per-round figures (NaN when there are none).
pub fn median(mut xs: Vec<f64>) -> f64 {
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
