//! The feedback table over the wire: every item `POST /v2/feedback`
//! acknowledged is in `<table>/_feedback/request_date=<d>/` after a
//! `kill -9` and a restart (journaled before the answer), exactly once,
//! joinable with the inference table on `request_id`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    client, demo_registry, eventually, fraud_request, read_feedback_table, read_table, Server,
};
use serde_json::{json, Value};

#[tokio::test]
async fn feedback_acknowledged_before_kill_9_is_in_the_table_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let registry = demo_registry(dir.path());
    let table = dir.path().join("table");
    // No file closes by itself during the test.
    let args = [
        "--table-dir",
        table.to_str().unwrap(),
        "--table-roll-secs",
        "600",
    ];
    let mut s = Server::start(&registry, &args);
    let c = client();
    let mut ids = Vec::new();
    for i in 0..6 {
        let resp = c
            .post(s.url("/v2/models/fraud/infer"))
            .header("x-client-request-id", format!("order-{i}"))
            .json(&fraud_request(1))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        ids.push(resp.headers()["x-request-id"].to_str().unwrap().to_string());
    }
    // Two requests: a batch naming calls by request id, and one item naming
    // a call by the client's id only.
    let batch: Vec<Value> = ids[..5]
        .iter()
        .enumerate()
        .map(|(i, id)| json!({"request_id": id, "label": i % 2 == 0}))
        .collect();
    for body in [
        json!({ "feedback": batch }),
        json!({"client_request_id": "order-5", "label": "fraud"}),
    ] {
        let resp = c
            .post(s.url("/v2/feedback"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    // The calls' own rows reach their journal within ~0.1 s (unlike
    // feedback, nobody waits for them); wait for that...
    eventually(Duration::from_secs(30), "every call journaled", || async {
        let journaled = s.metric("podium_table_rows_journaled_total", &[]).await;
        (journaled == Some(6.0)).then_some(())
    })
    .await;
    // ...while acknowledged feedback means journaled: killed at once,
    // nothing is lost.
    s.kill();
    assert!(read_feedback_table(&table).is_empty(), "no file was closed");

    let s = Server::start(&registry, &args);
    let rows = read_feedback_table(&table);
    assert_eq!(rows.len(), 6, "{rows:?}");
    let labelled: BTreeSet<String> = rows
        .iter()
        .filter_map(|r| r["request_id"].as_str().map(str::to_string))
        .collect();
    let want: BTreeSet<String> = ids[..5].iter().cloned().collect();
    assert_eq!(labelled, want);
    let by_client = rows
        .iter()
        .find(|r| r["client_request_id"] == "order-5")
        .expect("the item naming a client id");
    // No readout knows the call, so its request id stays unknown.
    assert_eq!(by_client["request_id"], Value::Null);
    assert_eq!(by_client["label"], "\"fraud\"");
    assert!(rows.iter().any(|r| r["label"] == "true"));
    assert!(rows.iter().any(|r| r["label"] == "false"));
    for r in &rows {
        let received = r["received_time"].as_i64().unwrap();
        let day = chrono::DateTime::from_timestamp_micros(received)
            .unwrap()
            .date_naive();
        assert_eq!(
            r["request_date"],
            day.to_string(),
            "the partition is the day received"
        );
    }
    // The inference table is recovered too, and does not take the feedback
    // table for one of its endpoints.
    let calls = read_table(&table);
    assert_eq!(calls.len(), 6);
    assert!(calls.iter().all(|r| r["endpoint"] == "fraud"));
    assert_eq!(
        s.metric("podium_feedback_table_rows_recovered_total", &[])
            .await,
        Some(6.0)
    );
}
