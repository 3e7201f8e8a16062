//! Endpoints over the wire: a 90/10 split, sticky users (also across a
//! restart), overrides, run-time weight changes, shadow copies, metrics.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::{cli, client, eventually, sample, Server, FRAUD_ROW};
use serde_json::{json, Value};

const CONFIG: &str = r#"
[[endpoint]]
name = "fraud-ab"
model = "fraud"
experiment = "fraud-2026-11"
sticky_key = { header = "x-user-id" }
arms = [{ alias = "champion", weight = 90 }, { alias = "challenger", weight = 10 }]

[[endpoint]]
name = "fraud-shadow"
model = "fraud"
arms = [{ alias = "champion", weight = 1 }]
shadow = { alias = "challenger", fraction = 1.0, max_in_flight = 64 }
"#;

fn start(dir: &Path, config: &str, extra: &[&str]) -> Server {
    let reg = dir.join("registry");
    if !reg.exists() {
        common::demo_registry(dir);
    }
    let path = dir.join("podium.toml");
    std::fs::write(&path, config).unwrap();
    let mut args = vec!["--config", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    Server::start(&reg, &args)
}

fn body() -> Value {
    json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": FRAUD_ROW.to_vec()}]})
}

/// (arm, version, first probability) of one call.
async fn call(
    c: &reqwest::Client,
    s: &Server,
    endpoint: &str,
    headers: &[(&str, &str)],
) -> (String, String, f64) {
    let mut req = c
        .post(s.url(&format!("/v2/models/{endpoint}/infer")))
        .json(&body());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-podium-endpoint"], endpoint);
    let arm = resp.headers()["x-podium-arm"].to_str().unwrap().to_string();
    let v: Value = resp.json().await.unwrap();
    (
        arm,
        v["model_version"].as_str().unwrap().into(),
        v["outputs"][1]["data"][0].as_f64().unwrap(),
    )
}

/// The arm each of `users` lands in.
async fn arms_of(s: &Server, users: impl Iterator<Item = String>) -> Vec<String> {
    let c = client();
    let mut out = Vec::new();
    for user in users {
        out.push(call(&c, s, "fraud-ab", &[("x-user-id", &user)]).await.0);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_90_10_split_lands_within_a_point_and_metrics_agree() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), CONFIG, &[]);
    let c = client();
    let total = 20_000usize;
    let mut tasks = Vec::new();
    for worker in 0..32 {
        let (c, url) = (c.clone(), s.url("/v2/models/fraud-ab/infer"));
        tasks.push(tokio::spawn(async move {
            let mut counts: HashMap<String, usize> = HashMap::new();
            for i in (worker..total).step_by(32) {
                let resp = c
                    .post(&url)
                    .header("x-user-id", format!("user-{i}"))
                    .json(&body())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                let arm = resp.headers()["x-podium-arm"].to_str().unwrap().to_string();
                let v: Value = resp.json().await.unwrap();
                // Each arm answers with its own version's values.
                let expect = if arm == "champion" {
                    ("1", 0.620_603_44)
                } else {
                    ("2", 0.881_607_65)
                };
                assert_eq!(v["model_version"], expect.0, "{arm}");
                assert!((v["outputs"][1]["data"][0].as_f64().unwrap() - expect.1).abs() < 1e-5);
                *counts.entry(arm).or_default() += 1;
            }
            counts
        }));
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        for (arm, n) in t.await.unwrap() {
            *counts.entry(arm).or_default() += n;
        }
    }
    let challenger = counts.get("challenger").copied().unwrap_or(0) as f64 / total as f64;
    assert!(
        (challenger - 0.10).abs() <= 0.01,
        "challenger share {challenger:.4} of {total}: {counts:?}"
    );
    assert_eq!(counts.values().sum::<usize>(), total);

    let m = s.metrics().await;
    for arm in ["champion", "challenger"] {
        let labels = [("endpoint", "fraud-ab"), ("arm", arm), ("result", "ok")];
        assert_eq!(
            sample(&m, "podium_requests_total", &labels),
            Some(counts[arm] as f64),
            "{arm}\n{m}"
        );
    }
    assert_eq!(
        sample(&m, "podium_endpoint_in_flight", &[("endpoint", "fraud-ab")]),
        Some(0.0),
        "{m}"
    );
    assert!(
        m.contains("podium_request_seconds") && m.contains("podium_model_seconds"),
        "{m}"
    );
}

#[tokio::test]
async fn a_user_keeps_the_arm_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let users = || (0..300).map(|i| format!("u-{i}"));
    let s = start(dir.path(), CONFIG, &[]);
    let first = arms_of(&s, users()).await;
    assert_eq!(
        arms_of(&s, users()).await,
        first,
        "the same key moved within one run"
    );
    assert!(first.iter().any(|a| a == "challenger") && first.iter().any(|a| a == "champion"));
    drop(s);
    let s = start(dir.path(), CONFIG, &[]);
    assert_eq!(arms_of(&s, users()).await, first, "a restart moved users");
}

#[tokio::test]
async fn overrides_win_over_assignment() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), CONFIG, &[]);
    let c = client();
    for user in ["a", "b", "c", "d"] {
        let (arm, version, _) = call(
            &c,
            &s,
            "fraud-ab",
            &[("x-user-id", user), ("x-podium-arm", "challenger")],
        )
        .await;
        assert_eq!((arm.as_str(), version.as_str()), ("challenger", "2"));
    }
    // A version in the URL wins over the header.
    let resp = c
        .post(s.url("/v2/models/fraud-ab/versions/1/infer"))
        .header("x-podium-arm", "challenger")
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-podium-arm"], "1");
    assert_eq!(resp.json::<Value>().await.unwrap()["model_version"], "1");
    // An override naming no alias of the model is a clear 404.
    let resp = c
        .post(s.url("/v2/models/fraud-ab/infer"))
        .header("x-podium-arm", "nope")
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("has no alias \"nope\""));

    // gRPC: the same override through metadata; endpoint and arm echoed back.
    use podium::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
    use podium::api::grpc::proto::{model_infer_request::InferInputTensor, ModelInferRequest};
    let mut g = GrpcInferenceServiceClient::connect(s.grpc.clone())
        .await
        .unwrap();
    let msg = ModelInferRequest {
        model_name: "fraud-ab".into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, 30],
            ..Default::default()
        }],
        raw_input_contents: vec![FRAUD_ROW.iter().flat_map(|x| x.to_le_bytes()).collect()],
        ..Default::default()
    };
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("x-podium-arm", "challenger".parse().unwrap());
    let resp = g.model_infer(req).await.unwrap();
    assert_eq!(
        resp.metadata().get("x-podium-endpoint").unwrap(),
        "fraud-ab"
    );
    assert_eq!(resp.metadata().get("x-podium-arm").unwrap(), "challenger");
    assert_eq!(resp.into_inner().model_version, "2");
    // Metadata of an endpoint describes its model.
    let m = s.get_json("/v2/models/fraud-ab").await;
    assert_eq!(
        (m["name"].clone(), m["version"].clone()),
        (json!("fraud-ab"), json!("1"))
    );
}

#[tokio::test]
async fn a_weight_change_applies_at_once_and_moves_only_boundary_users() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), CONFIG, &[]);
    let users = || (0..2000).map(|i| format!("w-{i}"));
    let before = arms_of(&s, users()).await;

    let resp = client()
        .put(s.url("/admin/endpoints/fraud-ab/traffic"))
        .json(&json!({"arms": [{"alias": "champion", "weight": 80}, {"alias": "challenger", "weight": 20}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let after = arms_of(&s, users()).await;
    let moved: Vec<(&String, &String)> =
        before.iter().zip(&after).filter(|(b, a)| b != a).collect();
    assert!(
        moved
            .iter()
            .all(|(b, a)| *b == "champion" && *a == "challenger"),
        "users moved the wrong way: {moved:?}"
    );
    let share = moved.len() as f64 / before.len() as f64;
    assert!(
        (0.08..=0.12).contains(&share),
        "{share:.3} of users moved; 10% sit between the old and new cut"
    );

    // The CLI does the same; the endpoints list shows it.
    let server = s.base.as_str();
    let (ok, stdout, stderr) = cli(
        &s.registry,
        &[
            "traffic",
            "set",
            "fraud-ab",
            "champion=50",
            "challenger=50",
            "--server",
            server,
        ],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("fraud-ab\tmodel fraud\tarms champion=50.0 challenger=50.0"),
        "{stdout}"
    );
    let (ok, stdout, _) = cli(&s.registry, &["traffic", "show", "--server", server]);
    assert!(
        ok && stdout
            .contains("fraud-shadow\tmodel fraud\tarms champion=1.0\tshadow challenger=1.0"),
        "{stdout}"
    );

    // Bad changes are refused whole, with the reason.
    for (endpoint, body, status, want) in [
        (
            "fraud-ab",
            json!({"arms": [{"alias": "champion", "weight": 0}]}),
            400,
            "all arm weights are 0",
        ),
        (
            "fraud-ab",
            json!({"arms": [{"alias": "prod", "weight": 1}]}),
            400,
            "has no alias \"prod\"",
        ),
        ("fraud-ab", json!({"arms": []}), 400, "has no arms"),
        ("fraud-ab", json!({"weights": 1}), 400, "expected {\"arms\""),
        (
            "mlp",
            json!({"arms": [{"alias": "champion", "weight": 1}]}),
            404,
            "no endpoint \"mlp\" is configured",
        ),
    ] {
        let resp = client()
            .put(s.url(&format!("/admin/endpoints/{endpoint}/traffic")))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{body}");
        let msg = resp.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains(want), "{msg}");
    }
    let v = s.get_json("/admin/endpoints").await;
    let ab = v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "fraud-ab")
        .unwrap()
        .clone();
    assert_eq!(
        ab["arms"],
        json!([{"alias": "champion", "weight": 50.0}, {"alias": "challenger", "weight": 50.0}])
    );
}

#[tokio::test]
async fn shadow_copies_never_change_the_answer_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    common::demo_registry(dir.path());
    let reg = dir.path().join("registry");
    // A shadow alias on a version that cannot take fraud's input: every copy fails.
    assert_eq!(common::register(&reg, "fraud", "mlp/v1.onnx"), 3);
    common::set_alias(&reg, "fraud", "broken", 3);
    let config = format!(
        "{CONFIG}\n[[endpoint]]\nname = \"fraud-broken-shadow\"\nmodel = \"fraud\"\narms = [{{ alias = \"champion\", weight = 1 }}]\nshadow = {{ alias = \"broken\", fraction = 1.0 }}\n"
    );
    let s = start(dir.path(), &config, &[]);
    let c = client();
    for endpoint in ["fraud-shadow", "fraud-broken-shadow"] {
        for _ in 0..40 {
            let (arm, version, p0) = call(&c, &s, endpoint, &[]).await;
            assert_eq!(
                (arm.as_str(), version.as_str()),
                ("champion", "1"),
                "{endpoint}"
            );
            assert!((p0 - 0.620_603_44).abs() < 1e-5, "{endpoint}: {p0}");
        }
    }
    eventually(
        Duration::from_secs(20),
        "40 shadow copies each, ok and failed",
        || async {
            let m = c
                .get(s.url("/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let ok = sample(
                &m,
                "podium_shadow_total",
                &[("endpoint", "fraud-shadow"), ("result", "ok")],
            );
            let failed = sample(
                &m,
                "podium_shadow_total",
                &[("endpoint", "fraud-broken-shadow"), ("result", "error")],
            );
            (ok == Some(40.0) && failed == Some(40.0)).then_some(())
        },
    )
    .await;
}

#[test]
fn config_errors_stop_the_start_with_the_line_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let reg = common::demo_registry(dir.path());
    for (config, want) in [
        (
            "[[endpoint]]\nname = \"x\"\nmodel = \"fraud\"\narms = [{ alias = \"champion\", weight = 0 }]\n",
            "line 1: endpoint \"x\": all arm weights are 0 (or their sum is not a finite number); give at least one arm a positive weight",
        ),
        (
            "\n\n[[endpoint]]\nname = \"x\"\nmodel = \"fraud\"\narms = [{ alias = \"prod\", weight = 1 }]\n",
            "line 3: endpoint \"x\": model \"fraud\" has no alias \"prod\" (its aliases: challenger, champion); set it with `podium alias set fraud prod N`",
        ),
        ("[[endpoint]]\nname = \"x\"\n", "missing field `model`"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, config).unwrap();
        let out = std::process::Command::new(common::BIN)
            .args(["--registry", reg.to_str().unwrap(), "serve", "--listen", "127.0.0.1:0"])
            .args(["--grpc-listen", "127.0.0.1:0", "--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("{}: ", path.display())), "{stderr}");
        assert!(stderr.contains(want), "{stderr}");
    }
}

#[tokio::test]
async fn a_slow_shadow_never_holds_up_the_answer() {
    // The shadow alias serves a model with fraud's signature that computes
    // for about half a second per call (models/fixtures/slow_fraud.onnx).
    let dir = tempfile::tempdir().unwrap();
    let reg = common::demo_registry(dir.path());
    assert_eq!(
        common::register(&reg, "fraud", "fixtures/slow_fraud.onnx"),
        3
    );
    common::set_alias(&reg, "fraud", "slow", 3);
    let config = "[[endpoint]]\nname = \"fraud-slow-shadow\"\nmodel = \"fraud\"\narms = [{ alias = \"champion\", weight = 1 }]\nshadow = { alias = \"slow\", fraction = 1.0, max_in_flight = 8 }\n";
    let s = start(dir.path(), config, &[]);
    let c = client();
    for _ in 0..5 {
        let (arm, version, p0) = call(&c, &s, "fraud-slow-shadow", &[]).await;
        assert_eq!((arm.as_str(), version.as_str()), ("champion", "1"));
        assert!((p0 - 0.620_603_44).abs() < 1e-5);
    }
    // Five answers are back, while their shadow copies (one shadow thread,
    // ~0.5 s each) are still queued or running: the answers did not wait.
    let status = s.get_json("/admin/status").await;
    let slow_in_flight = status["resident"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "fraud" && r["version"] == 3)
        .map(|r| r["in_flight"].as_u64().unwrap())
        .unwrap();
    assert!(
        slow_in_flight >= 1,
        "no shadow copy still running: {status}"
    );
    let m = s.metrics().await;
    let done = sample(
        &m,
        "podium_shadow_total",
        &[("endpoint", "fraud-slow-shadow"), ("result", "ok")],
    )
    .unwrap_or(0.0);
    assert!(
        done < 5.0,
        "all shadows finished before the answers were checked: {done}"
    );
    // They all finish in the end.
    eventually(
        // A generous deadline: on a busy machine the ~0.5 s copies take far longer.
        Duration::from_secs(180),
        "the 5 shadow copies to finish",
        || async {
            let m = c
                .get(s.url("/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            (sample(
                &m,
                "podium_shadow_total",
                &[("endpoint", "fraud-slow-shadow"), ("result", "ok")],
            ) == Some(5.0))
            .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn deleting_an_alias_an_endpoint_routes_to_is_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), CONFIG, &[]);
    let c = client();
    let url = s.url("/admin/models/fraud/aliases/challenger");
    let resp = c.delete(&url).send().await.unwrap();
    assert_eq!(resp.status(), 409);
    let v: Value = resp.json().await.unwrap();
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("endpoints fraud-ab, fraud-shadow") && error.contains("?force=true"),
        "{v}"
    );
    // Still there, and still answering its users.
    let aliases = s.get_json("/admin/models/fraud/aliases").await;
    assert_eq!(aliases["aliases"]["challenger"], 2, "{aliases}");
    let (arm, _, _) = call(&c, &s, "fraud-ab", &[("x-podium-arm", "challenger")]).await;
    assert_eq!(arm, "challenger");

    // The CLI says the same, and --force goes through.
    let (ok, _, stderr) = cli(
        &s.registry,
        &[
            "alias",
            "delete",
            "fraud",
            "challenger",
            "--server",
            &s.base,
        ],
    );
    assert!(!ok && stderr.contains("fraud-ab"), "{stderr}");
    let (ok, _, stderr) = cli(
        &s.registry,
        &[
            "alias",
            "delete",
            "fraud",
            "challenger",
            "--server",
            &s.base,
            "--force",
        ],
    );
    assert!(ok, "{stderr}");
    let aliases = s.get_json("/admin/models/fraud/aliases").await;
    assert!(aliases["aliases"].get("challenger").is_none(), "{aliases}");
    // An alias no endpoint uses is deleted without --force.
    common::set_alias(&s.registry, "fraud", "spare", 1);
    eventually(Duration::from_secs(30), "the spare alias", || async {
        let a = s.get_json("/admin/models/fraud/aliases").await;
        a["aliases"].get("spare").map(|_| ())
    })
    .await;
    let resp = c
        .delete(s.url("/admin/models/fraud/aliases/spare"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
