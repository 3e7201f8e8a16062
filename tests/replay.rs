//! `podium-loadtest --replay` against the real server: requests recorded in
//! its inference table (REST JSON, REST binary, gRPC, /invocations) are
//! sent again and compared with the recorded answers; after `champion`
//! moves to fraud v2 the differences are counted per output; rows recorded
//! without payloads are skipped and counted; --since/--until select by time.
//! The replay runs in-process from a parsed command line, as the binary
//! runs it (`loadtest/src/main.rs` only prints the report and exits with
//! its code).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::Parser;
use podium::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use podium_loadtest::cli::Args;
use podium_loadtest::replay::{self, table, ReplayReport};
use serde_json::{json, Value};

use common::{client, eventually, fraud_grpc_request, fraud_request, Server, FRAUD_ROW};

/// A demo server writing its table to `dir/table`, a file every 0.1 s.
fn start(dir: &Path, extra: &[&str]) -> (Server, PathBuf) {
    let table = dir.join("table");
    let mut args = vec![
        "--table-dir",
        table.to_str().unwrap(),
        "--table-roll-secs",
        "0.1",
    ];
    args.extend_from_slice(extra);
    (Server::demo(&args), table)
}

/// Replays with `podium-loadtest ARGS`.
async fn replay(args: &[&str]) -> ReplayReport {
    let mut line = vec!["podium-loadtest"];
    line.extend_from_slice(args);
    let cfg = Args::try_parse_from(&line)
        .unwrap_or_else(|e| panic!("{line:?}: {e}"))
        .replay_config(false)
        .unwrap_or_else(|e| panic!("{line:?}: {e:#}"))
        .expect("a replay");
    replay::run(&cfg)
        .await
        .unwrap_or_else(|e| panic!("{line:?}: {e:#}"))
}

/// Waits until the table's files hold `rows` rows (replayable or skipped)
/// received before `until`.
async fn recorded(table: &Path, until: DateTime<Utc>, rows: usize) {
    let filter = table::Filter {
        until: Some(until),
        ..table::Filter::default()
    };
    eventually(Duration::from_secs(20), "the table's files", || async {
        let s = table::read(table, &filter).ok()?;
        (s.requests.len() + s.skipped_total() as usize >= rows).then_some(())
    })
    .await;
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Sends one request of each protocol to fraud, and one the server refuses;
/// returns the request ids of the answered ones.
async fn send_mix(s: &Server) -> Vec<String> {
    let c = client();
    let id = |r: &reqwest::Response| r.headers()["x-request-id"].to_str().unwrap().to_string();
    let mut ids = Vec::new();
    for rows in [1, 3] {
        let r = c
            .post(s.url("/v2/models/fraud/infer"))
            .json(&fraud_request(rows))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        ids.push(id(&r));
    }
    // REST with binary tensors in and out.
    let raw: Vec<u8> = FRAUD_ROW.iter().flat_map(|f| f.to_le_bytes()).collect();
    let header = json!({
        "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "parameters": {"binary_data_size": raw.len()}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": true}}]
    });
    let mut body = serde_json::to_vec(&header).unwrap();
    let n = body.len();
    body.extend_from_slice(&raw);
    let r = c
        .post(s.url("/v2/models/fraud/infer"))
        .header("inference-header-content-length", n.to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    ids.push(id(&r));
    // gRPC.
    let mut g = GrpcInferenceServiceClient::connect(s.grpc.clone())
        .await
        .unwrap();
    let r = g.model_infer(fraud_grpc_request("fraud")).await.unwrap();
    ids.push(
        r.metadata()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string(),
    );
    // MLflow's scoring protocol.
    let columns: Vec<String> = (0..30).map(|i| format!("f{i}")).collect();
    let r = c
        .post(s.url("/serving-endpoints/fraud/invocations"))
        .json(&json!({"dataframe_split": {"columns": columns, "data": [FRAUD_ROW]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    ids.push(id(&r));
    // A wrong shape: recorded with status 400, not replayed.
    let r = c
        .post(s.url("/v2/models/fraud/infer"))
        .json(&json!({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_matches_the_same_version_and_counts_differences_after_a_flip() {
    let dir = tempfile::tempdir().unwrap();
    let (s, table) = start(dir.path(), &[]);
    let ids = send_mix(&s).await;
    // Replays add rows to the same table: they are after `until`.
    let until = Utc::now();
    recorded(&table, until, 6).await;
    let (table_arg, until_arg) = (table.to_str().unwrap(), rfc3339(until));
    let line = [
        "--replay",
        table_arg,
        "--until",
        &until_arg,
        "--url",
        &s.base,
        "--compare",
    ];

    // The same version answers the same: nothing differs, exit status 0.
    let r = replay(&line).await;
    let j = serde_json::to_value(r.json()).unwrap();
    assert_eq!(
        (&j["replayed"], &j["answered"], &j["errors"], &j["differ"]),
        (&json!(5), &json!(5), &json!(0), &json!(0)),
        "{}",
        replay::report::summary(&r)
    );
    assert_eq!(j["skipped"], json!({"recorded_error": 1}));
    assert_eq!(j["differ_by_output"], json!({}));
    assert_eq!(j["compared"], json!(5));
    assert_eq!(j["latency"]["count"], json!(5));
    assert!(j["latency"]["p50_us"].as_f64().unwrap() > 0.0);
    assert_eq!(r.exit_code(), 0);

    // champion moves to v2, which answers the same rows differently.
    s.set_alias("fraud", "champion", 2);
    eventually(
        Duration::from_secs(20),
        "fraud@champion to serve v2",
        || async {
            let (status, body) = s
                .post_json("/v2/models/fraud/infer", &fraud_request(1))
                .await;
            (status == 200 && body["model_version"] == "2").then_some(())
        },
    )
    .await;
    let r = replay(&line).await;
    let c = r.comparison.as_ref().unwrap();
    assert_eq!(
        (r.replayed(), c.compared),
        (5, 5),
        "{}",
        replay::report::summary(&r)
    );
    // Every OIP answer's probabilities differ (the binary request asked for
    // that output only); /invocations answers count under "predictions".
    assert_eq!(c.differ_by_output.get("probabilities"), Some(&4));
    assert_eq!(c.differ_by_output.get("predictions"), Some(&1));
    assert_eq!(c.differ, 5);
    assert_eq!(r.exit_code(), 3);
    let example = &c.examples[0];
    assert!(ids.contains(&example.request_id), "{example:?}");
    assert_ne!(example.recorded, example.replayed);
    // Every answer came from v2.
    assert_eq!(r.stats.answers_of_version("2"), 5);
    let text = replay::report::summary(&r);
    assert!(text.contains("5 answers compared, 5 differ"), "{text}");

    // --model-version sends OIP requests to that version: v1 answers as
    // recorded; /invocations cannot name a version and is skipped.
    let mut pinned = line.to_vec();
    pinned.extend(["--model-version", "1"]);
    let r = replay(&pinned).await;
    let j = serde_json::to_value(r.json()).unwrap();
    assert_eq!((&j["replayed"], &j["differ"]), (&json!(4), &json!(0)));
    assert_eq!(
        j["skipped"],
        json!({"recorded_error": 1, "no_version_route": 1})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_without_payloads_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("podium.toml");
    std::fs::write(
        &config,
        r#"
[[endpoint]]
name = "fraud-meta"
model = "fraud"
arms = [{ alias = "champion", weight = 1 }]
log_payloads = false
"#,
    )
    .unwrap();
    let (s, table) = start(dir.path(), &["--config", config.to_str().unwrap()]);
    for _ in 0..3 {
        let (status, _) = s
            .post_json("/v2/models/fraud-meta/infer", &fraud_request(1))
            .await;
        assert_eq!(status, 200);
    }
    let until = Utc::now();
    recorded(&table, until, 3).await;
    let r = replay(&[
        "--replay",
        table.to_str().unwrap(),
        "--endpoint",
        "fraud-meta",
        "--url",
        &s.base,
        "--compare",
    ])
    .await;
    let j = serde_json::to_value(r.json()).unwrap();
    assert_eq!(j["skipped"], json!({"no_payload": 3}));
    assert_eq!((&j["replayed"], &j["answered"]), (&json!(0), &json!(0)));
    // An endpoint the table does not have is an error that says so.
    let cfg = Args::try_parse_from([
        "podium-loadtest",
        "--replay",
        table.to_str().unwrap(),
        "--endpoint",
        "nope",
    ])
    .unwrap()
    .replay_config(false)
    .unwrap()
    .unwrap();
    let e = replay::run(&cfg).await.err().expect("no files of nope");
    assert!(
        format!("{e:#}").contains("holds no table files of endpoint \"nope\""),
        "{e:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_until_and_max_requests_select_what_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    // A table in another codec than the default reads the same.
    let (s, table) = start(dir.path(), &["--table-compression", "zstd"]);
    let send = |rows: usize, n: usize| {
        let s = &s;
        async move {
            for _ in 0..n {
                let (status, _) = s
                    .post_json("/v2/models/fraud/infer", &fraud_request(rows))
                    .await;
                assert_eq!(status, 200);
            }
        }
    };
    send(1, 2).await;
    let middle = Utc::now();
    send(2, 3).await;
    let end = Utc::now();
    recorded(&table, end, 5).await;
    let (table_arg, url) = (table.to_str().unwrap(), s.base.as_str());
    let (middle, end) = (rfc3339(middle), rfc3339(end));

    let before = replay(&["--replay", table_arg, "--url", url, "--until", &middle]).await;
    assert_eq!(before.replayed(), 2);
    let after = replay(&[
        "--replay", table_arg, "--url", url, "--since", &middle, "--until", &end, "--json",
    ])
    .await;
    assert_eq!(after.replayed(), 3);
    // The rows after `middle` are the 2-row requests.
    assert!(after
        .selection
        .requests
        .iter()
        .all(
            |r| serde_json::from_slice::<Value>(&r.request).unwrap()["inputs"][0]["shape"]
                == json!([2, 30])
        ));
    // Without --compare the JSON says nothing was checked.
    let j = serde_json::to_value(after.json()).unwrap();
    assert_eq!(
        (&j["differ"], &j["differ_by_output"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(after.exit_code(), 0);

    // The first request in recorded order only, at a fixed rate.
    let first = replay(&[
        "--replay",
        table_arg,
        "--url",
        url,
        "--until",
        &end,
        "--max-requests",
        "1",
        "--rate",
        "100",
    ])
    .await;
    assert_eq!(first.replayed(), 1);
    assert_eq!(
        serde_json::from_slice::<Value>(&first.selection.requests[0].request).unwrap()["inputs"][0]
            ["shape"],
        json!([1, 30])
    );
}
