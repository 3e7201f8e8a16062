//! The inference table alone, without a server: what a row costs the
//! request path (filling in and queueing the row of a REST JSON call) and
//! what it costs the writer thread (rendering, Arrow, Parquet, snappy, the
//! journal, the file writes), in CPU microseconds per row.
//!
//! ```text
//! cargo bench --bench table_writer
//! ```
//!
//! Unlike `table_cost`, no client or server shares the cores, so the two
//! figures are steady enough to compare changes to the table itself. Each
//! round submits `PODIUM_BENCH_ROWS` (200,000) rows of fraud calls over
//! REST JSON (1,024 distinct pairs of bodies, in turn) from this thread as
//! fast as it can (the queue has room for all of them, so none is
//! dropped), then closes the table; the files are read back and the bench fails unless every row is
//! there. Reported: medians over `PODIUM_BENCH_ROUNDS` (5) rounds.
//!
//! `PODIUM_BENCH_RATE=N` submits N rows a second instead, a slice every
//! 5 ms, as a server would: the writer then drains a few hundred rows per
//! tick rather than full batches of 1,024.
//!
//! `PODIUM_BENCH_QUEUE_ROWS=N` gives the queue N rows (`podium serve`'s
//! default is 10,000) instead of room for every row; rows the queue drops
//! are then counted and reported instead of failing the bench. With a rate,
//! this shows whether the writer keeps up while files roll (every 100,000
//! rows by default).
//!
//! `PODIUM_BENCH_WRITERS=N` gives the table N writer threads (default 1):
//! the report's rows per second (submitted rows over the time until the
//! table closed) then shows how far helpers raise the table's ceiling.
//!
//! The writer's figure is the whole process's CPU less this thread's: on a
//! machine whose cores are otherwise idle it runs with a core to itself,
//! so it is lower than in `table_cost`, where every core is busy.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use podium::api::OipJson;
use podium::inference_table::summary::summarize;
use podium::inference_table::{InferenceTable, Protocol, TableOptions};
use podium::request::Timing;
use podium::request_id::new_request_id;
use support::cpu::{current_thread_seconds, process_seconds};
use support::{knob, median, varied_fraud_rows, DISTINCT_ROWS};

/// The allocator `podium serve` uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The request and response bodies of fraud calls over REST JSON, each with
/// its own feature values and answer, as real traffic has.
fn bodies() -> Vec<(Bytes, Bytes)> {
    varied_fraud_rows()
        .into_iter()
        .map(|(row, fraud)| {
            let request = serde_json::json!({
                "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30], "data": row}]
            });
            let response = serde_json::json!({
                "model_name": "fraud", "model_version": "1", "id": "",
                "outputs": [
                    {"name": "label", "datatype": "INT64", "shape": [1], "data": [u8::from(fraud > 0.5)]},
                    {"name": "probabilities", "datatype": "FP32", "shape": [1, 2], "data": [1.0 - fraud, fraud]}
                ]
            });
            (
                Bytes::from(request.to_string()),
                Bytes::from(response.to_string()),
            )
        })
        .collect()
}

/// One round: `rows` rows through a fresh table in `dir` whose queue holds
/// `queue` rows (0: room for every row, so none is dropped while the writer
/// catches up), written by `writers` threads; returns the request path's and
/// the writers' CPU microseconds per row, and rows per second from the first
/// submit until the table closed.
fn round(
    dir: &std::path::Path,
    rows: usize,
    rate: usize,
    queue: usize,
    writers: usize,
    rt: &tokio::runtime::Runtime,
) -> (f64, f64, f64) {
    let bodies = bodies();
    let mut options = TableOptions::new(dir);
    options.queue_rows = if queue == 0 { rows + 1 } else { queue };
    options.queue_bytes = usize::MAX / 2;
    options.writers = writers;
    let table = InferenceTable::start(options, Arc::new(OipJson)).expect("table");
    let (process0, main0) = (process_seconds(), current_thread_seconds());
    // At `rate` rows a second, a slice every 5 ms; else all at once.
    let slice = if rate == 0 { rows } else { (rate / 200).max(1) };
    let started = std::time::Instant::now();
    for i in 0..rows {
        if i > 0 && i % slice == 0 {
            let due = Duration::from_secs_f64(i as f64 / rate as f64);
            std::thread::sleep(due.saturating_sub(started.elapsed()));
        }
        let (request, response) = &bodies[i % DISTINCT_ROWS];
        let mut row = table.entry(new_request_id(), Some("fraud"), Protocol::Rest, 1.0, true);
        row.request_text(request);
        row.routed("champion", "fraud");
        row.answered(
            "fraud",
            1,
            Timing {
                queue: Duration::from_micros(12),
                inference: Duration::from_micros(9),
                batch_size: None,
            },
        );
        row.response_text(response);
        table.submit(row, 200, None, None);
    }
    let submit_cpu = current_thread_seconds() - main0;
    rt.block_on(table.close(Duration::from_secs(60)));
    let rows_per_second = rows as f64 / started.elapsed().as_secs_f64();
    let writer_cpu = (process_seconds() - process0) - (current_thread_seconds() - main0);
    (
        submit_cpu / rows as f64 * 1e6,
        writer_cpu / rows as f64 * 1e6,
        rows_per_second,
    )
}

fn main() {
    let rounds = knob("PODIUM_BENCH_ROUNDS", 5) as usize;
    let rows = knob("PODIUM_BENCH_ROWS", 200_000) as usize;
    let rate = knob("PODIUM_BENCH_RATE", 0) as usize;
    let queue = knob("PODIUM_BENCH_QUEUE_ROWS", 0) as usize;
    let writers = knob("PODIUM_BENCH_WRITERS", 1).max(1) as usize;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (mut path, mut writer, mut file_bytes) = (Vec::new(), Vec::new(), Vec::new());
    let (mut dropped, mut pace) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let dir = tempfile::tempdir().expect("temp dir");
        let (p, w, r) = round(dir.path(), rows, rate, queue, writers, &rt);
        let written = summarize(dir.path()).expect("read the table").rows;
        let files: Vec<_> = walk(dir.path())
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
            .collect();
        let bytes: u64 = files
            .iter()
            .map(|f| f.metadata().map_or(0, |m| m.len()))
            .sum();
        file_bytes.push(bytes as f64 / rows as f64);
        if queue == 0 {
            assert_eq!(
                written, rows,
                "round {i}: {written} of {rows} rows in the table"
            );
        }
        dropped.push((rows - written) as f64);
        println!(
            "round {i}: request path {p:.2} us/row, writer {w:.2} us/row, {r:.0} rows/s, {} rows dropped, {} files",
            rows - written,
            files.len()
        );
        pace.push(r);
        path.push(p);
        writer.push(w);
    }
    let mean =
        |len: fn(&(Bytes, Bytes)) -> usize| bodies().iter().map(len).sum::<usize>() / DISTINCT_ROWS;
    println!(
        "inference table ({writers} writer thread{}), fraud REST JSON rows ({} + {} bytes of body on average, {DISTINCT_ROWS} distinct), {rows} rows x {rounds} rounds at {}, medians:",
        if writers == 1 { "" } else { "s" },
        mean(|b| b.0.len()),
        mean(|b| b.1.len()),
        if rate == 0 {
            "full speed".to_string()
        } else {
            format!("{rate} rows/s")
        }
    );
    println!(
        "  request path (entry + submit): {:.2} us CPU per row",
        median(path.clone())
    );
    println!(
        "  writer thread:                 {:.2} us CPU per row",
        median(writer.clone())
    );
    println!(
        "  Parquet files:                 {:.1} bytes per row",
        median(file_bytes)
    );
    println!(
        "  rows per second, submitted to written and closed: {:.0}",
        median(pace)
    );
    if queue > 0 {
        println!(
            "  rows dropped by a {queue}-row queue: {} per round (median)",
            median(dropped)
        );
    }
}

/// Every file under `dir`, at any depth.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}
