//! One copy of a model version's weights however many inference threads
//! serve it (issue 22), measured as the server process's resident memory,
//! and the status' memory estimate checked against what a load really takes.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{eventually, register_path, set_alias, slot, Server};
use serde_json::json;

/// 512 → 2048 → 2048 → 10: about 5.3M weights, a 21 MB file.
const WIDE: [usize; 4] = [512, 2048, 2048, 10];
/// The same signature with almost no weights.
const NARROW: [usize; 3] = [512, 8, 10];

/// Writes an MLP over `dims` to `dir/NAME.onnx`; returns its path and size.
fn write_mlp(dir: &Path, name: &str, dims: &[usize]) -> (PathBuf, u64) {
    let path = dir.join(format!("{name}.onnx"));
    let bytes = common::onnx::mlp(dims);
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes.len() as u64)
}

/// Calls `mlp@champion` with one row; the answer must be one row of 10 scores.
async fn call(server: &Server) -> Option<()> {
    let request = json!({"inputs": [{
        "name": "input", "shape": [1, 512], "datatype": "FP32", "data": vec![0.5f32; 512]
    }]});
    let (status, body) = server.post_json("/v2/models/mlp/infer", &request).await;
    (status == 200 && body["outputs"][0]["shape"] == json!([1, 10])).then_some(())
}

/// The resident memory of a server with `threads` inference threads serving
/// the wide MLP, after it answered a call; and the model file's size.
async fn rss_serving_wide(threads: &str) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let (model, size) = write_mlp(dir.path(), "wide", &WIDE);
    let registry = dir.path().join("registry");
    register_path(&registry, "mlp", &model);
    set_alias(&registry, "mlp", "champion", 1);
    let server = Server::start(&registry, &["--inference-threads", threads]);
    eventually(Duration::from_secs(60), "the wide MLP to answer", || {
        call(&server)
    })
    .await;
    (server.rss_bytes(), size)
}

#[tokio::test]
async fn eight_inference_threads_hold_one_copy_of_the_weights() {
    let (one, size) = rss_serving_wide("1").await;
    let (eight, _) = rss_serving_wide("8").await;
    let mb = |b: u64| b as f64 / 1e6;
    eprintln!(
        "RSS serving a {:.1} MB model: 1 inference thread {:.1} MB, 8 threads {:.1} MB",
        mb(size),
        mb(one),
        mb(eight)
    );
    assert!(
        eight.saturating_sub(one) <= size / 2,
        "8 inference threads take {:.1} MB more than 1 ({:.1} MB vs {:.1} MB) for a {:.1} MB model; \
         one shared copy of the weights allows at most half the model's size",
        mb(eight.saturating_sub(one)),
        mb(eight),
        mb(one),
        mb(size)
    );
}

#[tokio::test]
async fn the_status_memory_estimate_is_what_loading_a_version_takes() {
    let dir = tempfile::tempdir().unwrap();
    let (narrow, _) = write_mlp(dir.path(), "narrow", &NARROW);
    let (wide, size) = write_mlp(dir.path(), "wide", &WIDE);
    let registry = dir.path().join("registry");
    register_path(&registry, "mlp", &narrow);
    set_alias(&registry, "mlp", "champion", 1);
    let server = Server::start(&registry, &["--inference-threads", "4"]);
    eventually(Duration::from_secs(60), "the narrow MLP to answer", || {
        call(&server)
    })
    .await;
    let before = server.rss_bytes();

    assert_eq!(register_path(&registry, "mlp", &wide), 2);
    server.set_alias("mlp", "champion", 2);
    let estimate = eventually(Duration::from_secs(60), "the wide MLP to serve", || async {
        let status = server.admin_status().await;
        let slot = slot(&status, "mlp", "champion");
        if slot["serving_version"] != 2 {
            return None;
        }
        call(&server).await?;
        slot["memory_estimate_bytes"].as_u64()
    })
    .await;
    let growth = server.rss_bytes().saturating_sub(before);

    // What the load took, within a factor of two either way; the estimate
    // of one copy per thread (4 × the file) would be off by more.
    let mb = |b: u64| b as f64 / 1e6;
    eprintln!(
        "loading a {:.1} MB model with 4 inference threads: RSS +{:.1} MB, estimate {:.1} MB",
        mb(size),
        mb(growth),
        mb(estimate)
    );
    assert!(
        estimate >= growth / 2 && estimate <= growth.saturating_mul(2),
        "the status estimates {:.1} MB for the {:.1} MB model; loading it grew the server by {:.1} MB",
        mb(estimate),
        mb(size),
        mb(growth)
    );
}
