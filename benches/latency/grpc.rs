//! The gRPC `ModelInfer` layer.

use super::*;

// ------------------------------------------------------------ gRPC layer

/// `ModelInfer` with raw input contents (as tritonclient.grpc sends), through
/// a tonic client generated from the same proto, over one HTTP/2 connection.
pub(crate) struct Grpc {
    pub(crate) client: GrpcInferenceServiceClient<tonic::transport::Channel>,
    pub(crate) request: ModelInferRequest,
}

impl Grpc {
    pub(crate) async fn connect(addr: SocketAddr) -> Grpc {
        let client = GrpcInferenceServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect to gRPC");
        let request = ModelInferRequest {
            model_name: "fraud".into(),
            inputs: vec![InferInputTensor {
                name: "input".into(),
                datatype: "FP32".into(),
                shape: vec![1, 30],
                ..Default::default()
            }],
            raw_input_contents: vec![ROW.iter().flat_map(|x| x.to_le_bytes()).collect()],
            ..Default::default()
        };
        Grpc { client, request }
    }

    pub(crate) async fn batch(&mut self, plan: Plan) -> Batch {
        let mut batch = Batch::with_capacity(plan.calls);
        let t = Instant::now();
        while plan.more(batch.calls, t) {
            let t0 = Instant::now();
            let response = self
                .client
                .model_infer(self.request.clone())
                .await
                .expect("ModelInfer");
            batch.record(t0.elapsed());
            let server_us = |key: &str| {
                response
                    .metadata()
                    .get(key)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
            };
            batch.record_server([
                server_us("x-podium-total-us"),
                server_us("x-podium-inference-us"),
                server_us("x-podium-queue-us"),
            ]);
            let r = response.into_inner();
            let label: Vec<i64> = r.raw_output_contents[0]
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let probabilities: Vec<f32> = r.raw_output_contents[1]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            expect_answer(&label, &probabilities, "gRPC ModelInfer");
        }
        batch.wall = t.elapsed();
        batch
    }
}
