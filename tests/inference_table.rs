//! The inference table over the wire: a known mix of requests (REST JSON,
//! REST binary, gRPC, /invocations, errors, a split endpoint with a shadow)
//! read back from the Parquet files with arrow-rs; shutdown during load; a
//! blocked directory; kill -9; sampling, the payload switch and the size limit.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{by_id, cli_ok, client, eventually, read_table, sample, walk, Server, FRAUD_ROW};
use podium::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use podium::api::grpc::proto::model_infer_request::InferInputTensor;
use podium::api::grpc::proto::ModelInferRequest;
use serde_json::{json, Value};

const CONFIG: &str = r#"
[[endpoint]]
name = "fraud-ab"
model = "fraud"
sticky_key = { header = "x-user-id" }
arms = [{ alias = "champion", weight = 50 }, { alias = "challenger", weight = 50 }]
shadow = { alias = "challenger", fraction = 1.0, max_in_flight = 64 }

[[endpoint]]
name = "fraud-meta"
model = "fraud"
arms = [{ alias = "champion", weight = 1 }]
log_payloads = false

[[endpoint]]
name = "fraud-half"
model = "fraud"
arms = [{ alias = "champion", weight = 1 }]
log_sample_fraction = 0.5
"#;

/// A server with the demo registry, [`CONFIG`] and a table in `dir/table`.
fn start(dir: &Path, extra: &[&str]) -> (Server, PathBuf) {
    if !dir.join("registry").exists() {
        common::demo_registry(dir);
    }
    let config = dir.join("podium.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let table = dir.join("table");
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--table-dir",
        table.to_str().unwrap(),
        "--table-roll-secs",
        "0.2",
    ];
    args.extend_from_slice(extra);
    (Server::start(&dir.join("registry"), &args), table)
}

fn fraud_body(rows: usize) -> Value {
    let data: Vec<f32> = (0..rows).flat_map(|_| FRAUD_ROW).collect();
    json!({"inputs": [{"name": "input", "shape": [rows, 30], "datatype": "FP32", "data": data}]})
}

fn request_id(resp: &reqwest::Response) -> String {
    resp.headers()["x-request-id"].to_str().unwrap().to_string()
}

fn parse(text: &Value) -> Value {
    serde_json::from_str(text.as_str().expect("a JSON text column")).unwrap()
}

fn grpc_request(model: &str, id: &str) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.into(),
        id: id.into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, 30],
            ..Default::default()
        }],
        raw_input_contents: vec![FRAUD_ROW.iter().flat_map(|f| f.to_le_bytes()).collect()],
        ..Default::default()
    }
}

// Multi-threaded: the gRPC connection must answer the server's goodbye
// while this test blocks waiting for the process to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_mix_has_exactly_one_row_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, table) = start(dir.path(), &[]);
    let c = client();
    // What each request should leave in the table, by request id.
    let mut want: HashMap<String, (&str, &str, u16)> = HashMap::new();

    // REST JSON: three successes, one with the client's own id.
    for i in 0..3 {
        let mut req = c.post(s.url("/v2/models/fraud/infer")).json(&fraud_body(1));
        if i == 0 {
            req = req.header("x-client-request-id", "client-7");
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        want.insert(request_id(&resp), ("fraud", "rest", 200));
    }
    // REST binary in and out, twice.
    let raw: Vec<u8> = FRAUD_ROW.iter().flat_map(|f| f.to_le_bytes()).collect();
    for _ in 0..2 {
        let header = json!({
            "id": "bin-1",
            "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "parameters": {"binary_data_size": raw.len()}}],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": true}}]
        });
        let mut body = serde_json::to_vec(&header).unwrap();
        let n = body.len();
        body.extend_from_slice(&raw);
        let resp = c
            .post(s.url("/v2/models/fraud/infer"))
            .header("inference-header-content-length", n.to_string())
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        want.insert(request_id(&resp), ("fraud", "rest-binary", 200));
    }
    // REST errors: a wrong shape (400) and an unknown model (404).
    let resp = c
        .post(s.url("/v2/models/fraud/infer"))
        .json(&json!({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let bad_shape = request_id(&resp);
    want.insert(bad_shape.clone(), ("fraud", "rest", 400));
    let resp = c
        .post(s.url("/v2/models/no-such-model/infer"))
        .json(&fraud_body(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let unknown = request_id(&resp);
    want.insert(unknown.clone(), ("_unknown", "rest", 404));
    // gRPC: two successes and an unknown model.
    let mut g = GrpcInferenceServiceClient::connect(s.grpc.clone())
        .await
        .unwrap();
    for _ in 0..2 {
        let resp = g.model_infer(grpc_request("fraud", "g-1")).await.unwrap();
        let id = resp
            .metadata()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        want.insert(id, ("fraud", "grpc", 200));
    }
    let status = g
        .model_infer(grpc_request("nope", "g-2"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let grpc_error = status
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    want.insert(grpc_error.clone(), ("_unknown", "grpc", 404));
    // MLflow's /invocations on an endpoint.
    let resp = c
        .post(s.url("/serving-endpoints/fraud-meta/invocations"))
        .json(&json!({"dataframe_split": {"columns": (0..30).map(|i| format!("f{i}")).collect::<Vec<_>>(), "data": [FRAUD_ROW]}, "client_request_id": "inv-1"}))
        .send()
        .await
        .unwrap();
    let invocation_status = resp.status().as_u16();
    want.insert(
        request_id(&resp),
        ("fraud-meta", "invocations", invocation_status),
    );
    // The split endpoint with a shadow copy of every request.
    let mut arms = HashMap::new();
    for user in 0..6 {
        let resp = c
            .post(s.url("/v2/models/fraud-ab/infer"))
            .header("x-user-id", format!("user-{user}"))
            .json(&fraud_body(1))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let arm = resp.headers()["x-podium-arm"].to_str().unwrap().to_string();
        let id = request_id(&resp);
        arms.insert(id.clone(), arm);
        want.insert(id, ("fraud-ab", "rest", 200));
    }

    // Stopping flushes every file; the process exits 0.
    s.terminate();
    assert!(s.wait_exit(Duration::from_secs(30)).success());
    let rows = by_id(read_table(&table));
    let mut ids: Vec<_> = rows.keys().cloned().collect();
    ids.sort();
    let mut want_ids: Vec<_> = want.keys().cloned().collect();
    want_ids.sort();
    assert_eq!(ids, want_ids, "exactly one row per request");

    for (id, (endpoint, protocol, status)) in &want {
        let r = &rows[id];
        assert_eq!(r["endpoint"], *endpoint, "{r:?}");
        assert_eq!(r["protocol"], *protocol, "{r:?}");
        assert_eq!(r["status_code"], *status, "{r:?}");
        assert_eq!(r["sampling_fraction"], 1.0);
        assert!(r["total_duration_ms"].as_f64().unwrap() > 0.0);
        // request_date is the UTC day of request_time.
        let us = r["request_time"].as_i64().unwrap();
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_micros(us as u64);
        let date = podium::inference_table::record::date(time);
        assert_eq!(r["request_date"], date.to_string());
        assert_eq!(r["requester"], Value::Null);
        if *status == 200 {
            assert_eq!(r["error"], Value::Null);
            let version = r["model_version"].as_i64().unwrap();
            assert_eq!(r["served_entity_id"], format!("fraud/{version}"));
            assert!(r["execution_duration_ms"].as_f64().unwrap() > 0.0);
            assert!(r["queue_duration_ms"].as_f64().unwrap() >= 0.0);
        } else {
            assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()), "{r:?}");
            assert_eq!(r["served_entity_id"], Value::Null);
        }
        if *protocol == "grpc" {
            let code = if *status == 200 { 0 } else { 5 };
            assert_eq!(r["grpc_status"], code, "{r:?}");
        } else {
            assert_eq!(r["grpc_status"], Value::Null);
        }
        if *endpoint != "fraud-meta" {
            assert!(r["request"].is_string(), "{r:?}");
            assert!(r["response"].is_string(), "{r:?}");
        }
        assert_eq!(r["logging_error_codes"], json!([]));
    }

    // JSON bodies are stored as sent, binary and gRPC ones in the OIP JSON form.
    let client_row = rows
        .values()
        .find(|r| r["client_request_id"] == "client-7")
        .expect("the row of the request with x-client-request-id");
    assert_eq!(parse(&client_row["request"]), fraud_body(1));
    assert_eq!(
        parse(&client_row["response"])["outputs"][1]["name"],
        "probabilities"
    );
    for r in rows.values().filter(|r| r["protocol"] == "rest-binary") {
        assert_eq!(r["client_request_id"], "bin-1");
        let request = parse(&r["request"]);
        assert_eq!(request["inputs"][0]["shape"], json!([1, 30]));
        let data: Vec<f32> = serde_json::from_value(request["inputs"][0]["data"].clone()).unwrap();
        assert_eq!(data, FRAUD_ROW);
        let response = parse(&r["response"]);
        assert_eq!(response["outputs"][0]["name"], "probabilities");
        assert_eq!(response["outputs"][0]["data"].as_array().unwrap().len(), 2);
    }
    for r in rows
        .values()
        .filter(|r| r["protocol"] == "grpc" && r["status_code"] == 200)
    {
        assert_eq!(r["client_request_id"], "g-1");
        let data: Vec<f32> =
            serde_json::from_value(parse(&r["request"])["inputs"][0]["data"].clone()).unwrap();
        assert_eq!(data, FRAUD_ROW);
        assert_eq!(parse(&r["response"])["model_name"], "fraud");
    }
    let bad = &rows[&bad_shape];
    assert!(bad["error"].as_str().unwrap().contains("shape"), "{bad:?}");
    assert_eq!(parse(&bad["response"])["error"], bad["error"]);
    assert_eq!(rows[&unknown]["model_name"], "no-such-model");
    assert_eq!(rows[&grpc_error]["model_name"], "nope");

    // Payloads off: metadata only.
    let meta = rows
        .values()
        .find(|r| r["endpoint"] == "fraud-meta")
        .unwrap();
    assert_eq!(meta["client_request_id"], "inv-1");
    assert_eq!(meta["request"], Value::Null);
    assert_eq!(meta["response"], Value::Null);
    assert_eq!(meta["status_code"], 200, "{meta:?}");

    // The split endpoint: the arm that answered, and the shadow's answer.
    for (id, arm) in &arms {
        let r = &rows[id];
        assert_eq!(r["arm"], *arm);
        let version = if arm == "champion" { 1 } else { 2 };
        assert_eq!(r["model_version"], version);
        assert_eq!(r["shadow_arm"], "challenger");
        assert_eq!(r["shadow_model_version"], 2);
        assert_eq!(r["shadow_error"], Value::Null);
        assert_eq!(parse(&r["shadow_response"])["model_version"], "2");
    }
    for r in rows.values().filter(|r| r["endpoint"] != "fraud-ab") {
        assert_eq!(r["shadow_arm"], Value::Null);
    }

    // The CLI's summary reads the same files.
    let summary = cli_ok(
        &dir.path().join("registry"),
        &["table", "summary", table.to_str().unwrap()],
    );
    assert!(
        summary.starts_with(&format!("{} rows in ", want.len())),
        "{summary}"
    );
    let line = |endpoint: &str, arm: &str| -> Vec<String> {
        summary
            .lines()
            .find(|l| l.split_whitespace().take(2).eq([endpoint, arm]))
            .unwrap_or_else(|| panic!("no {endpoint} {arm} line in\n{summary}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    // fraud: 3 JSON + 2 binary + 1 bad + 2 gRPC on champion.
    let fraud = line("fraud", "champion");
    assert_eq!(
        (fraud[2].as_str(), fraud[3].as_str()),
        ("8", "1"),
        "{summary}"
    );
    let unknown_line = line("_unknown", "champion");
    assert_eq!(
        (unknown_line[2].as_str(), unknown_line[3].as_str()),
        ("2", "2"),
        "{summary}"
    );
    let champions = arms.values().filter(|a| *a == "champion").count();
    if champions > 0 {
        assert_eq!(line("fraud-ab", "champion")[2], champions.to_string());
    }
    let shadow_line = ["fraud-ab", "challenger", &arms.len().to_string(), "0"];
    assert!(
        summary
            .lines()
            .any(|l| l.split_whitespace().eq(shadow_line.iter().copied())),
        "no shadow line {shadow_line:?} in\n{summary}"
    );
}

#[tokio::test]
async fn every_request_answered_before_sigterm_has_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, table) = start(dir.path(), &["--table-roll-secs", "60"]);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (acked, stop, url) = (
            Arc::clone(&acked),
            Arc::clone(&stop),
            s.url("/v2/models/fraud-ab/infer"),
        );
        clients.push(tokio::spawn(async move {
            let c = client();
            let mut user = 0;
            // Until the server stops answering (bounded: 20,000 calls at most).
            for _ in 0..20_000 {
                user += 1;
                let sent = c
                    .post(&url)
                    .header("x-user-id", format!("u{user}"))
                    .json(&fraud_body(1))
                    .send()
                    .await;
                match sent {
                    Ok(resp) if resp.status() == 200 => {
                        acked.lock().unwrap().push(request_id(&resp))
                    }
                    _ if stop.load(Ordering::Acquire) => return,
                    Ok(resp) => panic!("status {} before shutdown", resp.status()),
                    Err(e) => panic!("{e} before shutdown"),
                }
            }
        }));
    }
    let acked_now = || acked.lock().unwrap().len();
    eventually(Duration::from_secs(60), "300 answered requests", || async {
        (acked_now() >= 300).then_some(())
    })
    .await;
    stop.store(true, Ordering::Release);
    s.terminate();
    let status = s.wait_exit(Duration::from_secs(30));
    for c in clients {
        c.await.unwrap();
    }
    assert!(status.success(), "{status}");
    let rows = by_id(read_table(&table));
    let acked = acked.lock().unwrap();
    let missing: Vec<_> = acked.iter().filter(|id| !rows.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered requests have no row, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(3)]
    );
    // Nothing half-written is left visible or hidden.
    let leftovers: Vec<_> = walk(&table)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".inprogress"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Sends `n` one-row fraud requests to `name`; each must be answered 200
/// (the table never fails a request).
async fn send_rows(c: &reqwest::Client, s: &Server, name: &str, n: usize) {
    for _ in 0..n {
        let resp = c
            .post(s.url(&format!("/v2/models/{name}/infer")))
            .json(&fraud_body(1))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
}

#[tokio::test]
async fn a_blocked_table_directory_drops_rows_not_requests() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("table");
    std::fs::create_dir_all(&table).unwrap();
    // A file where the writer needs the endpoint's directory.
    let blocker = table.join("endpoint=fraud");
    std::fs::write(&blocker, "in the way").unwrap();
    let (s, table) = start(dir.path(), &[]);
    let c = client();
    // Requests succeed while the table cannot be written.
    send_rows(&c, &s, "fraud", 20).await;
    eventually(
        Duration::from_secs(30),
        "20 rows dropped as write_error",
        || async {
            let m = s.metrics().await;
            (sample(
                &m,
                "podium_table_rows_dropped_total",
                &[("reason", "write_error")],
            ) == Some(20.0))
            .then_some(())
        },
    )
    .await;
    let m = s.metrics().await;
    assert!(sample(&m, "podium_table_write_errors_total", &[]).unwrap() >= 1.0);
    // It exists from start-up at 0, so an alert on it works before any row.
    assert_eq!(
        sample(&m, "podium_table_rows_written_total", &[]),
        Some(0.0)
    );

    // Once the directory can be written again, rows flow again.
    std::fs::remove_file(&blocker).unwrap();
    send_rows(&c, &s, "fraud", 5).await;
    eventually(Duration::from_secs(30), "5 rows written", || async {
        let m = s.metrics().await;
        (sample(&m, "podium_table_rows_written_total", &[]) == Some(5.0)).then_some(())
    })
    .await;
    assert_eq!(read_table(&table).len(), 5);
}

#[tokio::test]
async fn kill_9_leaves_every_completed_file_readable() {
    let dir = tempfile::tempdir().unwrap();
    // Files close every 10 rows (and not by age during the test).
    let (s, table) = start(
        dir.path(),
        &["--table-roll-rows", "10", "--table-roll-secs", "600"],
    );
    let c = client();
    send_rows(&c, &s, "fraud", 10).await;
    eventually(
        Duration::from_secs(30),
        "10 rows in closed files",
        || async {
            let m = s.metrics().await;
            (sample(&m, "podium_table_rows_written_total", &[]) == Some(10.0)).then_some(())
        },
    )
    .await;
    // These land in a file that is still open when the process dies.
    send_rows(&c, &s, "fraud", 5).await;
    drop(s); // SIGKILL
             // The completed file is whole; the open one stays hidden until the
             // next start writes it from its journal (tests/table_journal.rs).
    let rows = read_table(&table);
    assert_eq!(rows.len(), 10, "rows after kill -9");
    let hidden: Vec<_> = walk(&table)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".inprogress"))
        .collect();
    assert!(hidden.len() <= 1, "{hidden:?}");
}

#[tokio::test]
async fn sampling_and_the_payload_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, table) = start(dir.path(), &["--table-max-payload-bytes", "2K"]);
    let c = client();
    send_rows(&c, &s, "fraud-half", 200).await;
    // Over the limit: 20 rows of 30 floats is about 8 KB of JSON.
    let resp = c
        .post(s.url("/v2/models/fraud/infer"))
        .json(&fraud_body(20))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let big = request_id(&resp);
    s.terminate();
    assert!(s.wait_exit(Duration::from_secs(30)).success());

    let rows = read_table(&table);
    let half: Vec<_> = rows
        .iter()
        .filter(|r| r["endpoint"] == "fraud-half")
        .collect();
    // Binomial(200, 0.5): 60..140 is more than 8 standard deviations wide.
    assert!((60..=140).contains(&half.len()), "{} rows", half.len());
    assert!(half.iter().all(|r| r["sampling_fraction"] == 0.5));
    let big = rows
        .iter()
        .find(|r| r["request_id"] == big.as_str())
        .unwrap();
    assert_eq!(big["request"], Value::Null);
    assert_eq!(
        big["logging_error_codes"],
        json!(["MAX_REQUEST_SIZE_EXCEEDED"])
    );
    assert!(big["response"].is_string(), "the answer is under the limit");
    assert_eq!(big["status_code"], 200);
}
