//! Registry hygiene, over the wire and through the `podium` command: a new
//! version must match its champion's signature, versions can be deleted
//! and archived, every change lands once in the one history (whichever way
//! it was made), and rollback walks back through it.

mod common;

use common::{cli, cli_ok, client, eventually, fraud_request, model_file, Server};
use serde_json::{json, Value};
use std::time::Duration;

async fn history(s: &Server) -> Vec<Value> {
    s.get_json("/admin/history?model=fraud&limit=1000").await["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn has(events: &[Value], action: &str, by: &str, to: u64) -> bool {
    events
        .iter()
        .any(|e| e["action"] == action && e["by"] == by && e["to_version"] == to)
}

async fn infer_version(s: &Server, path: &str) -> (u16, Value) {
    s.post_json(path, &fraud_request(1)).await
}

#[tokio::test]
async fn a_new_version_must_match_the_champion_s_signature_unless_allowed() {
    let s = Server::demo(&[]);
    let mlp = model_file("mlp/v1.onnx");
    let mlp = mlp.to_str().unwrap();
    // The command names its own flag, and what differs.
    let (ok, _, stderr) = cli(&s.registry, &["models", "register", "fraud", mlp]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("has a different signature than version 1, which fraud@champion points at")
            && stderr.contains("output \"label\" is gone")
            && stderr.contains("--allow-signature-change"),
        "{stderr}"
    );
    // The admin API refuses the same upload with a 409 naming its field.
    let body = std::fs::read(model_file("mlp/v1.onnx")).unwrap();
    let resp = client()
        .post(s.url("/admin/models?name=fraud"))
        .header("content-type", "application/octet-stream")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    let error = resp.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("output \"label\" is gone") && error.contains("allow_signature_change=true"),
        "{error}"
    );
    assert_eq!(
        cli_ok(&s.registry, &["alias", "get", "fraud", "champion"]).trim(),
        "1"
    );
    // Allowed, each way registers it.
    let out = cli_ok(
        &s.registry,
        &[
            "models",
            "register",
            "fraud",
            mlp,
            "--allow-signature-change",
        ],
    );
    assert_eq!(out.trim(), "3");
    let resp = client()
        .post(s.url("/admin/models?name=fraud&allow_signature_change=true"))
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    // The same signature needs no flag; a file that is no ONNX model never gets in.
    let v1 = model_file("fraud/v1.onnx");
    assert_eq!(
        cli_ok(
            &s.registry,
            &["models", "register", "fraud", v1.to_str().unwrap()]
        )
        .trim(),
        "5"
    );
    let junk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(junk.path(), "a hostname\n").unwrap();
    let (ok, _, stderr) = cli(
        &s.registry,
        &["models", "register", "fraud", junk.path().to_str().unwrap()],
    );
    assert!(!ok && stderr.contains("is not an ONNX model"), "{stderr}");
    // Both ways wrote the registrations to the history, once each.
    let events = history(&s).await;
    for (by, version) in [("cli", 3), ("admin", 4), ("cli", 5)] {
        assert!(
            has(&events, "version_registered", by, version),
            "{by} v{version}: {events:?}"
        );
    }
    let registrations = events
        .iter()
        .filter(|e| e["action"] == "version_registered")
        .count();
    assert_eq!(registrations, 3, "{events:?}");
}

#[tokio::test]
async fn versions_are_deleted_and_archived_but_never_from_under_an_alias() {
    let s = Server::demo(&[]);
    let v1 = model_file("fraud/v1.onnx");
    assert_eq!(
        cli_ok(
            &s.registry,
            &["models", "register", "fraud", v1.to_str().unwrap()]
        )
        .trim(),
        "3"
    );
    // An alias points at 2 (challenger): refused, saying which.
    let (ok, _, stderr) = cli(&s.registry, &["models", "archive", "fraud", "2"]);
    assert!(
        !ok && stderr.contains("is what fraud@challenger points at"),
        "{stderr}"
    );
    let resp = client()
        .delete(s.url("/admin/models/fraud/versions/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    // `latest` is 3; archived, `latest` skips it.
    eventually(
        Duration::from_secs(20),
        "latest to be version 3",
        || async {
            let (status, v) = infer_version(&s, "/v2/models/fraud/versions/latest/infer").await;
            (status == 200 && v["model_version"] == "3").then_some(())
        },
    )
    .await;
    cli_ok(&s.registry, &["models", "archive", "fraud", "3"]);
    let listed = cli_ok(&s.registry, &["models", "list"]);
    assert!(
        listed.contains("fraud\tversions: 1,2\taliases: challenger=2,champion=1\tarchived: 3"),
        "{listed}"
    );
    eventually(
        Duration::from_secs(20),
        "latest to skip version 3",
        || async {
            let (status, v) = infer_version(&s, "/v2/models/fraud/versions/latest/infer").await;
            (status == 200 && v["model_version"] == "2").then_some(())
        },
    )
    .await;
    let (ok, _, stderr) = cli(&s.registry, &["alias", "set", "fraud", "champion", "3"]);
    assert!(
        !ok && stderr.contains("podium models unarchive fraud 3"),
        "{stderr}"
    );
    // Unarchived through the API, then deleted: its number is not reused.
    let resp = client()
        .post(s.url("/admin/models/fraud/versions/3/unarchive"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = client()
        .delete(s.url("/admin/models/fraud/versions/3"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let (status, v) = infer_version(&s, "/v2/models/fraud/versions/3/infer").await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(
        cli_ok(
            &s.registry,
            &["models", "register", "fraud", v1.to_str().unwrap()]
        )
        .trim(),
        "4"
    );
    let events = history(&s).await;
    for (action, by) in [
        ("version_archived", "cli"),
        ("version_unarchived", "admin"),
        ("version_deleted", "admin"),
    ] {
        assert!(has(&events, action, by, 3), "{action} by {by}: {events:?}");
    }
}

#[tokio::test]
async fn every_alias_move_is_in_the_history_and_rollback_walks_back_through_it() {
    let s = Server::demo(&[]);
    let v1 = model_file("fraud/v1.onnx");
    cli_ok(
        &s.registry,
        &["models", "register", "fraud", v1.to_str().unwrap()],
    );
    // 1 -> 2 by the CLI in the registry, 2 -> 3 through the admin API.
    cli_ok(&s.registry, &["alias", "set", "fraud", "champion", "2"]);
    eventually(Duration::from_secs(20), "the server to follow", || async {
        let (_, v) = infer_version(&s, "/v2/models/fraud/infer").await;
        (v["model_version"] == "2").then_some(())
    })
    .await;
    let resp = client()
        .put(s.url("/admin/models/fraud/aliases/champion"))
        .json(&json!({"version": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events = history(&s).await;
    assert!(has(&events, "alias_set", "cli", 2), "{events:?}");
    assert!(has(&events, "alias_set", "admin", 3), "{events:?}");
    assert!(has(&events, "swap", "registry", 2), "{events:?}");
    // Rollback: 3 -> 2 on the server, then 2 -> 1 by the CLI, then nothing.
    let rollback = || async {
        let resp = client()
            .post(s.url("/admin/models/fraud/aliases/champion/rollback"))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    };
    let (status, v) = rollback().await;
    assert_eq!(
        (status, &v["version"], &v["from_version"]),
        (200, &json!(2), &json!(3)),
        "{v}"
    );
    let (ok, _, stderr) = cli(&s.registry, &["alias", "rollback", "fraud", "champion"]);
    assert!(
        ok && stderr.contains("fraud@champion -> version 1 (rolled back from 2)"),
        "{stderr}"
    );
    eventually(Duration::from_secs(20), "the server to follow", || async {
        let (_, v) = infer_version(&s, "/v2/models/fraud/infer").await;
        (v["model_version"] == "1").then_some(())
    })
    .await;
    let (status, v) = rollback().await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("nothing further to roll back to"),
        "{v}"
    );
}

#[tokio::test]
async fn refusals_read_the_same_whichever_way_they_were_found() {
    let s = Server::demo(&[]);
    let mlp = model_file("mlp/v1.onnx");
    let out = cli_ok(
        &s.registry,
        &[
            "models",
            "register",
            "fraud",
            mlp.to_str().unwrap(),
            "--allow-signature-change",
        ],
    );
    assert_eq!(out.trim(), "3");
    // Through the admin API (via the CLI: its error names its own flag)…
    let (ok, _, stderr) = cli(
        &s.registry,
        &[
            "alias", "set", "fraud", "champion", "3", "--server", &s.base,
        ],
    );
    assert!(
        !ok && stderr.contains("--allow-signature-change"),
        "{stderr}"
    );
    assert!(!stderr.contains("\"allow_signature_change\""), "{stderr}");
    // …and found by polling.
    cli_ok(&s.registry, &["alias", "set", "fraud", "challenger", "3"]);
    eventually(
        Duration::from_secs(20),
        "two refusals in the history",
        || async {
            let refused: Vec<String> = history(&s)
                .await
                .into_iter()
                .filter(|e| {
                    e["action"] == "swap" && e["result"] == "refused" && e["to_version"] == 3
                })
                .map(|e| e["by"].as_str().unwrap_or_default().to_string())
                .collect();
            (refused == ["admin", "registry"]).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn the_apis_answer_alike() {
    let dir = tempfile::tempdir().unwrap();
    let reg = common::demo_registry(dir.path());
    let config = dir.path().join("podium.toml");
    std::fs::write(
        &config,
        "[[endpoint]]\nname = \"fraud-ab\"\nmodel = \"fraud\"\narms = [{ alias = \"champion\", weight = 50 }, { alias = \"challenger\", weight = 50 }]\n",
    )
    .unwrap();
    let s = Server::start(
        &reg,
        &[
            "--config",
            config.to_str().unwrap(),
            "--admin-token",
            "s3cret",
        ],
    );
    // A JSON body without a Content-Type is read as JSON.
    let resp = client()
        .post(s.url("/admin/models"))
        .bearer_auth("s3cret")
        .body(json!({"name": "fraud", "path": "fraud.onnx"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let error = resp.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("--admin-register-dir"), "{error}");
    // The CLI names its flag when the token is missing or wrong.
    for extra in [&[][..], &["--token", "nope"][..]] {
        let mut args = vec!["alias", "list", "fraud", "--server", s.base.as_str()];
        args.extend_from_slice(extra);
        let (ok, _, stderr) = cli(&reg, &args);
        assert!(
            !ok && stderr.contains("401") && stderr.contains("--token"),
            "{stderr}"
        );
    }
    // An unknown name lists the endpoints too.
    let (status, v) = s
        .post_json("/v2/models/nope/infer", &fraud_request(1))
        .await;
    assert_eq!(status, 404);
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("; endpoints: fraud-ab"), "{error}");
    // `v2` in a version segment is version 2.
    let (status, v) = s
        .post_json("/v2/models/fraud/versions/v2/infer", &fraud_request(1))
        .await;
    assert_eq!((status, &v["model_version"]), (200, &json!("2")), "{v}");
    // Several things served and no --default-endpoint: refused, naming them.
    let resp = client()
        .post(s.url("/invocations"))
        .json(&json!({"inputs": [common::FRAUD_ROW]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let message = resp.json::<Value>().await.unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("this server has alltypes, fixed, fraud-ab, mlp, typed"),
        "{message}"
    );
}
