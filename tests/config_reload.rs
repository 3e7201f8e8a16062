//! Reloading the configuration file over the wire: SIGHUP with a changed
//! weight serves the new weights and writes the history; a broken file,
//! or one that changes what only a restart applies, keeps the old
//! configuration, is counted and answered with the file, line and fix; the
//! admin API and `podium traffic reload` do the same; an experiment loop
//! keeps guarding the endpoint a reload changed.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{cli, client, eventually, fraud_request, Server, FRAUD_ROW};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(60);

/// The fraud-ab endpoint with these weights, and `extra` after it.
fn config(champion: u32, challenger: u32, extra: &str) -> String {
    format!(
        r#"
[[endpoint]]
name = "fraud-ab"
model = "fraud"
arms = [{{ alias = "champion", weight = {champion} }}, {{ alias = "challenger", weight = {challenger} }}]
{extra}"#
    )
}

fn start(dir: &Path, challenger: &str, text: &str, extra: &[&str]) -> (Server, PathBuf) {
    let reg = dir.join("registry");
    assert_eq!(common::register(&reg, "fraud", "fraud/v1.onnx"), 1);
    assert_eq!(common::register(&reg, "fraud", challenger), 2);
    common::set_alias(&reg, "fraud", "champion", 1);
    common::set_alias(&reg, "fraud", "challenger", 2);
    let path = dir.join("podium.toml");
    std::fs::write(&path, text).unwrap();
    let mut args = vec!["--config", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    (Server::start(&reg, &args), path)
}

/// fraud-ab's weights as `/admin/endpoints` shows them.
async fn weights(s: &Server) -> Vec<(String, f64)> {
    let endpoints = s.get_json("/admin/endpoints").await;
    let e = endpoints["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "fraud-ab")
        .unwrap_or_else(|| panic!("no fraud-ab in {endpoints}"));
    e["arms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["alias"].as_str().unwrap().to_string(),
                a["weight"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn w(champion: f64, challenger: f64) -> Vec<(String, f64)> {
    vec![
        ("champion".into(), champion),
        ("challenger".into(), challenger),
    ]
}

async fn reloads(s: &Server, result: &str) -> f64 {
    s.metric("podium_config_reloads_total", &[("result", result)])
        .await
        .unwrap_or(0.0)
}

async fn events(s: &Server, action: &str) -> Vec<Value> {
    let h = s.get_json("/admin/history?model=fraud").await;
    h["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}

/// The arm that answered one call to fraud-ab (its status must be 200).
async fn arm(s: &Server) -> String {
    let resp = client()
        .post(s.url("/v2/models/fraud-ab/infer"))
        .json(&fraud_request(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.headers()["x-podium-arm"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn sighup_applies_a_changed_weight_and_keeps_the_old_config_on_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let (s, path) = start(dir.path(), "fraud/v2.onnx", &config(100, 0, ""), &[]);
    assert_eq!(weights(&s).await, w(100.0, 0.0));
    assert_eq!(reloads(&s, "ok").await, 0.0, "declared at 0 from start-up");
    assert_eq!(arm(&s).await, "champion");

    // A new weight: served once the signal is handled.
    std::fs::write(&path, config(0, 100, "")).unwrap();
    s.hangup();
    eventually(DEADLINE, "the reloaded weights", || async {
        (weights(&s).await == w(0.0, 100.0)).then_some(())
    })
    .await;
    assert_eq!(arm(&s).await, "challenger");
    assert_eq!(reloads(&s, "ok").await, 1.0);
    let reloaded = events(&s, "endpoint_reloaded").await;
    assert_eq!(reloaded.len(), 1, "{reloaded:?}");
    assert_eq!(reloaded[0]["by"], "reload");
    assert_eq!(reloaded[0]["endpoint"], "fraud-ab");
    assert_eq!(
        reloaded[0]["arms"],
        json!([{"alias": "champion", "weight": 0.0}, {"alias": "challenger", "weight": 100.0}])
    );
    assert!(
        reloaded[0]["why"]
            .as_str()
            .unwrap()
            .starts_with("changed (arms): configuration reloaded from "),
        "{}",
        reloaded[0]
    );

    // A broken file: counted, and the previous configuration keeps serving.
    std::fs::write(&path, config(0, 100, "colour = \"red\"\n")).unwrap();
    s.hangup();
    eventually(DEADLINE, "the failed reload to be counted", || async {
        (reloads(&s, "error").await == 1.0).then_some(())
    })
    .await;
    assert_eq!(weights(&s).await, w(0.0, 100.0));
    assert_eq!(arm(&s).await, "challenger");
    assert_eq!(events(&s, "endpoint_reloaded").await.len(), 1);
}

#[tokio::test]
async fn the_admin_api_and_the_cli_reload_and_refuse_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (s, path) = start(dir.path(), "fraud/v2.onnx", &config(90, 10, ""), &[]);
    let reload = || async {
        let resp = client()
            .post(s.url("/admin/config/reload"))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    };

    // Unchanged: nothing to do, nothing in the history.
    let (status, body) = reload().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["changed"], json!([]));

    // A second endpoint added and the weights changed, through the CLI.
    let second = "\n[[endpoint]]\nname = \"fraud-canary\"\nmodel = \"fraud\"\narms = [{ alias = \"challenger\", weight = 1 }]\n";
    std::fs::write(&path, config(50, 50, second)).unwrap();
    let (ok, stdout, stderr) = cli(
        &s.registry,
        &["traffic", "reload", "--server", s.base.as_str()],
    );
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout,
        format!(
            "reloaded {}: 2 endpoint(s) changed\nfraud-ab\tchanged\tarms\nfraud-canary\tadded\n",
            path.display()
        )
    );
    assert_eq!(weights(&s).await, w(50.0, 50.0));
    let canary = client()
        .post(s.url("/v2/models/fraud-canary/infer"))
        .json(&fraud_request(1))
        .send()
        .await
        .unwrap();
    assert_eq!(canary.status(), 200);
    let by: Vec<Value> = events(&s, "endpoint_reloaded")
        .await
        .iter()
        .map(|e| json!([e["endpoint"], e["by"]]))
        .collect();
    assert_eq!(
        by,
        vec![
            json!(["fraud-ab", "admin"]),
            json!(["fraud-canary", "admin"])
        ]
    );

    // Errors: the file and line, or the section only a restart applies,
    // with the fix; the previous configuration stays.
    let cases = [
        (
            config(50, 50, "arms = []\n"),
            format!("{}: ", path.display()),
        ),
        (
            config(50, 50, "").replace("challenger\", weight", "prod\", weight"),
            "line 2: endpoint \"fraud-ab\": model \"fraud\" has no alias \"prod\"".into(),
        ),
        (
            config(50, 50, "\n[model.fraud.onnxruntime]\nintra_op_threads = 2\n"),
            "[model.fraud.onnxruntime] differs from the one the server started with; it is read once at start-up, so a reload cannot change it. Restart `podium serve` to apply it".into(),
        ),
    ];
    for (text, want) in cases {
        std::fs::write(&path, &text).unwrap();
        let (status, body) = reload().await;
        assert_eq!(status, 400, "{body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(&want), "{error:?} does not contain {want:?}");
        assert!(
            error.contains("the previous configuration stays in force"),
            "{error}"
        );
        let (ok, _, stderr) = cli(
            &s.registry,
            &["traffic", "reload", "--server", s.base.as_str()],
        );
        assert!(!ok && stderr.contains(&want), "{stderr}");
    }
    assert_eq!(weights(&s).await, w(50.0, 50.0));
    assert_eq!(reloads(&s, "error").await, 6.0);
    assert_eq!(reloads(&s, "ok").await, 2.0);
}

#[tokio::test]
async fn the_guardrail_keeps_guarding_an_endpoint_a_reload_changed() {
    let guardrail = r#"
[endpoint.readout]
metric = "accuracy"
prediction_output = "label"
min_samples = 20

[endpoint.guardrail]
max_error_rate = 0.2
min_requests = 10
window_secs = 10
"#;
    let dir = tempfile::tempdir().unwrap();
    // The flaky challenger fails on rows whose first feature is positive;
    // with weight 0 it gets no calls until the reload gives it half.
    let (s, path) = start(
        dir.path(),
        "fixtures/flaky_fraud.onnx",
        &config(100, 0, guardrail),
        &[],
    );
    std::fs::write(&path, config(50, 50, guardrail)).unwrap();
    s.hangup();
    eventually(DEADLINE, "the reloaded weights", || async {
        (weights(&s).await == w(50.0, 50.0)).then_some(())
    })
    .await;
    let mut sent = 0;
    eventually(DEADLINE, "the guardrail to stop the challenger", || {
        sent += 1;
        let first = if sent % 2 == 0 { 1.0 } else { FRAUD_ROW[0] };
        let s = &s;
        async move {
            let mut body = fraud_request(1);
            body["inputs"][0]["data"][0] = json!(first);
            client()
                .post(s.url("/v2/models/fraud-ab/infer"))
                .json(&body)
                .send()
                .await
                .unwrap();
            (weights(s).await == w(50.0, 0.0)).then_some(())
        }
    })
    .await;
    let trips: Vec<Value> = events(&s, "traffic_set")
        .await
        .into_iter()
        .filter(|e| e["by"] == "guardrail")
        .collect();
    assert_eq!(trips.len(), 1, "{trips:?}");
    assert_eq!(trips[0]["endpoint"], "fraud-ab");
}
