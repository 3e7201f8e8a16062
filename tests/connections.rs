//! Connection hygiene on both listeners: half-sent heads, idle keep-alive
//! connections, late bodies and connections over the limit are closed, and
//! SIGTERM does not wait for any of them, only for real requests.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{client, closed_within, read_table, Server};
use serde_json::{json, Value};

/// Long enough for any timer under test (1 s) on a loaded machine, and
/// shorter than the default 30 s timeouts and drain.
const CLOSE_DEADLINE: Duration = Duration::from_secs(20);

fn connect(url: &str) -> TcpStream {
    let addr = url.trim_start_matches("http://");
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_nodelay(true).unwrap();
    stream
}

/// One HTTP/1.1 answer on `stream`: status and body.
fn read_answer(stream: &mut TcpStream) -> (u16, String) {
    stream.set_read_timeout(Some(CLOSE_DEADLINE)).unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_string();
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("not an HTTP answer: {head}"));
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or_else(|| panic!("no content-length in {head}"));
            if data.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&data[end + 4..end + 4 + length]).to_string();
                return (status, body);
            }
        }
        let n = stream.read(&mut buf).expect("read an answer");
        assert!(
            n > 0,
            "closed before answering: {:?}",
            String::from_utf8_lossy(&data)
        );
        data.extend_from_slice(&buf[..n]);
    }
}

/// Polls `check` until it returns `Some`, failing after `deadline`.
fn eventually_blocking<T>(
    deadline: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `GET /v2/health/live` on a kept-alive connection; the status.
fn live(stream: &mut TcpStream) -> u16 {
    stream
        .write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: podium\r\n\r\n")
        .expect("send a request");
    read_answer(stream).0
}

#[test]
fn a_half_sent_head_is_closed_after_the_header_timeout_on_both_ports() {
    let s = Server::demo(&["--header-read-timeout-secs", "1"]);
    let mut rest = connect(&s.base);
    rest.write_all(b"POST /v2/models/fraud/infer HTTP/1.1\r\nhost: podium\r\n")
        .unwrap();
    let mut silent = connect(&s.base);
    // gRPC: part of the HTTP/2 preface, then nothing.
    let mut grpc = connect(&s.grpc);
    grpc.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
    assert!(
        closed_within(&mut rest, CLOSE_DEADLINE),
        "REST slowloris kept open"
    );
    assert!(
        closed_within(&mut silent, CLOSE_DEADLINE),
        "silent REST connection kept open"
    );
    assert!(
        closed_within(&mut grpc, CLOSE_DEADLINE),
        "gRPC slowloris kept open"
    );
    // The server still answers everyone else.
    let mut fresh = connect(&s.base);
    assert_eq!(live(&mut fresh), 200);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let s = Server::demo(&["--idle-timeout-secs", "1"]);
    let mut conn = connect(&s.base);
    assert_eq!(live(&mut conn), 200);
    assert!(
        closed_within(&mut conn, CLOSE_DEADLINE),
        "idle connection kept open"
    );
}

#[test]
fn connections_over_the_limit_are_refused_while_the_admitted_ones_are_served() {
    let s = Server::demo(&["--max-connections", "2"]);
    let mut first = connect(&s.base);
    let mut second = connect(&s.base);
    assert_eq!(live(&mut first), 200);
    assert_eq!(live(&mut second), 200);
    for _ in 0..3 {
        let mut over = connect(&s.base);
        let _ = over.write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: podium\r\n\r\n");
        assert!(
            closed_within(&mut over, CLOSE_DEADLINE),
            "a third connection was served"
        );
    }
    let mut grpc_over = (0..3).map(|_| connect(&s.grpc)).collect::<Vec<_>>();
    assert!(
        closed_within(&mut grpc_over[2], CLOSE_DEADLINE),
        "a third gRPC connection was kept"
    );
    assert_eq!(live(&mut first), 200);
    assert_eq!(live(&mut second), 200);
    // A place given back is taken by the next client.
    drop(first);
    eventually_blocking(CLOSE_DEADLINE, "a new connection admitted", || {
        let mut next = connect(&s.base);
        let _ = next.write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: podium\r\n\r\n");
        let mut buf = [0u8; 12];
        next.set_read_timeout(Some(CLOSE_DEADLINE)).unwrap();
        (next.read_exact(&mut buf).is_ok() && &buf == b"HTTP/1.1 200").then_some(())
    });
}

#[test]
fn a_body_that_stalls_gets_408() {
    let table = tempfile::tempdir().unwrap();
    let s = Server::demo(&[
        "--body-read-timeout-secs",
        "1",
        "--table-dir",
        table.path().to_str().unwrap(),
        "--table-roll-secs",
        "0.1",
    ]);
    let mut conn = connect(&s.base);
    conn.write_all(
        b"POST /v2/models/fraud/infer HTTP/1.1\r\nhost: podium\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"inputs\": [",
    )
    .unwrap();
    let (status, body) = read_answer(&mut conn);
    assert_eq!(status, 408, "{body}");
    let error: Value = serde_json::from_str(&body).expect("an OIP error body");
    let message = error["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("--body-read-timeout-secs"),
        "the error names the flag: {message}"
    );
    assert!(
        closed_within(&mut conn, CLOSE_DEADLINE),
        "kept open after 408"
    );
    // The inference table records what the client got, not a 400.
    let row = eventually_blocking(CLOSE_DEADLINE, "the late request's row", || {
        read_table(table.path()).into_iter().next()
    });
    assert_eq!(row["status_code"], 408, "{row:?}");
    let error = row["error"].as_str().unwrap_or_default();
    assert_eq!(error, message, "the client's message");
}

/// Requests holding mlp's loaded version, from `/admin/status`.
fn mlp_in_flight(status: &Value) -> Option<u64> {
    status["slots"]
        .as_array()?
        .iter()
        .find(|x| x["model"] == "mlp")?["in_flight"]
        .as_u64()
}

#[tokio::test]
async fn sigterm_closes_idle_and_half_open_connections_and_drains_real_requests() {
    // Default timeouts (30 s) and drain (30 s): only shutdown closes the
    // idle and half-sent connections before the process may exit.
    let s = Server::demo(&["--inference-threads", "1"]);
    let mut half_open = connect(&s.base);
    half_open
        .write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: pod")
        .unwrap();
    let mut idle = connect(&s.base);
    assert_eq!(live(&mut idle), 200);
    let mut grpc_half_open = connect(&s.grpc);
    grpc_half_open.write_all(b"PRI * HTTP").unwrap();

    // A request that computes for a while.
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
        let resp = client()
            .post(url)
            .header("inference-header-content-length", n)
            .body([header, raw].concat())
            .send()
            .await
            .expect("the in-flight request is answered");
        resp.status().as_u16()
    });
    common::eventually(
        Duration::from_secs(30),
        "the slow request in flight",
        || async {
            let status = s.admin_status().await;
            (mlp_in_flight(&status)? == 1).then_some(())
        },
    )
    .await;
    s.terminate();
    let (closed, s) = tokio::task::spawn_blocking(move || {
        let closed = [
            closed_within(&mut half_open, CLOSE_DEADLINE),
            closed_within(&mut idle, CLOSE_DEADLINE),
            closed_within(&mut grpc_half_open, CLOSE_DEADLINE),
        ];
        (closed, s)
    })
    .await
    .unwrap();
    assert_eq!(
        closed, [true; 3],
        "[half-open, idle, gRPC half-open] closed on SIGTERM"
    );
    assert_eq!(
        slow.await.unwrap(),
        200,
        "the in-flight request was cut off"
    );
    let mut s = s;
    let status = tokio::task::spawn_blocking(move || s.wait_exit(CLOSE_DEADLINE))
        .await
        .unwrap();
    assert!(status.success(), "podium exited with {status}");
}
