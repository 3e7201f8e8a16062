//! Stopping the server: SIGTERM lets accepted requests finish, then exits 0.

mod common;

use std::time::Duration;

use common::{client, Server};
use serde_json::{json, Value};

/// Requests holding mlp's loaded version, from `/admin/status`.
fn mlp_in_flight(status: &Value) -> Option<u64> {
    status["slots"]
        .as_array()?
        .iter()
        .find(|x| x["model"] == "mlp")?["in_flight"]
        .as_u64()
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_cleanly() {
    let mut s = Server::demo(&["--inference-threads", "1"]);
    let c = client();
    // Heavy requests, so some are still in flight when the signal arrives.
    let batch = 4096usize;
    let body = serde_json::to_vec(&json!({
        "inputs": [{"name": "input", "shape": [batch, 64], "datatype": "FP32", "data": vec![0.25f32; batch * 64]}]
    }))
    .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (c, url, body) = (c.clone(), s.url("/v2/models/mlp/infer"), body.clone());
        tasks.push(tokio::spawn(async move {
            let resp = c
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }));
    }
    // The gate: every request has been accepted (it is running or queued on
    // the one inference thread, or already answered) before the signal.
    common::eventually(
        Duration::from_secs(30),
        "all four requests accepted",
        || async {
            let status = s.admin_status().await;
            let in_flight = mlp_in_flight(&status)?;
            let answered = tasks.iter().filter(|t| t.is_finished()).count() as u64;
            (in_flight + answered == 4).then_some(())
        },
    )
    .await;
    s.terminate();
    for t in tasks {
        let (status, v) = t.await.unwrap();
        assert_eq!(status, 200, "an accepted request was lost on shutdown: {v}");
        assert_eq!(v["outputs"][0]["shape"], json!([batch, 10]));
    }
    let s_url_live = s.url("/v2/health/live");
    let status = tokio::task::spawn_blocking(move || s.wait_exit(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(status.success(), "podium exited with {status}");
    // New connections are refused once it has stopped.
    assert!(
        c.get(s_url_live).send().await.is_err(),
        "still answering after exit"
    );
}

#[tokio::test]
async fn the_drain_timeout_bounds_shutdown() {
    // A request that computes for seconds, and a drain timeout of zero: the
    // server exits at once (status 0) instead of waiting for it.
    let mut s = Server::demo(&["--inference-threads", "1", "--drain-timeout-secs", "0"]);
    let rows = 65536usize;
    let raw: Vec<u8> = (0..rows * 64)
        .flat_map(|i| ((i % 3) as f32).to_le_bytes())
        .collect();
    let header = serde_json::to_vec(&json!({
        "inputs": [{"name": "input", "shape": [rows, 64], "datatype": "FP32", "parameters": {"binary_data_size": raw.len()}}]
    }))
    .unwrap();
    let n = header.len().to_string();
    let url = s.url("/v2/models/mlp/infer");
    let slow = tokio::spawn(async move {
        client()
            .post(url)
            .header("inference-header-content-length", n)
            .body([header, raw].concat())
            .send()
            .await
    });
    // Wait until the request is running (admin status counts it).
    common::eventually(
        Duration::from_secs(30),
        "the slow request in flight",
        || async {
            let status = s.get_json("/admin/status").await;
            (mlp_in_flight(&status)? == 1).then_some(())
        },
    )
    .await;
    s.terminate();
    let status = tokio::task::spawn_blocking(move || s.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(status.success(), "podium exited with {status}");
    assert!(
        slow.await.unwrap().is_err(),
        "the slow request was cut off by the drain timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_json_bodies_do_not_stall_other_requests() {
    // JSON decoding of a big tensor takes a while (and a lot of memory): it
    // runs off the async workers, so probes are answered meanwhile.
    let s = Server::demo(&[]);
    let rows = 40_000usize;
    let body = serde_json::to_vec(&json!({
        "inputs": [{"name": "input", "shape": [rows, 30], "datatype": "FP32", "data": vec![0.5f32; rows * 30]}]
    }))
    .unwrap();
    let mut big = Vec::new();
    for _ in 0..3 {
        let (url, body) = (s.url("/v2/models/fraud/infer"), body.clone());
        big.push(tokio::spawn(async move {
            let resp = client()
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let _ = resp.bytes().await.unwrap();
        }));
    }
    // Probes at once, while the big bodies are being read and decoded
    // (without the offload they wait for the decodes: checked). The order of
    // events is the assertion: every probe is answered while no big request
    // has been answered yet.
    for _ in 0..10 {
        assert_eq!(s.get_status("/v2/health/live").await, 200);
    }
    let unanswered = big.iter().filter(|t| !t.is_finished()).count();
    assert_eq!(unanswered, 3, "the probes waited for a big JSON request");
    for t in big {
        t.await.unwrap();
    }
}
