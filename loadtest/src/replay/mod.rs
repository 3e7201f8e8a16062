//! `--replay TABLE_DIR`: the requests recorded in a Podium inference table,
//! sent again to a server (staging, or the challenger) in recorded order at
//! the recorded pacing ÷ `--speed` or at a fixed `--rate`, each answer
//! optionally checked against the recorded one (`--compare`).
//!
//! The table holds every request in the OIP JSON form (REST JSON bodies as
//! sent; binary and gRPC requests rendered), so OIP requests of any
//! protocol are sent again as OIP REST JSON to
//! `/v2/models/{endpoint}[/versions/{--model-version}]/infer`; MLflow
//! `/invocations` bodies go to `/serving-endpoints/{endpoint}/invocations`
//! as they were. Rows without a request body (`log_payloads = false`, or
//! over the size limit) and rows the recording server answered with an
//! error are skipped and counted.

pub mod args;
pub mod compare;
pub mod report;
pub mod table;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::outcome::ErrorClass;
use crate::protocol::{resolve, Conn, HttpTarget, RestRequest};
use crate::schedule;
use crate::stats::Stats;
use compare::{Comparison, Tolerance};
use table::{Filter, Kind, Recorded, Selection};

/// The latest intended send time (a hundred years): a tiny `--speed`
/// waits, it does not overflow into sending at once.
const NEVER: Duration = Duration::from_secs(100 * 365 * 86_400);

/// When each recorded request is sent again.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pacing {
    /// The recorded gaps between arrivals divided by `speed` (2.0: twice
    /// as fast as recorded).
    Recorded { speed: f64 },
    /// A fixed rate, requests per second, whatever the recorded gaps.
    Fixed { rate: f64 },
}

impl Pacing {
    /// The intended send time of each request, from the start of the replay.
    fn offsets(&self, requests: &[&Recorded]) -> Vec<Duration> {
        let first = requests.first().map_or(0, |r| r.time_us);
        requests
            .iter()
            .enumerate()
            .map(|(n, r)| {
                let seconds = match *self {
                    Pacing::Recorded { speed } => (r.time_us - first) as f64 / 1e6 / speed,
                    Pacing::Fixed { rate } => n as f64 / rate,
                };
                Duration::try_from_secs_f64(seconds)
                    .unwrap_or(NEVER)
                    .min(NEVER)
            })
            .collect()
    }
}

/// Everything one replay needs.
#[derive(Clone, Debug)]
pub struct ReplayConfig {
    pub table: PathBuf,
    pub filter: Filter,
    /// The REST listener of the server to replay against.
    pub url: String,
    /// Send OIP requests to this version or alias of each endpoint.
    pub model_version: Option<String>,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    /// The most requests in flight at once (= connections).
    pub concurrency: usize,
    pub pacing: Pacing,
    /// Check each answer against the recorded one, with this tolerance.
    pub compare: Option<Tolerance>,
    /// Print a live progress line on stderr.
    pub progress: bool,
}

/// What a replay did.
pub struct ReplayReport {
    pub table: PathBuf,
    pub target: String,
    pub pacing: Pacing,
    /// Requests read from the table to replay, and the rows skipped.
    pub selection: Selection,
    /// Replayed requests: latency from the intended send time, errors by
    /// class, answers by endpoint, arm and version.
    pub stats: Stats,
    /// `--compare` only.
    pub comparison: Option<Comparison>,
    /// From the start to the last answer.
    pub elapsed: Duration,
}

impl ReplayReport {
    pub fn replayed(&self) -> u64 {
        self.stats.requests()
    }

    /// The exit status: 0 when every request was answered (and, with
    /// `--compare`, every answer matched), 2 when a request got an error,
    /// 3 when all were answered but an answer differs. (1 is bad flags, an
    /// unreadable table, nothing to replay or a target that is not there.)
    pub fn exit_code(&self) -> u8 {
        if self.stats.error_count() > 0 {
            2
        } else if self.comparison.as_ref().is_some_and(|c| c.differ > 0) {
            3
        } else {
            0
        }
    }
}

/// Where a recorded request goes.
fn request_of(
    recorded: &Recorded,
    prefix: &str,
    model_version: Option<&str>,
) -> Option<RestRequest> {
    // A path segment: `/`, `?`, `#`, `%` and spaces encoded, as in a URL.
    const SEGMENT: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'/')
        .add(b'?')
        .add(b'#')
        .add(b'%')
        .add(b'"')
        .add(b'<')
        .add(b'>');
    let endpoint = utf8_percent_encode(&recorded.endpoint, SEGMENT);
    let body = recorded.request.clone();
    Some(match recorded.kind {
        Kind::Oip => {
            let version = match model_version {
                Some(v) => format!("/versions/{}", utf8_percent_encode(v, SEGMENT)),
                None => String::new(),
            };
            RestRequest {
                path: format!("{prefix}/v2/models/{endpoint}{version}/infer"),
                body,
                content_type: "application/json",
                header_length: None,
            }
        }
        // `/invocations` has no route to a version.
        Kind::Invocations if model_version.is_some() => return None,
        Kind::Invocations => {
            let json = matches!(
                recorded.request.trim_ascii_start().first(),
                Some(b'{' | b'[')
            );
            RestRequest {
                path: format!("{prefix}/serving-endpoints/{endpoint}/invocations"),
                body,
                content_type: if json { "application/json" } else { "text/csv" },
                header_length: None,
            }
        }
    })
}

/// The resolution of tokio's timer (see [`crate::run`]).
const TIMER_TICK: Duration = Duration::from_millis(1);

struct Shared {
    start: Instant,
    requests: Vec<(Recorded, RestRequest)>,
    offsets: Vec<Duration>,
    target: HttpTarget,
    compare: Option<Tolerance>,
    next: AtomicUsize,
    /// For the progress line.
    done: AtomicU64,
    errors: AtomicU64,
    differ: AtomicU64,
}

struct WorkerResult {
    stats: Stats,
    comparison: Comparison,
    last_answer: Option<Instant>,
}

/// Reads the table and replays it. Fails early when the table cannot be
/// read or the target cannot be reached; a selection with nothing to send
/// comes back as a report of 0 replayed requests.
pub async fn run(cfg: &ReplayConfig) -> Result<ReplayReport> {
    let (dir, filter) = (cfg.table.clone(), cfg.filter.clone());
    let mut selection = tokio::task::spawn_blocking(move || table::read(&dir, &filter))
        .await
        .context("the table reader failed")??;
    let address = resolve(&cfg.url).await?;
    let target = HttpTarget::new(address, &cfg.headers, cfg.timeout)?;
    let recorded = std::mem::take(&mut selection.requests);
    let mut requests = Vec::with_capacity(recorded.len());
    for r in recorded {
        match request_of(&r, &target.address.prefix, cfg.model_version.as_deref()) {
            Some(req) => requests.push((r, req)),
            None => {
                *selection
                    .skipped
                    .entry(table::Skip::NoVersionRoute)
                    .or_default() += 1
            }
        }
    }
    let described = format!(
        "http://{}{}",
        target.address.authority, target.address.prefix
    );
    let mut report = ReplayReport {
        table: cfg.table.clone(),
        target: described,
        pacing: cfg.pacing,
        selection,
        stats: Stats::default(),
        comparison: cfg.compare.map(|_| Comparison::default()),
        elapsed: Duration::ZERO,
    };
    if requests.is_empty() {
        return Ok(report);
    }
    let offsets = {
        let recorded: Vec<&Recorded> = requests.iter().map(|(r, _)| r).collect();
        cfg.pacing.offsets(&recorded)
    };

    // Connections first: an unreachable target fails here, not per request.
    let mut conns = Vec::new();
    for _ in 0..cfg.concurrency.clamp(1, requests.len()) {
        conns.push(Conn::http(&target).await?);
    }
    let shared = Arc::new(Shared {
        start: Instant::now(),
        requests,
        offsets,
        target,
        compare: cfg.compare,
        next: AtomicUsize::new(0),
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        differ: AtomicU64::new(0),
    });
    let progress = cfg
        .progress
        .then(|| tokio::spawn(progress_line(Arc::clone(&shared))));
    let workers: Vec<_> = conns
        .into_iter()
        .map(|conn| tokio::spawn(worker(conn, Arc::clone(&shared))))
        .collect();
    let mut comparison = Comparison::default();
    let mut last_answer = None;
    let mut failed = None;
    for w in workers {
        match w.await {
            Ok(r) => {
                report.stats.merge(&r.stats);
                comparison.merge(&r.comparison);
                last_answer = last_answer.max(r.last_answer);
            }
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    if let Some(p) = progress {
        p.abort();
        let _ = p.await;
        eprintln!();
    }
    if let Some(e) = failed {
        anyhow::bail!("a replay worker failed: {e}");
    }
    if report.comparison.is_some() {
        report.comparison = Some(comparison);
    }
    report.elapsed = last_answer
        .map(|t| t.saturating_duration_since(shared.start))
        .unwrap_or_default();
    // Every task holding `shared` has ended: the requests come back whole.
    if let Ok(shared) = Arc::try_unwrap(shared) {
        report.selection.requests = shared.requests.into_iter().map(|(r, _)| r).collect();
    }
    Ok(report)
}

async fn worker(mut conn: Conn, shared: Arc<Shared>) -> WorkerResult {
    let mut out = WorkerResult {
        stats: Stats::default(),
        comparison: Comparison::default(),
        last_answer: None,
    };
    loop {
        let n = shared.next.fetch_add(1, Ordering::Relaxed);
        let (Some((recorded, request)), Some(&due)) =
            (shared.requests.get(n), shared.offsets.get(n))
        else {
            break;
        };
        let at = shared.start.checked_add(due);
        // Aim one timer tick early: tokio's timer rounds up (see `run`).
        if let Some(wake) = at.and_then(|at| at.checked_sub(TIMER_TICK)) {
            if wake > Instant::now() {
                tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
            }
        }
        let sent = Instant::now();
        let result = conn.send(&shared.target, request, n as u64).await;
        let answered = Instant::now();
        out.last_answer = Some(answered);
        let sent_at = sent - shared.start;
        match result {
            Ok(reply) => {
                let latency = schedule::latency(Some(due), sent_at, answered - shared.start);
                let lag = sent_at.saturating_sub(due);
                out.stats
                    .answer(&reply.answer(), latency, Some(answered - sent), Some(lag));
                if let Some(tolerance) = shared.compare {
                    let before = out.comparison.differ;
                    out.comparison.add(
                        &recorded.request_id,
                        recorded.response.as_deref(),
                        &reply,
                        recorded.kind == Kind::Invocations,
                        tolerance,
                    );
                    if out.comparison.differ > before {
                        shared.differ.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err((class, detail)) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                let connect = class == ErrorClass::Connect;
                out.stats.error(class, &detail);
                if connect {
                    // Not a busy loop against a server that is gone.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
    out
}

/// `[  3.0s] 1234 of 5000 replayed  0 errors  0 differ`, once a second.
async fn progress_line(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut stderr = std::io::stderr();
    loop {
        tick.tick().await;
        let _ = write!(
            stderr,
            "\r[{:6.1}s] {:>10} of {} replayed {:>6} errors {:>6} differ ",
            shared.start.elapsed().as_secs_f64(),
            shared.done.load(Ordering::Relaxed),
            shared.requests.len(),
            shared.errors.load(Ordering::Relaxed),
            shared.differ.load(Ordering::Relaxed),
        );
        let _ = stderr.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn recorded(endpoint: &str, time_us: i64, kind: Kind, request: &str) -> Recorded {
        Recorded {
            request_id: "r".into(),
            endpoint: endpoint.into(),
            time_us,
            kind,
            request: Bytes::copy_from_slice(request.as_bytes()),
            response: None,
        }
    }

    #[test]
    fn recorded_gaps_divided_by_speed_or_a_fixed_rate() {
        let owned = [
            recorded("fraud", 1_000_000, Kind::Oip, "{}"),
            recorded("fraud", 1_500_000, Kind::Oip, "{}"),
            recorded("fraud", 3_000_000, Kind::Oip, "{}"),
        ];
        let rows: Vec<&Recorded> = owned.iter().collect();
        let ms = Duration::from_millis;
        assert_eq!(
            Pacing::Recorded { speed: 1.0 }.offsets(&rows),
            vec![ms(0), ms(500), ms(2000)]
        );
        assert_eq!(
            Pacing::Recorded { speed: 4.0 }.offsets(&rows),
            vec![ms(0), ms(125), ms(500)]
        );
        assert_eq!(
            Pacing::Fixed { rate: 10.0 }.offsets(&rows),
            vec![ms(0), ms(100), ms(200)]
        );
        // A speed so small that the gaps overflow waits instead.
        let slow = Pacing::Recorded { speed: 1e-300 }.offsets(&rows);
        assert_eq!(slow, vec![ms(0), NEVER, NEVER]);
    }

    #[test]
    fn requests_go_to_the_recorded_endpoint() {
        let r = request_of(&recorded("fraud", 0, Kind::Oip, "{}"), "", None).unwrap();
        assert_eq!(r.path, "/v2/models/fraud/infer");
        assert_eq!(r.content_type, "application/json");
        let r = request_of(
            &recorded("a b/c", 0, Kind::Oip, "{}"),
            "/base",
            Some("challenger"),
        )
        .unwrap();
        assert_eq!(
            r.path,
            "/base/v2/models/a%20b%2Fc/versions/challenger/infer"
        );
        let csv = recorded("fraud", 0, Kind::Invocations, "a,b\n1,2\n");
        let r = request_of(&csv, "", None).unwrap();
        assert_eq!(
            (r.path.as_str(), r.content_type),
            ("/serving-endpoints/fraud/invocations", "text/csv")
        );
        let json = recorded("fraud", 0, Kind::Invocations, " {\"inputs\": []}");
        assert_eq!(
            request_of(&json, "", None).unwrap().content_type,
            "application/json"
        );
        assert!(request_of(&json, "", Some("2")).is_none());
    }
}
