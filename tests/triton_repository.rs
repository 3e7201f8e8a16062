//! Triton's repository and model configuration rpcs of the real server,
//! with the tonic client generated from Podium's proto (the tritonclient
//! side is tests/python/test_triton_repository.py).

mod common;

use common::Server;
use podium::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use podium::api::grpc::proto::*;
use serde_json::json;
use tonic::Code;

#[tokio::test]
async fn repository_and_config_rpcs() {
    let s = Server::demo(&[]);
    let mut c = GrpcInferenceServiceClient::connect(s.grpc.clone())
        .await
        .expect("connect to gRPC");

    let index = c
        .repository_index(RepositoryIndexRequest::default())
        .await
        .expect("RepositoryIndex")
        .into_inner()
        .models;
    let fraud_v1 = index
        .iter()
        .find(|m| m.name == "fraud" && m.version == "1")
        .unwrap_or_else(|| panic!("fraud v1 listed: {index:?}"));
    assert_eq!(
        (fraud_v1.state.as_str(), fraud_v1.reason.as_str()),
        ("READY", "")
    );
    // the same entries as REST
    let (status, rest) = s.post_json("/v2/repository/index", &json!({})).await;
    assert_eq!(status, 200);
    let rest: Vec<(String, String)> = rest
        .as_array()
        .expect("an array")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().into(),
                e["version"].as_str().unwrap().into(),
            )
        })
        .collect();
    let grpc: Vec<(String, String)> = index
        .iter()
        .map(|m| (m.name.clone(), m.version.clone()))
        .collect();
    assert_eq!(rest, grpc);

    let e = c
        .repository_model_load(RepositoryModelLoadRequest {
            model_name: "fraud".into(),
            ..Default::default()
        })
        .await
        .expect_err("load is refused");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("podium alias set fraud champion"),
        "{}",
        e.message()
    );
    let (status, body) = s
        .post_json("/v2/repository/models/fraud/unload", &json!({}))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("managed by the registry"),
        "{body}"
    );

    let config = c
        .model_config(ModelConfigRequest {
            name: "fraud".into(),
            version: String::new(),
        })
        .await
        .expect("ModelConfig")
        .into_inner()
        .config
        .expect("a config");
    assert_eq!(config.platform, "onnxruntime_onnx");
    assert_eq!(config.max_batch_size, 0);
    assert_eq!(config.input[0].data_type, DataType::TypeFp32 as i32);
    assert_eq!(config.input[0].dims, vec![-1, 30]);
    let rest = s.get_json("/v2/models/fraud/versions/1/config").await;
    assert_eq!(rest["input"][0]["dims"], json!([-1, 30]));
    assert_eq!(rest["input"][0]["data_type"], "TYPE_FP32");
    assert_eq!(
        rest["output"].as_array().map(Vec::len),
        Some(config.output.len())
    );
}
