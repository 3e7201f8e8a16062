//! More models than fit under `--memory-limit`: versions beyond the budget
//! are registered but not loaded, a request loads one (one load however many
//! requests ask at once, each waiting at most `--load-wait-secs`), the least
//! recently used unpinned versions are evicted to make room, and `--preload`
//! models are never evicted.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{client, eventually, register_path, set_alias, sized_model, slot, Server};
use podium::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use podium::api::grpc::proto::model_infer_request::InferInputTensor;
use podium::api::grpc::proto::{InferTensorContents, ModelInferRequest};
use serde_json::{json, Value};

/// A registry at `dir/registry` with `names`, each a copy of `file` as
/// version 1, `champion`.
fn registry_of(dir: &Path, file: &Path, names: &[String]) -> PathBuf {
    let reg = dir.join("registry");
    for name in names {
        assert_eq!(register_path(&reg, name, file), 1);
        set_alias(&reg, name, "champion", 1);
    }
    reg
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:02}")).collect()
}

/// One row of the sized model's input: the index of a row of its weights.
fn request(row: i64) -> Value {
    json!({"inputs": [{"name": "idx", "shape": [1], "datatype": "INT64", "data": [row]}]})
}

async fn infer(s: &Server, model: &str) -> (u16, Value) {
    s.post_json(&format!("/v2/models/{model}/infer"), &request(3))
        .await
}

async fn ready(s: &Server) {
    eventually(
        Duration::from_secs(60),
        "the server to be ready",
        || async { (s.get_status("/v2/health/ready").await == 200).then_some(()) },
    )
    .await;
}

/// Starts a server on `reg` (one inference thread) and waits until it is
/// ready. A sized model's estimate is twice its file: its weights as read
/// and their pre-packed form (README "How memory is spent"), so a 2 MB model
/// counts 4 MB whatever the thread count.
async fn serve(reg: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--inference-threads", "1"];
    args.extend_from_slice(extra);
    let s = Server::start(reg, &args);
    ready(&s).await;
    s
}

async fn counter(s: &Server, name: &str, model: &str) -> f64 {
    s.metric(name, &[("model", model)]).await.unwrap_or(0.0)
}

async fn loads(s: &Server, model: &str) -> f64 {
    s.metric(
        "podium_model_loads_total",
        &[("model", model), ("trigger", "request")],
    )
    .await
    .unwrap_or(0.0)
        + s.metric(
            "podium_model_loads_total",
            &[("model", model), ("trigger", "registry")],
        )
        .await
        .unwrap_or(0.0)
}

/// The numbers: MODELS models of MODEL_MB each under a limit of
/// LIMIT_MB, far fewer than fit (each counts twice its file: its weights
/// as read and pre-packed).
const MODEL_MB: f64 = 20.0;
const MODELS: usize = 30;
const LIMIT_MB: u64 = 200;

/// Serves MODELS sized models under `--memory-limit LIMIT_MB`, checks the
/// status before any call, then calls each model twice round-robin (every
/// call after the first ones a cold load, as LRU evicts the next one
/// first); `sample` runs after each call. Returns the server.
async fn round_robin(dir: &Path, mut sample: impl FnMut(&Server, &Value)) -> Server {
    let file = sized_model(dir, MODEL_MB);
    let models = names("m", MODELS);
    let reg = registry_of(dir, &file, &models);
    let limit = format!("{LIMIT_MB}M");
    let s = serve(&reg, &["--memory-limit", &limit]).await;
    let status = s.admin_status().await;
    assert_eq!(status["registered_versions"], MODELS);
    let loaded = status["loaded_versions"].as_u64().unwrap();
    assert!(
        loaded > 0 && loaded < MODELS as u64,
        "filled while they fit, the rest registered only: {status}"
    );
    let cold = slot(&status, &models[MODELS - 1], "champion");
    assert_eq!(
        (&cold["state"], &cold["loaded"], &cold["serving_version"]),
        (&json!("on_demand"), &json!(false), &json!(1)),
        "{cold}"
    );
    for round in 0..2 {
        for model in &models {
            let (code, answer) = infer(&s, model).await;
            assert_eq!(code, 200, "round {round}, {model}: {answer}");
            assert_eq!(answer["model_name"], json!(model));
            sample(&s, &answer);
        }
    }
    s
}

#[tokio::test]
async fn thirty_models_under_a_third_of_their_estimate_answer_every_call_within_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let s = round_robin(dir.path(), |_, _| {}).await;
    let status = s.admin_status().await;
    let resident = status["memory_estimate_bytes"].as_u64().unwrap();
    assert!(resident <= status["memory_limit_bytes"].as_u64().unwrap());
    assert!(status["loaded_versions"].as_u64().unwrap() < MODELS as u64);
    // Each model was evicted at least once to make room for the others.
    assert!(counter(&s, "podium_model_evictions_total", "m00").await >= 1.0);
    assert_eq!(loads(&s, "m00").await, 2.0, "loaded at start, then again");
    assert!(s
        .metrics()
        .await
        .contains("podium_cold_load_seconds_bucket"));
    assert_eq!(s.get_status("/v2/health/ready").await, 200);
}

/// The check of real memory: RSS within the limit plus the process's
/// baseline (the budget counts what a loaded version really holds: its
/// shared weights as read and pre-packed, README "How memory is spent").
#[tokio::test]
async fn thirty_models_under_the_limit_keep_rss_within_the_limit_plus_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    // The process serving a tiny model, after a call: what the limit comes
    // on top of (runtime, threads, buffers and allocator state that serving
    // anything takes, whatever the models).
    let tiny_dir = dir.path().join("tiny");
    std::fs::create_dir_all(&tiny_dir).unwrap();
    let tiny = sized_model(&tiny_dir, 0.01);
    let reg = registry_of(&tiny_dir, &tiny, &["tiny".to_string()]);
    let warm = serve(&reg, &[]).await;
    assert_eq!(infer(&warm, "tiny").await.0, 200);
    let baseline = warm.rss_bytes();
    drop(warm);
    let mut peak = 0;
    let _s = round_robin(dir.path(), |s, _| peak = peak.max(s.rss_bytes())).await;
    eprintln!(
        "peak RSS {} MB, baseline {} MB, limit {LIMIT_MB} MiB",
        peak / 1_000_000,
        baseline / 1_000_000
    );
    assert!(
        peak <= (LIMIT_MB << 20) + baseline,
        "peak RSS {} MB over the limit {LIMIT_MB} MiB + the {} MB of the process serving a tiny model",
        peak / 1_000_000,
        baseline / 1_000_000
    );
}

#[tokio::test]
async fn a_model_too_big_for_the_limit_alone_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = sized_model(dir.path(), 2.0);
    let reg = registry_of(dir.path(), &file, &["big".to_string()]);
    let s = Server::start(&reg, &["--inference-threads", "1", "--memory-limit", "3M"]);
    let status = eventually(Duration::from_secs(30), "big refused", || async {
        let status = s.admin_status().await;
        (slot(&status, "big", "champion")["state"] == "refused").then_some(status)
    })
    .await;
    let why = slot(&status, "big", "champion")["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        why.contains("loading big v1 needs about 4.0 MB, over --memory-limit 3.1 MB by itself"),
        "{why}"
    );
    let (code, answer) = infer(&s, "big").await;
    assert_eq!(code, 503, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("\"big\"") && error.contains("by itself; raise the limit"),
        "{error}"
    );
}

#[tokio::test]
async fn concurrent_first_requests_share_one_load_and_evict_the_least_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    let file = sized_model(dir.path(), 2.0);
    let reg = registry_of(dir.path(), &file, &names("m", 3));
    // Room for one: m00 is loaded at start, m01 and m02 wait for a request.
    let s = serve(&reg, &["--memory-limit", "6M"]).await;
    let status = s.admin_status().await;
    assert_eq!(slot(&status, "m00", "champion")["loaded"], true);
    assert_eq!(slot(&status, "m01", "champion")["loaded"], false);

    let calls: Vec<_> = (0..8).map(|_| infer(&s, "m01")).collect();
    for (code, answer) in futures_util::future::join_all(calls).await {
        assert_eq!(code, 200, "{answer}");
    }
    assert_eq!(loads(&s, "m01").await, 1.0, "one load for eight requests");
    assert_eq!(
        counter(&s, "podium_model_evictions_total", "m00").await,
        1.0
    );
    let status = s.admin_status().await;
    assert_eq!(slot(&status, "m00", "champion")["loaded"], false);
    let m01 = slot(&status, "m01", "champion");
    assert_eq!(m01["loaded"], true);
    assert!(m01["last_used_unix_ms"].as_u64().is_some(), "{m01}");
}

#[tokio::test]
async fn a_preloaded_model_is_never_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let file = sized_model(dir.path(), 2.0);
    let mut models = names("m", 3);
    models.push("pinned".to_string());
    let reg = registry_of(dir.path(), &file, &models);
    // Room for two: the pinned model and one other at a time.
    let s = serve(&reg, &["--memory-limit", "10M", "--preload", "pinned"]).await;
    let status = s.admin_status().await;
    let pinned = slot(&status, "pinned", "champion");
    assert_eq!(
        (&pinned["state"], &pinned["loaded"]),
        (&json!("serving"), &json!(true))
    );

    for _ in 0..2 {
        for model in &models {
            let (code, answer) = infer(&s, model).await;
            assert_eq!(code, 200, "{model}: {answer}");
        }
    }
    assert_eq!(loads(&s, "pinned").await, 1.0, "loaded once, at start");
    assert_eq!(
        counter(&s, "podium_model_evictions_total", "pinned").await,
        0.0
    );
    assert!(counter(&s, "podium_model_evictions_total", "m00").await >= 1.0);
    let status = s.admin_status().await;
    assert_eq!(slot(&status, "pinned", "champion")["loaded"], true);
}

#[tokio::test]
async fn a_cold_load_longer_than_the_wait_answers_503_with_retry_after_then_serves() {
    let dir = tempfile::tempdir().unwrap();
    let file = sized_model(dir.path(), 2.0);
    let reg = registry_of(dir.path(), &file, &names("m", 3));
    // Room for one, and no waiting at all: any cold load outlasts the wait.
    let s = serve(&reg, &["--memory-limit", "6M", "--load-wait-secs", "0"]).await;

    let resp = client()
        .post(s.url("/v2/models/m01/infer"))
        .json(&request(3))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let error = resp.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("model \"m01\" version 1 is not loaded")
            && error.contains("--load-wait-secs 0")
            && error.contains("retry shortly"),
        "{error}"
    );
    // The load went on: a retry is answered.
    eventually(Duration::from_secs(30), "m01 loaded", || async {
        (infer(&s, "m01").await.0 == 200).then_some(())
    })
    .await;

    // gRPC says UNAVAILABLE for a model that is still cold.
    let mut grpc = GrpcInferenceServiceClient::connect(s.grpc.clone())
        .await
        .unwrap();
    let call = ModelInferRequest {
        model_name: "m02".into(),
        inputs: vec![InferInputTensor {
            name: "idx".into(),
            datatype: "INT64".into(),
            shape: vec![1],
            contents: Some(InferTensorContents {
                int64_contents: vec![3],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let refused = grpc.model_infer(call).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("\"m02\""),
        "{}",
        refused.message()
    );
}
