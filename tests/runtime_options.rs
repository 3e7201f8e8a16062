//! ONNX Runtime options over the wire: a model with its own
//! `[model.<name>.onnxruntime]` values serves the same answers and shows
//! its effective options in `/admin/status`, next to a model on the
//! `--ort-*` defaults; an execution provider the library lacks and a bad
//! key stop start-up with the fix.

mod common;

use common::{assert_fraud_v1, client, demo_registry, fraud_request, output_numbers, Server};
use serde_json::{json, Value};

/// The loaded version `model` v1 in `/admin/status`.
fn resident<'a>(status: &'a Value, model: &str) -> &'a Value {
    status["resident"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == model && r["version"] == 1)
        .unwrap_or_else(|| panic!("{model} v1 is not resident: {status}"))
}

#[tokio::test]
async fn a_model_with_its_own_options_serves_and_shows_them() {
    let dir = tempfile::tempdir().unwrap();
    let reg = demo_registry(dir.path());
    let config = dir.path().join("podium.toml");
    std::fs::write(
        &config,
        r#"
[model.fraud.onnxruntime]
intra_op_threads = 2
inter_op_threads = 2
graph_optimization = "basic"
memory_arena = false
spinning = true
execution_providers = ["cpu"]
"#,
    )
    .unwrap();
    let s = Server::start(
        &reg,
        &[
            "--config",
            config.to_str().unwrap(),
            "--ort-graph-optimization",
            "extended",
            "--models",
            "fraud,mlp",
        ],
    );
    let resp = client()
        .post(s.url("/v2/models/fraud/infer"))
        .json(&fraud_request(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_fraud_v1(&output_numbers(&body, "probabilities"));

    let status = s.admin_status().await;
    assert_eq!(
        resident(&status, "fraud")["onnxruntime"],
        json!({
            "intra_op_threads": 2,
            "inter_op_threads": 2,
            "graph_optimization": "basic",
            "memory_arena": false,
            "spinning": true,
            "execution_providers": ["cpu"],
        })
    );
    // mlp has no section: the flags' values, the rest Podium's defaults.
    assert_eq!(
        resident(&status, "mlp")["onnxruntime"],
        json!({
            "intra_op_threads": 1,
            "inter_op_threads": 1,
            "graph_optimization": "extended",
            "memory_arena": true,
            "spinning": false,
            "execution_providers": ["cpu"],
        })
    );
}

/// `podium serve --config FILE` with `body` as the file: its stderr, after
/// checking that it refused to start.
fn refused(body: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let reg = demo_registry(dir.path());
    let config = dir.path().join("podium.toml");
    std::fs::write(&config, body).unwrap();
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--grpc-listen",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (ok, _, stderr) = common::cli(&reg, &args);
    assert!(!ok, "podium serve started with {body:?}");
    stderr
}

#[test]
fn a_provider_the_library_lacks_stops_start_up_naming_model_and_fix() {
    // The CPU build of ONNX Runtime (the wheel .ort/ holds) has no CUDA.
    let stderr = refused(
        "[model.fraud.onnxruntime]\nexecution_providers = [\"cuda\", \"cpu\"]\n",
        &[],
    );
    assert!(
        stderr.contains("[model.fraud.onnxruntime] execution_providers (model \"fraud\"): execution provider \"cuda\" is not available in the loaded ONNX Runtime library. Fix: use an ONNX Runtime build with it (the onnxruntime-gpu wheel"),
        "{stderr}"
    );
    assert!(
        stderr.contains("or remove \"cuda\" from the list"),
        "{stderr}"
    );
    // The same for the global default.
    let stderr = refused("", &["--ort-execution-providers", "cpu,tensorrt"]);
    assert!(
        stderr.contains("--ort-execution-providers / PODIUM_ORT_EXECUTION_PROVIDERS (the default of every model): execution provider \"tensorrt\" is not available"),
        "{stderr}"
    );
}

#[test]
fn bad_keys_and_values_stop_start_up_naming_them() {
    let cases = [
        (
            "[model.fraud.onnxruntime]\nthreads = 2\n",
            "unknown field `threads`, expected one of `intra_op_threads`, `inter_op_threads`, `graph_optimization`, `memory_arena`, `spinning`, `execution_providers`",
        ),
        (
            "[model.fraud.onnxruntime]\ngraph_optimization = \"max\"\n",
            "unknown variant `max`, expected one of `disable`, `basic`, `extended`, `all`",
        ),
        (
            "[model.fraud.onnxruntime]\nexecution_providers = [\"rocm\"]\n",
            "unknown variant `rocm`, expected one of `cpu`, `cuda`, `tensorrt`, `openvino`, `xnnpack`",
        ),
        (
            "\n[model.fraud.onnxruntime]\nintra_op_threads = 0\n",
            "line 2: [model.fraud.onnxruntime]: intra_op_threads 0 is not between 1 and 1024",
        ),
    ];
    for (body, want) in cases {
        let stderr = refused(body, &[]);
        assert!(stderr.contains(want), "{body:?}: {stderr}");
    }
}
