//! Stopping the server: SIGTERM lets accepted requests finish, then exits 0.

mod common;

use std::time::Duration;

use common::{client, Server};
use serde_json::{json, Value};

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
    // With one inference thread the requests run one after another, each for
    // tens of milliseconds: when one answer has arrived, the others (sent at
    // the same moment) are accepted and queued or running.
    let mut tasks = tasks.into_iter();
    let (status, _) = tasks.next().unwrap().await.unwrap();
    assert_eq!(status, 200);
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
            let status: Value = client()
                .get(s.url("/admin/status"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let slot = status["slots"]
                .as_array()?
                .iter()
                .find(|x| x["model"] == "mlp")?
                .clone();
            (slot["in_flight"] == 1).then_some(())
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
            std::time::Instant::now()
        }));
    }
    // Probes at once, while the big bodies are being read and decoded
    // (without the offload they wait for the decodes: checked).
    let c = client();
    let mut probes_done = std::time::Instant::now();
    for _ in 0..10 {
        assert_eq!(
            c.get(s.url("/v2/health/live"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        probes_done = std::time::Instant::now();
    }
    let mut first_big = None;
    for t in big {
        let done = t.await.unwrap();
        first_big = Some(first_big.map_or(done, |f: std::time::Instant| f.min(done)));
    }
    assert!(
        probes_done < first_big.unwrap(),
        "the probes waited for a big JSON request"
    );
}
