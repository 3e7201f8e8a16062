//! What the inference table costs: throughput and latency of the fraud model
//! at concurrency 64 with the table on and off, measured in one run.
//!
//! ```text
//! cargo bench --bench table_cost
//! ```
//!
//! Two real servers (`podium::server::serve`, the code of `podium serve`)
//! run in this process on one runtime, identical but for `--table-dir`.
//! A light client (hand-written HTTP/1.1 keep-alive over 64 connections,
//! all on one thread, so it takes as little of the 2 cores as possible)
//! sends single-row REST JSON requests to one server at a time, alternating
//! off/on for several rounds; the report gives medians across rounds. At
//! the end the table server is stopped and its files are read back to check
//! that every request has its row.
//!
//! Knobs: `PODIUM_BENCH_ROUNDS` (5), `PODIUM_BENCH_SECS` (4 per server per
//! round), `PODIUM_BENCH_CONCURRENCY` (64).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use podium::inference_table::summary::summarize;
use podium::inference_table::TableOptions;
use podium::registry::local::LocalRegistry;
use podium::registry::Registry;
use podium::server::{serve, ServeOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The allocator `podium serve` uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The fraud model's first demo row, shared with the integration tests.
#[path = "../tests/common/mod.rs"]
mod common;
use common::FRAUD_ROW as ROW;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// Whether `GET /v2/health/ready` answers 200 (the models are loaded).
async fn ready(addr: SocketAddr) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let request = "GET /v2/health/ready HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    answer.starts_with(b"HTTP/1.1 200")
}

/// Requests answered and their latencies, for one server in one round.
struct Round {
    calls: usize,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

/// `concurrency` keep-alive connections sending `request` for `secs`.
async fn drive(addr: SocketAddr, request: Arc<Vec<u8>>, concurrency: usize, secs: f64) -> Round {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (request, stop) = (Arc::clone(&request), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let mut latencies = Vec::new();
            let mut buf = vec![0u8; 8192];
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                stream.write_all(&request).await.expect("send");
                let mut have = 0;
                loop {
                    let n = stream.read(&mut buf[have..]).await.expect("receive");
                    assert!(n > 0, "server closed the connection");
                    have += n;
                    let head = &buf[..have];
                    if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        let text = std::str::from_utf8(&head[..end]).expect("ASCII head");
                        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
                        let length: usize = text
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .expect("content-length");
                        if have >= end + 4 + length {
                            break;
                        }
                    }
                }
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("client task"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Round {
        calls: latencies.len(),
        latencies,
        elapsed,
    }
}

/// CPU time this process has used (user + system), from /proc/self/stat.
/// It counts the client too, which costs the same per request either way,
/// so CPU per request compares the two servers even on a busy machine.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which is in parentheses).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime: fields 14 and 15 of the line (11 and 12 here), in clock ticks.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of this process's threads named `name`.
fn thread_cpu_seconds(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .map(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            let fields: Vec<f64> = stat
                .rsplit_once(')')
                .map(|(_, rest)| {
                    rest.split_whitespace()
                        .map(|f| f.parse().unwrap_or(0.0))
                        .collect()
                })
                .unwrap_or_default();
            (fields.get(11).unwrap_or(&0.0) + fields.get(12).unwrap_or(&0.0)) / 100.0
        })
        .sum()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds = knob("PODIUM_BENCH_ROUNDS", 5) as usize;
    let secs = knob("PODIUM_BENCH_SECS", 4) as f64;
    let concurrency = knob("PODIUM_BENCH_CONCURRENCY", 64) as usize;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = LocalRegistry::new(dir.path().join("registry"));
    registry
        .register("fraud", &repo.join("models/fraud/v1.onnx"))
        .expect("register fraud v1");
    registry
        .set_alias("fraud", "champion", 1)
        .expect("set champion");
    let table_dir = dir.path().join("table");

    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("server runtime");
    let mut servers = Vec::new();
    let mut stops = Vec::new();
    let mut addrs = Vec::new();
    for table in [None, Some(TableOptions::new(&table_dir))] {
        let addr = free_port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        servers.push(server_rt.spawn(serve(
            ServeOptions {
                listen: addr,
                grpc_listen: free_port(),
                inference_threads: 2,
                table,
                ..ServeOptions::new(dir.path().join("registry"))
            },
            async move {
                let _ = stopped.await;
            },
        )));
        stops.push(stop);
        addrs.push(addr);
    }

    let body = serde_json::to_vec(&serde_json::json!({
        "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": ROW}]
    }))
    .expect("body");
    let mut request = format!(
        "POST /v2/models/fraud/infer HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let request = Arc::new(request);

    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let mut rate = [Vec::new(), Vec::new()];
    let mut p50 = [Vec::new(), Vec::new()];
    let mut p99 = [Vec::new(), Vec::new()];
    let mut cpu_per_call = [Vec::new(), Vec::new()];
    let mut sent_to_table = 0;
    client_rt.block_on(async {
        // Ready, and warm.
        for &addr in &addrs {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !ready(addr).await {
                assert!(Instant::now() < deadline, "server not ready after 60 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        for (i, &addr) in addrs.iter().enumerate() {
            let warm = drive(addr, Arc::clone(&request), concurrency, 1.0).await;
            if i == 1 {
                sent_to_table += warm.calls;
            }
        }
        for round in 0..rounds {
            // Alternate which goes first, so neither always follows the other.
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let cpu = cpu_seconds();
                let r = drive(addrs[i], Arc::clone(&request), concurrency, secs).await;
                cpu_per_call[i].push((cpu_seconds() - cpu) / r.calls as f64 * 1e6);
                if i == 1 {
                    sent_to_table += r.calls;
                }
                rate[i].push(r.calls as f64 / r.elapsed.as_secs_f64());
                p50[i].push(r.latencies[r.calls / 2].as_secs_f64() * 1e3);
                p99[i].push(r.latencies[r.calls * 99 / 100].as_secs_f64() * 1e3);
            }
        }
    });
    let writer_cpu = thread_cpu_seconds("podium-table");
    for stop in stops {
        let _ = stop.send(());
    }
    for s in servers {
        server_rt
            .block_on(s)
            .expect("server task")
            .expect("server run");
    }
    let rows = summarize(&table_dir).expect("read the table").rows;

    println!(
        "inference table cost: fraud v1, REST JSON batch 1, concurrency {concurrency}, \
         {rounds} rounds x {secs} s per server, medians; {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>16}",
        "table", "req/s", "p50 ms", "p99 ms", "CPU us/request"
    );
    for (i, name) in ["off", "on"].iter().enumerate() {
        println!(
            "{:<12} {:>10.0} {:>10.3} {:>10.3} {:>16.1}",
            name,
            median(rate[i].clone()),
            median(p50[i].clone()),
            median(p99[i].clone()),
            median(cpu_per_call[i].clone())
        );
    }
    let cpu_ratios: Vec<f64> = cpu_per_call[1]
        .iter()
        .zip(&cpu_per_call[0])
        .map(|(on, off)| on / off)
        .collect();
    println!(
        "CPU per request on/off (server and client together): median {:.3}",
        median(cpu_ratios)
    );
    let ratios: Vec<f64> = rate[1]
        .iter()
        .zip(&rate[0])
        .map(|(on, off)| on / off)
        .collect();
    println!(
        "throughput on/off: median {:.3} (per round: {})",
        median(ratios.clone()),
        ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "the table writer thread: {:.1} us CPU per row (all rounds)",
        writer_cpu / rows.max(1) as f64 * 1e6
    );
    println!("rows in the table: {rows} of {sent_to_table} requests sent to it");
    assert_eq!(rows, sent_to_table, "every request has its row");
}
