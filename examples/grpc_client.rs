//! Calls the demo's fraud model over gRPC with the client generated from
//! proto/grpc_service.proto. With `./scripts/demo.sh` running:
//!
//! ```sh
//! cargo run --example grpc_client             # champion
//! cargo run --example grpc_client challenger  # or any alias / version number
//! ```

use podium::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use podium::api::grpc::proto::{model_infer_request::InferInputTensor, ModelInferRequest};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let version = std::env::args().nth(1).unwrap_or_default();
    let mut client = GrpcInferenceServiceClient::connect("http://127.0.0.1:8001").await?;
    let row: Vec<f32> = vec![0.5; 30];
    let request = ModelInferRequest {
        model_name: "fraud".into(),
        model_version: version, // a number, an alias, or "" for champion
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, 30],
            ..Default::default()
        }],
        raw_input_contents: vec![row.iter().flat_map(|x| x.to_le_bytes()).collect()],
        ..Default::default()
    };
    let response = client.model_infer(request).await?.into_inner();
    // Outputs come back raw: `label` is INT64, `probabilities` FP32.
    let probabilities: Vec<f32> = response.raw_output_contents[1]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    println!(
        "fraud v{} → probabilities {probabilities:?}",
        response.model_version
    );
    Ok(())
}
