//! One load run: workers sending the prepared request, closed or open loop,
//! bounded by time and/or count, with a warm-up whose answers are kept apart.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde::Serialize;

use crate::flip::{Checks, FlipConfig, FlipOutcome, Flipper};
use crate::grpc::{GrpcConn, GrpcLink};
use crate::input::Tensor;
use crate::protocol::{Conn, Prepared, Protocol, Target};
use crate::schedule::{self, Pacing};
use crate::stats::Stats;

/// Everything one run needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub target: Target,
    /// Workers (= connections for REST); in an open loop, the most requests
    /// in flight at once.
    pub concurrency: usize,
    pub pacing: Pacing,
    /// Measured time after the warm-up.
    pub duration: Option<Duration>,
    /// Measured requests after the warm-up.
    pub requests: Option<u64>,
    pub warmup: Duration,
    /// HTTP/2 connections the gRPC workers share (round robin); `None`:
    /// [`RunConfig::grpc_connections`] picks.
    pub grpc_connections: Option<usize>,
    pub flip: Option<FlipConfig>,
    /// Print a live progress line on stderr.
    pub progress: bool,
}

impl RunConfig {
    pub fn check(&self) -> Result<()> {
        if self.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        if self.duration.is_none() && self.requests.is_none() {
            bail!("give --duration and/or --requests: every run must be bounded");
        }
        if self.requests == Some(0) {
            bail!("--requests must be at least 1");
        }
        if let Pacing::Open { rate } = self.pacing {
            if !(rate.is_finite() && rate > 0.0) {
                bail!("--rate must be a positive number of requests per second");
            }
        }
        if self.grpc_connections == Some(0) {
            bail!("--grpc-connections must be at least 1");
        }
        Ok(())
    }

    /// The HTTP/2 connections gRPC workers share: as given, else one per
    /// worker up to [`DEFAULT_MAX_GRPC_CONNECTIONS`]. All streams of one
    /// connection go through one h2 task on each side, so a single
    /// connection caps throughput long before the server does.
    pub fn grpc_connections(&self) -> usize {
        self.grpc_connections
            .unwrap_or(DEFAULT_MAX_GRPC_CONNECTIONS)
            .min(self.concurrency)
            .max(1)
    }
}

/// The most gRPC connections used when `--grpc-connections` is not given:
/// on the 16-core machine 32 served the most at c=64 and c=256 (BENCHMARKS
/// "Many cores").
pub const DEFAULT_MAX_GRPC_CONNECTIONS: usize = 32;

/// What a run measured.
pub struct Report {
    pub target: String,
    pub protocol: Protocol,
    pub concurrency: usize,
    pub pacing: Pacing,
    /// Different requests sent in turn (`--distinct-inputs`).
    pub distinct_inputs: usize,
    pub warmup: Stats,
    pub measured: Stats,
    /// From the end of the warm-up to the last measured answer.
    pub elapsed: Duration,
    pub checks: Checks,
    pub flip: Option<FlipOutcome>,
    pub flip_config: Option<FlipConfig>,
}

impl Report {
    /// Measured requests (answers and errors) per second.
    pub fn throughput(&self) -> f64 {
        self.measured.requests() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Good answers per second.
    pub fn goodput(&self) -> f64 {
        self.measured.answers as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The resolution of tokio's timer.
const TIMER_TICK: Duration = Duration::from_millis(1);

struct Shared {
    start: Instant,
    warmup: Duration,
    /// No request is sent at or after this.
    end: Option<Instant>,
    requests: Option<u64>,
    pacing: Pacing,
    /// Requests handed out (the open loop's schedule counts these).
    next: AtomicU64,
    /// Measured requests handed out (for the count bound).
    measured: AtomicU64,
    stop: AtomicBool,
    /// For the progress line.
    live_answers: AtomicU64,
    live_errors: AtomicU64,
}

struct WorkerResult {
    warmup: Stats,
    measured: Stats,
    checks: Checks,
    last_answer: Option<Instant>,
}

/// Runs the load and returns what it measured: request `n` carries
/// `inputs[n % inputs.len()]` (each element one request's input tensors).
/// Returns early with an error when the target cannot be reached at all.
pub async fn run(cfg: &RunConfig, inputs: &[Vec<Tensor>]) -> Result<Report> {
    cfg.check()?;
    let mut target = cfg.target.clone();
    if cfg.flip.is_some() {
        // The drill compares versions and outputs of every answer.
        target.inspect_body = true;
    }
    let prepared = Arc::new(Prepared::new(&target, inputs).await?);

    // Connections first: an unreachable target fails here, not a million times.
    let mut conns = Vec::with_capacity(cfg.concurrency);
    match prepared.protocol {
        Protocol::Grpc => {
            let mut links = Vec::new();
            for _ in 0..cfg.grpc_connections() {
                let link =
                    GrpcLink::open(prepared.http.address.addr)
                        .await
                        .map_err(|(_, why)| {
                            anyhow!("cannot connect to {} (gRPC): {why}", prepared.grpc_url)
                        })?;
                links.push(Arc::new(link));
            }
            for i in 0..cfg.concurrency {
                conns.push(Conn::Grpc(GrpcConn::new(Arc::clone(
                    &links[i % links.len()],
                ))));
            }
        }
        _ => {
            for _ in 0..cfg.concurrency {
                conns.push(Conn::http(&prepared.http).await?);
            }
        }
    }
    let flipper = match &cfg.flip {
        Some(f) => Some(Arc::new(Flipper::prepare(f.clone()).await?)),
        None => None,
    };

    let start = Instant::now();
    let shared = Arc::new(Shared {
        start,
        warmup: cfg.warmup,
        end: cfg.duration.map(|d| start + cfg.warmup + d),
        requests: cfg.requests,
        pacing: cfg.pacing,
        next: AtomicU64::new(0),
        measured: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        live_answers: AtomicU64::new(0),
        live_errors: AtomicU64::new(0),
    });

    let flip_stop = Arc::new(AtomicBool::new(false));
    // With a drill, Ctrl-C ends the run as its time would (and the alias
    // is restored); without one it stops the process as before.
    let ctrl_c = flipper.as_ref().map(|_| {
        let shared = Arc::clone(&shared);
        let flip_stop = Arc::clone(&flip_stop);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\ninterrupted: stopping the load and restoring the alias (Ctrl-C again to quit at once)");
                shared.stop.store(true, Ordering::SeqCst);
                flip_stop.store(true, Ordering::SeqCst);
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        })
    });
    let flip_task = flipper.as_ref().map(|f| {
        let f = Arc::clone(f);
        let stop = Arc::clone(&flip_stop);
        let begin = start + cfg.warmup;
        let end = shared.end;
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let outcome = f.run(begin, end, Arc::clone(&stop)).await;
            if f.config().max_flips.is_some() && !stop.load(Ordering::SeqCst) {
                // The drill is its flips: one more interval, so the last
                // flip's version is checked too, then the load stops.
                tokio::time::sleep(f.config().every).await;
                shared.stop.store(true, Ordering::SeqCst);
            }
            outcome
        })
    });
    let progress = cfg.progress.then(|| {
        let shared = Arc::clone(&shared);
        tokio::spawn(progress_line(shared))
    });

    let workers: Vec<_> = conns
        .into_iter()
        .map(|conn| {
            let shared = Arc::clone(&shared);
            let prepared = Arc::clone(&prepared);
            let flipper = flipper.clone();
            tokio::spawn(worker(conn, shared, prepared, flipper))
        })
        .collect();
    let mut warmup = Stats::default();
    let mut measured = Stats::default();
    let mut checks = Checks::default();
    let mut last_answer: Option<Instant> = None;
    let mut first_error = None;
    for w in workers {
        match w.await {
            Ok(r) => {
                warmup.merge(&r.warmup);
                measured.merge(&r.measured);
                checks.merge(&r.checks);
                last_answer = last_answer.max(r.last_answer);
            }
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    shared.stop.store(true, Ordering::SeqCst);
    flip_stop.store(true, Ordering::SeqCst);
    let mut flip = match flip_task {
        Some(t) => t.await.ok(),
        None => None,
    };
    if let (Some(flipper), Some(outcome)) = (&flipper, flip.as_mut()) {
        outcome.restored = flipper.restore().await;
        eprintln!("flip drill: {}", outcome.restored);
    }
    if let Some(ctrl_c) = ctrl_c {
        ctrl_c.abort();
    }
    if let Some(p) = progress {
        // Not waiting for its next tick: the run is over.
        p.abort();
        let _ = p.await;
        eprintln!();
    }
    if let Some(e) = first_error {
        bail!("a load worker failed: {e}");
    }
    let measured_start = start + cfg.warmup;
    let elapsed = last_answer
        .map(|t| t.saturating_duration_since(measured_start))
        .unwrap_or_default();
    Ok(Report {
        target: prepared.describe(),
        protocol: prepared.protocol,
        concurrency: cfg.concurrency,
        pacing: cfg.pacing,
        distinct_inputs: prepared.distinct(),
        warmup,
        measured,
        elapsed,
        checks,
        flip,
        flip_config: cfg.flip.clone(),
    })
}

async fn worker(
    mut conn: Conn,
    shared: Arc<Shared>,
    prepared: Arc<Prepared>,
    flipper: Option<Arc<Flipper>>,
) -> WorkerResult {
    let mut out = WorkerResult {
        warmup: Stats::default(),
        measured: Stats::default(),
        checks: Checks::default(),
        last_answer: None,
    };
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let n = shared.next.fetch_add(1, Ordering::Relaxed);
        let due = shared.pacing.due(n);
        if let Some(due) = due {
            let at = shared.start + due;
            if shared.end.is_some_and(|end| at >= end) {
                break;
            }
            // tokio's timer wakes on a 1 ms tick, rounding up: aiming one
            // tick early sends up to 1 ms early instead of up to 1 ms late,
            // so the timer never shows up as lag or as latency.
            if let Some(wake) = at.checked_sub(TIMER_TICK) {
                if wake > Instant::now() {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
                }
            }
        }
        let sent = Instant::now();
        if shared.end.is_some_and(|end| sent >= end) {
            break;
        }
        let sent_at = sent - shared.start;
        let in_warmup = due.unwrap_or(sent_at) < shared.warmup;
        if !in_warmup {
            if let Some(max) = shared.requests {
                if shared.measured.fetch_add(1, Ordering::Relaxed) >= max {
                    shared.stop.store(true, Ordering::Relaxed);
                    break;
                }
            }
        }
        let before = flipper.as_ref().map(|f| f.state.seen());
        let result = conn.call(&prepared, n).await;
        let answered = Instant::now();
        let stats = if in_warmup {
            &mut out.warmup
        } else {
            out.last_answer = Some(answered);
            &mut out.measured
        };
        match result {
            Ok(answer) => {
                shared.live_answers.fetch_add(1, Ordering::Relaxed);
                let answered_at = answered - shared.start;
                let latency = schedule::latency(due, sent_at, answered_at);
                let (service, lag) = match due {
                    Some(d) => (Some(answered - sent), Some(sent_at.saturating_sub(d))),
                    None => (None, None),
                };
                stats.answer(&answer, latency, service, lag);
                if let (Some(f), Some(before)) = (&flipper, before) {
                    if !in_warmup
                        && out.checks.check(
                            f.config(),
                            &answer,
                            prepared.input_of(n),
                            before,
                            f.state.started(),
                        )
                    {
                        f.state.count_checked();
                    }
                }
            }
            Err((class, detail)) => {
                shared.live_errors.fetch_add(1, Ordering::Relaxed);
                let connect = class == crate::outcome::ErrorClass::Connect;
                stats.error(class, &detail);
                if connect {
                    // Not a busy loop against a server that is gone.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    out
}

/// `[  3.0s] measuring  12345 answers  4321/s  0 errors`, once a second on
/// stderr, until the run stops.
async fn progress_line(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0u64;
    let mut stderr = std::io::stderr();
    while !shared.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let answers = shared.live_answers.load(Ordering::Relaxed);
        let errors = shared.live_errors.load(Ordering::Relaxed);
        let t = shared.start.elapsed();
        let phase = if t < shared.warmup {
            "warm-up  "
        } else {
            "measuring"
        };
        let _ = write!(
            stderr,
            "\r[{:6.1}s] {phase} {answers:>10} answers {:>8}/s {errors:>6} errors ",
            t.as_secs_f64(),
            answers - last
        );
        let _ = stderr.flush();
        last = answers;
    }
}

/// The report as machines read it (`--json`).
#[derive(Serialize)]
pub struct JsonReport {
    pub target: String,
    pub protocol: Protocol,
    pub concurrency: usize,
    /// Different requests sent in turn.
    pub distinct_inputs: usize,
    /// Open loop: requests per second asked for; absent in a closed loop.
    pub rate: Option<f64>,
    pub elapsed_s: f64,
    pub requests: u64,
    pub answers: u64,
    pub errors: std::collections::BTreeMap<String, u64>,
    pub throughput: f64,
    pub latency: crate::hist::Percentiles,
    pub service_time: Option<crate::hist::Percentiles>,
    pub send_lag: Option<crate::hist::Percentiles>,
    pub arms: Vec<crate::stats::ArmRow>,
    pub warmup: JsonWarmup,
    pub error_examples: Vec<String>,
    pub flip: Option<JsonFlip>,
}

#[derive(Serialize)]
pub struct JsonWarmup {
    pub requests: u64,
    pub answers: u64,
    pub errors: std::collections::BTreeMap<String, u64>,
    pub arms: Vec<crate::stats::ArmRow>,
}

#[derive(Serialize)]
pub struct JsonFlip {
    pub model: String,
    pub alias: String,
    pub versions: Vec<u64>,
    pub every_ms: f64,
    #[serde(flatten)]
    pub outcome: FlipOutcome,
    /// Requests that failed while flipping (the measured phase).
    pub failures: u64,
    pub checked: u64,
    pub inconsistent: u64,
    pub inconsistent_by_kind: std::collections::BTreeMap<&'static str, u64>,
    pub examples: Vec<String>,
}

impl Report {
    pub fn json(&self) -> JsonReport {
        let open = matches!(self.pacing, Pacing::Open { .. });
        JsonReport {
            target: self.target.clone(),
            protocol: self.protocol,
            concurrency: self.concurrency,
            distinct_inputs: self.distinct_inputs,
            rate: match self.pacing {
                Pacing::Open { rate } => Some(rate),
                Pacing::Closed => None,
            },
            elapsed_s: self.elapsed.as_secs_f64(),
            requests: self.measured.requests(),
            answers: self.measured.answers,
            errors: self.measured.error_map(),
            throughput: self.throughput(),
            latency: self.measured.percentiles(),
            service_time: open.then(|| self.measured.service.summary()),
            send_lag: open.then(|| self.measured.lag.summary()),
            arms: self.measured.arm_rows(),
            warmup: JsonWarmup {
                requests: self.warmup.requests(),
                answers: self.warmup.answers,
                errors: self.warmup.error_map(),
                arms: self.warmup.arm_rows(),
            },
            error_examples: self.measured.error_examples.clone(),
            flip: match (&self.flip, &self.flip_config) {
                (Some(outcome), Some(cfg)) => Some(JsonFlip {
                    model: cfg.model.clone(),
                    alias: cfg.alias.clone(),
                    versions: cfg.versions.clone(),
                    every_ms: cfg.every.as_secs_f64() * 1000.0,
                    outcome: outcome.clone(),
                    failures: self.measured.error_count(),
                    checked: self.checks.checked,
                    inconsistent: self.checks.inconsistent_total(),
                    inconsistent_by_kind: self.checks.inconsistent.clone(),
                    examples: self.checks.examples.clone(),
                }),
                _ => None,
            },
        }
    }
}
