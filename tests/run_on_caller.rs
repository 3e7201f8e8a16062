//! `--run-on-caller-max-us`: with the pool idle, a microsecond model runs on
//! the thread that received the request (no hand-off), with the same
//! answers over REST and gRPC; a request far larger than typical is still
//! handed off; without the flag nothing runs on the caller.

mod common;

use common::{assert_fraud_v1, client, fraud_grpc_request, fraud_request, output_numbers, Server};
use podium::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use serde_json::Value;

async fn runs(s: &Server, thread: &str) -> f64 {
    s.metric("podium_inference_runs_total", &[("thread", thread)])
        .await
        .unwrap_or(0.0)
}

/// One REST call of `rows` fraud rows, one after another: the status, the
/// `x-podium-queue-us` header and the first row's probabilities.
async fn call(s: &Server, rows: usize) -> (u16, String, Vec<f64>) {
    let resp = client()
        .post(s.url("/v2/models/fraud/infer"))
        .json(&fraud_request(rows))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let queue = resp.headers()["x-podium-queue-us"]
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = resp.json().await.unwrap();
    let probabilities = output_numbers(&body, "probabilities");
    (status, queue, probabilities)
}

#[tokio::test]
async fn an_idle_server_runs_a_microsecond_model_on_the_receiving_thread() {
    // Generous for a debug build's tensor conversion: the test is about
    // where a call runs, never about speed.
    let s = Server::demo(&["--run-on-caller-max-us", "5000"]);
    for _ in 0..10 {
        let (status, queue, probabilities) = call(&s, 1).await;
        assert_eq!(status, 200);
        assert_eq!(queue, "0", "no queue on the caller");
        assert_fraud_v1(&probabilities);
    }
    let mut grpc = GrpcInferenceServiceClient::connect(s.grpc.clone())
        .await
        .unwrap();
    for _ in 0..5 {
        let answer = grpc
            .model_infer(fraud_grpc_request("fraud"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.model_name, "fraud");
    }
    assert_eq!(runs(&s, "caller").await, 15.0);
    assert_eq!(runs(&s, "inference").await, 0.0);

    // 20,000 rows: thousands of times the typical request, handed off.
    let (status, queue, probabilities) = call(&s, 20_000).await;
    assert_eq!(status, 200);
    assert_ne!(queue, "0");
    assert_fraud_v1(&probabilities);
    assert_eq!(runs(&s, "inference").await, 1.0);
}

#[tokio::test]
async fn without_the_flag_every_call_is_handed_off() {
    let s = Server::demo(&[]);
    for _ in 0..3 {
        let (status, _, probabilities) = call(&s, 1).await;
        assert_eq!(status, 200);
        assert_fraud_v1(&probabilities);
    }
    assert_eq!(runs(&s, "caller").await, 0.0);
    assert_eq!(runs(&s, "inference").await, 3.0);
}
