//! An operator's hands on a running rollout, over the wire: stopping and
//! resuming it (`POST /admin/experiments/{e}/rollout/stop|resume`: state in
//! the readout, an event each in the history, the admin token required,
//! clear 404/409 answers), and a manual weight change refused while the
//! rollout sets the weights.

mod common;

use std::time::Duration;

use common::{client, eventually, fraud_request, Server};
use serde_json::{json, Value};

const TOKEN: &str = "s3cret";

/// `fraud-ab`: a rollout that stays on its first step (an hour per step);
/// `fraud-done`: a one-step rollout that completes as soon as each arm has
/// two labels; `fraud-plain`: a readout without a rollout.
const CONFIG: &str = r#"
[[endpoint]]
name = "fraud-ab"
model = "fraud"
arms = [{ alias = "champion", weight = 100 }, { alias = "challenger", weight = 0 }]
[endpoint.readout]
metric = "accuracy"
prediction_output = "label"
[endpoint.rollout]
steps = [10, 50]
step_secs = 3600

[[endpoint]]
name = "fraud-done"
model = "fraud"
arms = [{ alias = "champion", weight = 50 }, { alias = "challenger", weight = 50 }]
[endpoint.readout]
metric = "accuracy"
prediction_output = "label"
min_samples = 2
[endpoint.rollout]
steps = [50]
step_secs = 0.1

[[endpoint]]
name = "fraud-plain"
model = "fraud"
arms = [{ alias = "champion", weight = 50 }, { alias = "challenger", weight = 50 }]
[endpoint.readout]
metric = "accuracy"
prediction_output = "label"
"#;

fn start(dir: &std::path::Path) -> (Server, std::path::PathBuf) {
    Server::fraud_ab(dir, "fraud/v2.onnx", CONFIG, &["--admin-token", TOKEN])
}

/// An admin call with `token` (None: without one): status and JSON body.
async fn admin(
    s: &Server,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client().request(method, s.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn post(s: &Server, path: &str) -> (u16, Value) {
    admin(s, reqwest::Method::POST, path, Some(TOKEN), None).await
}

async fn get(s: &Server, path: &str) -> Value {
    let (status, body) = admin(s, reqwest::Method::GET, path, Some(TOKEN), None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

async fn rollout(s: &Server, endpoint: &str) -> Value {
    get(s, &format!("/admin/experiments/{endpoint}")).await["rollout"].clone()
}

/// The weights of `endpoint`, as (champion, challenger).
async fn weights(s: &Server, endpoint: &str) -> (f64, f64) {
    let all = get(s, "/admin/endpoints").await;
    let arms = all["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == endpoint)
        .unwrap()["arms"]
        .clone();
    let weight = |alias: &str| {
        arms.as_array()
            .unwrap()
            .iter()
            .find(|a| a["alias"] == alias)
            .map_or(f64::NAN, |a| a["weight"].as_f64().unwrap())
    };
    (weight("champion"), weight("challenger"))
}

async fn set_weights(s: &Server, endpoint: &str, champion: f64, challenger: f64) -> (u16, Value) {
    let body = json!({"arms": [
        {"alias": "champion", "weight": champion},
        {"alias": "challenger", "weight": challenger},
    ]});
    let path = format!("/admin/endpoints/{endpoint}/traffic");
    admin(s, reqwest::Method::PUT, &path, Some(TOKEN), Some(body)).await
}

/// The rollout of `endpoint` once it is on its first step.
async fn first_step(s: &Server, endpoint: &str) -> Value {
    eventually(
        Duration::from_secs(30),
        "the rollout's first step",
        || async move {
            let r = rollout(s, endpoint).await;
            (r["state"] == "stepping" && r["step"] == 0).then_some(r)
        },
    )
    .await
}

fn error(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn an_operator_stops_and_resumes_a_rollout() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = start(dir.path());
    let r = first_step(&s, "fraud-ab").await;
    assert_eq!(r["weight"], 10.0, "{r}");
    assert_eq!(weights(&s, "fraud-ab").await, (90.0, 10.0));

    // The admin token is required.
    let stop = "/admin/experiments/fraud-ab/rollout/stop";
    let (status, _) = admin(&s, reqwest::Method::POST, stop, None, None).await;
    assert_eq!(status, 401);
    let (status, _) = admin(&s, reqwest::Method::POST, stop, Some("wrong"), None).await;
    assert_eq!(status, 401);
    assert_eq!(rollout(&s, "fraud-ab").await["state"], "stepping");

    // Stopped: shown with who stopped it; the weights stay.
    let (status, body) = post(&s, stop).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["endpoint"], "fraud-ab");
    assert_eq!(
        (
            &body["rollout"]["state"],
            &body["rollout"]["stopped_reason"]
        ),
        (&json!("stopped"), &json!("stopped by admin")),
        "{body}"
    );
    let r = rollout(&s, "fraud-ab").await;
    assert_eq!((&r["state"], &r["step"]), (&json!("stopped"), &json!(0)));
    assert_eq!(weights(&s, "fraud-ab").await, (90.0, 10.0));

    let (status, body) = post(&s, stop).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        error(&body),
        "the rollout of endpoint \"fraud-ab\" is already stopped (stopped by admin); resume it with POST /admin/experiments/fraud-ab/rollout/resume"
    );

    // While stopped, the operator owns the weights.
    let (status, body) = set_weights(&s, "fraud-ab", 100.0, 0.0).await;
    assert_eq!(status, 200, "{body}");

    // Resumed on the step it stopped on.
    let (status, body) = post(&s, "/admin/experiments/fraud-ab/rollout/resume").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["rollout"]["state"], &body["rollout"]["step"]),
        (&json!("stepping"), &json!(0)),
        "{body}"
    );
    assert_eq!(weights(&s, "fraud-ab").await, (90.0, 10.0));
    let (status, body) = post(&s, "/admin/experiments/fraud-ab/rollout/resume").await;
    assert_eq!(status, 409, "{body}");
    assert!(
        error(&body).contains("is running, not stopped; only a stopped rollout can be resumed"),
        "{body}"
    );

    // Each operator action is an event in the history.
    let history = get(&s, "/admin/history?model=fraud").await;
    let actions: Vec<(&str, &str, &str, &str)> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("rollout_"))
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["by"].as_str().unwrap(),
                e["endpoint"].as_str().unwrap(),
                e["alias"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("rollout_stop", "admin", "fraud-ab", "challenger"),
            ("rollout_resume", "admin", "fraud-ab", "challenger"),
        ]
    );

    // No rollout, no such action.
    let (status, body) = post(&s, "/admin/experiments/fraud-plain/rollout/stop").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        error(&body),
        "endpoint \"fraud-plain\" has no rollout; add an [endpoint.rollout] table to its entry in the --config file"
    );
    let (status, body) = post(&s, "/admin/experiments/fraud-ab/rollout/pause").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        error(&body).contains("no rollout action \"pause\""),
        "{body}"
    );
}

#[tokio::test]
async fn a_finished_rollout_cannot_be_stopped_or_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = start(dir.path());
    // Two labels per arm (and a step of 0.1 s) complete the one-step rollout.
    let done = eventually(Duration::from_secs(60), "the rollout to complete", || {
        let s = &s;
        async move {
            let resp = client()
                .post(s.url("/v2/models/fraud-done/infer"))
                .json(&fraud_request(1))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
            let (status, body) = s
                .post_json("/v2/feedback", &json!({"request_id": id, "label": 0}))
                .await;
            assert_eq!(status, 200, "{body}");
            let r = rollout(s, "fraud-done").await;
            (r["state"] == "completed").then_some(r)
        }
    })
    .await;
    assert_eq!(done["step"], 0, "{done}");
    for action in ["stop", "resume"] {
        let (status, body) = post(
            &s,
            &format!("/admin/experiments/fraud-done/rollout/{action}"),
        )
        .await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(
            error(&body),
            format!("the rollout of endpoint \"fraud-done\" is already finished (completed: the last step is in force); there is nothing to {action}")
        );
    }
    // A finished rollout leaves the weights to the operator.
    let (status, body) = set_weights(&s, "fraud-done", 70.0, 30.0).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(weights(&s, "fraud-done").await, (70.0, 30.0));
}

#[tokio::test]
async fn a_manual_weight_change_waits_for_the_rollout_to_be_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (s, reg) = start(dir.path());
    first_step(&s, "fraud-ab").await;

    // Refused while the rollout sets the weights: its next step would undo it.
    let (status, body) = set_weights(&s, "fraud-ab", 100.0, 0.0).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        error(&body),
        "endpoint \"fraud-ab\" has a rollout in progress (on step 1 of 2, arm \"challenger\" at 10%) that sets its weights; its next step would overwrite this change. Stop the rollout first: POST /admin/experiments/fraud-ab/rollout/stop (its weights stay; then change them; POST /admin/experiments/fraud-ab/rollout/resume hands them back to the rollout)"
    );
    assert_eq!(weights(&s, "fraud-ab").await, (90.0, 10.0));
    // The same through the CLI.
    let (ok, _, stderr) = common::cli(
        &reg,
        &[
            "traffic",
            "set",
            "fraud-ab",
            "champion=100",
            "challenger=0",
            "--server",
            &s.base,
            "--token",
            TOKEN,
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains("409")
            && stderr
                .contains("Stop the rollout first: POST /admin/experiments/fraud-ab/rollout/stop"),
        "{stderr}"
    );
    // Re-sending the weights in force changes nothing and passes.
    let (status, body) = set_weights(&s, "fraud-ab", 90.0, 10.0).await;
    assert_eq!(status, 200, "{body}");

    // Stopped first: the change is taken, and the rollout stays stopped.
    let (status, body) = post(&s, "/admin/experiments/fraud-ab/rollout/stop").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = set_weights(&s, "fraud-ab", 100.0, 0.0).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(weights(&s, "fraud-ab").await, (100.0, 0.0));
    assert_eq!(rollout(&s, "fraud-ab").await["state"], "stopped");
}
