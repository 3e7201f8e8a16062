//! Dynamic batching over the wire: many concurrent requests to a batched
//! model each get exactly the answer an unbatched copy of the same model
//! gives them (mlp_large; and alltypes, every datatype incl. BYTES, with
//! requests of several rows), the batch size shows in the response header,
//! the inference table and `podium_batch_size`; a model with a fixed batch
//! dimension is refused with the reason.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{client, eventually, read_table, register, set_alias, slot, Server};
use futures_util::future::join_all;
use serde_json::{json, Value};

/// The batched models wait up to 1 s for company but go as soon as
/// `max_batch_size` rows are there, so concurrent requests share runs
/// however slow the machine is, and no answer waits for the delay.
const CONFIG: &str = r#"
[model.mlp_large.batching]
max_batch_size = 8
max_queue_delay_us = 1000000

[model.alltypes_batched.batching]
max_batch_size = 6
max_queue_delay_us = 1000000
preferred_batch_sizes = [6]
# One batch with the threads at a time: the others wait, still exact.
max_concurrent_batches = 1

[model.fixed.batching]
max_batch_size = 4
"#;

const CONCURRENT: usize = 32;

fn start(dir: &Path) -> Server {
    let reg = common::demo_registry(dir);
    for (model, file) in [
        ("mlp_large", "mlp_large/v1.onnx"),
        ("mlp_large_plain", "mlp_large/v1.onnx"),
        ("alltypes_batched", "fixtures/alltypes.onnx"),
    ] {
        assert_eq!(register(&reg, model, file), 1);
        set_alias(&reg, model, "champion", 1);
    }
    let config = dir.join("podium.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let table = dir.join("table");
    Server::start(
        &reg,
        &[
            "--config",
            config.to_str().unwrap(),
            "--table-dir",
            table.to_str().unwrap(),
            "--table-roll-secs",
            "0.2",
            "--inference-threads",
            "2",
        ],
    )
}

/// Row `r` of request `tag`: 512 values no other row repeats.
fn mlp_body(tag: usize, rows: usize) -> Value {
    let data: Vec<f32> = (0..rows * 512)
        .map(|i| ((tag * 7919 + i) % 1009) as f32 / 1009.0 - 0.5)
        .collect();
    json!({"id": format!("req-{tag}"), "inputs": [{"name": "input", "shape": [rows, 512], "datatype": "FP32", "data": data}]})
}

/// Every datatype of alltypes, `rows` rows of 2 values that name the request.
fn alltypes_body(tag: usize, rows: usize) -> Value {
    let n = rows * 2;
    let ints: Vec<i64> = (0..n).map(|i| (tag * 3 + i) as i64 % 120).collect();
    let floats: Vec<f64> = ints.iter().map(|&i| i as f64 + 0.5).collect();
    let input = |t: &str, dt: &str, data: Value| json!({"name": format!("in_{t}"), "shape": [rows, 2], "datatype": dt, "data": data});
    let mut inputs = vec![
        input(
            "bool",
            "BOOL",
            json!(ints.iter().map(|i| i % 2 == 1).collect::<Vec<_>>()),
        ),
        input(
            "string",
            "BYTES",
            json!((0..n).map(|i| format!("r{tag}-{i}")).collect::<Vec<_>>()),
        ),
        input("fp16", "FP16", json!(floats)),
        input("fp32", "FP32", json!(floats)),
        input("fp64", "FP64", json!(floats)),
    ];
    for (t, dt) in [
        ("int8", "INT8"),
        ("int16", "INT16"),
        ("int32", "INT32"),
        ("int64", "INT64"),
        ("uint8", "UINT8"),
        ("uint16", "UINT16"),
        ("uint32", "UINT32"),
        ("uint64", "UINT64"),
    ] {
        inputs.push(input(t, dt, json!(ints)));
    }
    json!({"inputs": inputs})
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

/// Sends request `tag` (of 1 to 3 rows) to both models at once, batched
/// ones all concurrently; returns each pair of answers.
async fn pairs(
    s: &Server,
    batched: &str,
    plain: &str,
    body: impl Fn(usize, usize) -> Value,
) -> Vec<(
    (u16, Option<usize>, Value),
    (u16, Option<usize>, Value),
    usize,
)> {
    let bodies: Vec<(Value, usize)> = (0..CONCURRENT)
        .map(|tag| {
            let rows = 1 + tag % 3;
            (body(tag, rows), rows)
        })
        .collect();
    let batched_answers = join_all(bodies.iter().map(|(b, _)| infer(s, batched, b))).await;
    let mut out = Vec::new();
    for ((b, rows), answer) in bodies.iter().zip(batched_answers) {
        out.push((answer, infer(s, plain, b).await, *rows));
    }
    out
}

fn outputs(answer: &Value) -> Vec<(String, Value, Value)> {
    let mut outs: Vec<(String, Value, Value)> = answer["outputs"]
        .as_array()
        .unwrap_or_else(|| panic!("no outputs in {answer}"))
        .iter()
        .map(|o| {
            (
                o["name"].as_str().unwrap().to_string(),
                o["shape"].clone(),
                o["data"].clone(),
            )
        })
        .collect();
    outs.sort_by(|a, b| a.0.cmp(&b.0));
    outs
}

/// Floats equal to within what a different GEMM kernel for another batch
/// size may change in the last bits.
fn close(a: &Value, b: &Value) -> bool {
    let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-5 * (1.0 + x.abs().max(y.abs()))
        })
}

#[tokio::test]
async fn concurrent_requests_share_runs_and_each_gets_its_own_answer() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    eventually(
        Duration::from_secs(60),
        "mlp_large and alltypes_batched serving",
        || async {
            let status = s.admin_status().await;
            (slot(&status, "mlp_large", "champion")["state"] == "serving"
                && slot(&status, "alltypes_batched", "champion")["state"] == "serving")
                .then_some(())
        },
    )
    .await;

    let mut batch_sizes = Vec::new();
    for ((status, batch, got), (plain_status, plain_batch, want), rows) in
        pairs(&s, "mlp_large", "mlp_large_plain", mlp_body).await
    {
        assert_eq!((status, plain_status), (200, 200), "{got} {want}");
        assert_eq!(plain_batch, None, "an unbatched model sends no batch size");
        let batch = batch.expect("a batched model sends x-podium-batch-size");
        assert!(
            batch >= rows && batch <= 8,
            "batch of {batch} rows for a request of {rows}"
        );
        batch_sizes.push(batch);
        assert_eq!(got["id"], want["id"]);
        let (got, want) = (outputs(&got), outputs(&want));
        assert_eq!(got.len(), 1);
        assert_eq!((&got[0].0, &got[0].1), (&want[0].0, &want[0].1));
        assert_eq!(got[0].1, json!([rows, 10]));
        assert!(
            close(&got[0].2, &want[0].2),
            "{:?} vs {:?}",
            got[0].2,
            want[0].2
        );
    }
    assert!(
        batch_sizes.iter().any(|&b| b > 3),
        "{CONCURRENT} concurrent requests never shared a run: {batch_sizes:?}"
    );

    for ((status, batch, got), (plain_status, _, want), rows) in
        pairs(&s, "alltypes_batched", "alltypes", alltypes_body).await
    {
        assert_eq!((status, plain_status), (200, 200), "{got} {want}");
        assert!(batch.is_some_and(|b| b >= rows && b <= 6), "{batch:?}");
        let got = outputs(&got);
        assert_eq!(got.len(), 13);
        assert_eq!(got, outputs(&want), "every datatype comes back exactly");
    }

    // The table has the batch size of each batched row, null for the others.
    let table = dir.path().join("table");
    let rows = eventually(
        Duration::from_secs(30),
        "table rows of both models",
        || async {
            let rows = read_table(&table);
            let count = |m: &str| rows.iter().filter(|r| r["model_name"] == m).count();
            (count("mlp_large") == CONCURRENT && count("mlp_large_plain") == CONCURRENT)
                .then_some(rows)
        },
    )
    .await;
    let mut logged: Vec<usize> = rows
        .iter()
        .filter(|r| r["model_name"] == "mlp_large")
        .map(|r| {
            r["batch_size"]
                .as_u64()
                .expect("batch_size of a batched row") as usize
        })
        .collect();
    logged.sort_unstable();
    batch_sizes.sort_unstable();
    assert_eq!(logged, batch_sizes);
    assert!(rows
        .iter()
        .filter(|r| r["model_name"] == "mlp_large_plain")
        .all(|r| r["batch_size"].is_null()));

    let runs = s
        .metric("podium_batch_size_count", &[("model", "mlp_large")])
        .await
        .expect("podium_batch_size has a series for mlp_large");
    assert!(
        (1.0..CONCURRENT as f64).contains(&runs),
        "{runs} runs for {CONCURRENT} requests"
    );
    let rows_run = s
        .metric("podium_batch_size_sum", &[("model", "mlp_large")])
        .await
        .unwrap();
    assert_eq!(
        rows_run,
        (0..CONCURRENT).map(|t| 1 + t % 3).sum::<usize>() as f64
    );
}

#[tokio::test]
async fn a_model_with_a_fixed_batch_dimension_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let reason = eventually(Duration::from_secs(60), "fixed refused", || async {
        let status = s.admin_status().await;
        let fixed = slot(&status, "fixed", "champion");
        (fixed["state"] == "refused")
            .then(|| fixed["last_error"].as_str().unwrap_or("").to_string())
    })
    .await;
    assert!(
        reason.contains("fixed v1 cannot be batched: input \"x\" has shape [2,3], and [model.fixed.batching] needs a dynamic first (batch) dimension"),
        "{reason}"
    );
    let (status, _, body) = infer(
        &s,
        "fixed",
        &json!({"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [0, 1, 2, 3, 4, 5]}]}),
    )
    .await;
    assert!(status >= 400, "{status} {body}");
    assert!(body["error"].is_string(), "{body}");
}

#[test]
fn a_bad_batching_section_stops_start_up_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let reg = common::demo_registry(dir.path());
    let config = dir.path().join("podium.toml");
    std::fs::write(
        &config,
        "[model.mlp.batching]\nmax_batch_size = 8\npreferred_batch_sizes = [16]\n",
    )
    .unwrap();
    let (ok, _, stderr) = common::cli(
        &reg,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains("line 1: [model.mlp.batching]: preferred batch size 16 is not between 1 and max_batch_size 8"),
        "{stderr}"
    );
}
