//! Registry drift and links out of the registry, over the wire: a serving
//! version's file edited on disk keeps answering from memory and is
//! reported in status, metrics and the alias history; it is not swapped
//! back in; a version linked out of the registry root is refused.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    client, demo_registry, eventually, fraud_request, model_file, output_numbers, slot, Server,
    FRAUD_V1_PROBABILITIES,
};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(30);

/// The probabilities and version of one fraud request to `fraud`.
async fn infer(s: &Server) -> (Vec<f64>, String) {
    let resp = client()
        .post(s.url("/v2/models/fraud/infer"))
        .json(&fraud_request(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let version = resp.headers()["x-podium-model-version"]
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = resp.json().await.unwrap();
    let data = output_numbers(&body, "probabilities");
    (data, version)
}

/// Waits until `fraud@alias`'s slot in `/admin/status` passes `check`.
async fn slot_until(s: &Server, alias: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually(DEADLINE, what, || async {
        let status = s.admin_status().await;
        let found = slot(&status, "fraud", alias).clone();
        check(&found).then_some(found)
    })
    .await
}

fn v1_file(registry: &Path) -> std::path::PathBuf {
    registry.join("fraud/versions/1/model.onnx")
}

#[tokio::test]
async fn a_model_file_edited_on_disk_keeps_serving_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let registry = demo_registry(dir.path());
    let s = Server::start(&registry, &[]);
    let (before, version) = infer(&s).await;
    assert_eq!(version, "1");
    let original = std::fs::read(v1_file(&registry)).unwrap();

    std::fs::copy(model_file("fraud/v2.onnx"), v1_file(&registry)).unwrap();
    let champion = slot_until(&s, "champion", "drift reported", |slot| {
        slot["state"] == "drifted"
    })
    .await;
    let drift = champion["drift"].as_str().unwrap_or_default();
    assert!(
        drift.starts_with("model.onnx changed on disk since version 1 was loaded (sha256 ")
            && drift.ends_with(
                "; still serving the loaded copy; register a new version instead of editing one"
            ),
        "{drift}"
    );
    assert_eq!(champion["serving_version"], 1);
    assert_eq!(
        s.metric(
            "podium_registry_drift",
            &[("model", "fraud"), ("alias", "champion")]
        )
        .await,
        Some(1.0)
    );
    assert_eq!(s.get_status("/v2/health/ready").await, 200);
    // Requests still get version 1, as loaded, not the new file.
    let (after, version) = infer(&s).await;
    assert_eq!((after, version), (before.clone(), "1".to_string()));
    let close = |p: &[f64]| (p[0] - f64::from(FRAUD_V1_PROBABILITIES[0])).abs() < 1e-5;
    assert!(close(&before), "{before:?}");
    let history = s.get_json("/admin/history?model=fraud").await;
    let drifts: Vec<&Value> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "drift")
        .collect();
    // One event per change seen (a poll may also catch the copy half done).
    assert!(!drifts.is_empty(), "{history}");
    for event in drifts {
        assert_eq!(
            (&event["alias"], &event["to_version"], &event["result"]),
            (&json!("champion"), &json!(1), &json!("failed"))
        );
    }

    // Moved off it, version 1 is kept for rollback, but not swapped back in.
    let c = client();
    let moved = c
        .put(s.url("/admin/models/fraud/aliases/champion"))
        .json(&json!({"version": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200);
    let back = c
        .post(s.url("/admin/models/fraud/aliases/champion/rollback"))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 409);
    let why: Value = back.json().await.unwrap();
    let why = why["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("model.onnx changed on disk since version 1 was loaded")
            && why.contains("the alias is unchanged (still version 2)"),
        "{why}"
    );

    // The file back as it was: no more drift.
    std::fs::write(v1_file(&registry), &original).unwrap();
    let champion = slot_until(&s, "champion", "drift cleared", |slot| {
        slot["drift"].is_null()
    })
    .await;
    assert_eq!(champion["state"], "serving");
    assert_eq!(
        s.metric(
            "podium_registry_drift",
            &[("model", "fraud"), ("alias", "champion")]
        )
        .await,
        Some(0.0)
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_version_linked_out_of_the_registry_is_refused_and_links_inside_work() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let registry = demo_registry(dir.path());
    let s = Server::start(&registry, &[]);
    let versions = registry.join("fraud/versions");
    // Version 3 is a directory outside the registry, linked in.
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::copy(model_file("fraud/v2.onnx"), outside.join("model.onnx")).unwrap();
    symlink(&outside, versions.join("3")).unwrap();
    // Version 4 links to version 2, inside the registry.
    symlink(versions.join("2"), versions.join("4")).unwrap();
    common::set_alias(&registry, "fraud", "challenger", 3);
    common::set_alias(&registry, "fraud", "canary", 4);

    let challenger = slot_until(&s, "challenger", "the link refused", |slot| {
        slot["state"] == "refused"
    })
    .await;
    let why = challenger["last_error"].as_str().unwrap_or_default();
    let target = std::fs::canonicalize(&outside).unwrap();
    assert!(
        why.starts_with(&format!(
            "version 3 was refused: {} is a symbolic link to {}, outside the registry root",
            versions.join("3").display(),
            target.display()
        )) && why.ends_with("; still serving version 2"),
        "{why}"
    );
    assert_eq!(challenger["serving_version"], 2);
    let canary = slot_until(&s, "canary", "the inside link served", |slot| {
        slot["state"] == "serving"
    })
    .await;
    assert_eq!(canary["serving_version"], 4);
}
