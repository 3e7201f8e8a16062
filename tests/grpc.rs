//! The OIP gRPC service of the real server, over 127.0.0.1, with a tonic
//! client generated from the same proto.

mod common;

use common::{Server, FRAUD_ROW};
use podium::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use podium::api::grpc::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use podium::api::grpc::proto::*;
use tonic::transport::Channel;
use tonic::Code;

async fn connect(s: &Server) -> GrpcInferenceServiceClient<Channel> {
    GrpcInferenceServiceClient::connect(s.grpc.clone())
        .await
        .expect("connect to gRPC")
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

fn tensor(
    name: &str,
    datatype: &str,
    shape: Vec<i64>,
    contents: Option<InferTensorContents>,
) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape,
        parameters: Default::default(),
        contents,
    }
}

fn fraud_raw(model_version: &str, rows: usize) -> ModelInferRequest {
    let raw: Vec<u8> = (0..rows)
        .flat_map(|_| FRAUD_ROW)
        .flat_map(f32::to_le_bytes)
        .collect();
    ModelInferRequest {
        model_name: "fraud".into(),
        model_version: model_version.into(),
        id: "g-1".into(),
        inputs: vec![tensor("input", "FP32", vec![rows as i64, 30], None)],
        raw_input_contents: vec![raw],
        ..Default::default()
    }
}

fn f32s(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[tokio::test]
async fn health_and_metadata_rpcs() {
    let s = Server::demo(&[]);
    let mut c = connect(&s).await;
    assert!(
        c.server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert!(
        c.server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    for version in ["", "champion", "challenger", "1", "2", "latest"] {
        let r = c
            .model_ready(ModelReadyRequest {
                name: "fraud".into(),
                version: version.into(),
            })
            .await
            .unwrap();
        assert!(r.into_inner().ready, "{version}");
    }
    // As in Triton, unknown models and versions are "not ready", not errors.
    for (name, version) in [("nope", ""), ("fraud", "9"), ("fraud", "prod")] {
        let r = c
            .model_ready(ModelReadyRequest {
                name: name.into(),
                version: version.into(),
            })
            .await
            .unwrap();
        assert!(!r.into_inner().ready, "{name} {version}");
    }

    let meta = c
        .server_metadata(ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.name, "podium");
    assert!(meta.extensions.contains(&"binary_tensor_data".to_string()));

    let m = c
        .model_metadata(ModelMetadataRequest {
            name: "fraud".into(),
            version: "challenger".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.name, "fraud");
    assert_eq!(m.platform, "onnx_onnxv1");
    assert_eq!(m.versions, vec!["1", "2"]);
    assert_eq!(m.inputs.len(), 1);
    assert_eq!(
        (m.inputs[0].name.as_str(), m.inputs[0].datatype.as_str()),
        ("input", "FP32")
    );
    assert_eq!(m.inputs[0].shape, vec![-1, 30]);
    let outs: Vec<(&str, &str, Vec<i64>)> = m
        .outputs
        .iter()
        .map(|t| (t.name.as_str(), t.datatype.as_str(), t.shape.clone()))
        .collect();
    assert_eq!(
        outs,
        vec![
            ("label", "INT64", vec![-1]),
            ("probabilities", "FP32", vec![-1, 2])
        ]
    );

    // grpc.health.v1: the server and each model.
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let channel = Channel::from_shared(s.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", "inference.GRPCInferenceService", "fraud", "mlp"] {
        common::eventually(std::time::Duration::from_secs(10), "health SERVING", || {
            let mut health = health.clone();
            async move {
                let r = health
                    .check(HealthCheckRequest {
                        service: service.into(),
                    })
                    .await
                    .ok()?;
                (r.into_inner().status == ServingStatus::Serving as i32).then_some(())
            }
        })
        .await;
    }
    let e = health
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn model_infer_by_alias_and_version() {
    let s = Server::demo(&[]);
    let mut c = connect(&s).await;
    for (version, want, p0) in [
        ("", "1", 0.620_603_44f32),
        ("champion", "1", 0.620_603_44),
        ("1", "1", 0.620_603_44),
        ("challenger", "2", 0.881_607_65),
        ("2", "2", 0.881_607_65),
        ("latest", "2", 0.881_607_65),
    ] {
        let resp = c.model_infer(fraud_raw(version, 2)).await.unwrap();
        assert_eq!(resp.metadata().get("x-podium-model-version").unwrap(), want);
        assert!(resp.metadata().get("x-podium-total-us").is_some());
        let r = resp.into_inner();
        assert_eq!(
            (
                r.model_name.as_str(),
                r.model_version.as_str(),
                r.id.as_str()
            ),
            ("fraud", want, "g-1")
        );
        let names: Vec<&str> = r.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, vec!["label", "probabilities"]);
        assert_eq!(r.outputs[1].shape, vec![2, 2]);
        assert_eq!(r.raw_output_contents.len(), 2);
        assert_eq!(
            r.raw_output_contents[0],
            [0i64.to_le_bytes(), 0i64.to_le_bytes()].concat()
        );
        let p = f32s(&r.raw_output_contents[1]);
        assert!(
            (p[0] - p0).abs() < 1e-5 && (p[2] - p0).abs() < 1e-5,
            "{version}: {p:?}"
        );
    }

    // Typed contents give the same answer as raw; outputs can be a subset.
    let mut typed = fraud_raw("", 1);
    typed.raw_input_contents.clear();
    typed.inputs[0].contents = Some(InferTensorContents {
        fp32_contents: FRAUD_ROW.to_vec(),
        ..Default::default()
    });
    typed.outputs = vec![InferRequestedOutputTensor {
        name: "probabilities".into(),
        parameters: Default::default(),
    }];
    let r = c.model_infer(typed).await.unwrap().into_inner();
    assert_eq!(r.outputs.len(), 1);
    assert_eq!(r.outputs[0].name, "probabilities");
    let raw = c.model_infer(fraud_raw("", 1)).await.unwrap().into_inner();
    assert_eq!(r.raw_output_contents[0], raw.raw_output_contents[1]);
}

/// (name, datatype, raw bytes of 4 elements, the same as typed contents or None).
fn all_types() -> Vec<(
    &'static str,
    &'static str,
    Vec<u8>,
    Option<InferTensorContents>,
)> {
    fn le<T: Copy, const N: usize>(v: &[T], f: fn(T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(|&x| f(x)).collect()
    }
    let c = InferTensorContents::default;
    let strings: [&[u8]; 4] = [b"", "héllo".as_bytes(), "☃".as_bytes(), b"x"];
    let mut bytes = Vec::new();
    for s in strings {
        bytes.extend_from_slice(&(s.len() as u32).to_le_bytes());
        bytes.extend_from_slice(s);
    }
    vec![
        (
            "bool",
            "BOOL",
            vec![1, 0, 0, 1],
            Some(InferTensorContents {
                bool_contents: vec![true, false, false, true],
                ..c()
            }),
        ),
        (
            "int8",
            "INT8",
            le(&[-128i8, -1, 0, 127], i8::to_le_bytes),
            Some(InferTensorContents {
                int_contents: vec![-128, -1, 0, 127],
                ..c()
            }),
        ),
        (
            "int16",
            "INT16",
            le(&[i16::MIN, -1, 0, i16::MAX], i16::to_le_bytes),
            Some(InferTensorContents {
                int_contents: vec![-32768, -1, 0, 32767],
                ..c()
            }),
        ),
        (
            "int32",
            "INT32",
            le(&[i32::MIN, -1, 0, i32::MAX], i32::to_le_bytes),
            Some(InferTensorContents {
                int_contents: vec![i32::MIN, -1, 0, i32::MAX],
                ..c()
            }),
        ),
        (
            "int64",
            "INT64",
            le(&[i64::MIN, -1, 0, i64::MAX], i64::to_le_bytes),
            Some(InferTensorContents {
                int64_contents: vec![i64::MIN, -1, 0, i64::MAX],
                ..c()
            }),
        ),
        (
            "uint8",
            "UINT8",
            vec![0, 1, 128, 255],
            Some(InferTensorContents {
                uint_contents: vec![0, 1, 128, 255],
                ..c()
            }),
        ),
        (
            "uint16",
            "UINT16",
            le(&[0u16, 1, 300, u16::MAX], u16::to_le_bytes),
            Some(InferTensorContents {
                uint_contents: vec![0, 1, 300, 65535],
                ..c()
            }),
        ),
        (
            "uint32",
            "UINT32",
            le(&[0u32, 1, 70000, u32::MAX], u32::to_le_bytes),
            Some(InferTensorContents {
                uint_contents: vec![0, 1, 70000, u32::MAX],
                ..c()
            }),
        ),
        (
            "uint64",
            "UINT64",
            le(&[0u64, 1, 1 << 40, u64::MAX], u64::to_le_bytes),
            Some(InferTensorContents {
                uint64_contents: vec![0, 1, 1 << 40, u64::MAX],
                ..c()
            }),
        ),
        (
            "fp16",
            "FP16",
            le(
                &[0.5f32, -1.5, 2.0, 65504.0].map(half::f16::from_f32),
                half::f16::to_le_bytes,
            ),
            None,
        ),
        (
            "fp32",
            "FP32",
            le(&[0.1f32, -2.5, f32::NAN, f32::INFINITY], f32::to_le_bytes),
            Some(InferTensorContents {
                fp32_contents: vec![0.1, -2.5, f32::NAN, f32::INFINITY],
                ..c()
            }),
        ),
        (
            "fp64",
            "FP64",
            le(&[0.1f64, -2.5, 1e300, 5e-324], f64::to_le_bytes),
            Some(InferTensorContents {
                fp64_contents: vec![0.1, -2.5, 1e300, 5e-324],
                ..c()
            }),
        ),
        (
            "string",
            "BYTES",
            bytes,
            Some(InferTensorContents {
                bytes_contents: strings.iter().map(|s| s.to_vec()).collect(),
                ..c()
            }),
        ),
    ]
}

#[tokio::test]
async fn every_datatype_round_trips_raw_and_typed() {
    let s = Server::demo(&[]);
    let mut c = connect(&s).await;
    let types = all_types();
    // All raw.
    let req = ModelInferRequest {
        model_name: "alltypes".into(),
        inputs: types
            .iter()
            .map(|(t, dt, ..)| tensor(&format!("in_{t}"), dt, vec![2, 2], None))
            .collect(),
        raw_input_contents: types.iter().map(|(_, _, raw, _)| raw.clone()).collect(),
        ..Default::default()
    };
    let r = c.model_infer(req).await.unwrap().into_inner();
    assert_eq!(r.outputs.len(), 13);
    for ((t, dt, raw, _), (out, bytes)) in types
        .iter()
        .zip(r.outputs.iter().zip(&r.raw_output_contents))
    {
        assert_eq!(out.name, format!("out_{t}"));
        assert_eq!(out.datatype, *dt);
        assert_eq!(out.shape, vec![2, 2]);
        assert_eq!(bytes, raw, "{t} raw round trip");
    }
    // Typed contents cannot carry FP16 and cannot be mixed with raw inputs,
    // so alltypes (which has an FP16 input) refuses them with the fix…
    let req = ModelInferRequest {
        model_name: "alltypes".into(),
        inputs: types
            .iter()
            .map(|(t, dt, _, contents)| {
                tensor(&format!("in_{t}"), dt, vec![2, 2], contents.clone())
            })
            .collect(),
        ..Default::default()
    };
    let e = c.model_infer(req).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        e.message(),
        "input \"in_fp16\" is FP16, which has no typed contents field; send it in raw_input_contents"
    );
    // …and the `typed` fixture (alltypes without FP16) takes every other
    // datatype typed; answers come back raw, equal to the raw encoding.
    let typed: Vec<_> = types.iter().filter(|(.., c)| c.is_some()).collect();
    assert_eq!(typed.len(), 12);
    let req = ModelInferRequest {
        model_name: "typed".into(),
        inputs: typed
            .iter()
            .map(|(t, dt, _, contents)| {
                tensor(&format!("in_{t}"), dt, vec![2, 2], contents.clone())
            })
            .collect(),
        ..Default::default()
    };
    let r = c.model_infer(req).await.unwrap().into_inner();
    assert_eq!(r.outputs.len(), 12);
    for ((t, dt, raw, _), (out, bytes)) in typed
        .iter()
        .zip(r.outputs.iter().zip(&r.raw_output_contents))
    {
        assert_eq!(out.name, format!("out_{t}"));
        assert_eq!(out.datatype, *dt);
        assert_eq!(bytes, raw, "{t} typed round trip");
    }
}

fn fraud_typed(shape: Vec<i64>, values: Vec<f32>) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "fraud".into(),
        inputs: vec![tensor(
            "input",
            "FP32",
            shape,
            Some(InferTensorContents {
                fp32_contents: values,
                ..Default::default()
            }),
        )],
        ..Default::default()
    }
}

#[tokio::test]
async fn bad_requests_get_the_right_codes_and_the_rest_messages() {
    let s = Server::demo(&["--max-request-bytes", "100000"]);
    let mut c = connect(&s).await;
    let row = FRAUD_ROW.to_vec();
    let with = |f: &dyn Fn(&mut ModelInferRequest)| {
        let mut r = fraud_typed(vec![1, 30], FRAUD_ROW.to_vec());
        f(&mut r);
        r
    };
    let cases: Vec<(&str, ModelInferRequest, Code, &str)> = vec![
        ("unknown model", with(&|r| r.model_name = "nope".into()), Code::NotFound, "unknown model \"nope\"; this server has: alltypes, fixed, fraud, mlp, typed"),
        ("unknown version", with(&|r| r.model_version = "9".into()), Code::NotFound, "model \"fraud\" has no version 9; registered versions: 1, 2"),
        ("unknown alias", with(&|r| r.model_version = "prod".into()), Code::NotFound, "model \"fraud\" has no alias \"prod\""),
        ("no model name", with(&|r| r.model_name.clear()), Code::InvalidArgument, "model_name is empty"),
        ("wrong input name", with(&|r| r.inputs[0].name = "features".into()), Code::InvalidArgument, "model fraud v1 has no input \"features\"; its inputs are: \"input\" FP32 [-1,30]"),
        ("missing input", with(&|r| r.inputs.clear()), Code::InvalidArgument, "missing input \"input\": model fraud v1 expects FP32 [-1,30]"),
        ("wrong datatype", with(&|r| r.inputs[0] = tensor("input", "FP64", vec![1, 30], Some(InferTensorContents { fp64_contents: vec![0.0; 30], ..Default::default() }))), Code::InvalidArgument, "input \"input\" has datatype FP64; model fraud v1 expects FP32"),
        ("unknown datatype", with(&|r| r.inputs[0].datatype = "FLOAT32".into()), Code::InvalidArgument, "unknown datatype \"FLOAT32\""),
        ("wrong shape", fraud_typed(vec![1, 29], row[..29].to_vec()), Code::InvalidArgument, "input \"input\" has shape [1,29]; model fraud v1 expects [-1,30]"),
        ("count vs shape", fraud_typed(vec![2, 30], row.clone()), Code::InvalidArgument, "input \"input\" has shape [2,30] (60 elements) but 30 FP32 values were sent"),
        ("absurd shape", fraud_typed(vec![1_000_000_000, 8], row.clone()), Code::InvalidArgument, "input \"input\" has shape [1000000000,8] (8000000000 elements) but 30 FP32 values were sent"),
        ("negative shape", fraud_typed(vec![-1, 30], row.clone()), Code::InvalidArgument, "dimension -1 is negative"),
        ("wrong typed field", with(&|r| r.inputs[0].contents = Some(InferTensorContents { int64_contents: vec![1; 30], ..Default::default() })), Code::InvalidArgument, "input \"input\" is FP32 but its data is in int64_contents; use fp32_contents"),
        ("raw count", with(&|r| r.raw_input_contents = vec![vec![], vec![]]), Code::InvalidArgument, "raw_input_contents has 2 entries for 1 inputs"),
        ("raw and typed", with(&|r| r.raw_input_contents = vec![vec![0; 120]]), Code::InvalidArgument, "has typed contents but the request uses raw_input_contents"),
        ("truncated raw", { let mut r = fraud_raw("", 1); r.raw_input_contents[0].truncate(118); r }, Code::InvalidArgument, "118 bytes is not a whole number of 4-byte elements"),
        ("unknown output", with(&|r| r.outputs = vec![InferRequestedOutputTensor { name: "score".into(), parameters: Default::default() }]), Code::InvalidArgument, "model fraud v1 has no output \"score\""),
        ("oversize message", fraud_raw("", 1000), Code::ResourceExhausted, "request message too large (decoded message length too large: found 120"),
    ];
    for (what, req, code, want) in cases {
        let e = c.model_infer(req).await.unwrap_err();
        assert_eq!(e.code(), code, "{what}: {}", e.message());
        assert!(
            e.message().contains(want),
            "{what}: {:?} does not contain {want:?}",
            e.message()
        );
    }
    let e = c.model_infer(fraud_raw("", 1000)).await.unwrap_err();
    assert!(
        e.message()
            .contains("the limit is: 100000 bytes); raise the limit with --max-request-bytes"),
        "{}",
        e.message()
    );

    // The same bad request gets the same message over REST.
    let rest: serde_json::Value = common::client()
        .post(s.url("/v2/models/fraud/infer"))
        .json(&serde_json::json!({"inputs": [{"name": "input", "shape": [1, 29], "datatype": "FP32", "data": &row[..29]}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let grpc = c
        .model_infer(fraud_typed(vec![1, 29], row[..29].to_vec()))
        .await
        .unwrap_err();
    assert_eq!(rest["error"], grpc.message());

    // Still serving.
    assert!(
        c.server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert_eq!(
        c.model_infer(fraud_raw("", 1))
            .await
            .unwrap()
            .into_inner()
            .model_version,
        "1"
    );
}

#[tokio::test]
async fn stream_infer_answers_each_request_in_order() {
    let s = Server::demo(&[]);
    let mut c = connect(&s).await;
    let mut requests = Vec::new();
    for i in 0..20 {
        let mut r = fraud_raw(
            if i % 2 == 0 { "champion" } else { "challenger" },
            1 + i % 3,
        );
        r.id = format!("s-{i}");
        if i == 5 {
            r.inputs[0].name = "wrong".into();
        }
        if i == 11 {
            r.model_name = "nope".into();
        }
        requests.push(r);
    }
    let mut answers = c
        .model_stream_infer(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut seen = 0;
    while let Some(msg) = answers.message().await.unwrap() {
        let i = seen;
        seen += 1;
        match i {
            5 | 11 => {
                let want = if i == 5 {
                    "has no input \"wrong\""
                } else {
                    "unknown model \"nope\""
                };
                assert!(msg.error_message.contains(want), "{}", msg.error_message);
                let failed = msg
                    .infer_response
                    .expect("a failed answer names its request");
                assert_eq!(failed.id, format!("s-{i}"));
            }
            _ => {
                assert_eq!(msg.error_message, "", "request {i}");
                let r = msg.infer_response.unwrap();
                assert_eq!(r.id, format!("s-{i}"), "answers out of order");
                assert_eq!(r.model_version, if i % 2 == 0 { "1" } else { "2" });
                assert_eq!(r.outputs[0].shape, vec![(1 + i % 3) as i64]);
            }
        }
    }
    assert_eq!(seen, 20);
}

#[tokio::test]
async fn a_full_queue_is_resource_exhausted_at_once() {
    let s = Server::demo(&["--inference-threads", "1", "--queue-depth", "1"]);
    let c = connect(&s).await;
    let batch = 8192usize;
    let raw: Vec<u8> = (0..batch * 64)
        .flat_map(|i| ((i % 7) as f32 * 0.1).to_le_bytes())
        .collect();
    let req = ModelInferRequest {
        model_name: "mlp".into(),
        inputs: vec![tensor("input", "FP32", vec![batch as i64, 64], None)],
        raw_input_contents: vec![raw],
        ..Default::default()
    };
    let (mut ok, mut rejected) = (0, 0);
    for _burst in 0..5 {
        let mut tasks = Vec::new();
        for _ in 0..24 {
            let (mut c, req) = (c.clone(), req.clone());
            tasks.push(tokio::spawn(async move { c.model_infer(req).await }));
        }
        for t in tasks {
            match t.await.unwrap() {
                Ok(r) => {
                    ok += 1;
                    assert_eq!(r.into_inner().outputs[0].shape, vec![batch as i64, 10]);
                }
                Err(e) => {
                    rejected += 1;
                    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
                    assert!(
                        e.message().contains("inference queue is full"),
                        "{}",
                        e.message()
                    );
                }
            }
        }
        if ok >= 1 && rejected >= 1 {
            break;
        }
    }
    assert!(ok >= 1 && rejected >= 1, "ok {ok}, rejected {rejected}");
}
