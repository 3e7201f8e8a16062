//! Alias flips under load: 32 clients keep calling fraud's `champion` while
//! it is moved between v2 and v1 100 times; no request may fail and every
//! answer must carry the values of the version it names. See `drill/mod.rs`
//! for what is checked and how a flip is made and waited for.

mod common;
mod drill;

use std::time::{Duration, Instant};

use common::Server;

const CLIENTS: usize = 32;
const FLIPS: usize = 100;
/// Answers checked against the version in force after each flip before the
/// next flip starts (see `drill::flip`): one per client.
const SETTLE: u64 = CLIENTS as u64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_flips_under_load_fail_no_request() {
    let began = Instant::now();
    let extra = drill::extra_serve_args();
    if !extra.is_empty() {
        println!("extra serve flags (FLIP_DRILL_SERVE_ARGS): {extra:?}");
    }
    let s = Server::demo(&extra.iter().map(String::as_str).collect::<Vec<_>>());
    let startup = began.elapsed();
    let client = drill::client();
    let via = drill::choose_via(&client, &s.base).await;

    // Bounds: flips get until 45 s after the test began; no client loop
    // runs past 50 s, whatever happens.
    let flip_deadline = began + Duration::from_secs(45);
    let hard_deadline = began + Duration::from_secs(50);
    let load = drill::Load::start(&client, &s.base, CLIENTS, hard_deadline);
    let plan = drill::Plan {
        via,
        flips: FLIPS,
        settle: SETTLE,
        pace: Duration::ZERO,
        deadline: flip_deadline,
    };
    let flips = drill::flip(&load, &client, &s.base, &s.registry, &plan).await;
    let stats = load.finish().await;

    println!("server start {:.1?}", startup);
    println!("{}", flips.summary());
    if let Some(answer) = &flips.first_admin_answer {
        println!("admin API answer to the first flip: {answer}");
    }
    println!(
        "{CLIENTS} clients: {} requests in {:.1} s ({:.0}/s), served v1 {} v2 {}, latency p50 {} µs p99 {} µs max {} µs; {} answers checked against the version in force",
        stats.requests,
        stats.wall.as_secs_f64(),
        stats.rate(),
        stats.served[1],
        stats.served[2],
        stats.percentile_us(0.5),
        stats.percentile_us(0.99),
        stats.percentile_us(1.0),
        stats.strict,
    );
    println!("{}", stats.problems());
    println!("whole test {:.1?}", began.elapsed());

    assert_eq!(stats.failures, 0, "{}", stats.problems());
    assert_eq!(stats.inconsistent, 0, "{}", stats.problems());
    assert_eq!(stats.stale, 0, "{}", stats.problems());
    assert!(
        flips.error.is_none() && flips.done == FLIPS,
        "flips: {}\n{}\nclients: {}",
        flips.error.as_deref().unwrap_or("-"),
        flips.summary(),
        stats.problems()
    );
    // After each flip the drill waited for SETTLE answers from the new
    // version, so each version answered in 50 separate intervals; over the
    // whole drill both must have answered many requests.
    assert!(
        stats.served[1] >= 200 && stats.served[2] >= 200,
        "served v1 {} times and v2 {} times; wanted at least 200 each",
        stats.served[1],
        stats.served[2]
    );
}
