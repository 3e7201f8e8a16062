//! The global budget of request bodies being read and decoded at once
//! (`--max-inflight-body-bytes`): beyond it, 503 with `Retry-After` at once;
//! a body larger than the whole budget, 413; the budget comes back when a
//! body is done or its client goes away.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{client, eventually, fraud_request, Server};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn bodies_in_flight_share_one_budget() {
    let s = Server::demo(&["--max-inflight-body-bytes", "4000"]);
    let body = fraud_request(1).to_string();
    assert!(body.len() < 1000, "the test needs a small body");
    let post = |body: String| {
        let url = s.url("/v2/models/fraud/infer");
        async move {
            client()
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(post(body.clone()).await.status(), 200);

    // A client that declares 3,800 bytes and sends 10 holds 3,800 of the 4,000.
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut slow = TcpStream::connect(&addr).unwrap();
    write!(
        slow,
        "POST /v2/models/fraud/infer HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 3800\r\n\r\n{{\"inputs\":"
    )
    .unwrap();
    slow.flush().unwrap();
    let refused = eventually(
        Duration::from_secs(30),
        "a 503 from the spent budget",
        || {
            let body = body.clone();
            async move {
                let resp = post(body).await;
                (resp.status() == 503).then_some(resp)
            }
        },
    )
    .await;
    assert_eq!(refused.headers()["retry-after"], "1");
    let v: Value = refused.json().await.unwrap();
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("3800 of the 4000 bytes") && error.contains("--max-inflight-body-bytes"),
        "{v}"
    );

    // The client goes away: its share comes back.
    drop(slow);
    eventually(Duration::from_secs(30), "the budget to come back", || {
        let body = body.clone();
        async move { (post(body).await.status() == 200).then_some(()) }
    })
    .await;

    // One body over the whole budget can never fit: 413, naming the flag.
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(5000));
    let resp = post(big).await;
    assert_eq!(resp.status(), 413);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("--max-inflight-body-bytes"),
        "{v}"
    );
}
