//! API keys, named admin tokens and the audit log, against the real server:
//! 401/403/429 on REST and gRPC, probes and metrics open, the key's name in
//! the inference table, the keys file re-read (and a broken one refused),
//! `podium keys new`, and admin calls named in the history and the audit log.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    cli, cli_ok, client, eventually, fraud_grpc_request, fraud_request, read_table, Server,
};
use podium::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use podium::api::grpc::proto::{
    ModelMetadataRequest, ModelReadyRequest, ServerLiveRequest, ServerReadyRequest,
};
use podium::auth::file::sha256_hex;
use serde_json::{json, Value};
use tonic::transport::Channel;
use tonic::Code;

fn key_entry(name: &str, key: &str, extra: &str) -> String {
    format!(
        "[[key]]\nname = \"{name}\"\nsha256 = \"{}\"\n{extra}\n",
        sha256_hex(key)
    )
}

/// `POST path` with a fraud row and these headers: the status, headers and JSON body.
async fn call(
    s: &Server,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = client().post(s.url(path)).json(&fraud_request(1));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

fn error(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {body}"))
}

#[tokio::test]
async fn rest_calls_need_a_known_key_allowed_for_the_endpoint_and_within_its_rate() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(
        &keys,
        key_entry("checkout", "pk_checkout", "endpoints = [\"fraud\"]")
            + &key_entry("ops", "pk_ops", "")
            + &key_entry("limited", "pk_limited", "rate = 1\nburst = 2"),
    )
    .unwrap();
    let table = dir.path().join("table");
    let s = Server::demo(&[
        "--api-keys",
        keys.to_str().unwrap(),
        "--default-endpoint",
        "fraud",
        "--table-dir",
        table.to_str().unwrap(),
        "--table-roll-secs",
        "0.2",
    ]);
    let infer = "/v2/models/fraud/infer";

    // No key, or one the file does not hold: 401, with the OIP body and the scheme.
    let (status, headers, body) = call(&s, infer, &[]).await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert!(error(&body).contains("Authorization: Bearer KEY"), "{body}");
    let (status, _, body) = call(&s, infer, &[("authorization", "Bearer pk_nope")]).await;
    assert_eq!(status, 401);
    assert!(error(&body).contains("unknown API key"), "{body}");
    assert!(
        !error(&body).contains("pk_nope"),
        "the key is not echoed: {body}"
    );

    // Either header works, on every route that runs or describes a model.
    let mut answered = Vec::new();
    for (path, header) in [
        (infer, ("authorization", "Bearer pk_checkout")),
        (
            "/v2/models/fraud/versions/2/infer",
            ("x-api-key", "pk_checkout"),
        ),
        ("/invocations", ("x-api-key", "pk_ops")),
        (
            "/serving-endpoints/fraud/invocations",
            ("x-api-key", "pk_ops"),
        ),
    ] {
        let body = if path.ends_with("invocations") {
            json!({"inputs": [common::FRAUD_ROW]})
        } else {
            fraud_request(1)
        };
        let resp = client()
            .post(s.url(path))
            .header(header.0, header.1)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}: {}", resp.text().await.unwrap());
        answered.push(resp.headers()["x-request-id"].to_str().unwrap().to_string());
    }
    for path in [
        "/v2/models/fraud",
        "/v2/models/fraud/ready",
        "/v2/models/fraud/versions/1",
    ] {
        assert_eq!(s.get_status(path).await, 401, "{path}");
        let resp = client()
            .get(s.url(path))
            .header("x-api-key", "pk_checkout")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    let (status, _, _) = call(&s, "/invocations", &[]).await;
    assert_eq!(status, 401);

    // Probes, scrapers and server metadata stay open.
    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/ping",
        "/health",
        "/v2",
        "/version",
        "/metrics",
    ] {
        assert_eq!(s.get_status(path).await, 200, "{path}");
    }

    // A key limited to fraud may not call mlp: 403 naming both.
    let (status, _, body) = call(&s, "/v2/models/mlp/infer", &[("x-api-key", "pk_checkout")]).await;
    assert_eq!(status, 403);
    assert_eq!(
        error(&body),
        "API key \"checkout\" may not call \"mlp\"; it may call fraud"
    );

    // rate = 1, burst = 2: five quick calls run out of tokens.
    let mut limited = Vec::new();
    for _ in 0..5 {
        let (status, headers, body) = call(&s, infer, &[("x-api-key", "pk_limited")]).await;
        limited.push(status);
        if status == 429 {
            let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(retry >= 1, "Retry-After {retry}");
            assert!(
                error(&body).contains("\"limited\" is over its rate limit"),
                "{body}"
            );
        }
    }
    assert_eq!(&limited[..2], [200, 200], "{limited:?}");
    assert!(limited.contains(&429), "{limited:?}");

    // Counted by key and outcome, and failures by reason.
    let metrics = s.metrics().await;
    let count =
        |name: &str, labels: &[(&str, &str)]| common::sample(&metrics, name, labels).unwrap_or(0.0);
    assert_eq!(
        count("podium_auth_failures_total", &[("reason", "missing")]),
        5.0
    );
    assert_eq!(
        count("podium_auth_failures_total", &[("reason", "unknown")]),
        1.0
    );
    assert_eq!(
        count(
            "podium_api_key_requests_total",
            &[("key", "checkout"), ("outcome", "forbidden")]
        ),
        1.0
    );
    assert_eq!(
        count(
            "podium_api_key_requests_total",
            &[("key", "checkout"), ("outcome", "allowed")]
        ),
        5.0
    );
    assert!(
        count(
            "podium_api_key_requests_total",
            &[("key", "limited"), ("outcome", "rate_limited")]
        ) >= 1.0
    );

    // The table names the key of each answered call; refused calls leave no row.
    let expected = answered.len() + limited.iter().filter(|&&s| s == 200).count();
    let rows = eventually(Duration::from_secs(20), "the table rows", || {
        let rows = read_table(&table);
        async move { (rows.len() >= expected).then_some(rows) }
    })
    .await;
    assert_eq!(rows.len(), expected, "refused calls have no row");
    let requester = |id: &str| {
        rows.iter()
            .find(|r| r["request_id"] == id)
            .map(|r| r["requester"].clone())
            .unwrap_or_else(|| panic!("no row for {id}"))
    };
    assert_eq!(requester(&answered[0]), "checkout");
    assert_eq!(requester(&answered[1]), "checkout");
    assert_eq!(requester(&answered[2]), "ops");
    assert_eq!(requester(&answered[3]), "ops");
    assert_eq!(
        rows.iter().filter(|r| r["requester"] == "limited").count(),
        limited.iter().filter(|&&status| status == 200).count()
    );
}

async fn connect(s: &Server) -> GrpcInferenceServiceClient<Channel> {
    GrpcInferenceServiceClient::connect(s.grpc.clone())
        .await
        .expect("connect to gRPC")
}

/// A request carrying `metadata`.
fn with<T>(message: T, metadata: &[(&'static str, &str)]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    for (k, v) in metadata {
        request.metadata_mut().insert(*k, v.parse().unwrap());
    }
    request
}

#[tokio::test]
async fn grpc_calls_need_a_key_too() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(
        &keys,
        key_entry(
            "checkout",
            "pk_checkout",
            "endpoints = [\"fraud\"]\nrate = 1\nburst = 2",
        ),
    )
    .unwrap();
    let s = Server::demo(&["--api-keys", keys.to_str().unwrap()]);
    let mut c = connect(&s).await;

    fn code<T>(r: Result<T, tonic::Status>) -> Code {
        r.map(|_| ()).unwrap_err().code()
    }
    assert_eq!(
        code(c.model_infer(fraud_grpc_request("fraud")).await),
        Code::Unauthenticated
    );
    let status = c
        .model_infer(with(
            fraud_grpc_request("fraud"),
            &[("x-api-key", "pk_nope")],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("unknown API key"), "{status:?}");
    let status = c
        .model_infer(with(
            fraud_grpc_request("mlp"),
            &[("x-api-key", "pk_checkout")],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status
            .message()
            .contains("\"checkout\" may not call \"mlp\""),
        "{status:?}"
    );

    // Metadata and readiness of a model need the key; the server's do not.
    let meta = ModelMetadataRequest {
        name: "fraud".into(),
        version: String::new(),
    };
    assert_eq!(
        code(c.model_metadata(meta.clone()).await),
        Code::Unauthenticated
    );
    let ready = ModelReadyRequest {
        name: "fraud".into(),
        version: String::new(),
    };
    assert_eq!(
        code(c.model_ready(ready.clone()).await),
        Code::Unauthenticated
    );
    assert!(
        c.server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    c.server_ready(ServerReadyRequest {}).await.unwrap();
    let channel = Channel::from_shared(s.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("grpc.health.v1 stays open");

    // A stream without a key is refused as a whole.
    let stream = futures_util::stream::iter([fraud_grpc_request("fraud")]);
    assert_eq!(
        code(c.model_stream_infer(stream).await),
        Code::Unauthenticated
    );

    // With the key (as a bearer token): answered, until the bucket is empty.
    let bearer = [("authorization", "Bearer pk_checkout")];
    c.model_metadata(with(meta, &bearer)).await.unwrap();
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(
            match c
                .model_infer(with(fraud_grpc_request("fraud"), &bearer))
                .await
            {
                Ok(_) => Code::Ok,
                Err(status) => status.code(),
            },
        );
    }
    assert_eq!(&codes[..1], [Code::Ok], "{codes:?}");
    assert!(codes.contains(&Code::ResourceExhausted), "{codes:?}");
}

/// `podium keys new NAME ARGS…`: the key (first line) and the TOML entry.
fn new_key(registry: &Path, name: &str, args: &[&str]) -> (String, String) {
    let out = cli_ok(registry, &[&["keys", "new", name], args].concat());
    let (key, entry) = out.split_once('\n').expect("a key line, then the entry");
    (key.trim().to_string(), entry.trim().to_string() + "\n")
}

#[tokio::test]
async fn the_keys_file_is_reread_and_a_broken_one_keeps_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let registry = common::demo_registry(dir.path());
    let (old_key, old_entry) = new_key(&registry, "old", &["--rate", "100"]);
    assert!(old_key.starts_with("pk_"), "{old_key}");
    assert!(
        old_entry.starts_with("[[key]]\nname = \"old\"\n"),
        "{old_entry}"
    );
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, &old_entry).unwrap();
    let s = Server::start(&registry, &["--api-keys", keys.to_str().unwrap()]);
    let infer = "/v2/models/fraud/infer";
    let status = |key: String| {
        let s = &s;
        async move { call(s, infer, &[("x-api-key", &key)]).await.0 }
    };
    assert_eq!(
        status(old_key.clone()).await,
        200,
        "a key from `podium keys new` works"
    );

    // Replace the old key with a new one: no restart.
    let (new_key, new_entry) = new_key(&registry, "new", &[]);
    std::fs::write(&keys, &new_entry).unwrap();
    eventually(Duration::from_secs(20), "the new key to work", || {
        let key = new_key.clone();
        let status = &status;
        async move { (status(key).await == 200).then_some(()) }
    })
    .await;
    assert_eq!(
        status(old_key.clone()).await,
        401,
        "the removed key is refused"
    );

    // A broken file is logged and counted; the keys read before stay.
    std::fs::write(&keys, new_entry.replace("sha256 = \"", "sha256 = \"zz")).unwrap();
    eventually(
        Duration::from_secs(20),
        "the reload error to be counted",
        || async {
            s.metric("podium_api_keys_reload_errors_total", &[])
                .await
                .filter(|&n| n >= 1.0)
        },
    )
    .await;
    assert_eq!(status(new_key.clone()).await, 200);
    assert_eq!(status(old_key).await, 401);
}

#[test]
fn a_broken_keys_file_stops_start_up_naming_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let registry = common::demo_registry(dir.path());
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, key_entry("a", "k1", "") + &key_entry("a", "k2", "")).unwrap();
    let (ok, _, stderr) = cli(
        &registry,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
            "--api-keys",
            keys.to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains("--api-keys: ")
            && stderr.contains("keys.toml: [[key]] #2 (line 5): the name \"a\" is already used"),
        "{stderr}"
    );
}

/// `PUT /admin/models/fraud/aliases/champion` to `version` with `token`.
async fn set_champion(s: &Server, token: &str, version: u64) -> u16 {
    client()
        .put(s.url("/admin/models/fraud/aliases/champion"))
        .bearer_auth(token)
        .json(&json!({ "version": version }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn admin_calls_are_audited_and_named_in_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let registry = common::demo_registry(dir.path());
    let (alice, entry) = new_key(&registry, "ops-alice", &["--admin"]);
    assert!(
        alice.starts_with("pa_") && entry.starts_with("[[token]]"),
        "{entry}"
    );
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, &entry).unwrap();
    let s = Server::start(
        &registry,
        &[
            "--admin-token",
            "s3cret",
            "--admin-tokens",
            tokens.to_str().unwrap(),
        ],
    );

    assert_eq!(set_champion(&s, "wrong", 2).await, 401);
    assert_eq!(set_champion(&s, &alice, 2).await, 200);
    assert_eq!(set_champion(&s, "s3cret", 1).await, 200);

    let get = |path: &'static str, token: &'static str| {
        let s = &s;
        async move {
            let resp = client()
                .get(s.url(path))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            resp.json::<Value>().await.unwrap()
        }
    };
    let history = get("/admin/history?model=fraud", "s3cret").await;
    let sets: Vec<(&str, u64)> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "alias_set")
        .map(|e| (e["by"].as_str().unwrap(), e["to_version"].as_u64().unwrap()))
        .collect();
    assert_eq!(sets, [("admin:ops-alice", 2), ("admin", 1)]);

    // Every call, refused ones too, with the token's name and the client.
    let audit = get("/admin/audit?limit=10", "s3cret").await;
    let entries: Vec<(Value, &str, &str, u64)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(
                e["remote"].as_str().unwrap().starts_with("127.0.0.1:"),
                "{e}"
            );
            assert!(e["time"].as_str().unwrap().ends_with('Z'), "{e}");
            (
                e["token"].clone(),
                e["method"].as_str().unwrap(),
                e["path"].as_str().unwrap(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let champion = "/admin/models/fraud/aliases/champion";
    assert_eq!(
        entries,
        [
            (Value::Null, "PUT", champion, 401),
            (json!("ops-alice"), "PUT", champion, 200),
            (json!("admin"), "PUT", champion, 200),
            (json!("admin"), "GET", "/admin/history", 200),
        ]
    );
    let newest = get("/admin/audit?limit=1", "s3cret").await;
    assert_eq!(newest["entries"][0]["path"], "/admin/audit");
    // The default place: beside the alias history.
    assert!(registry.join(".podium-audit.jsonl").is_file());

    // Named tokens are re-read too: a removed one is refused.
    std::fs::write(&tokens, "").unwrap();
    eventually(
        Duration::from_secs(20),
        "the removed token to be refused",
        || async { (set_champion(&s, &alice, 2).await == 401).then_some(()) },
    )
    .await;
}
