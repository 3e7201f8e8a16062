//! What an experiment's live readout adds to one call, in CPU time of the
//! calling thread (so a busy shared machine inflates it far less than wall
//! time): `Tracker::record` as the call pipeline runs it for every call to
//! an endpoint with a readout (with the tracker's place in the ledger
//! taken), and its two parts — the arm's counters and latency histogram
//! (`ArmState::record_call`) and the feedback ledger's insert — with the
//! ledger full (1,000,000 calls, the default bound), so every insert also
//! replaces the oldest call: a busy endpoint's steady state. Also what every
//! routed call pays, experiment or not: the console's per-arm series
//! (`ArmSeries::record`) and a new request id.
//!
//! ```sh
//! cargo run --release --example readout_cost            # prints ns per call
//! ```
//!
//! BENCHMARKS.md ("The experiment readout's cost") compares it with what a
//! whole call costs the server, and has the end-to-end comparison
//! (`loadtest/scale.sh` with `PLAN=readout`).

use std::time::Duration;

use podium::experiments::ledger::{Entry, Ledger};
use podium::experiments::{
    ArmState, CallRecord, Experiments, Metric, Prediction, ReadoutConfig, DEFAULT_ALPHA,
    DEFAULT_LEDGER_SIZE, DEFAULT_MIN_SAMPLES,
};
use podium::telemetry::ArmSeries;

const CALLS: u64 = 1_000_000;
const ROUNDS: usize = 5;

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Median over rounds of the CPU ns per call of `f(call_number)`.
fn ns_per_call(name: &str, next: &mut u64, mut f: impl FnMut(u64)) -> f64 {
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = thread_cpu();
            for _ in 0..CALLS {
                f(*next);
                *next += 1;
            }
            (thread_cpu() - start).as_nanos() as f64 / CALLS as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    let median = rounds[ROUNDS / 2];
    println!("{name:<58} {median:>8.0} ns/call (CPU; rounds {rounds:.0?})");
    median
}

fn main() {
    let config = ReadoutConfig {
        endpoint: "fraud-ab".into(),
        metric: Metric::Accuracy,
        prediction_output: Some("label".into()),
        baseline: "champion".into(),
        min_samples: DEFAULT_MIN_SAMPLES,
        alpha: DEFAULT_ALPHA,
    };
    let experiments = Experiments::new(vec![config], DEFAULT_LEDGER_SIZE).expect("one readout");
    let mut next = 0u64;
    let record = |n: u64| {
        let tracker = experiments.tracker("fraud-ab").expect("configured");
        tracker.record(CallRecord {
            client_request_id: None,
            arm: if n.is_multiple_of(2) {
                "champion"
            } else {
                "challenger"
            },
            version: Some(1 + n % 2),
            ok: true,
            latency: Duration::from_micros(40 + n % 64),
            prediction: Some(Prediction::Number((n % 2) as f64)),
        });
    };
    // Fill the ledger, so every measured call replaces one.
    for _ in 0..DEFAULT_LEDGER_SIZE as u64 {
        record(next);
        next += 1;
    }
    println!(
        "{CALLS} calls per round, median of {ROUNDS} rounds, ledger full at {DEFAULT_LEDGER_SIZE}"
    );
    ns_per_call("Tracker::record (accuracy, ledger full)", &mut next, record);

    let arm = ArmState::new("champion");
    ns_per_call("  of which ArmState::record_call", &mut next, |n| {
        arm.record_call(true, Some(1), Duration::from_micros(40 + n % 64))
    });
    let ledger = Ledger::new(DEFAULT_LEDGER_SIZE);
    let entry = |n: u64| Entry {
        endpoint: 0,
        arm: (n % 2) as u32,
        prediction: Some(Prediction::Number((n % 2) as f64)),
        labelled: false,
        client_request_id: None,
    };
    for n in 0..DEFAULT_LEDGER_SIZE as u64 {
        ledger.insert(ledger.next_sequence(), entry(n));
    }
    ns_per_call(
        "  of which Ledger::insert (full, replacing)",
        &mut next,
        |n| {
            ledger.insert(ledger.next_sequence(), entry(n));
        },
    );
    let series = ArmSeries::new();
    ns_per_call(
        "ArmSeries::record (console series, every routed call)",
        &mut next,
        |n| {
            let arm = if n.is_multiple_of(2) {
                "champion"
            } else {
                "challenger"
            };
            series.record("fraud-ab", arm, true, Duration::from_micros(40 + n % 64))
        },
    );
    ns_per_call("api::call::new_request_id (every call)", &mut next, |_| {
        std::hint::black_box(podium::api::call::new_request_id());
    });
}
