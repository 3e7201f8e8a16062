//! The OIP REST API of the real server, over HTTP on 127.0.0.1.

mod common;

use std::time::Duration;

use common::{client, eventually, Server, FRAUD_ROW};
use serde_json::{json, Value};

fn fraud_request(rows: usize) -> Value {
    let data: Vec<f32> = (0..rows).flat_map(|_| FRAUD_ROW).collect();
    json!({"id": "req-1", "inputs": [{"name": "input", "shape": [rows, 30], "datatype": "FP32", "data": data}]})
}

/// Splits a binary-extension response into its JSON header and tensor bytes.
async fn binary_response(resp: reqwest::Response) -> (Value, Vec<u8>) {
    let n: usize = resp.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    let body = resp.bytes().await.unwrap();
    (
        serde_json::from_slice(&body[..n]).unwrap(),
        body[n..].to_vec(),
    )
}

/// A binary-extension request body: JSON header then the tensors' bytes.
fn binary_body(header: &Value, tensors: &[Vec<u8>]) -> (Vec<u8>, String) {
    let mut body = serde_json::to_vec(header).unwrap();
    let n = body.len();
    for t in tensors {
        body.extend_from_slice(t);
    }
    (body, n.to_string())
}

#[tokio::test]
async fn health_and_server_metadata() {
    let s = Server::demo(&[]);
    let c = client();
    let meta = s.get_json("/v2").await;
    assert_eq!(meta["name"], "podium");
    assert!(meta["extensions"]
        .as_array()
        .unwrap()
        .contains(&json!("binary_tensor_data")));
    let live = c.get(s.url("/v2/health/live")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(live.json::<Value>().await.unwrap(), json!({"live": true}));
    let ready = c.get(s.url("/v2/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json::<Value>().await.unwrap(), json!({"ready": true}));
}

#[tokio::test]
async fn model_metadata_by_alias_number_and_default() {
    let s = Server::demo(&[]);
    let c = client();
    for (path, version) in [
        ("/v2/models/fraud", "1"),
        ("/v2/models/fraud/versions/champion", "1"),
        ("/v2/models/fraud/versions/challenger", "2"),
        ("/v2/models/fraud/versions/2", "2"),
        ("/v2/models/fraud/versions/latest", "2"),
    ] {
        let resp = c.get(s.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let m: Value = resp.json().await.unwrap();
        assert_eq!(m["name"], "fraud");
        assert_eq!(m["version"], version, "{path}");
        assert_eq!(m["platform"], "onnx_onnxv1");
        assert_eq!(m["versions"], json!(["1", "2"]));
        assert_eq!(m["aliases"], json!({"champion": 1, "challenger": 2}));
        assert_eq!(
            m["inputs"],
            json!([{"name": "input", "datatype": "FP32", "shape": [-1, 30]}])
        );
        assert_eq!(
            m["outputs"],
            json!([
                {"name": "label", "datatype": "INT64", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}
            ])
        );
    }
    let fixed = s.get_json("/v2/models/fixed").await;
    assert_eq!(fixed["inputs"][0]["shape"], json!([2, 3]));

    for path in [
        "/v2/models/fraud/ready",
        "/v2/models/fraud/versions/challenger/ready",
        "/v2/models/mlp/ready",
    ] {
        let resp = c.get(s.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.json::<Value>().await.unwrap()["ready"], true, "{path}");
    }
}

#[tokio::test]
async fn infer_routes_by_alias_and_version() {
    let s = Server::demo(&[]);
    let c = client();
    let mut by_version = std::collections::HashMap::new();
    for (path, version) in [
        ("/v2/models/fraud/infer", "1"),
        ("/v2/models/fraud/versions/champion/infer", "1"),
        ("/v2/models/fraud/versions/1/infer", "1"),
        ("/v2/models/fraud/versions/challenger/infer", "2"),
        ("/v2/models/fraud/versions/2/infer", "2"),
        ("/v2/models/fraud/versions/latest/infer", "2"),
    ] {
        let resp = c
            .post(s.url(path))
            .json(&fraud_request(2))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.headers()["x-podium-model-version"], version);
        for h in [
            "x-podium-queue-us",
            "x-podium-inference-us",
            "x-podium-total-us",
        ] {
            assert!(
                resp.headers()[h].to_str().unwrap().parse::<u64>().is_ok(),
                "{h}"
            );
        }
        let r: Value = resp.json().await.unwrap();
        assert_eq!(r["model_name"], "fraud");
        assert_eq!(r["model_version"], version, "{path}");
        assert_eq!(r["id"], "req-1");
        assert_eq!(r["outputs"][0]["name"], "label");
        assert_eq!(r["outputs"][0]["datatype"], "INT64");
        assert_eq!(r["outputs"][0]["shape"], json!([2]));
        assert_eq!(r["outputs"][1]["shape"], json!([2, 2]));
        let p = r["outputs"][1]["data"].clone();
        by_version.entry(version).or_insert(p.clone());
        assert_eq!(by_version[version], p, "same version, same answer");
    }
    // Reference values from Python onnxruntime 1.31.1 on the same row
    // (models/README.md): the champion and the challenger really differ.
    let p1: Vec<f64> = serde_json::from_value(by_version["1"].clone()).unwrap();
    let p2: Vec<f64> = serde_json::from_value(by_version["2"].clone()).unwrap();
    assert!(
        (p1[0] - 0.620_603_44).abs() < 1e-5 && (p1[1] - 0.379_396_53).abs() < 1e-5,
        "{p1:?}"
    );
    assert!(
        (p2[0] - 0.881_607_65).abs() < 1e-5 && (p2[1] - 0.118_392_35).abs() < 1e-5,
        "{p2:?}"
    );
}

#[tokio::test]
async fn outputs_subset_binary_outputs_and_parameters() {
    let s = Server::demo(&[]);
    let c = client();
    let mut req = fraud_request(1);
    req["parameters"] = json!({"priority": 1, "custom": "yes"});
    req["outputs"] = json!([{"name": "probabilities"}]);
    let (status, r) = s.post_json("/v2/models/fraud/infer", &req).await;
    assert_eq!(status, 200, "{r}");
    let outputs = r["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0]["name"], "probabilities");

    // Binary request in, one binary output and one JSON output back.
    let raw: Vec<u8> = FRAUD_ROW.iter().flat_map(|x| x.to_le_bytes()).collect();
    let header = json!({
        "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "parameters": {"binary_data_size": raw.len()}}],
        "outputs": [{"name": "label", "parameters": {"binary_data": false}}, {"name": "probabilities", "parameters": {"binary_data": true}}]
    });
    let (body, n) = binary_body(&header, &[raw]);
    let resp = c
        .post(s.url("/v2/models/fraud/infer"))
        .header("Inference-Header-Content-Length", n)
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (head, bin) = binary_response(resp).await;
    assert_eq!(head["outputs"][0]["data"], json!([0]));
    assert_eq!(head["outputs"][1]["parameters"]["binary_data_size"], 8);
    assert!(head["outputs"][1].get("data").is_none());
    let p0 = f32::from_le_bytes(bin[..4].try_into().unwrap());
    assert!((p0 - 0.620_603_44).abs() < 1e-5, "{p0}");

    // binary_data_output on the request makes every output binary.
    let mut req = fraud_request(1);
    req["parameters"] = json!({"binary_data_output": true});
    let resp = c
        .post(s.url("/v2/models/fraud/infer"))
        .json(&req)
        .send()
        .await
        .unwrap();
    let (head, bin) = binary_response(resp).await;
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 8);
    assert_eq!(head["outputs"][1]["parameters"]["binary_data_size"], 8);
    assert_eq!(bin.len(), 16);
}

/// (name, OIP datatype, JSON values for a [2,2] tensor, the same values raw).
fn all_types() -> Vec<(&'static str, &'static str, Value, Vec<u8>)> {
    fn le<T: Copy, const N: usize>(v: &[T], f: fn(T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(|&x| f(x)).collect()
    }
    let strings = ["", "héllo", "naïve ☃", "x"];
    let mut bytes = Vec::new();
    for s in strings {
        bytes.extend_from_slice(&(s.len() as u32).to_le_bytes());
        bytes.extend_from_slice(s.as_bytes());
    }
    let f16s = [0.5f32, -1.5, 2.0, 65504.0];
    vec![
        (
            "bool",
            "BOOL",
            json!([[true, false], [false, true]]),
            vec![1, 0, 0, 1],
        ),
        (
            "int8",
            "INT8",
            json!([-128, -1, 0, 127]),
            le(&[-128i8, -1, 0, 127], i8::to_le_bytes),
        ),
        (
            "int16",
            "INT16",
            json!([-32768, -1, 0, 32767]),
            le(&[i16::MIN, -1, 0, i16::MAX], i16::to_le_bytes),
        ),
        (
            "int32",
            "INT32",
            json!([i32::MIN, -1, 0, i32::MAX]),
            le(&[i32::MIN, -1, 0, i32::MAX], i32::to_le_bytes),
        ),
        (
            "int64",
            "INT64",
            json!([i64::MIN, -1, 0, i64::MAX]),
            le(&[i64::MIN, -1, 0, i64::MAX], i64::to_le_bytes),
        ),
        (
            "uint8",
            "UINT8",
            json!([0, 1, 128, 255]),
            vec![0, 1, 128, 255],
        ),
        (
            "uint16",
            "UINT16",
            json!([0, 1, 300, 65535]),
            le(&[0u16, 1, 300, u16::MAX], u16::to_le_bytes),
        ),
        (
            "uint32",
            "UINT32",
            json!([0, 1, 70000, u32::MAX]),
            le(&[0u32, 1, 70000, u32::MAX], u32::to_le_bytes),
        ),
        (
            "uint64",
            "UINT64",
            json!([0, 1, 1u64 << 40, u64::MAX]),
            le(&[0u64, 1, 1 << 40, u64::MAX], u64::to_le_bytes),
        ),
        (
            "fp16",
            "FP16",
            json!(f16s),
            le(&f16s.map(half::f16::from_f32), half::f16::to_le_bytes),
        ),
        (
            "fp32",
            "FP32",
            json!([0.1f32, -2.5f32, 3.4e38f32, 1e-30f32]),
            le(&[0.1f32, -2.5, 3.4e38, 1e-30], f32::to_le_bytes),
        ),
        (
            "fp64",
            "FP64",
            json!([0.1, -2.5, 1e300, 5e-324]),
            le(&[0.1f64, -2.5, 1e300, 5e-324], f64::to_le_bytes),
        ),
        (
            "string",
            "BYTES",
            json!([["", "héllo"], ["naïve ☃", "x"]]),
            bytes,
        ),
    ]
}

#[tokio::test]
async fn every_datatype_round_trips_as_json() {
    let s = Server::demo(&[]);
    let inputs: Vec<Value> = all_types()
        .into_iter()
        .map(|(t, dt, data, _)| json!({"name": format!("in_{t}"), "shape": [2, 2], "datatype": dt, "data": data}))
        .collect();
    let (status, r) = s
        .post_json("/v2/models/alltypes/infer", &json!({"inputs": inputs}))
        .await;
    assert_eq!(status, 200, "{r}");
    let outputs = r["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 13);
    for (t, dt, data, _) in all_types() {
        let out = outputs
            .iter()
            .find(|o| o["name"] == format!("out_{t}"))
            .unwrap();
        assert_eq!(out["datatype"], dt, "{t}");
        assert_eq!(out["shape"], json!([2, 2]), "{t}");
        let mut flat = Vec::new();
        flatten(&data, &mut flat);
        if dt == "FP32" {
            // JSON carries the shortest f32 text; compare as f32.
            let as_f32 = |v: &[Value]| {
                v.iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                as_f32(out["data"].as_array().unwrap()),
                as_f32(&flat),
                "{t}"
            );
        } else {
            assert_eq!(out["data"], Value::Array(flat), "{t}");
        }
    }
}

fn flatten(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flatten(x, out)),
        x => out.push(x.clone()),
    }
}

#[tokio::test]
async fn every_datatype_round_trips_as_binary() {
    let s = Server::demo(&[]);
    let types = all_types();
    let inputs: Vec<Value> = types
        .iter()
        .map(|(t, dt, _, raw)| json!({"name": format!("in_{t}"), "shape": [2, 2], "datatype": dt, "parameters": {"binary_data_size": raw.len()}}))
        .collect();
    let outputs: Vec<Value> = types
        .iter()
        .map(|(t, ..)| json!({"name": format!("out_{t}"), "parameters": {"binary_data": true}}))
        .collect();
    let raws: Vec<Vec<u8>> = types.iter().map(|(.., raw)| raw.clone()).collect();
    let (body, n) = binary_body(&json!({"inputs": inputs, "outputs": outputs}), &raws);
    let resp = client()
        .post(s.url("/v2/models/alltypes/infer"))
        .header("Inference-Header-Content-Length", n)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (head, bin) = binary_response(resp).await;
    let mut offset = 0;
    for ((t, dt, _, raw), out) in types.iter().zip(head["outputs"].as_array().unwrap()) {
        assert_eq!(out["name"], format!("out_{t}"));
        assert_eq!(out["datatype"], *dt);
        let size = out["parameters"]["binary_data_size"].as_u64().unwrap() as usize;
        assert_eq!(&bin[offset..offset + size], &raw[..], "{t} bytes differ");
        offset += size;
    }
    assert_eq!(offset, bin.len());
}

#[tokio::test]
async fn alias_moves_are_followed_without_restart() {
    let s = Server::demo(&[]);
    let (_, r) = s
        .post_json("/v2/models/fraud/infer", &fraud_request(1))
        .await;
    assert_eq!(r["model_version"], "1");
    s.set_alias("fraud", "champion", 2);
    eventually(
        Duration::from_secs(20),
        "champion to move to v2",
        || async {
            let (status, r) = s
                .post_json("/v2/models/fraud/infer", &fraud_request(1))
                .await;
            assert_eq!(status, 200, "a request failed during the alias move: {r}");
            (r["model_version"] == "2").then_some(())
        },
    )
    .await;

    // A newly registered version is servable by number without a restart.
    assert_eq!(s.register("fraud", "fraud/v1.onnx"), 3);
    let r = eventually(Duration::from_secs(20), "version 3 to appear", || async {
        let (status, r) = s
            .post_json("/v2/models/fraud/versions/3/infer", &fraud_request(1))
            .await;
        (status == 200).then_some(r)
    })
    .await;
    assert_eq!(r["model_version"], "3");
}
