//! The request preparation's unit tests (beside it, not in it: protocol.rs stays small).

use super::*;
use crate::http::header_value;

fn fraud_like() -> Vec<Tensor> {
    vec![Tensor {
        name: "input".into(),
        datatype: "FP32".into(),
        shape: vec![1, 2],
        raw: [0.5f32, -1.0]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect(),
    }]
}

#[test]
fn bodies_of_each_protocol() {
    let t = fraud_like();
    let v: Value = serde_json::from_slice(&json_body(&t).unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [0.5, -1.0]}]})
    );
    let (body, n) = binary_body(&t).unwrap();
    let head: Value = serde_json::from_slice(&body[..n]).unwrap();
    assert_eq!(head["inputs"][0]["parameters"]["binary_data_size"], 8);
    assert_eq!(head["parameters"]["binary_data_output"], true);
    assert_eq!(&body[n..], &t[0].raw[..]);
    let v: Value = serde_json::from_slice(&mlflow_body(&t).unwrap()).unwrap();
    assert_eq!(v, json!({"inputs": {"input": [[0.5, -1.0]]}}));
}

#[test]
fn versions_from_bodies() {
    assert_eq!(
        body_version(br#"{"model_name":"fraud","model_version":"2","outputs":[]}"#).unwrap(),
        Some("2".into())
    );
    assert_eq!(body_version(br#"{"outputs":[]}"#).unwrap(), None);
    let (class, _) = body_version(b"<html>").unwrap_err();
    assert_eq!(class, ErrorClass::Protocol);
}

#[tokio::test]
async fn urls() {
    let a = resolve("http://127.0.0.1:8000").await.unwrap();
    assert_eq!(
        (a.authority.as_str(), a.prefix.as_str()),
        ("127.0.0.1:8000", "")
    );
    assert_eq!(a.addr.port(), 8000);
    let a = resolve("http://127.0.0.1:9/base/").await.unwrap();
    assert_eq!(a.prefix, "/base");
    for (url, says) in [
        ("https://127.0.0.1:8000", "TLS is not supported"),
        ("127.0.0.1:8000", "has no scheme"),
        ("ftp://x", "not supported"),
    ] {
        let e = resolve(url).await.unwrap_err().to_string();
        assert!(e.contains(says), "{url}: {e}");
    }
}

#[tokio::test]
async fn numbered_headers() {
    let target = Target {
        url: "http://127.0.0.1:1".into(),
        protocol: Protocol::RestJson,
        model: "fraud".into(),
        version: None,
        headers: vec![
            ("X-User-Id".into(), "user-{n}".into()),
            ("x-a".into(), "b".into()),
        ],
        timeout: Duration::from_secs(1),
        inspect_body: false,
    };
    let p = Prepared::new(&target, &[fraud_like()]).await.unwrap();
    let (k, v) = header_value(&p.http.headers[0], 42).unwrap();
    assert_eq!((k.as_str(), v.to_str().unwrap()), ("x-user-id", "user-42"));
    let (k, v) = header_value(&p.http.headers[1], 42).unwrap();
    assert_eq!((k.as_str(), v.to_str().unwrap()), ("x-a", "b"));
    assert_eq!(p.describe(), "http://127.0.0.1:1/v2/models/fraud/infer");
    let bad = Target {
        headers: vec![("bad header".into(), "x".into())],
        ..target
    };
    let e = Prepared::new(&bad, &[fraud_like()])
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a valid header name"), "{e}");
}

#[tokio::test]
async fn requests_cycle_through_the_distinct_inputs() {
    let target = |protocol| Target {
        url: "http://127.0.0.1:1".into(),
        protocol,
        model: "fraud".into(),
        version: None,
        headers: Vec::new(),
        timeout: Duration::from_secs(1),
        inspect_body: false,
    };
    let one = |x: f32| {
        vec![Tensor {
            raw: [x, -x].iter().flat_map(|f| f.to_le_bytes()).collect(),
            ..fraud_like()[0].clone()
        }]
    };
    let inputs = [one(1.0), one(2.0), one(3.0)];
    for protocol in [Protocol::RestJson, Protocol::RestBinary, Protocol::Mlflow] {
        let p = Prepared::new(&target(protocol), &inputs).await.unwrap();
        assert_eq!(p.distinct(), 3);
        for (n, want) in [(0u64, 0usize), (1, 1), (2, 2), (3, 0), (7, 1)] {
            assert_eq!(p.input_of(n), want);
        }
        let bodies: Vec<_> = p.rest.iter().map(|r| r.body.clone()).collect();
        assert_ne!(bodies[0], bodies[1], "{protocol:?}");
        assert_ne!(bodies[1], bodies[2], "{protocol:?}");
        // The binary body ends with the raw floats of its own input.
        if protocol == Protocol::RestBinary {
            assert!(bodies[2].ends_with(&inputs[2][0].raw));
        }
    }
    let p = Prepared::new(&target(Protocol::Grpc), &inputs)
        .await
        .unwrap();
    assert_eq!(p.distinct(), 3);
    assert_eq!(p.grpc_messages.len(), 3);
    assert_ne!(p.grpc_messages[0], p.grpc_messages[2]);
    let e = Prepared::new(&target(Protocol::RestJson), &[])
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("no input"), "{e}");
}
