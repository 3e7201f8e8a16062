//! The alias-flip drill, shared by `tests/flip_drill.rs` (debug build, pass or
//! fail) and `benches/flip_drill.rs` (release build, latency and memory):
//! clients send the fraud request continuously while `champion` is moved
//! between fraud v2 and v1, and every answer is checked.
//!
//! Checks on every answer:
//!
//! - failure: a transport error or any status but 200;
//! - inconsistent: the `x-podium-model-version` header and the body's
//!   `model_version` disagree, or the label and probabilities are not the
//!   ones that version gives for [`crate::common::FRAUD_ROW`];
//! - stale: the request was sent after a flip to version N had taken effect
//!   and no other flip started before its answer came back, yet a version
//!   other than N answered. A flip has taken effect when the admin API's PUT
//!   has answered 200 (its contract: it answers once the server serves N) or,
//!   with the registry CLI, when an answer from version N has been seen.
//!
//! Bounds: every client loop stops at `stop`, at a hard deadline or after a
//! fixed number of requests, whichever comes first; every wait has a deadline.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::common;

/// fraud v1's probabilities for `FRAUD_ROW`.
pub const V1: [f64; 2] = [0.620_603_44, 0.379_396_53];
/// fraud v2's probabilities for `FRAUD_ROW`.
pub const V2: [f64; 2] = [0.881_607_65, 0.118_392_35];
pub const TOLERANCE: f64 = 1e-5;
/// Both versions answer label 0 for `FRAUD_ROW`.
pub const LABEL: i64 = 0;

/// Per client loop, far above what the time bounds allow.
const MAX_REQUESTS_PER_CLIENT: usize = 10_000_000;
/// Examples kept per kind of problem.
const EXAMPLES: usize = 10;
/// How long one flip (PUT or CLI, then the answers from the new version
/// that are waited for) may take.
const FLIP_TIMEOUT: Duration = Duration::from_secs(10);
/// Most flips one [`flip`] call makes.
pub const MAX_FLIPS: usize = 1000;

/// The version `champion` points at after `k` flips: it starts at 1, flip 1
/// moves it to 2, flip 2 back to 1, and so on.
pub fn target(k: usize) -> u64 {
    if k % 2 == 1 {
        2
    } else {
        1
    }
}

/// Extra `podium serve` flags from `FLIP_DRILL_SERVE_ARGS` (split on
/// whitespace), e.g. `--keep-previous 0` to make every flip load a version.
pub fn extra_serve_args() -> Vec<String> {
    std::env::var("FLIP_DRILL_SERVE_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// A client for 127.0.0.1 only: no proxy from the environment, 30 s timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build()
        .expect("HTTP client")
}

pub fn infer_body() -> Bytes {
    Bytes::from(
        serde_json::to_vec(&json!({
            "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": common::FRAUD_ROW}]
        }))
        .expect("request JSON"),
    )
}

// ------------------------------------------------------------- the load

struct Shared {
    stop: AtomicBool,
    /// Flips started (the flipper raises it before it changes anything).
    started_flips: AtomicUsize,
    /// Flips that have taken effect (see the module docs).
    acked_flips: AtomicUsize,
    /// `seen[v]`: the largest `started_flips`, read before sending, of a
    /// request that version `v` answered correctly.
    seen: [AtomicUsize; 3],
    answered: AtomicU64,
    /// Failed, inconsistent and stale answers.
    problems: AtomicU64,
    /// `strict[k]`: answers checked against flip `k`'s version (sent after
    /// flip `k` took effect, answered before flip `k + 1` started).
    strict: Vec<AtomicU64>,
    /// Woken after every answer.
    progress: Notify,
    epoch: Instant,
}

/// What the clients saw.
#[derive(Default)]
pub struct Stats {
    pub requests: u64,
    /// Correct answers by version (index 1 and 2).
    pub served: [u64; 3],
    pub failures: u64,
    pub inconsistent: u64,
    /// Answers that had to come from one version (no flip in progress).
    pub strict: u64,
    pub stale: u64,
    /// Latency of every 200 answer, body read, in microseconds.
    pub latencies_us: Vec<u32>,
    /// (ms since the load started, description), earliest first.
    pub failure_examples: Vec<(u128, String)>,
    pub inconsistent_examples: Vec<(u128, String)>,
    pub stale_examples: Vec<(u128, String)>,
    /// From the first request sent to the last answer.
    pub wall: Duration,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.requests += other.requests;
        for (a, b) in self.served.iter_mut().zip(other.served) {
            *a += b;
        }
        self.failures += other.failures;
        self.inconsistent += other.inconsistent;
        self.strict += other.strict;
        self.stale += other.stale;
        self.latencies_us.extend(other.latencies_us);
        for (mine, theirs) in [
            (&mut self.failure_examples, other.failure_examples),
            (&mut self.inconsistent_examples, other.inconsistent_examples),
            (&mut self.stale_examples, other.stale_examples),
        ] {
            mine.extend(theirs);
            mine.sort_by_key(|(t, _)| *t);
            mine.truncate(EXAMPLES);
        }
    }

    /// Nearest-rank percentile in microseconds (0 when there is no sample;
    /// [`Load::finish`] sorts the samples).
    pub fn percentile_us(&self, p: f64) -> u32 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        debug_assert!(self.latencies_us.is_sorted());
        let n = self.latencies_us.len();
        let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
        self.latencies_us[rank - 1]
    }

    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Failures, inconsistencies and stale answers, with their examples.
    pub fn problems(&self) -> String {
        let mut out = format!(
            "{} failed, {} inconsistent, {} stale (of {} requests)",
            self.failures, self.inconsistent, self.stale, self.requests
        );
        for (name, examples) in [
            ("failures", &self.failure_examples),
            ("inconsistent", &self.inconsistent_examples),
            ("stale", &self.stale_examples),
        ] {
            if !examples.is_empty() {
                out.push_str(&format!("\nfirst {name}:"));
                for (t, what) in examples {
                    out.push_str(&format!("\n  t={t} ms: {what}"));
                }
            }
        }
        out
    }
}

fn keep(examples: &mut Vec<(u128, String)>, t: u128, what: String) {
    if examples.len() < EXAMPLES {
        examples.push((t, what));
    }
}

/// `concurrency` client loops sending the fraud request to `champion`.
pub struct Load {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<Stats>>,
}

impl Load {
    /// Starts the loops; each stops at [`Load::finish`] or at `hard_deadline`.
    pub fn start(
        client: &reqwest::Client,
        base: &str,
        concurrency: usize,
        hard_deadline: Instant,
    ) -> Load {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            started_flips: AtomicUsize::new(0),
            acked_flips: AtomicUsize::new(0),
            seen: Default::default(),
            answered: AtomicU64::new(0),
            problems: AtomicU64::new(0),
            strict: (0..=MAX_FLIPS).map(|_| AtomicU64::new(0)).collect(),
            progress: Notify::new(),
            epoch: Instant::now(),
        });
        let url = format!("{base}/v2/models/fraud/infer");
        let body = infer_body();
        let tasks = (0..concurrency)
            .map(|id| {
                tokio::spawn(client_loop(
                    id,
                    client.clone(),
                    url.clone(),
                    body.clone(),
                    Arc::clone(&shared),
                    hard_deadline,
                ))
            })
            .collect();
        Load { shared, tasks }
    }

    /// Stops the loops and adds up what they saw (waits 35 s at most: the
    /// client's request timeout is 30 s).
    pub async fn finish(self) -> Stats {
        self.shared.stop.store(true, SeqCst);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(35);
        let mut total = Stats::default();
        for task in self.tasks {
            match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(stats)) => {
                    total.wall = total.wall.max(stats.wall);
                    total.merge(stats);
                }
                Ok(Err(e)) => panic!("client task failed: {e}"),
                Err(_) => panic!("a client task did not stop within 35 s"),
            }
        }
        total.latencies_us.sort_unstable();
        total
    }
}

/// Waits, woken by answers and never sleeping, until `done()`; gives up at
/// `deadline`, or once the clients have [`EXAMPLES`] problems to report.
async fn wait_for(
    shared: &Shared,
    deadline: Instant,
    mut done: impl FnMut() -> bool,
) -> Result<(), String> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(deadline);
    loop {
        let woken = shared.progress.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if done() {
            return Ok(());
        }
        let problems = shared.problems.load(SeqCst);
        if problems >= EXAMPLES as u64 {
            return Err(format!(
                "gave up: the clients have seen {problems} failed, inconsistent or stale answers"
            ));
        }
        if tokio::time::timeout_at(deadline, woken).await.is_err() {
            return if done() {
                Ok(())
            } else {
                Err(format!("timed out after {:?}", started.elapsed()))
            };
        }
    }
}

async fn client_loop(
    id: usize,
    client: reqwest::Client,
    url: String,
    body: Bytes,
    shared: Arc<Shared>,
    hard_deadline: Instant,
) -> Stats {
    let mut stats = Stats::default();
    let first = Instant::now();
    for _ in 0..MAX_REQUESTS_PER_CLIENT {
        if shared.stop.load(SeqCst) || Instant::now() >= hard_deadline {
            break;
        }
        let acked = shared.acked_flips.load(SeqCst);
        let started = shared.started_flips.load(SeqCst);
        let t0 = Instant::now();
        let result = send(&client, &url, &body).await;
        let took = t0.elapsed();
        let started_after = shared.started_flips.load(SeqCst);
        let at = t0.duration_since(shared.epoch).as_millis();
        stats.requests += 1;
        let (header, answer) = match result {
            Ok(ok) => ok,
            Err(why) => {
                stats.failures += 1;
                shared.problems.fetch_add(1, SeqCst);
                shared.progress.notify_waiters();
                keep(
                    &mut stats.failure_examples,
                    at,
                    format!("client {id}, after {took:?}, flips started {started}, taken effect {acked}: {why}"),
                );
                continue;
            }
        };
        stats
            .latencies_us
            .push(took.as_micros().min(u32::MAX as u128) as u32);
        let version = match check(header.as_deref(), &answer) {
            Ok(v) => v,
            Err(why) => {
                stats.inconsistent += 1;
                shared.problems.fetch_add(1, SeqCst);
                shared.progress.notify_waiters();
                keep(
                    &mut stats.inconsistent_examples,
                    at,
                    format!("client {id}, flips started {started}, taken effect {acked}: {why}"),
                );
                continue;
            }
        };
        stats.served[version as usize] += 1;
        if acked == started && started == started_after {
            stats.strict += 1;
            if version != target(acked) {
                stats.stale += 1;
                shared.problems.fetch_add(1, SeqCst);
                keep(
                    &mut stats.stale_examples,
                    at,
                    format!(
                        "client {id}: version {version} answered, but flip {acked} to version {} had taken effect before the request was sent and no flip started before the answer ({took:?} later)",
                        target(acked)
                    ),
                );
            }
            if let Some(count) = shared.strict.get(acked) {
                count.fetch_add(1, SeqCst);
            }
        }
        shared.seen[version as usize].fetch_max(started, SeqCst);
        shared.answered.fetch_add(1, SeqCst);
        shared.progress.notify_waiters();
    }
    stats.wall = first.elapsed();
    stats
}

/// One request: Ok((x-podium-model-version, body)) for a 200, else why not.
async fn send(
    client: &reqwest::Client,
    url: &str,
    body: &Bytes,
) -> Result<(Option<String>, Bytes), String> {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .map_err(|e| format!("transport error: {}", chain(&e)))?;
    let status = response.status();
    let header = response
        .headers()
        .get("x-podium-model-version")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let answer = response
        .bytes()
        .await
        .map_err(|e| format!("HTTP {status}, then reading the body: {}", chain(&e)))?;
    if status != reqwest::StatusCode::OK {
        return Err(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&answer)
        ));
    }
    Ok((header, answer))
}

/// An error and its sources, "a: b: c".
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    for _ in 0..16 {
        let Some(s) = source else { break };
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

/// The version a 200 answer says it came from, if the header, the body and
/// the values all agree; else what disagrees.
fn check(header: Option<&str>, body: &[u8]) -> Result<u64, String> {
    let text = || String::from_utf8_lossy(body).into_owned();
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON ({e}): {}", text()))?;
    let version = v["model_version"]
        .as_str()
        .ok_or_else(|| format!("no model_version string: {}", text()))?;
    if header != Some(version) {
        return Err(format!(
            "header x-podium-model-version {header:?} but body model_version {version:?}: {}",
            text()
        ));
    }
    let expected = match version {
        "1" => V1,
        "2" => V2,
        other => return Err(format!("unexpected model_version {other:?}: {}", text())),
    };
    let data = |name: &str| -> Option<Vec<f64>> {
        v["outputs"]
            .as_array()?
            .iter()
            .find(|o| o["name"] == name)?["data"]
            .as_array()?
            .iter()
            .map(Value::as_f64)
            .collect()
    };
    let probabilities = data("probabilities");
    let label = data("label");
    let values_match = probabilities.as_ref().is_some_and(|p| {
        p.len() == 2
            && p.iter()
                .zip(expected)
                .all(|(a, b)| (a - b).abs() <= TOLERANCE)
    });
    let label_matches = label.as_deref() == Some(&[LABEL as f64][..]);
    if !(values_match && label_matches) {
        return Err(format!(
            "model_version {version} but label {label:?}, probabilities {probabilities:?}; version {version} gives label {LABEL}, {expected:?}"
        ));
    }
    Ok(if version == "1" { 1 } else { 2 })
}

// ------------------------------------------------------------ the flips

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `PUT /admin/models/fraud/aliases/champion`, which answers once the
    /// server serves the new version.
    Admin,
    /// `podium --registry DIR alias set fraud champion N`, then waiting for
    /// an answer from the new version (the server polls the registry).
    Cli,
}

fn admin_url(base: &str) -> String {
    format!("{base}/admin/models/fraud/aliases/champion")
}

/// The admin API if the server has it, else the registry CLI.
/// `FLIP_DRILL_VIA=admin|cli` forces one.
pub async fn choose_via(client: &reqwest::Client, base: &str) -> Via {
    let forced = std::env::var("FLIP_DRILL_VIA").ok();
    if forced.as_deref() == Some("cli") {
        println!("flips via the registry CLI (FLIP_DRILL_VIA=cli)");
        return Via::Cli;
    }
    // champion is at 1 already: setting it to 1 changes nothing.
    let response = client
        .put(admin_url(base))
        .json(&json!({"version": 1}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {}: {}", admin_url(base), chain(&e)));
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    match status.as_u16() {
        200 => {
            println!("flips via the admin API (probe PUT champion=1 answered 200: {body})");
            Via::Admin
        }
        404 | 405 if forced.as_deref() != Some("admin") => {
            println!(
                "flips via the registry CLI: no admin API on this server (PUT answered {status}: {body})"
            );
            Via::Cli
        }
        _ => panic!("PUT {} answered {status}: {body}", admin_url(base)),
    }
}

/// How the flips went.
#[derive(Debug)]
pub struct FlipReport {
    pub via: Via,
    pub wanted: usize,
    pub done: usize,
    /// Per flip: from its start to the admin API's 200 or the CLI's exit.
    pub command: Vec<Duration>,
    /// Per flip: from its start to the first answer from the new version
    /// to a request sent after the flip started.
    pub to_traffic: Vec<Duration>,
    /// The admin API's answer to the first flip.
    pub first_admin_answer: Option<String>,
    /// Why the flips stopped early, if they did.
    pub error: Option<String>,
    pub wall: Duration,
}

/// How to flip.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub via: Via,
    /// How many flips: an even count ends at version 1, where `champion`
    /// starts (and where the next [`Load`]'s bookkeeping starts too).
    pub flips: usize,
    /// Answers checked against the new version before the next flip.
    pub settle: u64,
    /// Least time from one flip's start to the next one's (zero: none).
    pub pace: Duration,
    /// No flip starts after this, and no wait lasts beyond it.
    pub deadline: Instant,
}

/// Flips `champion` `plan.flips` times (to 2, 1, 2, …) while `load` runs;
/// stops early at the deadline or at the first flip that fails.
///
/// Before the first flip it waits for `settle` correct answers (the load
/// runs). After each flip it waits, woken by answers and never sleeping, until
/// (1) version N has answered a request sent after the flip started: with
/// the CLI that is how the drill knows the server has followed the registry;
/// then (2) `settle` answers to requests sent after the flip took effect
/// have been checked against version N. Without that second wait the next
/// flip would start at once and almost no answer would be checked against
/// the version in force, the check that catches a server that goes back to
/// the old version after a swap. With a zero `pace` these waits are the
/// only pause between flips; the bench sets a pace to spread its flips over
/// a window as long as its steady one.
pub async fn flip(
    load: &Load,
    client: &reqwest::Client,
    base: &str,
    registry: &Path,
    plan: &Plan,
) -> FlipReport {
    let Plan {
        via,
        flips,
        settle,
        pace,
        deadline,
    } = *plan;
    assert!(flips <= MAX_FLIPS, "at most {MAX_FLIPS} flips");
    let shared = &load.shared;
    let began = Instant::now();
    // First, the load must be running: `settle` correct answers.
    let ready = wait_for(shared, deadline, || shared.answered.load(SeqCst) >= settle)
        .await
        .map_err(|why| {
            format!(
                "before the first flip, waiting for {settle} correct answers ({} so far): {why}",
                shared.answered.load(SeqCst)
            )
        });
    let mut report = FlipReport {
        via,
        wanted: flips,
        done: 0,
        command: Vec::with_capacity(flips),
        to_traffic: Vec::with_capacity(flips),
        first_admin_answer: None,
        error: ready.err(),
        wall: Duration::ZERO,
    };
    let flips = if report.error.is_some() { 0 } else { flips };
    for k in 1..=flips {
        if Instant::now() >= deadline {
            report.error = Some(format!(
                "time budget spent after {} of {flips} flips",
                k - 1
            ));
            break;
        }
        let version = target(k);
        let flip_deadline = deadline.min(Instant::now() + FLIP_TIMEOUT);
        shared.started_flips.store(k, SeqCst);
        let t0 = Instant::now();
        let done = match via {
            Via::Admin => admin_flip(client, base, version, flip_deadline).await,
            Via::Cli => cli_flip(registry, version).await,
        };
        match done {
            Ok(answer) => {
                if via == Via::Admin && report.first_admin_answer.is_none() {
                    report.first_admin_answer = answer;
                }
            }
            Err(why) => {
                report.error = Some(format!("flip {k} (to version {version}): {why}"));
                break;
            }
        }
        report.command.push(t0.elapsed());
        if via == Via::Admin {
            // The PUT's contract: the server serves `version` now.
            shared.acked_flips.store(k, SeqCst);
        }
        if let Err(why) = wait_for(shared, flip_deadline, || {
            shared.seen[version as usize].load(SeqCst) >= k
        })
        .await
        {
            report.error = Some(format!(
                "flip {k} (to version {version}): waiting for an answer from version {version} to a request sent after the flip started: {why}"
            ));
            break;
        }
        report.to_traffic.push(t0.elapsed());
        if via == Via::Cli {
            shared.acked_flips.store(k, SeqCst);
        }
        if let Err(why) = wait_for(shared, flip_deadline, || {
            shared.strict[k].load(SeqCst) >= settle
        })
        .await
        {
            report.error = Some(format!(
                "flip {k} (to version {version}): waiting for {settle} answers checked after the flip took effect ({} so far): {why}",
                shared.strict[k].load(SeqCst)
            ));
            break;
        }
        report.done = k;
        let next = (t0 + pace).min(deadline);
        if k < flips && next > Instant::now() {
            tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
        }
    }
    report.wall = began.elapsed();
    report
}

async fn admin_flip(
    client: &reqwest::Client,
    base: &str,
    version: u64,
    deadline: Instant,
) -> Result<Option<String>, String> {
    let request = client
        .put(admin_url(base))
        .json(&json!({ "version": version }))
        .send();
    let response = tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), request)
        .await
        .map_err(|_| "PUT did not answer in time".to_string())?
        .map_err(|e| format!("PUT: transport error: {}", chain(&e)))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| {
        format!(
            "PUT answered {status}, then reading the body: {}",
            chain(&e)
        )
    })?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("PUT answered {status}: {body}"));
    }
    serde_json::from_str::<Value>(&body)
        .map_err(|e| format!("PUT answered 200 with a body that is not JSON ({e}): {body}"))?;
    Ok(Some(body))
}

async fn cli_flip(registry: &Path, version: u64) -> Result<Option<String>, String> {
    let registry: PathBuf = registry.to_path_buf();
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || {
        common::cli(
            &registry,
            &["alias", "set", "fraud", "champion", &version.to_string()],
        )
    })
    .await
    .map_err(|e| format!("CLI task failed: {e}"))?;
    if ok {
        Ok(None)
    } else {
        Err(format!("podium alias set failed:\n{stdout}\n{stderr}"))
    }
}

/// Nearest-rank percentile of durations.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl FlipReport {
    pub fn summary(&self) -> String {
        let stopped = match &self.error {
            Some(why) => format!("; stopped early: {why}"),
            None => String::new(),
        };
        format!(
            "{} of {} flips via {:?} in {:.1} s; per flip: command p50 {:.1?} max {:.1?}, to first new-version answer p50 {:.1?} max {:.1?}{stopped}",
            self.done,
            self.wanted,
            self.via,
            self.wall.as_secs_f64(),
            percentile(&self.command, 0.5),
            percentile(&self.command, 1.0),
            percentile(&self.to_traffic, 0.5),
            percentile(&self.to_traffic, 1.0),
        )
    }
}

// ---------------------------------------------------------- the process

/// The pid of the `podium serve` serving `registry` (found in /proc by its
/// command line, which names the registry's unique temporary directory).
pub fn server_pid(registry: &Path) -> Option<u32> {
    let registry = registry.to_str()?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten().take(100_000) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if args.contains(&registry.as_bytes()) && args.contains(&&b"serve"[..]) {
            return Some(pid);
        }
    }
    None
}

/// A `/proc/PID/status` field in kB (VmRSS, VmHWM, …).
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// CPU time (user + system) of a process, in clock ticks.
pub fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let field = |i: usize| -> u64 { fields.get(i).and_then(|x| x.parse().ok()).unwrap_or(0) };
    field(11) + field(12)
}

/// Total and idle (idle + iowait) clock ticks of the machine.
pub fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    let at = |i: usize| cpu.get(i).copied().unwrap_or(0);
    (cpu.iter().sum(), at(3) + at(4))
}
