//! Several replicas on one registry, over the wire: two `podium serve`
//! processes share a local registry and a table directory, follow an alias
//! flip and each other's traffic changes, route a sticky key alike and
//! write the table side by side; and a W3C `traceparent` travels from a
//! call into its answer and its row.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{client, eventually, read_table, walk, Server, FRAUD_ROW};
use podium::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use serde_json::{json, Value};

const CONFIG: &str = r#"
[[endpoint]]
name = "fraud-ab"
model = "fraud"
experiment = "fraud-2026-11"
sticky_key = { header = "x-user-id" }
arms = [{ alias = "champion", weight = 50 }, { alias = "challenger", weight = 50 }]
"#;

/// Generous: each replica polls every 100 ms.
const FOLLOW: Duration = Duration::from_secs(20);

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Two replicas (`replica-a`, `replica-b`) of one registry writing one table.
fn replicas(dir: &Path) -> (Server, Server) {
    let reg = common::demo_registry(dir);
    let config = dir.join("podium.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let table = dir.join("table");
    let start = |id: &str| {
        Server::start(
            &reg,
            &[
                "--config",
                config.to_str().unwrap(),
                "--table-dir",
                table.to_str().unwrap(),
                "--replica-id",
                id,
            ],
        )
    };
    (start("replica-a"), start("replica-b"))
}

fn body() -> Value {
    json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": FRAUD_ROW.to_vec()}]})
}

/// (status, arm, version) of one call to `fraud-ab` as `user`.
async fn call(c: &reqwest::Client, s: &Server, user: &str) -> (u16, String, String) {
    let resp = c
        .post(s.url("/v2/models/fraud-ab/infer"))
        .header("x-user-id", user)
        .json(&body())
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (arm, version) = (header("x-podium-arm"), header("x-podium-model-version"));
    (resp.status().as_u16(), arm, version)
}

/// The weights `s` routes `fraud-ab` by, as `alias=weight` sorted.
async fn weights(s: &Server) -> Vec<String> {
    let endpoints = s.get_json("/admin/endpoints").await;
    let list = endpoints["endpoints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ab = list
        .iter()
        .find(|e| e["name"] == "fraud-ab")
        .expect("fraud-ab listed");
    let mut out: Vec<String> = ab["arms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}={}", a["alias"].as_str().unwrap(), a["weight"]))
        .collect();
    out.sort();
    out
}

fn traffic_sets(registry: &Path) -> usize {
    std::fs::read_to_string(registry.join(".podium-history.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"action\":\"traffic_set\""))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_agree_on_aliases_sticky_arms_traffic_and_share_one_table() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = replicas(dir.path());
    let c = client();

    // The same sticky key gets the same arm on both.
    for user in 0..20 {
        let user = format!("user-{user}");
        let (sa, arm_a, _) = call(&c, &a, &user).await;
        let (sb, arm_b, _) = call(&c, &b, &user).await;
        assert_eq!((sa, sb), (200, 200));
        assert_eq!(
            arm_a, arm_b,
            "{user} got different arms on the two replicas"
        );
    }

    // An alias flip is followed by both, with no failed request on either.
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = [
        a.url("/v2/models/fraud/infer"),
        b.url("/v2/models/fraud/infer"),
    ]
    .into_iter()
    .map(|url| {
        let (failed, stop, c) = (Arc::clone(&failed), Arc::clone(&stop), c.clone());
        tokio::spawn(async move {
            let mut sent = 0;
            while !stop.load(Ordering::SeqCst) || sent == 0 {
                let resp = c.post(&url).json(&body()).send().await;
                if !resp.is_ok_and(|r| r.status() == 200) {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
                sent += 1;
            }
            sent
        })
    })
    .collect();
    common::set_alias(&a.registry, "fraud", "champion", 2);
    for s in [&a, &b] {
        eventually(FOLLOW, "both replicas serve fraud@champion v2", || async {
            let status = s.admin_status().await;
            (common::slot(&status, "fraud", "champion")["serving_version"] == 2).then_some(())
        })
        .await;
    }
    stop.store(true, Ordering::SeqCst);
    for task in load {
        assert!(task.await.unwrap() > 0);
    }
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "requests failed during the flip"
    );

    // A traffic change through A's admin API is served by B, audited once.
    let before = traffic_sets(&a.registry);
    let resp = c
        .put(a.url("/admin/endpoints/fraud-ab/traffic"))
        .json(&json!({"arms": [{"alias": "champion", "weight": 0}, {"alias": "challenger", "weight": 100}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let moved = vec!["challenger=100.0".to_string(), "champion=0.0".to_string()];
    eventually(FOLLOW, "replica B follows A's traffic change", || async {
        (weights(&b).await == moved).then_some(())
    })
    .await;
    for user in ["u1", "u2", "u3", "u4"] {
        assert_eq!(call(&c, &b, user).await.1, "challenger");
    }
    assert_eq!(traffic_sets(&a.registry), before + 1, "audited once");

    // Reset through B: both go back to the --config file's split.
    let resp = c
        .delete(b.url("/admin/endpoints/fraud-ab/traffic"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let configured = vec!["challenger=50.0".to_string(), "champion=50.0".to_string()];
    assert_eq!(weights(&b).await, configured);
    eventually(FOLLOW, "replica A follows the reset", || async {
        (weights(&a).await == configured).then_some(())
    })
    .await;
    let unknown = c
        .delete(b.url("/admin/endpoints/nope/traffic"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // Both wrote one table: distinct files, each row naming its replica.
    let (a_id, b_id) = (a.admin_status().await, b.admin_status().await);
    assert_eq!(
        (a_id["replica"].as_str(), b_id["replica"].as_str()),
        (Some("replica-a"), Some("replica-b"))
    );
    for s in [&a, &b] {
        s.terminate();
    }
    let (mut a, mut b) = (a, b);
    a.wait_exit(Duration::from_secs(30));
    b.wait_exit(Duration::from_secs(30));
    let table = dir.path().join("table");
    let files: Vec<String> = walk(&table)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for id in ["replica-a", "replica-b"] {
        assert!(
            files.iter().any(|f| f.contains(&format!("-{id}-"))),
            "no file of {id}: {files:?}"
        );
    }
    let replicas: BTreeSet<String> = read_table(&table)
        .iter()
        .map(|row| row["replica"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        replicas,
        BTreeSet::from(["replica-a".into(), "replica-b".into()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traceparent_reaches_the_answer_and_the_row_and_a_malformed_one_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("table");
    let mut s = Server::demo(&["--table-dir", table.to_str().unwrap()]);
    let c = client();
    let infer = |traceparent: &'static str| {
        c.post(s.url("/v2/models/fraud/infer"))
            .header("traceparent", traceparent)
            .header("tracestate", "vendor=opaque")
            .json(&body())
            .send()
    };

    let traced = infer(TRACEPARENT).await.unwrap();
    assert_eq!(traced.status(), 200);
    let answer = traced.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        answer.starts_with(&format!("00-{TRACE_ID}-")) && answer.ends_with("-01"),
        "{answer}"
    );
    assert_ne!(
        &answer[36..52],
        "00f067aa0ba902b7",
        "Podium's span has its own id"
    );
    assert_eq!(traced.headers()["tracestate"], "vendor=opaque");
    let traced_id = traced.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();

    let malformed = infer("00-00000000000000000000000000000000-00f067aa0ba902b7-01")
        .await
        .unwrap();
    assert_eq!(
        malformed.status(),
        200,
        "a malformed traceparent is no error"
    );
    assert!(malformed.headers().get("traceparent").is_none());
    assert!(malformed.headers().get("tracestate").is_none());
    let untraced_id = malformed.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();

    // gRPC metadata works the same.
    let mut grpc = GrpcInferenceServiceClient::connect(s.grpc.clone())
        .await
        .unwrap();
    let mut request = tonic::Request::new(common::fraud_grpc_request("fraud"));
    request
        .metadata_mut()
        .insert("traceparent", TRACEPARENT.parse().unwrap());
    let answer = grpc.model_infer(request).await.unwrap();
    let grpc_trace = answer
        .metadata()
        .get("traceparent")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        grpc_trace.starts_with(&format!("00-{TRACE_ID}-")),
        "{grpc_trace}"
    );

    s.terminate();
    s.wait_exit(Duration::from_secs(30));
    let rows = common::by_id(read_table(&table));
    assert_eq!(rows[&traced_id]["trace_id"], TRACE_ID);
    assert_eq!(rows[&untraced_id]["trace_id"], Value::Null);
    let grpc_rows = rows
        .values()
        .filter(|r| r["protocol"] == "grpc" && r["trace_id"] == TRACE_ID);
    assert_eq!(grpc_rows.count(), 1);
}
