//! Bad input gets a 4xx with an OIP `{"error": ...}` body that names the
//! problem, and the server stays up. Also overload (503 + Retry-After), a
//! model that fails to load, and a missing ONNX Runtime library.

mod common;

use common::{cli, cli_ok, client, Server, FRAUD_ROW};
use serde_json::{json, Value};

fn row(rows: usize) -> Vec<f32> {
    (0..rows).flat_map(|_| FRAUD_ROW).collect()
}

/// Sends `body` (with optional extra headers) and returns (status, error message).
async fn error_of(
    s: &Server,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> (u16, String) {
    let mut req = client().post(s.url(path)).body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not a JSON error body: {text:?}"));
    (
        status,
        v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no \"error\" in {v}"))
            .to_string(),
    )
}

/// (what, path, body, headers, expected status, expected message part).
type Case<'a> = (
    &'a str,
    &'a str,
    Vec<u8>,
    Vec<(&'a str, String)>,
    u16,
    &'a str,
);

fn js(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test]
async fn bad_requests_get_clear_4xx_errors() {
    let s = Server::demo(&["--max-request-bytes", "100000"]);
    let fraud = "/v2/models/fraud/infer";
    let input = |name: &str, shape: Value, dt: &str, data: Value| {
        js(json!({"inputs": [{"name": name, "shape": shape, "datatype": dt, "data": data}]}))
    };
    let cases: Vec<Case> = vec![
        ("malformed JSON", fraud, b"{\"inputs\": [".to_vec(), vec![], 400, "malformed inference request JSON"),
        ("not JSON at all", fraud, b"hello".to_vec(), vec![], 400, "malformed inference request JSON"),
        ("inputs missing", fraud, js(json!({"id": "x"})), vec![], 400, "missing field `inputs`"),
        ("unknown model", "/v2/models/nope/infer", input("input", json!([1, 30]), "FP32", json!(row(1))), vec![], 404, "unknown model \"nope\"; this server has: alltypes, fixed, fraud, mlp"),
        ("unknown version", "/v2/models/fraud/versions/9/infer", input("input", json!([1, 30]), "FP32", json!(row(1))), vec![], 404, "model \"fraud\" has no version 9; registered versions: 1, 2"),
        ("unknown alias", "/v2/models/fraud/versions/prod/infer", input("input", json!([1, 30]), "FP32", json!(row(1))), vec![], 404, "model \"fraud\" has no alias \"prod\""),
        ("wrong input name", fraud, input("features", json!([1, 30]), "FP32", json!(row(1))), vec![], 400, "model fraud v1 has no input \"features\"; its inputs are: \"input\" FP32 [-1,30]"),
        ("missing input", fraud, js(json!({"inputs": []})), vec![], 400, "missing input \"input\": model fraud v1 expects FP32 [-1,30]"),
        ("wrong datatype", fraud, input("input", json!([1, 30]), "FP64", json!(row(1))), vec![], 400, "input \"input\" has datatype FP64; model fraud v1 expects FP32"),
        ("unknown datatype", fraud, input("input", json!([1, 30]), "FLOAT32", json!(row(1))), vec![], 400, "unknown datatype \"FLOAT32\""),
        ("wrong shape", fraud, input("input", json!([1, 29]), "FP32", json!(&row(1)[..29])), vec![], 400, "input \"input\" has shape [1,29]; model fraud v1 expects [-1,30]"),
        ("wrong rank", fraud, input("input", json!([30]), "FP32", json!(row(1))), vec![], 400, "input \"input\" has shape [30]; model fraud v1 expects [-1,30]"),
        ("fixed dims", "/v2/models/fixed/infer", input("x", json!([3, 2]), "FP32", json!([1, 2, 3, 4, 5, 6])), vec![], 400, "input \"x\" has shape [3,2]; model fixed v1 expects [2,3]"),
        ("count vs shape", fraud, input("input", json!([2, 30]), "FP32", json!(row(1))), vec![], 400, "input \"input\" has shape [2,30] (60 elements) but 30 FP32 values were sent"),
        ("absurd shape", fraud, input("input", json!([1000000000, 8]), "FP32", json!(row(1))), vec![], 400, "input \"input\" has shape [1000000000,8] (8000000000 elements) but 30 FP32 values were sent"),
        ("overflowing shape", fraud, input("input", json!([i64::MAX, 8]), "FP32", json!(row(1))), vec![], 400, "overflows"),
        ("negative shape", fraud, input("input", json!([-1, 30]), "FP32", json!(row(1))), vec![], 400, "dimension -1 is negative"),
        ("ragged nested data", fraud, input("input", json!([2, 30]), "FP32", json!(vec![[&row(1)[..], &[0.5]].concat(), row(1)[1..].to_vec()])), vec![], 400, "input \"input\" data is ragged: data[1] has 29 elements but data[0] has 31"),
        ("beyond FP32", fraud, input("input", json!([1, 2]), "FP32", serde_json::from_str::<Value>("[1.5, 1e39]").unwrap()), vec![], 400, "input \"input\" element 1 is 1e+39, which is out of range for FP32"),
        ("wrong element type", fraud, input("input", json!([1, 2]), "FP32", json!(["a", "b"])), vec![], 400, "input \"input\" element 0 is \"a\", which is not a valid FP32"),
        ("no data", fraud, js(json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32"}]})), vec![], 400, "has no \"data\""),
        ("unknown output", fraud, js(json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": row(1)}], "outputs": [{"name": "score"}]})), vec![], 400, "model fraud v1 has no output \"score\"; its outputs are: \"label\" INT64 [-1], \"probabilities\" FP32 [-1,2]"),
        ("duplicate output", fraud, js(json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": row(1)}], "outputs": [{"name": "label"}, {"name": "label"}]})), vec![], 400, "output \"label\" is requested twice; ask for each output once"),
        ("duplicate input", fraud, js(json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": row(1)}, {"name": "input", "shape": [1, 30], "datatype": "FP32", "data": row(1)}]})), vec![], 400, "given twice"),
        ("body over the limit", fraud, input("input", json!([1000, 30]), "FP32", json!(row(1000))), vec![], 413, "the limit is 100000 bytes"),
        ("compressed body", fraud, b"\x1f\x8b".to_vec(), vec![("content-encoding", "gzip".into())], 415, "Content-Encoding \"gzip\" is not supported"),
        ("bad header length", fraud, b"{}".to_vec(), vec![("inference-header-content-length", "abc".into())], 400, "is not a byte count"),
    ];
    for (what, path, body, headers, want_status, want_msg) in cases {
        let (status, msg) = error_of(&s, path, body, &headers).await;
        assert_eq!(status, want_status, "{what}: {msg}");
        assert!(
            msg.contains(want_msg),
            "{what}: {msg:?} does not contain {want_msg:?}"
        );
    }
}

#[tokio::test]
async fn bad_binary_bodies_are_named() {
    let s = Server::demo(&[]);
    let fraud = "/v2/models/fraud/infer";
    let raw: Vec<u8> = FRAUD_ROW.iter().flat_map(|x| x.to_le_bytes()).collect();
    let header = |size: usize| {
        js(
            json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "parameters": {"binary_data_size": size}}]}),
        )
    };
    let with = |h: Vec<u8>, tail: &[u8]| {
        let n = h.len().to_string();
        let mut b = h;
        b.extend_from_slice(tail);
        (b, vec![("inference-header-content-length", n)])
    };
    // Truncated tensor bytes.
    let (body, h) = with(header(120), &raw[..60]);
    let (status, msg) = error_of(&s, fraud, body, &h).await;
    assert_eq!((status, msg.as_str()), (400, "input \"input\" declares binary_data_size 120 but only 60 bytes of binary data remain; the body is truncated"));
    // Header length larger than the body.
    let (body, _) = with(header(120), &raw);
    let (status, msg) = error_of(
        &s,
        fraud,
        body,
        &[("inference-header-content-length", "99999".into())],
    )
    .await;
    assert_eq!(status, 400);
    assert!(msg.contains("the body is truncated"), "{msg}");
    // Extra bytes after the last tensor.
    let mut extra = raw.clone();
    extra.extend_from_slice(&[0; 4]);
    let (body, h) = with(header(120), &extra);
    let (status, msg) = error_of(&s, fraud, body, &h).await;
    assert_eq!(status, 400);
    assert!(
        msg.contains("4 bytes of binary data follow the last input"),
        "{msg}"
    );
    // Size not a multiple of the element size.
    let (body, h) = with(header(118), &raw[..118]);
    let (status, msg) = error_of(&s, fraud, body, &h).await;
    assert_eq!(status, 400);
    assert!(
        msg.contains("118 bytes is not a whole number of 4-byte elements"),
        "{msg}"
    );
    // binary_data_size without the header.
    let (status, msg) = error_of(&s, fraud, header(120), &[]).await;
    assert_eq!(status, 400);
    assert!(msg.contains("no Inference-Header-Content-Length"), "{msg}");
    // A BYTES element that ONNX string tensors cannot hold.
    let strings = js(
        json!({"inputs": [{"name": "in_string", "shape": [1, 1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}], "outputs": [{"name": "out_string"}]}),
    );
    let (body, h) = with(strings, &[2, 0, 0, 0, 0xff, 0xfe]);
    let (status, msg) = error_of(&s, "/v2/models/alltypes/infer", body, &h).await;
    assert_eq!(status, 400);
    assert!(
        msg.contains("missing input") || msg.contains("not valid UTF-8"),
        "{msg}"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let s = Server::demo(&[]);
    let resp = client().get(s.url("/v1/models")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("no route GET /v1/models"),
        "{v}"
    );
    let resp = client()
        .get(s.url("/v2/models/fraud/infer"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("inference is POST"),
        "{v}"
    );
    let resp = client().get(s.url("/v2/models/nope")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp = client()
        .get(s.url("/v2/models/nope/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = client()
        .get(s.url("/v2/models/fraud/versions/7/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn a_storm_of_malformed_requests_leaves_the_server_answering() {
    let s = Server::demo(&[]);
    let c = client();
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{\"inputs\": 5}".to_vec(),
        b"{\"inputs\": [{\"name\": 1}]}".to_vec(),
        vec![0xff; 64],
        js(
            json!({"inputs": [{"name": "input", "shape": [u64::MAX], "datatype": "FP32", "data": []}]}),
        ),
        js(
            json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": [[[[[]]]]]}]}),
        ),
        js(
            json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": null}]}),
        ),
    ];
    let mut tasks = Vec::new();
    for i in 0..300 {
        let body = bodies[i % bodies.len()].clone();
        let c = c.clone();
        let url = s.url("/v2/models/fraud/infer");
        tasks.push(tokio::spawn(async move {
            let resp = c.post(url).body(body).send().await.unwrap();
            let status = resp.status().as_u16();
            let v: Value = resp.json().await.unwrap();
            (status, v)
        }));
    }
    for t in tasks {
        let (status, v) = t.await.unwrap();
        assert!((400..500).contains(&status), "{status} {v}");
        assert!(v["error"].is_string(), "{v}");
    }
    let resp = c
        .post(s.url("/v2/models/fraud/infer"))
        .json(&json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": row(1)}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["model_version"], "1");
    assert_eq!(s.get_status("/v2/health/live").await, 200);
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after_at_once() {
    // One worker and one waiting slot; each call is a heavy MLP batch sent
    // as binary (cheap to decode), so a burst overflows the queue. Bursts
    // are repeated (at most 5) only to stay robust on a loaded machine.
    let s = Server::demo(&["--inference-threads", "1", "--queue-depth", "1"]);
    let c = client();
    let batch = 8192usize;
    let raw: Vec<u8> = (0..batch * 64)
        .flat_map(|i| ((i % 7) as f32 * 0.1).to_le_bytes())
        .collect();
    let header = js(json!({
        "inputs": [{"name": "input", "shape": [batch, 64], "datatype": "FP32", "parameters": {"binary_data_size": raw.len()}}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": true}}]
    }));
    let n = header.len().to_string();
    let body = bytes::Bytes::from([header, raw].concat());
    let (mut ok, mut rejected) = (0, 0);
    for _burst in 0..5 {
        let mut tasks = Vec::new();
        for _ in 0..24 {
            let (c, url, body, n) = (
                c.clone(),
                s.url("/v2/models/mlp/infer"),
                body.clone(),
                n.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let resp = c
                    .post(url)
                    .header("inference-header-content-length", n)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let retry = resp
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string());
                let header_len = resp
                    .headers()
                    .get("inference-header-content-length")
                    .map(|v| v.to_str().unwrap().parse::<usize>().unwrap());
                let body = resp.bytes().await.unwrap();
                let v: Value =
                    serde_json::from_slice(&body[..header_len.unwrap_or(body.len())]).unwrap();
                (status, retry, v)
            }));
        }
        for t in tasks {
            let (status, retry, v) = t.await.unwrap();
            match status {
                200 => {
                    ok += 1;
                    assert_eq!(v["outputs"][0]["shape"], json!([batch, 10]));
                }
                503 => {
                    rejected += 1;
                    assert_eq!(retry.as_deref(), Some("1"));
                    assert!(
                        v["error"]
                            .as_str()
                            .unwrap()
                            .contains("inference queue is full"),
                        "{v}"
                    );
                }
                other => panic!("unexpected status {other}: {v}"),
            }
        }
        if ok >= 1 && rejected >= 1 {
            break;
        }
    }
    assert!(ok >= 1, "no request succeeded");
    assert!(
        rejected >= 1,
        "bursts of 24 heavy requests never overflowed a queue of 1"
    );
    let resp = c.get(s.url("/v2/health/live")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_model_that_fails_to_load_is_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let reg = common::demo_registry(dir.path());
    let junk = common::unloadable_model(dir.path());
    assert_eq!(common::register_path(&reg, "broken", &junk), 1);
    common::set_alias(&reg, "broken", "champion", 1);
    let s = Server::start(&reg, &[]);
    let c = client();
    let resp = c.get(s.url("/v2/health/ready")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["ready"], false);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("broken@champion (v1): version 1 was refused: cannot load broken v1"),
        "{v}"
    );
    let resp = c
        .post(s.url("/v2/models/broken/infer"))
        .json(&json!({"inputs": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("cannot load broken v1"),
        "{v}"
    );
    assert_eq!(s.get_status("/v2/models/broken/ready").await, 503);
    // The healthy models still serve.
    let resp = c
        .post(s.url("/v2/models/fraud/infer"))
        .json(&json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": row(1)}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[test]
fn a_missing_onnx_runtime_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::BIN)
        .args([
            "--registry",
            dir.path().to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/libonnxruntime.so"),
        "{stderr}"
    );
    assert!(stderr.contains("./scripts/setup-ort.sh"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A file that is not a loadable library gets a message, not a panic.
    let fake = dir.path().join("libonnxruntime.so");
    std::fs::write(&fake, b"not a library").unwrap();
    let out = std::process::Command::new(common::BIN)
        .args([
            "--registry",
            dir.path().to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("ORT_DYLIB_PATH", &fake)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("could not load ONNX Runtime from"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `examples/ort_ceiling` finds the library the way `podium` does: a bad
/// `ORT_DYLIB_PATH` gets the same message naming the path and the fix.
#[test]
fn the_ort_ceiling_example_reads_ort_dylib_path() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::model_file("fraud/v1.onnx");
    let run = |lib: &std::path::Path| {
        let out = std::process::Command::new(common::example("ort_ceiling"))
            .arg(&model)
            .args(["30", "0.1", "1"])
            .env("ORT_DYLIB_PATH", lib)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let missing = dir.path().join("missing/libonnxruntime.so");
    let stderr = run(&missing);
    assert!(
        stderr.contains(&format!("ONNX Runtime library {} ", missing.display())),
        "{stderr}"
    );
    assert!(stderr.contains("./scripts/setup-ort.sh"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let fake = dir.path().join("libonnxruntime.so");
    std::fs::write(&fake, b"not a library").unwrap();
    let stderr = run(&fake);
    assert!(
        stderr.contains(&format!(
            "could not load ONNX Runtime from {}",
            fake.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn cli_manages_versions_and_aliases() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("reg");
    let file = common::model_file("fraud/v1.onnx");
    let f = file.to_str().unwrap();
    assert_eq!(
        cli_ok(&reg, &["models", "register", "fraud", f]).trim(),
        "1"
    );
    assert_eq!(
        cli_ok(&reg, &["models", "register", "fraud", f]).trim(),
        "2"
    );
    cli_ok(&reg, &["alias", "set", "fraud", "champion", "2"]);
    cli_ok(&reg, &["alias", "set", "fraud", "challenger", "1"]);
    assert_eq!(
        cli_ok(&reg, &["alias", "get", "fraud", "champion"]).trim(),
        "2"
    );
    assert_eq!(
        cli_ok(&reg, &["alias", "list", "fraud"]),
        "challenger\t1\nchampion\t2\n"
    );
    assert_eq!(
        cli_ok(&reg, &["models", "list"]),
        "fraud\tversions: 1,2\taliases: challenger=1,champion=2\n"
    );
    cli_ok(&reg, &["alias", "delete", "fraud", "challenger"]);
    assert_eq!(cli_ok(&reg, &["alias", "list", "fraud"]), "champion\t2\n");

    for (args, want) in [
        (
            vec!["alias", "set", "fraud", "latest", "1"],
            "\"latest\" is reserved",
        ),
        (vec!["alias", "set", "fraud", "../x", "1"], "invalid alias"),
        (
            vec!["alias", "set", "fraud", "champion", "9"],
            "has no version 9",
        ),
        (
            vec!["alias", "get", "fraud", "nope"],
            "has no alias \"nope\"",
        ),
        (
            vec!["alias", "delete", "fraud", "nope"],
            "has no alias \"nope\"",
        ),
        (vec!["alias", "list", "ghost"], "no model \"ghost\""),
        (
            vec!["models", "register", "../escape", f],
            "invalid model name",
        ),
        (
            vec!["models", "register", "x", "/nonexistent.onnx"],
            "cannot read /nonexistent.onnx",
        ),
    ] {
        let (ok, _, stderr) = cli(&reg, &args);
        assert!(!ok, "{args:?} succeeded");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
    assert!(!dir.path().join("escape").exists());

    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["models", "register", "--help"],
        vec!["alias", "set", "--help"],
    ] {
        let (ok, stdout, _) = cli(&reg, &args);
        assert!(ok && stdout.contains("Usage"), "{args:?}");
    }
    let (_, stdout, _) = cli(&reg, &["serve", "--help"]);
    for env in [
        "PODIUM_LISTEN",
        "PODIUM_INFERENCE_THREADS",
        "PODIUM_QUEUE_DEPTH",
        "PODIUM_MAX_REQUEST_BYTES",
        "ORT_DYLIB_PATH",
    ] {
        assert!(stdout.contains(env), "serve --help does not mention {env}");
    }
}
