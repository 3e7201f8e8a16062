//! Per-request deadlines: a request whose deadline passes while it waits for
//! an inference thread is dropped before it runs (504 / DEADLINE_EXCEEDED),
//! counted, and the server keeps answering.

mod common;

use std::time::Duration;

use common::{client, eventually, fraud_request, Server};
use podium::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use serde_json::Value;

/// One inference thread, and `slow` (fraud's signature, ~0.5 s a call) behind
/// the endpoint `slow-ep`, whose requests get 50 ms unless they say otherwise.
fn slow_server() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry");
    assert_eq!(
        common::register(&reg, "slow", "fixtures/slow_fraud.onnx"),
        1
    );
    common::set_alias(&reg, "slow", "champion", 1);
    let config = dir.path().join("podium.toml");
    std::fs::write(
        &config,
        "[[endpoint]]\nname = \"slow-ep\"\nmodel = \"slow\"\ntimeout_ms = 50\narms = [{ alias = \"champion\", weight = 1 }]\n",
    )
    .unwrap();
    let s = Server::start(
        &reg,
        &[
            "--config",
            config.to_str().unwrap(),
            "--inference-threads",
            "1",
        ],
    );
    (dir, s)
}

/// Starts a call that keeps the only inference thread busy for ~0.5 s and
/// returns once it is running.
async fn occupy(s: &Server) -> tokio::task::JoinHandle<u16> {
    let url = s.url("/v2/models/slow/infer");
    let busy = tokio::spawn(async move {
        let resp = client()
            .post(url)
            .json(&fraud_request(1))
            .send()
            .await
            .unwrap();
        resp.status().as_u16()
    });
    eventually(
        Duration::from_secs(30),
        "the slow call to start",
        || async {
            let status = s.admin_status().await;
            let running = status["resident"]
                .as_array()?
                .iter()
                .any(|r| r["model"] == "slow" && r["in_flight"].as_u64() == Some(1));
            running.then_some(())
        },
    )
    .await;
    busy
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_past_its_deadline_in_the_queue_is_dropped_with_504() {
    let (_dir, s) = slow_server();
    let c = client();

    // REST, by header.
    let busy = occupy(&s).await;
    let resp = c
        .post(s.url("/v2/models/slow/infer"))
        .header("x-podium-timeout-ms", "50")
        .json(&fraud_request(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    assert!(resp.headers().contains_key("x-request-id"));
    let v: Value = resp.json().await.unwrap();
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("deadline passed"), "{v}");
    assert!(error.contains("x-podium-timeout-ms"), "{v}");
    assert_eq!(busy.await.unwrap(), 200, "the running call is not affected");

    // The endpoint's default (50 ms), with no timeout in the request.
    let busy = occupy(&s).await;
    let (status, v) = s
        .post_json("/v2/models/slow-ep/infer", &fraud_request(1))
        .await;
    assert_eq!(status, 504, "{v}");
    assert_eq!(busy.await.unwrap(), 200);

    // gRPC, by metadata: DEADLINE_EXCEEDED with the same words.
    let busy = occupy(&s).await;
    let mut grpc = GrpcInferenceServiceClient::connect(s.grpc.clone())
        .await
        .unwrap();
    let mut request = tonic::Request::new(common::fraud_grpc_request("slow"));
    request
        .metadata_mut()
        .insert("x-podium-timeout-ms", "50".parse().unwrap());
    let status = grpc.model_infer(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("deadline passed"), "{status:?}");
    assert_eq!(busy.await.unwrap(), 200);

    // A generous deadline is met; a malformed one is a 400 naming the form.
    let resp = c
        .post(s.url("/v2/models/slow/infer"))
        .header("x-podium-timeout-ms", "60000")
        .json(&fraud_request(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = c
        .post(s.url("/v2/models/slow/infer"))
        .header("x-podium-timeout-ms", "soon")
        .json(&fraud_request(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("whole number of milliseconds"),
        "{v}"
    );

    let dropped = |endpoint: &'static str| {
        let s = &s;
        async move {
            s.metric("podium_deadline_exceeded_total", &[("endpoint", endpoint)])
                .await
                .unwrap_or(0.0)
        }
    };
    assert_eq!(dropped("slow").await, 2.0);
    assert_eq!(dropped("slow-ep").await, 1.0);
}
