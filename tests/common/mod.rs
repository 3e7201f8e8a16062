//! Test harness: registry fixtures, the real `podium serve` on 127.0.0.1
//! with OS-assigned ports, the `podium` CLI, and polling with a deadline.
#![allow(dead_code, unused_imports)]

mod fraud;
pub mod onnx;
mod registry;
mod server;
mod table;
pub mod tls;

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub use fraud::{
    assert_fraud_v1, fraud_grpc_request, fraud_request, fraud_rows, output_numbers, FRAUD_ROW,
    FRAUD_V1_PROBABILITIES,
};
pub use registry::{
    demo_registry, register, register_path, set_alias, sized_model, unloadable_model,
};
pub use server::Server;
pub use table::{by_id, read_feedback_table, read_table, walk};

pub const BIN: &str = env!("CARGO_BIN_EXE_podium");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn model_file(rel: &str) -> PathBuf {
    repo().join("models").join(rel)
}

/// The example `name`, built from the current sources into the target
/// directory of this test's own binary (`target/<profile>/examples/NAME`).
/// Built here every time: a narrower run (`cargo test --test NAME`) does not
/// build examples, and one left from an older build would test old code.
pub fn example(name: &str) -> PathBuf {
    let test_exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> → target/<profile>
    let profile_dir = test_exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    let target_dir = profile_dir.parent().expect("target/<profile> has a parent");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--example", name, "--target-dir"])
        .arg(target_dir)
        .current_dir(repo())
        .status()
        .expect("run cargo build --example");
    assert!(status.success(), "cargo build --example {name} failed");
    profile_dir.join("examples").join(name)
}

/// Runs `podium --registry REG ARGS…`, returning (success, stdout, stderr).
pub fn cli(registry: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("--registry")
        .arg(registry)
        .args(args)
        .output()
        .expect("run podium");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Like [`cli`] but panics with the output when the command fails.
pub fn cli_ok(registry: &Path, args: &[&str]) -> String {
    let (ok, stdout, stderr) = cli(registry, args);
    assert!(ok, "podium {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Polls `check` until it returns `Some`, failing after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the server closes `stream` within `deadline` (bytes it sends
/// first, such as an answer, are read and ignored).
pub fn closed_within(stream: &mut TcpStream, deadline: Duration) -> bool {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true, // reset
        }
    }
}

/// The value of the first `/metrics` sample of `name` whose labels include
/// all of `labels`.
pub fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The `/admin/status` slot of `model@alias`.
pub fn slot<'a>(status: &'a serde_json::Value, model: &str, alias: &str) -> &'a serde_json::Value {
    status["slots"]
        .as_array()
        .and_then(|slots| {
            slots
                .iter()
                .find(|s| s["model"] == model && s["alias"] == alias)
        })
        .unwrap_or_else(|| panic!("no slot {model}@{alias} in {status}"))
}
