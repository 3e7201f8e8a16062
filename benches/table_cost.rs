//! What the inference table costs: throughput and latency of the fraud model
//! at concurrency 64 with the table on and off, measured in one run.
//!
//! ```text
//! cargo bench --bench table_cost
//! ```
//!
//! Two real servers (`podium::server::serve`, the code of `podium serve`)
//! run in this process on one runtime, identical but for `--table-dir`.
//! A light client (`podium-loadtest`'s closed loop: hyper HTTP/1.1
//! keep-alive over 64 connections, all on one thread, so it takes as little
//! of the 2 cores as possible; HDR percentiles) sends single-row REST JSON
//! requests to one server at a time, alternating off/on for several rounds.
//! The requests cycle through 1,024 different feature rows: one body sent
//! over and over would let the table's codec find each row in the one
//! before it, and understate what real traffic costs; the report gives medians across rounds. At
//! the end the table server is stopped and its files are read back to check
//! that every request has its row.
//!
//! Knobs: `PODIUM_BENCH_ROUNDS` (5), `PODIUM_BENCH_SECS` (4 per server per
//! round), `PODIUM_BENCH_CONCURRENCY` (64).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use podium::inference_table::summary::summarize;
use podium::inference_table::TableOptions;
use podium::server::ServeOptions;
use podium_loadtest::input::Tensor;
use podium_loadtest::protocol::{Protocol, Target};
use podium_loadtest::run::{run, Report, RunConfig};
use podium_loadtest::schedule::Pacing;
use support::cpu::{process_seconds, thread_seconds};
use support::server::{fraud_registry, ready, Servers};
use support::{knob, median, varied_fraud_rows};

/// The allocator `podium serve` uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A closed loop of `concurrency` keep-alive connections sending the pool of
/// varied fraud rows, in turn, to `addr` for `secs`; every answer must be a
/// success.
async fn drive(addr: SocketAddr, concurrency: usize, secs: f64) -> Report {
    let config = RunConfig {
        target: Target {
            url: format!("http://{addr}"),
            protocol: Protocol::RestJson,
            model: "fraud".into(),
            version: None,
            headers: Vec::new(),
            timeout: Duration::from_secs(30),
            inspect_body: false,
        },
        concurrency,
        pacing: Pacing::Closed,
        duration: Some(Duration::from_secs_f64(secs)),
        requests: None,
        warmup: Duration::ZERO,
        grpc_connections: Some(1),
        flip: None,
        progress: false,
    };
    let inputs: Vec<Vec<Tensor>> = varied_fraud_rows()
        .into_iter()
        .map(|(row, _)| {
            vec![Tensor {
                name: "input".into(),
                datatype: "FP32".into(),
                shape: vec![1, 30],
                raw: row.iter().flat_map(|x| x.to_le_bytes()).collect(),
            }]
        })
        .collect();
    let report = run(&config, &inputs).await.expect("load run");
    assert_eq!(
        report.measured.error_count(),
        0,
        "errors: {:?}",
        report.measured.error_examples
    );
    report
}

fn main() {
    let rounds = knob("PODIUM_BENCH_ROUNDS", 5) as usize;
    let secs = knob("PODIUM_BENCH_SECS", 4) as f64;
    let concurrency = knob("PODIUM_BENCH_CONCURRENCY", 64) as usize;
    let dir = tempfile::tempdir().expect("temp dir");
    fraud_registry(&dir.path().join("registry"), false);
    let table_dir = dir.path().join("table");

    let mut servers = Servers::new();
    let addrs: Vec<SocketAddr> = [None, Some(TableOptions::new(&table_dir))]
        .into_iter()
        .map(|table| {
            servers
                .start(ServeOptions {
                    inference_threads: 2,
                    table,
                    ..ServeOptions::new(dir.path().join("registry"))
                })
                .0
        })
        .collect();

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
        let client = reqwest::Client::new();
        for &addr in &addrs {
            ready(&client, addr, &servers).await;
        }
        for (i, &addr) in addrs.iter().enumerate() {
            let warm = drive(addr, concurrency, 1.0).await;
            if i == 1 {
                sent_to_table += warm.measured.requests();
            }
        }
        for round in 0..rounds {
            // Alternate which goes first, so neither always follows the other.
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let cpu = process_seconds();
                let r = drive(addrs[i], concurrency, secs).await;
                let calls = r.measured.requests();
                cpu_per_call[i].push((process_seconds() - cpu) / calls as f64 * 1e6);
                if i == 1 {
                    sent_to_table += calls;
                }
                rate[i].push(r.throughput());
                p50[i].push(r.measured.latency.quantile_us(0.50) / 1e3);
                p99[i].push(r.measured.latency.quantile_us(0.99) / 1e3);
            }
        }
    });
    let writer_cpu = thread_seconds("podium-table");
    servers.stop();
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
        "the table's writer threads: {:.1} us CPU per row (all rounds)",
        writer_cpu / rows.max(1) as f64 * 1e6
    );
    println!("rows in the table: {rows} of {sent_to_table} requests sent to it");
    assert_eq!(rows as u64, sent_to_table, "every request has its row");
}
