//! Following aliases: swaps through the admin API and the registry
//! directory, refused versions, rollback, draining, the audit log, the
//! admin API's token and the CLI against a running server.

mod common;

use std::time::Duration;

use common::{cli, cli_ok, client, eventually, fraud_request, model_file, sample, slot, Server};
use serde_json::{json, Value};

async fn infer_version(s: &Server, model: &str, body: &Value) -> String {
    let (status, answer) = s
        .post_json(&format!("/v2/models/{model}/infer"), body)
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["model_version"]
        .as_str()
        .unwrap_or_else(|| panic!("no model_version in {answer}"))
        .to_string()
}

async fn put_alias(s: &Server, model: &str, alias: &str, body: Value) -> (u16, Value) {
    let resp = client()
        .put(s.url(&format!("/admin/models/{model}/aliases/{alias}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn admin_flip_swaps_at_once_and_rollback_reuses_the_warm_version() {
    let s = Server::demo(&[]);
    assert_eq!(infer_version(&s, "fraud", &fraud_request(1)).await, "1");

    let (status, outcome) = put_alias(&s, "fraud", "champion", json!({"version": 2})).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["swapped"], true);
    assert_eq!(outcome["from_version"], 1);
    assert_eq!(outcome["version"], 2);
    // The PUT returns once this server serves it: the next request is v2.
    assert_eq!(infer_version(&s, "fraud", &fraud_request(1)).await, "2");
    assert_eq!(
        cli_ok(&s.registry, &["alias", "get", "fraud", "champion"]).trim(),
        "2"
    );

    // Setting the same version again changes nothing.
    let (status, outcome) = put_alias(&s, "fraud", "champion", json!({"version": 2})).await;
    assert_eq!((status, outcome["swapped"].clone()), (200, json!(false)));

    // v1 was kept warm: the rollback reuses it (no load, no warm-up).
    let status = s.get_json("/admin/status").await;
    assert_eq!(
        slot(&status, "fraud", "champion")["previous_versions"],
        json!([1])
    );
    let resp = client()
        .post(s.url("/admin/models/fraud/aliases/champion/rollback"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let outcome: Value = resp.json().await.unwrap();
    assert_eq!(
        (outcome["version"].clone(), outcome["from_version"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(
        outcome["warm_ms"], 0.0,
        "a kept version is not warmed again: {outcome}"
    );
    assert_eq!(infer_version(&s, "fraud", &fraud_request(1)).await, "1");

    let resp = client()
        .post(s.url("/admin/models/ghost/aliases/champion/rollback"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "rollback of an unknown model");
    // Nothing further back is kept beyond --keep-previous (default 1): v2 now.
    let status = s.get_json("/admin/status").await;
    assert_eq!(
        slot(&status, "fraud", "champion")["previous_versions"],
        json!([2])
    );

    // The history tells the story, with who asked.
    let history = s.get_json("/admin/history?model=fraud").await;
    let events: Vec<(String, String, Option<u64>)> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().into(),
                e["by"].as_str().unwrap().into(),
                e["to_version"].as_u64(),
            )
        })
        .collect();
    let expect = |action: &str, by: &str, to: u64| {
        assert!(
            events.contains(&(action.to_string(), by.to_string(), Some(to))),
            "no {action} by {by} to v{to} in {events:?}"
        )
    };
    expect("swap", "registry", 1);
    expect("swap", "registry", 2);
    expect("alias_set", "admin", 2);
    expect("swap", "admin", 2);
    expect("alias_set", "admin:rollback", 1);
    expect("swap", "admin:rollback", 1);
}

#[tokio::test]
async fn a_version_that_fails_to_load_is_refused_and_the_old_one_keeps_serving() {
    let s = Server::demo(&[]);
    let dir = tempfile::tempdir().unwrap();
    let junk = common::unloadable_model(dir.path());
    assert_eq!(
        cli_ok(
            &s.registry,
            // Its signature differs too: allowed, so the load is what fails.
            &[
                "models",
                "register",
                "fraud",
                junk.to_str().unwrap(),
                "--allow-signature-change"
            ]
        )
        .trim(),
        "3"
    );

    // Through the admin API: refused before the registry is written.
    let (status, body) = put_alias(&s, "fraud", "champion", json!({"version": 3})).await;
    assert_eq!(status, 409, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.starts_with("refused to point fraud@champion at version 3: cannot load fraud v3"),
        "{msg}"
    );
    assert!(
        msg.ends_with("the alias is unchanged (still version 1)"),
        "{msg}"
    );
    assert_eq!(
        cli_ok(&s.registry, &["alias", "get", "fraud", "champion"]).trim(),
        "1"
    );

    // Directly in the registry: the server keeps serving v1 and says why.
    s.set_alias("fraud", "champion", 3);
    let status = eventually(
        Duration::from_secs(20),
        "the refusal to show in /admin/status",
        || async {
            let status = s.get_json("/admin/status").await;
            let slot = slot(&status, "fraud", "champion").clone();
            (slot["registry_version"] == 3 && !slot["last_error"].is_null()).then_some(slot)
        },
    )
    .await;
    assert_eq!(status["serving_version"], 1);
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("version 3 was refused: cannot load fraud v3"),
        "{status}"
    );
    assert_eq!(infer_version(&s, "fraud", &fraud_request(1)).await, "1");
    // Still ready: a failed swap never makes a ready server unready.
    assert_eq!(s.get_status("/v2/health/ready").await, 200);

    // Moving the alias on (to a good version) is followed again.
    s.set_alias("fraud", "champion", 2);
    eventually(Duration::from_secs(20), "champion to serve v2", || async {
        (infer_version(&s, "fraud", &fraud_request(1)).await == "2").then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_incompatible_signature_is_refused_unless_allowed() {
    let s = Server::demo(&[]);
    assert_eq!(s.register("fraud", "mlp/v1.onnx"), 3);
    let (status, body) = put_alias(&s, "fraud", "champion", json!({"version": 3})).await;
    assert_eq!(status, 409, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("its signature is incompatible with version 1 that fraud@champion serves: output \"label\" is gone"),
        "{msg}"
    );
    assert!(msg.contains("\"allow_signature_change\": true"), "{msg}");
    assert_eq!(infer_version(&s, "fraud", &fraud_request(1)).await, "1");
    let history = s.get_json("/admin/history?model=fraud").await;
    let refused = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "swap" && e["result"] == "refused")
        .unwrap();
    assert_eq!(refused["to_version"], json!(3));

    // The operator allows it: the alias now serves the MLP signature.
    let (status, body) = put_alias(
        &s,
        "fraud",
        "champion",
        json!({"version": 3, "allow_signature_change": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mlp_input = json!({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": vec![0.5f32; 64]}]});
    assert_eq!(infer_version(&s, "fraud", &mlp_input).await, "3");
}

#[tokio::test]
async fn in_flight_requests_finish_on_the_old_version_which_is_then_freed() {
    // --keep-previous 0: the old version is dropped once its requests finish.
    // One inference thread: request A (a huge batch: 131,072 rows, 33.5 MB,
    // long enough that the swap and the status read below happen while it
    // runs, even beside the other tests) runs while request B waits behind
    // it; both are bound to v1 before the swap.
    let s = Server::demo(&["--keep-previous", "0", "--inference-threads", "1"]);
    assert_eq!(s.register("mlp", "mlp/v1.onnx"), 2);
    let send = |rows: usize| {
        let raw: Vec<u8> = (0..rows * 64)
            .flat_map(|i| ((i % 5) as f32).to_le_bytes())
            .collect();
        let header = serde_json::to_vec(&json!({
            "inputs": [{"name": "input", "shape": [rows, 64], "datatype": "FP32", "parameters": {"binary_data_size": raw.len()}}],
            "outputs": [{"name": "logits", "parameters": {"binary_data": true}}]
        }))
        .unwrap();
        let n = header.len().to_string();
        let (url, body) = (s.url("/v2/models/mlp/infer"), [header, raw].concat());
        tokio::spawn(async move {
            let resp = client()
                .post(url)
                .header("inference-header-content-length", n)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.headers()["x-podium-model-version"]
                .to_str()
                .unwrap()
                .to_string()
        })
    };
    let in_flight_on_v1 = |n: u64| {
        let s = &s;
        async move {
            eventually(
                Duration::from_secs(30),
                "requests in flight on mlp v1",
                || async {
                    let status = s.get_json("/admin/status").await;
                    (slot(&status, "mlp", "champion")["in_flight"]
                        .as_u64()
                        .unwrap()
                        == n)
                        .then_some(())
                },
            )
            .await
        }
    };
    let a = send(131_072);
    in_flight_on_v1(1).await;
    let b = send(1);
    in_flight_on_v1(2).await;

    let (status, body) = put_alias(&s, "mlp", "champion", json!({"version": 2})).await;
    assert_eq!(status, 200, "{body}");
    let status = s.get_json("/admin/status").await;
    let draining = status["draining"].as_array().unwrap();
    assert!(
        draining
            .iter()
            .any(|d| d["model"] == "mlp" && d["version"] == 1 && d["in_flight"] == 2),
        "v1 should be draining with 2 requests: {status}"
    );
    assert!(!status["resident"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["model"] == "mlp" && r["version"] == 1));
    let mlp_input = json!({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": vec![0.5f32; 64]}]});
    assert_eq!(
        infer_version(&s, "mlp", &mlp_input).await,
        "2",
        "new requests go to v2 at once"
    );
    // Requests bound before the swap answer from v1…
    assert_eq!(a.await.unwrap(), "1");
    assert_eq!(b.await.unwrap(), "1");
    // …and once they have finished, v1 is freed.
    let status = s.get_json("/admin/status").await;
    assert!(
        !status["draining"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["model"] == "mlp"),
        "{status}"
    );
}

#[tokio::test]
async fn the_admin_api_needs_the_token_when_one_is_set() {
    let s = Server::demo(&["--admin-token", "s3cret"]);
    let c = client();
    for (method, path) in [
        ("GET", "/admin/status"),
        ("GET", "/admin/history"),
        ("PUT", "/admin/models/fraud/aliases/champion"),
        ("POST", "/admin/models/fraud/aliases/champion/rollback"),
        ("DELETE", "/admin/models/fraud/aliases/challenger"),
        ("POST", "/admin/models?name=fraud"),
    ] {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("s3cret"),
            Some("Basic s3cret"),
        ] {
            let mut req = c
                .request(method.parse().unwrap(), s.url(path))
                .body("{\"version\": 2}");
            if let Some(auth) = auth {
                req = req.header("authorization", auth);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{method} {path} with {auth:?}");
            assert_eq!(
                resp.json::<Value>().await.unwrap(),
                json!({"error": "unauthorized"})
            );
        }
    }
    let resp = c
        .get(s.url("/admin/status"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Nothing changed: the challenger is still there.
    assert_eq!(
        cli_ok(&s.registry, &["alias", "get", "fraud", "challenger"]).trim(),
        "2"
    );

    // The CLI against the server, with and without the token.
    let server = s.base.as_str();
    let (ok, _, stderr) = cli(
        &s.registry,
        &[
            "alias", "set", "fraud", "champion", "2", "--server", server, "--token", "nope",
        ],
    );
    assert!(!ok && stderr.contains("401"), "{stderr}");
    let (ok, _, stderr) = cli(
        &s.registry,
        &[
            "alias", "set", "fraud", "champion", "2", "--server", server, "--token", "s3cret",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("fraud@champion -> version 2 (was 1;"),
        "{stderr}"
    );
    let (ok, stdout, _) = cli(
        &s.registry,
        &[
            "alias", "list", "fraud", "--server", server, "--token", "s3cret",
        ],
    );
    assert!(ok);
    assert_eq!(stdout, "challenger\t2\tserving 2\nchampion\t2\tserving 2\n");
    let (ok, _, stderr) = cli(
        &s.registry,
        &[
            "alias", "rollback", "fraud", "champion", "--server", server, "--token", "s3cret",
        ],
    );
    assert!(
        ok && stderr.contains("fraud@champion -> version 1 (was 2;"),
        "{stderr}"
    );
    // Without --server the CLI walks the same history (beside the
    // registry): the only move, 1 -> 2, was rolled back already.
    let (ok, _, stderr) = cli(&s.registry, &["alias", "rollback", "fraud", "champion"]);
    assert!(
        !ok && stderr.contains("nothing further to roll back to"),
        "{stderr}"
    );
}

#[tokio::test]
async fn without_a_token_the_admin_api_is_loopback_only() {
    // Listening on all interfaces without a token: the admin API is not mounted.
    let dir = tempfile::tempdir().unwrap();
    let reg = common::demo_registry(dir.path());
    let s = Server::start(&reg, &["--listen", "0.0.0.0:0"]);
    let port = s.base.rsplit(':').next().unwrap();
    let resp = client()
        .get(format!("http://127.0.0.1:{port}/admin/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = client()
        .get(format!("http://127.0.0.1:{port}/v2/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn versions_are_registered_by_upload_or_server_path() {
    // Registering by server path needs a directory that allows it.
    let models = model_file("");
    let s = Server::demo(&["--admin-register-dir", models.to_str().unwrap()]);
    let bytes = std::fs::read(model_file("fraud/v2.onnx")).unwrap();
    let resp = client()
        .post(s.url("/admin/models?name=fraud"))
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"model": "fraud", "version": 3})
    );
    let path = model_file("fraud/v1.onnx");
    let resp = client()
        .post(s.url("/admin/models"))
        .json(&json!({"name": "fraud", "path": path}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.json::<Value>().await.unwrap()["version"], 4);
    let (status, body) = put_alias(&s, "fraud", "champion", json!({"version": 3})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(infer_version(&s, "fraud", &fraud_request(1)).await, "3");
    for (path, body, want) in [
        ("/admin/models", Vec::new(), "name the model"),
        ("/admin/models?name=fraud", Vec::new(), "the body is empty"),
        (
            "/admin/models?name=../x",
            b"x".to_vec(),
            "invalid model name",
        ),
    ] {
        let resp = client().post(s.url(path)).body(body).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        let msg = resp.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains(want), "{path}: {msg}");
    }
}

#[tokio::test]
async fn the_memory_limit_refuses_a_version_that_would_not_fit() {
    // fraud (~29 KB) and the fixtures fit in 100 KB; the MLP (~340 KB of
    // weights, estimated at twice that: as read and pre-packed) does not.
    let s = Server::demo(&["--inference-threads", "1", "--memory-limit", "100K"]);
    let status = s.get_json("/admin/status").await;
    let mlp = slot(&status, "mlp", "champion");
    assert!(mlp["serving_version"].is_null());
    let why = mlp["last_error"].as_str().unwrap();
    assert!(
        why.contains("loading mlp v1 needs about 0.7 MB")
            && why.contains("over --memory-limit 0.1 MB"),
        "{why}"
    );
    assert_eq!(infer_version(&s, "fraud", &fraud_request(1)).await, "1");
    let resp = client()
        .get(s.url("/v2/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
}

#[tokio::test]
async fn metrics_count_swaps_and_show_what_serves() {
    let s = Server::demo(&[]);
    assert_eq!(s.register("fraud", "mlp/v1.onnx"), 3);
    let (status, _) = put_alias(&s, "fraud", "champion", json!({"version": 2})).await;
    assert_eq!(status, 200);
    let (status, _) = put_alias(&s, "fraud", "champion", json!({"version": 3})).await;
    assert_eq!(status, 409);
    let resp = client().get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let m = resp.text().await.unwrap();
    let champion = [("model", "fraud"), ("alias", "champion")];
    // Start-up (nothing -> v1) and the admin flip (v1 -> v2) swapped; v3 was refused.
    assert_eq!(
        sample(
            &m,
            "podium_swaps_total",
            &[champion[0], champion[1], ("result", "ok")]
        ),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "podium_swaps_total",
            &[champion[0], champion[1], ("result", "refused")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "podium_serving_version", &champion),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "podium_serving_version",
            &[("model", "fraud"), ("alias", "challenger")]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            "podium_in_flight_requests",
            &[("model", "fraud"), ("version", "2")]
        ),
        Some(0.0)
    );
    // fraud v1 (kept for rollback), fraud v2, mlp, alltypes, typed, fixed.
    assert_eq!(
        sample(&m, "podium_versions", &[("state", "resident")]),
        Some(6.0),
        "{m}"
    );
    assert!(m.contains("podium_swap_step_seconds"), "{m}");
}

#[tokio::test]
async fn a_refused_target_is_retried_after_the_alias_moves_and_when_allowed() {
    let s = Server::demo(&[]);
    assert_eq!(s.register("fraud", "mlp/v1.onnx"), 3);
    let slot_of = |status: &Value| slot(status, "fraud", "champion").clone();
    // A registry move to an incompatible version is refused…
    s.set_alias("fraud", "champion", 3);
    eventually(Duration::from_secs(20), "the refusal", || async {
        let slot = slot_of(&s.get_json("/admin/status").await);
        slot["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("incompatible"))
            .then_some(())
    })
    .await;
    // …moving the alias back clears the stale error…
    s.set_alias("fraud", "champion", 1);
    eventually(Duration::from_secs(20), "the error to clear", || async {
        let slot = slot_of(&s.get_json("/admin/status").await);
        (slot["registry_version"] == 1 && slot["last_error"].is_null()).then_some(())
    })
    .await;
    // …and moving it again tries again (a second refusal in the history).
    s.set_alias("fraud", "champion", 3);
    eventually(Duration::from_secs(20), "a second attempt", || async {
        let history = s.get_json("/admin/history?model=fraud").await;
        let attempts = history["events"]
            .as_array()?
            .iter()
            .filter(|e| e["action"] == "swap" && e["to_version"] == 3 && e["result"] == "refused")
            .count();
        (attempts == 2).then_some(())
    })
    .await;
    assert_eq!(infer_version(&s, "fraud", &fraud_request(1)).await, "1");
    // The operator allows the change: it is made, not answered with a 500.
    let (status, body) = put_alias(
        &s,
        "fraud",
        "champion",
        json!({"version": 3, "allow_signature_change": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["swapped"], true);
    let mlp_input = json!({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": vec![0.5f32; 64]}]});
    assert_eq!(infer_version(&s, "fraud", &mlp_input).await, "3");
    assert!(slot_of(&s.get_json("/admin/status").await)["last_error"].is_null());
}

#[tokio::test]
async fn one_unreadable_model_does_not_stop_the_others_from_following() {
    let s = Server::demo(&[]);
    assert_eq!(s.register("mlp", "mlp/v1.onnx"), 2);
    // typed's alias file is damaged (say, a half-finished hand edit).
    std::fs::write(
        s.registry.join("typed").join("aliases.json"),
        "{\"champion\": 1,",
    )
    .unwrap();
    s.set_alias("mlp", "champion", 2);
    let mlp_input = json!({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": vec![0.5f32; 64]}]});
    eventually(
        Duration::from_secs(20),
        "mlp to follow its alias",
        || async { (infer_version(&s, "mlp", &mlp_input).await == "2").then_some(()) },
    )
    .await;
    let status = s.get_json("/admin/status").await;
    let typed = slot(&status, "typed", "champion");
    assert_eq!(typed["serving_version"], 1, "typed keeps serving: {typed}");
    assert!(
        typed["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot read the registry entry"),
        "{typed}"
    );
    // Still ready: typed serves what it served.
    assert_eq!(s.get_status("/v2/health/ready").await, 200);
}

#[tokio::test]
async fn a_version_first_loaded_by_number_is_warmed_before_an_alias_serves_it() {
    let s = Server::demo(&[]);
    assert_eq!(s.register("fraud", "fraud/v2.onnx"), 3);
    // A client names v3 by number (once the server has seen it): it is
    // loaded for that request, not warmed.
    eventually(
        Duration::from_secs(20),
        "v3 to be servable by number",
        || async {
            let resp = client()
                .post(s.url("/v2/models/fraud/versions/3/infer"))
                .json(&fraud_request(1))
                .send()
                .await
                .ok()?;
            (resp.status() == 200).then_some(())
        },
    )
    .await;
    let (status, body) = put_alias(&s, "fraud", "champion", json!({"version": 3})).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["warm_ms"].as_f64().unwrap() > 0.0,
        "moving an alias to it must warm it up: {body}"
    );
}
