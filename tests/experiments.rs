//! The experiment readout over the wire: calls to an endpoint with a
//! readout, feedback posted to `/v2/feedback` (refused, joined, unmatched,
//! duplicated), the ledger's bound, the SRM check, the admin route and the
//! `podium experiment show` command.

mod common;

use std::path::Path;

use common::{client, fraud_request, Server};
use serde_json::{json, Value};

/// A 50/50 accuracy experiment on the demo fraud model (both versions
/// predict class 0 for the demo row).
const AB: &str = r#"
[[endpoint]]
name = "fraud-ab"
model = "fraud"
experiment = "exp-1"
arms = [{ alias = "champion", weight = 50 }, { alias = "challenger", weight = 50 }]

[endpoint.readout]
metric = "accuracy"
prediction_output = "label"
min_samples = 2
"#;

fn start(dir: &Path, config: &str, extra: &[&str]) -> Server {
    let reg = common::demo_registry(dir);
    let path = dir.join("podium.toml");
    std::fs::write(&path, config).unwrap();
    let mut args = vec!["--config", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    Server::start(&reg, &args)
}

/// Calls `fraud-ab` (forced to `arm` when given); answers (request id, arm).
async fn call(s: &Server, arm: Option<&str>, client_id: Option<&str>) -> (String, String) {
    let mut req = client()
        .post(s.url("/v2/models/fraud-ab/infer"))
        .json(&fraud_request(1));
    if let Some(arm) = arm {
        req = req.header("x-podium-arm", arm);
    }
    if let Some(id) = client_id {
        req = req.header("x-client-request-id", id);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let header = |name: &str| resp.headers()[name].to_str().unwrap().to_string();
    (header("x-request-id"), header("x-podium-arm"))
}

async fn readout(s: &Server) -> Value {
    s.get_json("/admin/experiments/fraud-ab").await
}

fn arm<'a>(readout: &'a Value, name: &str) -> &'a Value {
    readout["arms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["arm"] == name)
        .unwrap_or_else(|| panic!("no arm {name} in {readout}"))
}

#[tokio::test]
async fn feedback_is_checked_whole_then_joined_once_per_call() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), AB, &[]);
    let (a, _) = call(&s, Some("champion"), None).await;
    call(&s, Some("champion"), Some("order-17")).await;
    let (c, _) = call(&s, Some("challenger"), None).await;

    // A malformed item refuses the whole batch, naming the item.
    let (status, body) = s
        .post_json(
            "/v2/feedback",
            &json!({"feedback": [{"request_id": a, "label": 0}, {"request_id": c, "label": null}]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"],
        "feedback item 1: label is a JSON null; send a number, string or bool"
    );
    let r = readout(&s).await;
    assert_eq!(
        arm(&r, "champion")["feedback"],
        0,
        "nothing was applied: {r}"
    );

    // Over the batch limit: 413, with the limit named.
    let many = vec![json!({"request_id": a, "label": 0}); 10_001];
    let (status, body) = s
        .post_json("/v2/feedback", &json!({ "feedback": many }))
        .await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("the limit is 10000"),
        "{body}"
    );

    // Joined by request id and by the client's id; unknown ids and a second
    // label for the same call are counted apart.
    let (status, body) = s
        .post_json(
            "/v2/feedback",
            &json!({"feedback": [
                {"request_id": a, "label": 0},
                {"client_request_id": "order-17", "label": "1"},
                {"request_id": c, "label": false},
                {"request_id": a, "label": 1},
                {"request_id": "00000000-0000-4000-8000-000000000000", "label": 0},
                {"client_request_id": "never-sent", "label": 0},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"accepted": 6, "matched": 3, "duplicates": 1, "unmatched": 2})
    );

    let r = readout(&s).await;
    let champion = arm(&r, "champion");
    assert_eq!(
        (&champion["requests"], &champion["feedback"]),
        (&json!(2), &json!(2))
    );
    // Predicted 0: label 0 is right, label "1" is wrong; the duplicate 1 is ignored.
    assert_eq!(champion["metric"]["value"], 0.5);
    assert_eq!(arm(&r, "challenger")["metric"]["value"], 1.0);
    assert_eq!(champion["version"], 1);
    assert_eq!(arm(&r, "challenger")["version"], 2);
    let comparison = &r["comparisons"][0];
    assert_eq!(comparison["arm"], "challenger");
    assert_eq!(comparison["diff"], 0.5);
    assert_eq!(comparison["decision"], "insufficient_data"); // 1 label < min_samples 2

    // A single item (not in a list) is a batch of one; c has its label already.
    let (status, body) = s
        .post_json("/v2/feedback", &json!({"request_id": c, "label": true}))
        .await;
    assert_eq!((status, &body["duplicates"]), (200, &json!(1)), "{body}");
    let metrics = s.metrics().await;
    assert_eq!(
        common::sample(
            &metrics,
            "podium_feedback_items_total",
            &[("result", "matched")]
        ),
        Some(3.0)
    );
}

#[tokio::test]
async fn labels_that_do_not_fit_the_metric_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = AB.replace(
        "metric = \"accuracy\"\nprediction_output = \"label\"",
        "metric = \"conversion\"",
    );
    let s = start(dir.path(), &config, &[]);
    let (a, _) = call(&s, None, None).await;
    let (status, body) = s
        .post_json("/v2/feedback", &json!({"request_id": a, "label": 0.5}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"],
        "feedback item 0: label 0.5 is not a conversion outcome; send 0, 1, true or false (the call was to endpoint \"fraud-ab\", whose readout measures conversion)"
    );
}

#[tokio::test]
async fn a_full_ledger_drops_the_oldest_call_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), AB, &["--readout-ledger-size", "2"]);
    let (first, _) = call(&s, None, None).await;
    let (second, _) = call(&s, None, None).await;
    call(&s, None, None).await;
    let (_, body) = s
        .post_json(
            "/v2/feedback",
            &json!({"feedback": [{"request_id": first, "label": 0}, {"request_id": second, "label": 0}]}),
        )
        .await;
    assert_eq!(
        (&body["matched"], &body["unmatched"]),
        (&json!(1), &json!(1)),
        "{body}"
    );
    let evicted = s
        .metric(
            "podium_readout_ledger_evicted_total",
            &[("endpoint", "fraud-ab")],
        )
        .await;
    assert_eq!(evicted, Some(1.0));
}

#[tokio::test]
async fn calls_forced_against_the_weights_fail_the_srm_check() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), AB, &[]);
    let mut items = Vec::new();
    for i in 0..40 {
        let arm = if i < 36 { "champion" } else { "challenger" };
        let (id, routed) = call(&s, Some(arm), None).await;
        assert_eq!(routed, arm);
        items.push(json!({"request_id": id, "label": 0}));
    }
    let (status, _) = s
        .post_json("/v2/feedback", &json!({ "feedback": items }))
        .await;
    assert_eq!(status, 200);
    let r = readout(&s).await;
    assert_eq!(arm(&r, "champion")["requests"], 36);
    assert_eq!(arm(&r, "challenger")["requests"], 4);
    // 36 / 4 against 50 / 50: chi-square 25.6, p ≈ 4e-7.
    assert_eq!(r["srm"]["ok"], false, "{r}");
    assert!(r["srm"]["p_value"].as_f64().unwrap() < 0.001, "{r}");
    assert_eq!(r["comparisons"][0]["decision"], "srm_failed");
}

#[tokio::test]
async fn the_readout_is_an_admin_route_and_the_cli_prints_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), AB, &["--admin-token", "secret"]);
    call(&s, Some("champion"), None).await;
    assert_eq!(s.get_status("/admin/experiments/fraud-ab").await, 401);
    let get = |path: &str| client().get(s.url(path)).bearer_auth("secret").send();
    let resp = get("/admin/experiments/nope").await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["error"],
        "endpoint \"nope\" has no experiment readout (endpoints with one: fraud-ab); add an [endpoint.readout] table to its entry in the --config file"
    );
    let list: Value = get("/admin/experiments")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!({"experiments": ["fraud-ab"]}));

    let out = common::cli_ok(
        &s.registry,
        &[
            "experiment",
            "show",
            "fraud-ab",
            "--server",
            &s.base,
            "--token",
            "secret",
        ],
    );
    assert!(
        out.starts_with("endpoint fraud-ab  experiment exp-1  metric accuracy  baseline champion"),
        "{out}"
    );
    assert!(
        out.contains("\nchampion             1      50         1    0.0%"),
        "{out}"
    );
    assert!(out.contains("challenger vs champion: diff -"), "{out}");
    let json_out = common::cli_ok(
        &s.registry,
        &[
            "experiment",
            "show",
            "fraud-ab",
            "--json",
            "--server",
            &s.base,
            "--token",
            "secret",
        ],
    );
    let parsed: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(parsed["arms"][0]["requests"], 1);
}

#[tokio::test]
async fn feedback_needs_an_api_key_like_the_calls_it_labels() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    let hash = podium::auth::file::sha256_hex("pk_labeller");
    std::fs::write(
        &keys,
        format!("[[key]]\nname = \"labeller\"\nsha256 = \"{hash}\"\n"),
    )
    .unwrap();
    let s = start(dir.path(), AB, &["--api-keys", keys.to_str().unwrap()]);
    let feedback = |key: Option<&str>| {
        let mut request = client()
            .post(s.url("/v2/feedback"))
            .json(&json!({"client_request_id": "order-1", "label": 0}));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    assert_eq!(feedback(None).await.unwrap().status(), 401);
    assert_eq!(feedback(Some("pk_other")).await.unwrap().status(), 401);
    let resp = feedback(Some("pk_labeller")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["unmatched"], 1);
}

#[tokio::test]
async fn a_key_limited_to_some_endpoints_labels_only_their_calls() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    let (all, fraud_only) = (
        podium::auth::file::sha256_hex("pk_all"),
        podium::auth::file::sha256_hex("pk_fraud"),
    );
    std::fs::write(
        &keys,
        format!(
            "[[key]]\nname = \"ops\"\nsha256 = \"{all}\"\n\n[[key]]\nname = \"fraud-team\"\nsha256 = \"{fraud_only}\"\nendpoints = [\"fraud\"]\n"
        ),
    )
    .unwrap();
    let s = start(dir.path(), AB, &["--api-keys", keys.to_str().unwrap()]);
    let resp = client()
        .post(s.url("/v2/models/fraud-ab/infer"))
        .bearer_auth("pk_all")
        .json(&fraud_request(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let post = |key: &'static str, items: Value| {
        client()
            .post(s.url("/v2/feedback"))
            .bearer_auth(key)
            .json(&json!({ "feedback": items }))
            .send()
    };
    // The call was to fraud-ab, which the key may not call: the whole batch
    // is refused, naming the key, the item and the endpoint.
    let other = uuid_like();
    let resp = post(
        "pk_fraud",
        json!([{"request_id": other, "label": 0}, {"request_id": id, "label": 0}]),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["error"],
        "feedback item 1: API key \"fraud-team\" may not post feedback for calls to \"fraud-ab\"; it may call fraud"
    );
    assert_eq!(
        arm(&readout(&s).await, "champion")["feedback"]
            .as_u64()
            .unwrap()
            + arm(&readout(&s).await, "challenger")["feedback"]
                .as_u64()
                .unwrap(),
        0,
        "nothing applied"
    );
    // A call the server does not know cannot be checked: unmatched.
    let body: Value = post("pk_fraud", json!([{"request_id": other, "label": 0}]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["unmatched"], 1);
    // A key that may call fraud-ab labels it.
    let body: Value = post("pk_all", json!([{"request_id": id, "label": 0}]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["matched"], 1);
}

/// A well-formed request id no call has.
fn uuid_like() -> String {
    "00000000-0000-4000-8000-000000000000".to_string()
}

#[test]
fn a_readout_that_cannot_work_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let reg = common::demo_registry(dir.path());
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, AB.replace("prediction_output = \"label\"\n", "")).unwrap();
    let out = std::process::Command::new(common::BIN)
        .args([
            "--registry",
            reg.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--config",
            path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "endpoint \"fraud-ab\": readout: metric \"accuracy\" needs prediction_output"
        ),
        "{stderr}"
    );
}
