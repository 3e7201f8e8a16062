//! What an operator gets wrong, answered over the wire with what to do: a
//! non-ASCII alias, a shadow that could never run, a hand-edited
//! `aliases.json` with a bad name or a missing version.

mod common;

use std::time::Duration;

use common::{client, eventually, model_file, slot, Server};
use serde_json::{json, Value};

async fn error_of(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn a_non_ascii_alias_is_refused_with_400() {
    let s = Server::demo(&[]);
    let resp = client()
        .put(s.url("/admin/models/fraud/aliases/champiön"))
        .json(&json!({"version": 2}))
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(resp).await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error.starts_with("invalid alias \"champiön\": use only ASCII letters, digits"),
        "{error}"
    );
}

#[tokio::test]
async fn a_shadow_with_no_room_for_a_call_is_refused() {
    let config = model_file("demo-endpoints.toml");
    let s = Server::demo(&["--config", config.to_str().unwrap()]);
    let resp = client()
        .put(s.url("/admin/endpoints/fraud-ab/traffic"))
        .json(&json!({
            "arms": [{"alias": "champion", "weight": 1}],
            "shadow": {"alias": "challenger", "fraction": 0.5, "max_in_flight": 0}
        }))
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(resp).await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error
            .contains("shadow max_in_flight is 0, so no copy to \"challenger\" could ever be sent"),
        "{error}"
    );
}

#[tokio::test]
async fn hand_edited_alias_files_are_named_and_explained() {
    let s = Server::demo(&[]);
    // A name `podium alias set` would refuse, and a version with no file.
    let mlp = s.registry.join("mlp/aliases.json");
    std::fs::write(&mlp, r#"{"champion": 1, "blue green": 1}"#).unwrap();
    let typed = s.registry.join("typed/aliases.json");
    std::fs::write(&typed, r#"{"champion": 1, "next": 5}"#).unwrap();

    let status = eventually(Duration::from_secs(30), "both files read", || async {
        let status = s.admin_status().await;
        let read = slot(&status, "mlp", "champion")["last_error"].is_string()
            && status["slots"].as_array().is_some_and(|slots| {
                slots
                    .iter()
                    .any(|s| s["model"] == "typed" && s["alias"] == "next")
            });
        read.then_some(status)
    })
    .await;
    let mlp_error = slot(&status, "mlp", "champion")["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        mlp_error.contains(&format!("{}: invalid alias \"blue green\"", mlp.display())),
        "{mlp_error}"
    );
    // What it served, it keeps serving.
    assert_eq!(slot(&status, "mlp", "champion")["serving_version"], 1);
    let next = slot(&status, "typed", "next");
    assert_eq!(next["state"], "waiting");
    let why = next["last_error"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("aliases.json points at version 5, which has no model file (")
            && why.contains("typed/versions/5/model.onnx is missing")
            && !why.contains("READY"),
        "{why}"
    );
}
