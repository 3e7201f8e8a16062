//! The tract backend over the wire (built with `--features tract`): the
//! demo models tract supports (mlp, mlp_large) answer as ONNX Runtime does,
//! the fraud models it cannot run are refused with the reason (fraud v1's
//! operator named) while the rest serve, a server whose models all run on tract needs no ONNX Runtime
//! library and swaps versions as usual, and batching works on tract.
#![cfg(feature = "tract")]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{client, eventually, fraud_request, register, set_alias, slot, Server};
use futures_util::future::join_all;
use serde_json::{json, Value};

/// The models with `_tract` in their name run on tract, the others on
/// ONNX Runtime (the default).
const CONFIG: &str = r#"
[model.mlp_tract]
backend = "tract"

[model.forest_tract]
backend = "tract"

[model.scaled_tract]
backend = "tract"
"#;

/// A registry of `(model, file)` pairs, each version 1 and `champion`.
fn registry(dir: &Path, models: &[(&str, &str)]) -> std::path::PathBuf {
    let reg = dir.join("registry");
    for (model, file) in models {
        assert_eq!(register(&reg, model, file), 1);
        set_alias(&reg, model, "champion", 1);
    }
    reg
}

/// POSTs `body` to `model`: status, `x-podium-batch-size`, JSON answer.
async fn infer(s: &Server, model: &str, body: &Value) -> (u16, Option<usize>, Value) {
    let resp = client()
        .post(s.url(&format!("/v2/models/{model}/infer")))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let batch = resp
        .headers()
        .get("x-podium-batch-size")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (status, batch, resp.json().await.unwrap())
}

/// `rows` rows of `width` values that differ between rows and requests.
fn rows_body(tag: usize, rows: usize, width: usize) -> Value {
    let data: Vec<f32> = (0..rows * width)
        .map(|i| ((tag * 7919 + i) % 1009) as f32 / 1009.0 - 0.5)
        .collect();
    json!({"inputs": [{"name": "input", "shape": [rows, width], "datatype": "FP32", "data": data}]})
}

/// Each output's name, datatype, shape and data, in name order.
fn outputs(answer: &Value) -> Vec<(String, Value, Value, Value)> {
    let mut outs: Vec<_> = answer["outputs"]
        .as_array()
        .unwrap_or_else(|| panic!("no outputs in {answer}"))
        .iter()
        .map(|o| {
            (
                o["name"].as_str().unwrap().to_string(),
                o["datatype"].clone(),
                o["shape"].clone(),
                o["data"].clone(),
            )
        })
        .collect();
    outs.sort_by(|a, b| a.0.cmp(&b.0));
    outs
}

/// Equal outputs: same names, datatypes and shapes; numbers within the
/// rounding two engines' kernels may differ by.
fn assert_same_answer(tract: &Value, ort: &Value) {
    let (a, b) = (outputs(tract), outputs(ort));
    assert_eq!(a.len(), b.len(), "{tract} vs {ort}");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((&x.0, &x.1, &x.2), (&y.0, &y.1, &y.2), "{tract} vs {ort}");
        let (u, v) = (x.3.as_array().unwrap(), y.3.as_array().unwrap());
        assert_eq!(u.len(), v.len());
        for (p, q) in u.iter().zip(v) {
            let (p, q) = (p.as_f64().unwrap(), q.as_f64().unwrap());
            assert!(
                (p - q).abs() <= 1e-4 * (1.0 + p.abs().max(q.abs())),
                "output {}: tract {p} vs ONNX Runtime {q}",
                x.0
            );
        }
    }
}

async fn wait_serving(s: &Server, models: &[&str]) {
    eventually(Duration::from_secs(180), "models serving", || async {
        let status = s.admin_status().await;
        models
            .iter()
            .all(|m| slot(&status, m, "champion")["state"] == "serving")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn tract_answers_as_onnx_runtime_and_refuses_what_it_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(
        dir.path(),
        &[
            ("mlp", "mlp/v1.onnx"),
            ("mlp_tract", "mlp/v1.onnx"),
            ("forest", "fraud/v2.onnx"),
            ("forest_tract", "fraud/v2.onnx"),
            ("scaled_tract", "fraud/v1.onnx"),
        ],
    );
    let config = dir.path().join("podium.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let s = Server::start(
        &reg,
        &[
            "--config",
            config.to_str().unwrap(),
            "--inference-threads",
            "2",
        ],
    );
    wait_serving(&s, &["mlp", "mlp_tract"]).await;

    // The same requests, on both engines: the same answers.
    for rows in [1, 3] {
        let body = rows_body(rows, rows, 64);
        let (a, _, want) = infer(&s, "mlp", &body).await;
        let (b, _, got) = infer(&s, "mlp_tract", &body).await;
        assert_eq!((a, b), (200, 200), "{want} {got}");
        assert_same_answer(&got, &want);
    }

    // Metadata reads the signature tract found.
    let meta = s.get_json("/v2/models/mlp_tract").await;
    assert_eq!(meta["inputs"][0]["shape"], json!([-1, 64]), "{meta}");

    // Status says which engine each loaded version runs on.
    let status = s.admin_status().await;
    let backend = |model: &str| {
        status["resident"]
            .as_array()
            .unwrap_or_else(|| panic!("no resident list in {status}"))
            .iter()
            .find(|r| r["model"] == model)
            .map(|r| r["backend"].clone())
    };
    assert_eq!(backend("mlp_tract"), Some(json!("tract")), "{status}");
    assert_eq!(backend("mlp"), Some(json!("ort")), "{status}");

    // fraud v1 scales its inputs with ONNX-ML Scaler, which tract lacks: the
    // load is refused naming it, and a request says why. fraud v2's trees
    // carry one base value per class, which tract's TreeEnsembleClassifier
    // refuses. The ONNX Runtime copies of the same files serve.
    let refusal = |model: &'static str| {
        let s = &s;
        async move {
            eventually(Duration::from_secs(60), "the refusal in status", || async {
                let status = s.admin_status().await;
                slot(&status, model, "champion")["last_error"]
                    .as_str()
                    .map(str::to_string)
            })
            .await
        }
    };
    let why = refusal("scaled_tract").await;
    assert!(
        why.contains(
            "cannot load scaled_tract v1 on tract: operator(s) Scaler not supported by tract"
        ) && why.contains("backend = \"ort\""),
        "{why}"
    );
    let why = refusal("forest_tract").await;
    assert!(
        why.contains("cannot load forest_tract v1") && why.contains("TreeEnsembleClassifier"),
        "{why}"
    );
    let (code, _, body) = infer(&s, "scaled_tract", &fraud_request(1)).await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Scaler"),
        "{body}"
    );
    wait_serving(&s, &["forest"]).await;
    let (code, _, body) = infer(&s, "forest", &fraud_request(1)).await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test]
async fn a_server_of_tract_models_needs_no_onnx_runtime_and_swaps_versions() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), &[("mlp", "mlp/v1.onnx")]);
    // A library path that does not exist: loading ONNX Runtime would fail.
    let missing = dir.path().join("no-such-libonnxruntime.so");
    let s = Server::start(
        &reg,
        &["--backend", "tract", "--ort-lib", missing.to_str().unwrap()],
    );
    wait_serving(&s, &["mlp"]).await;
    let body = rows_body(1, 2, 64);
    let (code, _, v1) = infer(&s, "mlp", &body).await;
    assert_eq!(code, 200, "{v1}");
    assert_eq!(v1["model_version"], "1");

    // A new version behind the alias: loaded, warmed and swapped on tract.
    assert_eq!(register(&reg, "mlp", "mlp/v1.onnx"), 2);
    set_alias(&reg, "mlp", "champion", 2);
    let v2 = eventually(Duration::from_secs(30), "mlp v2 serving", || async {
        let (code, _, answer) = infer(&s, "mlp", &body).await;
        (code == 200 && answer["model_version"] == "2").then_some(answer)
    })
    .await;
    assert_same_answer(&v2, &v1);
}

#[tokio::test]
async fn concurrent_requests_share_runs_on_tract() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(
        dir.path(),
        &[
            ("mlp_large", "mlp_large/v1.onnx"),
            ("mlp_large_tract", "mlp_large/v1.onnx"),
        ],
    );
    let config = dir.path().join("podium.toml");
    std::fs::write(
        &config,
        "[model.mlp_large_tract]\nbackend = \"tract\"\n\n[model.mlp_large_tract.batching]\nmax_batch_size = 8\nmax_queue_delay_us = 1000000\n",
    )
    .unwrap();
    let s = Server::start(
        &reg,
        &[
            "--config",
            config.to_str().unwrap(),
            "--inference-threads",
            "2",
        ],
    );
    wait_serving(&s, &["mlp_large", "mlp_large_tract"]).await;

    // 16 requests of one or two rows at once: runs of up to 8 rows.
    let bodies: Vec<Value> = (0..16)
        .map(|tag| rows_body(tag, 1 + tag % 2, 512))
        .collect();
    let batched = join_all(bodies.iter().map(|b| infer(&s, "mlp_large_tract", b))).await;
    let mut sizes = Vec::new();
    for (body, (code, batch, got)) in bodies.iter().zip(batched) {
        assert_eq!(code, 200, "{got}");
        sizes.push(batch.expect("a batched model sends x-podium-batch-size"));
        let (code, _, want) = infer(&s, "mlp_large", body).await;
        assert_eq!(code, 200, "{want}");
        assert_same_answer(&got, &want);
    }
    assert!(
        sizes.iter().any(|&n| n > 2),
        "no run took more than one request: {sizes:?}"
    );
}
