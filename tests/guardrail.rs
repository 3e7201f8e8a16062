//! The experiment loop over the wire: a failing and a slow challenger each
//! stopped by the guardrail (weight 0, history, metric, readout, webhook)
//! without failing any request itself, a rollout that walks its steps and
//! promotes, and `podium promote` refusing when the readout says no.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{client, eventually, fraud_request, Server, FRAUD_ROW};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn start(dir: &Path, challenger_file: &str, config: &str) -> (Server, PathBuf) {
    Server::fraud_ab(dir, challenger_file, config, &[])
}

/// One call to `fraud-ab` with the demo row, its first feature set to
/// `first`: answers (status, arm, request id); a failure's error text is
/// the arm.
async fn call(s: &Server, first: f32) -> (u16, String, String) {
    let mut body = fraud_request(1);
    body["inputs"][0]["data"][0] = json!(first);
    let resp = client()
        .post(s.url("/v2/models/fraud-ab/infer"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (arm, id) = (header("x-podium-arm"), header("x-request-id"));
    let status = resp.status().as_u16();
    if status != 200 {
        return (status, resp.text().await.unwrap(), id);
    }
    (status, arm, id)
}

fn arm<'a>(readout: &'a Value, name: &str) -> &'a Value {
    readout["arms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["arm"] == name)
        .unwrap_or_else(|| panic!("no arm {name} in {readout}"))
}

async fn weight(s: &Server, alias: &str) -> f64 {
    let endpoints = s.get_json("/admin/endpoints").await;
    endpoints["endpoints"][0]["arms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["alias"] == alias)
        .unwrap()["weight"]
        .as_f64()
        .unwrap()
}

async fn history(s: &Server, by: &str) -> Vec<Value> {
    let h = s.get_json("/admin/history?model=fraud").await;
    h["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["by"] == by)
        .cloned()
        .collect()
}

/// A webhook receiver on 127.0.0.1: answers the first POST's JSON body.
async fn webhook() -> (String, tokio::task::JoinHandle<Value>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            received.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&received).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .unwrap();
                    return serde_json::from_str(&body[..length]).unwrap();
                }
            }
            assert!(n > 0, "the webhook connection closed early");
        }
    });
    (url, task)
}

fn ab(guardrail: &str) -> String {
    format!(
        r#"
[[endpoint]]
name = "fraud-ab"
model = "fraud"
arms = [{{ alias = "champion", weight = 50 }}, {{ alias = "challenger", weight = 50 }}]

[endpoint.readout]
metric = "accuracy"
prediction_output = "label"
min_samples = 20

[endpoint.guardrail]
{guardrail}
"#
    )
}

#[tokio::test]
async fn a_challenger_failing_on_part_of_the_inputs_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, received) = webhook().await;
    let config = ab(&format!(
        "max_error_rate = 0.2\nmin_requests = 10\nwindow_secs = 10\nwebhook = \"{hook}\""
    ));
    let (s, _) = start(dir.path(), "fixtures/flaky_fraud.onnx", &config);

    // Half the rows make the challenger fail; the champion answers them all.
    let mut sent = 0;
    let failed = std::sync::atomic::AtomicU64::new(0);
    let stopped = eventually(
        Duration::from_secs(60),
        "the guardrail to stop the challenger",
        || {
            let (s, failed) = (&s, &failed);
            sent += 1;
            let first = if sent % 2 == 0 { 1.0 } else { FRAUD_ROW[0] };
            async move {
                let (status, text, _) = call(s, first).await;
                if status != 200 {
                    assert!(
                        first > 0.0 && text.contains("Gather"),
                        "only the model's own refusals fail: {text}"
                    );
                    failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let r = s.get_json("/admin/experiments/fraud-ab").await;
                (!arm_of(&r, "challenger")["stopped"].is_null()).then_some(r)
            }
        },
    )
    .await;
    // Every failed call is one the challenger itself answered with an error.
    let failed = failed.into_inner();
    assert!(failed > 0);
    assert_eq!(arm(&stopped, "challenger")["errors"], failed, "{stopped}");
    assert_eq!(arm(&stopped, "champion")["errors"], 0, "{stopped}");
    let challenger = arm(&stopped, "challenger");
    assert_eq!(challenger["stopped"]["rule"], "error_rate", "{stopped}");
    assert!(challenger["stopped"]["reason"]
        .as_str()
        .unwrap()
        .contains("max_error_rate is 20.00%"));
    assert_eq!(weight(&s, "challenger").await, 0.0);

    // From now on every call goes to the champion and succeeds.
    for i in 0..40 {
        let (status, arm, _) = call(&s, if i % 2 == 0 { 1.0 } else { -1.0 }).await;
        assert_eq!((status, arm.as_str()), (200, "champion"));
    }
    let trips = history(&s, "guardrail").await;
    assert_eq!(trips.len(), 1, "{trips:?}");
    assert_eq!(
        (trips[0]["action"].as_str(), trips[0]["endpoint"].as_str()),
        (Some("traffic_set"), Some("fraud-ab"))
    );
    assert!(
        trips[0]["why"]
            .as_str()
            .unwrap()
            .starts_with("arm \"challenger\" failed "),
        "{}",
        trips[0]
    );
    let labels = [
        ("endpoint", "fraud-ab"),
        ("arm", "challenger"),
        ("rule", "error_rate"),
    ];
    assert_eq!(
        s.metric("podium_guardrail_trips_total", &labels).await,
        Some(1.0)
    );
    let posted = tokio::time::timeout(Duration::from_secs(30), received)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (posted["event"].as_str(), posted["endpoint"].as_str()),
        (Some("guardrail_trip"), Some("fraud-ab"))
    );
    assert_eq!(posted["breach"]["rule"], "error_rate");
}

fn arm_of<'a>(readout: &'a Value, name: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    readout["arms"]
        .as_array()
        .and_then(|arms| arms.iter().find(|a| a["arm"] == name))
        .unwrap_or(&NULL)
}

#[tokio::test]
async fn a_slow_challenger_is_stopped_with_every_call_answered() {
    let dir = tempfile::tempdir().unwrap();
    // A slow call takes from 0.5 s to seconds on a busy machine: a window
    // long enough for a few of them.
    let config = ab("max_p99_ratio = 3.0\nmin_requests = 2\nwindow_secs = 30");
    let (s, _) = start(dir.path(), "fixtures/slow_fraud.onnx", &config);
    let stopped = eventually(
        Duration::from_secs(120),
        "the guardrail to stop the slow challenger",
        || {
            let s = &s;
            async move {
                // A call answered by the slow arm is still a success.
                let (status, _, _) = call(s, FRAUD_ROW[0]).await;
                assert_eq!(status, 200);
                let r = s.get_json("/admin/experiments/fraud-ab").await;
                (!arm_of(&r, "challenger")["stopped"].is_null()).then_some(r)
            }
        },
    )
    .await;
    let challenger = arm(&stopped, "challenger");
    assert_eq!(challenger["stopped"]["rule"], "p99_ratio", "{stopped}");
    assert!(challenger["stopped"]["reason"]
        .as_str()
        .unwrap()
        .contains("x the baseline \"champion\" p99"));
    for _ in 0..20 {
        let (status, arm, _) = call(&s, FRAUD_ROW[0]).await;
        assert_eq!((status, arm.as_str()), (200, "champion"));
    }
    let labels = [
        ("endpoint", "fraud-ab"),
        ("arm", "challenger"),
        ("rule", "p99_ratio"),
    ];
    assert_eq!(
        s.metric("podium_guardrail_trips_total", &labels).await,
        Some(1.0)
    );
}

/// Calls `n` times and labels each call: right (class 0, what both
/// versions predict for the demo row) when `right(arm, i)`, else wrong.
async fn calls_with_feedback(s: &Server, n: usize, right: impl Fn(&str, usize) -> bool) {
    let mut feedback = Vec::new();
    for i in 0..n {
        let (status, arm, id) = call(s, FRAUD_ROW[0]).await;
        assert_eq!(status, 200, "{arm}");
        let label = if right(&arm, i) { 0 } else { 1 };
        feedback.push(json!({"request_id": id, "label": label}));
    }
    let (status, body) = s
        .post_json("/v2/feedback", &json!({ "feedback": feedback }))
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_rollout_walks_its_steps_and_promotes_a_better_challenger() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
[[endpoint]]
name = "fraud-ab"
model = "fraud"
arms = [{ alias = "champion", weight = 100 }, { alias = "challenger", weight = 0 }]

[endpoint.readout]
metric = "accuracy"
prediction_output = "label"
min_samples = 15

[endpoint.guardrail]
max_error_rate = 0.5
min_requests = 10
window_secs = 1

[endpoint.rollout]
steps = [20, 50]
step_secs = 0.2
promote = true
"#;
    let (s, _) = start(dir.path(), "fraud/v2.onnx", config);
    let done = eventually(Duration::from_secs(120), "the rollout to promote", || {
        let s = &s;
        async move {
            // The challenger is right 9 times in 10, the champion 1 in 10.
            calls_with_feedback(s, 20, |arm, i| (arm == "challenger") == (i % 10 != 0)).await;
            let r = s.get_json("/admin/experiments/fraud-ab").await;
            (r["rollout"]["state"] == "promoted").then_some(r)
        }
    })
    .await;
    assert_eq!(done["rollout"]["step"], 1, "{done}");

    // Each step was an audited traffic change, in order.
    let steps: Vec<Value> = history(&s, "rollout")
        .await
        .iter()
        .map(|e| e["arms"].clone())
        .collect();
    assert_eq!(
        steps,
        vec![
            json!([{"alias": "champion", "weight": 80.0}, {"alias": "challenger", "weight": 20.0}]),
            json!([{"alias": "champion", "weight": 50.0}, {"alias": "challenger", "weight": 50.0}]),
        ]
    );
    // The promotion: champion now serves version 2, with the decision's numbers.
    let promotions = history(&s, "experiment").await;
    let promote = promotions
        .iter()
        .find(|e| e["action"] == "promote")
        .unwrap();
    assert_eq!(
        (
            promote["alias"].as_str(),
            promote["from_version"].as_u64(),
            promote["to_version"].as_u64()
        ),
        (Some("champion"), Some(1), Some(2))
    );
    assert_eq!(promote["comparison"]["decision"], "better");
    assert!(
        promote["why"]
            .as_str()
            .unwrap()
            .contains("is better against \"champion\" on accuracy"),
        "{promote}"
    );
    let aliases = s.get_json("/admin/models/fraud/aliases").await;
    assert_eq!(aliases["aliases"]["champion"], 2, "{aliases}");
    assert_eq!(
        (weight(&s, "champion").await, weight(&s, "challenger").await),
        (100.0, 0.0)
    );
    let (status, arm, _) = call(&s, FRAUD_ROW[0]).await;
    assert_eq!((status, arm.as_str()), (200, "champion"));
}

#[tokio::test]
async fn podium_promote_refuses_when_the_data_say_no_and_promotes_when_they_allow() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
[[endpoint]]
name = "fraud-ab"
model = "fraud"
arms = [{ alias = "champion", weight = 50 }, { alias = "challenger", weight = 50 }]

[endpoint.readout]
metric = "accuracy"
prediction_output = "label"
min_samples = 5
"#;
    let (s, reg) = start(dir.path(), "fraud/v2.onnx", config);
    let promote =
        |flag: &str| common::cli(&reg, &["promote", "fraud-ab", flag, "--server", &s.base]);
    // No labels yet: insufficient data, for either condition.
    let (ok, _, stderr) = promote("--if-better");
    assert!(!ok);
    assert!(stderr.contains("409"), "{stderr}");
    assert!(
        stderr.contains(
            "not promoting arm \"challenger\": the readout's decision is insufficient_data"
        ),
        "{stderr}"
    );

    // Both arms right 3 times in 4: no difference, so --if-better refuses
    // and --if-not-worse promotes.
    calls_with_feedback(&s, 40, |_, i| i % 4 != 0).await;
    let (ok, _, stderr) = promote("--if-better");
    assert!(!ok);
    assert!(
        stderr.contains("the readout's decision is no_difference_yet"),
        "{stderr}"
    );
    let aliases = s.get_json("/admin/models/fraud/aliases").await;
    assert_eq!(aliases["aliases"]["champion"], 1, "refused: nothing moved");

    let (ok, stdout, stderr) = promote("--if-not-worse");
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("fraud@champion now serves version 2 (was 1)"),
        "{stdout}"
    );
    let aliases = s.get_json("/admin/models/fraud/aliases").await;
    assert_eq!(aliases["aliases"]["champion"], 2);
    let promotions = history(&s, "admin").await;
    assert!(promotions.iter().any(|e| e["action"] == "promote" && e["comparison"]["decision"] == "no_difference_yet"), "{promotions:?}");
}
