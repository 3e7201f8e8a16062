//! Alias flips under load, measured: the drill of `tests/flip_drill.rs`
//! against the release `podium serve`, in one run:
//!
//! ```text
//! cargo bench --bench flip_drill
//! ```
//!
//! 1. warm-up: 32 clients for 1 s (only its problems are reported);
//! 2. steady: 32 clients calling fraud's `champion` for 5 s, no flips;
//! 3. paced flips: 32 clients while `champion` is moved between v2 and v1
//!    100 times, one flip started every 50 ms at most (so over about the
//!    same 5 s as phase 2, when flips are quicker than that);
//! 4. flips at once: the same 100 flips back to back, each only waiting
//!    for its checks (skipped if phase 3 could not finish its flips).
//!
//! Flips go through the admin API if the server has it, else the registry
//! CLI (`FLIP_DRILL_VIA=admin|cli` forces one), as `tests/drill/mod.rs`
//! describes, including the wait after each flip until 32 answers have been
//! checked against the new version. `FLIP_DRILL_SERVE_ARGS` adds `podium
//! serve` flags (e.g. `--keep-previous 0`); `FLIP_DRILL_FLIPS` changes the
//! number of flips per phase (even, at most 1000).
//!
//! It reports latency (request sent to body read, reqwest on a shared
//! connection pool) per phase, the server's RSS after warm-up, before the
//! flips and after each flip phase (`/proc/PID/status` of the `podium serve`
//! child), CPU use, and the failures, inconsistent and stale answers, which
//! must all be 0: the run panics (non-zero exit) after printing the table
//! otherwise.
//!
//! The server is the binary Cargo built for this bench (`target/release/
//! podium` under `cargo bench`), started by the test harness in
//! `tests/common/mod.rs` with `--poll-interval-ms 100`; clients and server
//! share the machine's cores. All traffic is to 127.0.0.1.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/drill/mod.rs"]
mod drill;

use std::time::{Duration, Instant};

use common::Server;
use drill::{Load, Stats};

const CLIENTS: usize = 32;
const SETTLE: u64 = CLIENTS as u64;
const WARMUP: Duration = Duration::from_secs(1);
const STEADY: Duration = Duration::from_secs(5);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("client runtime");
    runtime.block_on(run());
}

async fn run() {
    let began = Instant::now();
    describe_machine();
    let extra = drill::extra_serve_args();
    if !extra.is_empty() {
        println!("extra serve flags (FLIP_DRILL_SERVE_ARGS): {extra:?}");
    }
    let s = Server::demo(&extra.iter().map(String::as_str).collect::<Vec<_>>());
    let pid = drill::server_pid(&s.registry).expect("the podium serve process in /proc");
    let client = drill::client();
    let via = drill::choose_via(&client, &s.base).await;
    // Flips per flip phase: 100, or FLIP_DRILL_FLIPS rounded down to even.
    let flips = std::env::var("FLIP_DRILL_FLIPS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(100, |n| n.min(drill::MAX_FLIPS) / 2 * 2);

    // Bounds: no client loop runs past 58 s; the paced flips get until 35 s,
    // the back-to-back ones until 52 s.
    let hard_deadline = began + Duration::from_secs(58);

    let warmup = timed_load(&client, &s.base, WARMUP, hard_deadline).await;
    let rss_start = rss(pid);

    let cpu = CpuSample::now(pid);
    let steady = timed_load(&client, &s.base, STEADY, hard_deadline).await;
    let steady_cpu = CpuSample::now(pid).since(&cpu);
    let rss_before = rss(pid);

    let paced_plan = drill::Plan {
        via,
        flips,
        settle: SETTLE,
        pace: STEADY / flips.max(1) as u32,
        deadline: began + Duration::from_secs(35),
    };
    let (paced, paced_flips, paced_cpu) =
        flipping_load(&client, &s, pid, &paced_plan, hard_deadline).await;
    let rss_paced = rss(pid);

    let burst_plan = drill::Plan {
        pace: Duration::ZERO,
        deadline: began + Duration::from_secs(52),
        ..paced_plan
    };
    let burst = if paced_flips.error.is_none() {
        let (stats, flips, cpu) = flipping_load(&client, &s, pid, &burst_plan, hard_deadline).await;
        Some((stats, flips, cpu, rss(pid)))
    } else {
        None
    };
    let hwm = drill::status_kb(pid, "VmHWM").unwrap_or(0);

    println!();
    println!(
        "fraud `champion`, batch 1, REST JSON, concurrency {CLIENTS}; server {} (pid {pid}), started in the harness with --poll-interval-ms 100",
        common::BIN
    );
    println!(
        "| {:<20} | {:>8} | {:>7} | {:>7} | {:>7} | {:>7} | {:>7} | {:>6} | {:>6} | {:>6} | {:>6} | {:>7} | {:>5} | {:>6} | {:>6} | {:>6} |",
        "phase",
        "requests",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "v1",
        "v2",
        "failed",
        "incons",
        "checked",
        "stale",
        "server",
        "client",
        "others"
    );
    println!(
        "|{:-<22}|{:->10}|{:->9}|{:->9}|{:->9}|{:->9}|{:->9}|{:->8}|{:->8}|{:->8}|{:->8}|{:->9}|{:->7}|{:->8}|{:->8}|{:->8}|",
        "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", ""
    );
    row("steady, no flips", &steady, steady_cpu);
    let paced_name = format!("{} paced flips", paced_flips.done);
    row(&paced_name, &paced, paced_cpu);
    if let Some((stats, flips, cpu, _)) = &burst {
        row(&format!("{} flips at once", flips.done), stats, *cpu);
    }
    println!(
        "server, client, others: CPU used, in cores (client: this process; others: the rest of the machine). checked: answers to requests sent after a flip took effect and answered before the next flip started; stale: those of them not from the version in force."
    );
    println!();
    println!(
        "paced ({:?} from one flip's start to the next's at least): {}",
        paced_plan.pace,
        paced_flips.summary()
    );
    if let Some((_, flips, _, _)) = &burst {
        println!("back to back: {}", flips.summary());
    }
    if let Some(answer) = &paced_flips.first_admin_answer {
        println!("admin API answer to the first flip: {answer}");
    }
    let rss_burst = burst.as_ref().map(|b| b.3);
    println!(
        "server RSS (VmRSS): {} MiB after warm-up, {} MiB before the flips, {} MiB after {} paced flips ({:+} KiB), {} after the flips at once ({}); peak (VmHWM) {} MiB",
        mib(rss_start),
        mib(rss_before),
        mib(rss_paced),
        paced_flips.done,
        rss_paced as i64 - rss_before as i64,
        rss_burst.map_or("-".into(), |kb| format!("{} MiB", mib(kb))),
        rss_burst.map_or("-".into(), |kb| format!(
            "{:+} KiB since before the flips",
            kb as i64 - rss_before as i64
        )),
        mib(hwm)
    );
    println!("whole run {:.1} s", began.elapsed().as_secs_f64());

    let mut problems = Vec::new();
    let mut phases = vec![
        ("warm-up", &warmup),
        ("steady", &steady),
        ("paced flips", &paced),
    ];
    if let Some((stats, _, _, _)) = &burst {
        phases.push(("flips at once", stats));
    }
    for (phase, stats) in phases {
        if stats.failures + stats.inconsistent + stats.stale > 0 {
            problems.push(format!("{phase}: {}", stats.problems()));
        }
    }
    if let Some(error) = &paced_flips.error {
        problems.push(format!("paced flips: {error}"));
    }
    if let Some(error) = burst.as_ref().and_then(|b| b.1.error.as_ref()) {
        problems.push(format!("flips at once: {error}"));
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The load while `plan`'s flips run: what the clients saw, the flips, and
/// the CPU used.
async fn flipping_load(
    client: &reqwest::Client,
    s: &Server,
    pid: u32,
    plan: &drill::Plan,
    hard_deadline: Instant,
) -> (Stats, drill::FlipReport, Cpu) {
    let cpu = CpuSample::now(pid);
    let load = Load::start(client, &s.base, CLIENTS, hard_deadline);
    let flips = drill::flip(&load, client, &s.base, &s.registry, plan).await;
    let stats = load.finish().await;
    (stats, flips, CpuSample::now(pid).since(&cpu))
}

async fn timed_load(
    client: &reqwest::Client,
    base: &str,
    duration: Duration,
    hard_deadline: Instant,
) -> Stats {
    let load = Load::start(client, base, CLIENTS, hard_deadline);
    // A measurement window, not a wait for a condition.
    tokio::time::sleep(duration).await;
    load.finish().await
}

fn row(phase: &str, s: &Stats, cpu: Cpu) {
    let ms = |p: f64| s.percentile_us(p) as f64 / 1000.0;
    println!(
        "| {:<20} | {:>8} | {:>7.0} | {:>7.2} | {:>7.2} | {:>7.2} | {:>7.2} | {:>6} | {:>6} | {:>6} | {:>6} | {:>7} | {:>5} | {:>6.2} | {:>6.2} | {:>6.2} |",
        phase,
        s.requests,
        s.rate(),
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(1.0),
        s.served[1],
        s.served[2],
        s.failures,
        s.inconsistent,
        s.strict,
        s.stale,
        cpu.server,
        cpu.client,
        cpu.others
    );
}

fn rss(pid: u32) -> u64 {
    drill::status_kb(pid, "VmRSS").expect("VmRSS of the server")
}

fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

fn describe_machine() {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {cores} cores ({cpu}); load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// CPU ticks of the server, this process and the machine.
struct CpuSample {
    server: u64,
    client: u64,
    total: u64,
    idle: u64,
}

/// CPU used over an interval, in cores.
#[derive(Clone, Copy)]
struct Cpu {
    server: f64,
    client: f64,
    others: f64,
}

impl CpuSample {
    fn now(pid: u32) -> CpuSample {
        let (total, idle) = drill::machine_ticks();
        CpuSample {
            server: drill::cpu_ticks(&pid.to_string()),
            client: drill::cpu_ticks("self"),
            total,
            idle,
        }
    }

    fn since(&self, before: &CpuSample) -> Cpu {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        // Ticks of wall time per core over the interval.
        let wall = (self.total.saturating_sub(before.total) as f64 / cores).max(1.0);
        let busy = self.total.saturating_sub(before.total) as f64
            - self.idle.saturating_sub(before.idle) as f64;
        let server = self.server.saturating_sub(before.server) as f64;
        let client = self.client.saturating_sub(before.client) as f64;
        Cpu {
            server: server / wall,
            client: client / wall,
            others: (busy - server - client).max(0.0) / wall,
        }
    }
}
