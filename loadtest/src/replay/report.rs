//! A replay's report: the human summary and the `--json` object.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::compare::Difference;
use super::{Pacing, ReplayReport};
use crate::hist::Percentiles;
use crate::report::{arm_table, us};
use crate::stats::ArmRow;

/// The report as machines read it (`--json`). `differ`, `differ_by_output`,
/// `compared`, `not_compared` and `differ_examples` are null without
/// `--compare`.
#[derive(Serialize)]
pub struct JsonReplay {
    pub table: String,
    pub target: String,
    /// `{"speed": S}` (recorded gaps ÷ S) or `{"rate": R}`.
    pub pacing: BTreeMap<&'static str, f64>,
    pub files: usize,
    /// Rows within the filters not replayed, by reason (`no_payload`,
    /// `truncated`, `recorded_error`, `unknown_protocol`, `no_version_route`).
    pub skipped: BTreeMap<&'static str, u64>,
    pub replayed: u64,
    pub answered: u64,
    pub errors: u64,
    pub errors_by_class: BTreeMap<String, u64>,
    pub error_examples: Vec<String>,
    pub compared: Option<u64>,
    pub not_compared: Option<BTreeMap<String, u64>>,
    pub differ: Option<u64>,
    pub differ_by_output: Option<BTreeMap<String, u64>>,
    pub differ_examples: Option<Vec<Difference>>,
    /// From each request's intended send time to its answer.
    pub latency: Percentiles,
    /// From the actual send.
    pub service_time: Percentiles,
    /// How late requests left (every connection was busy).
    pub send_lag: Percentiles,
    pub elapsed_s: f64,
    pub throughput: f64,
    pub arms: Vec<ArmRow>,
    pub exit_code: u8,
}

impl ReplayReport {
    /// Replayed requests (answers and errors) per second.
    pub fn throughput(&self) -> f64 {
        self.replayed() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn json(&self) -> JsonReplay {
        let s = &self.stats;
        let c = self.comparison.as_ref();
        JsonReplay {
            table: self.table.display().to_string(),
            target: self.target.clone(),
            pacing: match self.pacing {
                Pacing::Recorded { speed } => BTreeMap::from([("speed", speed)]),
                Pacing::Fixed { rate } => BTreeMap::from([("rate", rate)]),
            },
            files: self.selection.files,
            skipped: self
                .selection
                .skipped
                .iter()
                .map(|(k, n)| (k.key(), *n))
                .collect(),
            replayed: self.replayed(),
            answered: s.answers,
            errors: s.error_count(),
            errors_by_class: s.error_map(),
            error_examples: s.error_examples.clone(),
            compared: c.map(|c| c.compared),
            not_compared: c.map(|c| c.not_compared.clone()),
            differ: c.map(|c| c.differ),
            differ_by_output: c.map(|c| c.differ_by_output.clone()),
            differ_examples: c.map(|c| c.examples.clone()),
            latency: s.percentiles(),
            service_time: s.service.summary(),
            send_lag: s.lag.summary(),
            elapsed_s: self.elapsed.as_secs_f64(),
            throughput: self.throughput(),
            arms: s.arm_rows(),
            exit_code: self.exit_code(),
        }
    }
}

fn counts<K: std::fmt::Display>(map: impl IntoIterator<Item = (K, u64)>) -> String {
    map.into_iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The summary printed at the end of a replay.
pub fn summary(r: &ReplayReport) -> String {
    let mut out = String::new();
    let s = &r.stats;
    let pacing = match r.pacing {
        Pacing::Recorded { speed: 1.0 } => "the recorded pacing".to_string(),
        Pacing::Recorded { speed } => format!("the recorded pacing × {speed}"),
        Pacing::Fixed { rate } => format!("{rate} req/s"),
    };
    let _ = writeln!(
        out,
        "table    {} ({} files)",
        r.table.display(),
        r.selection.files
    );
    let _ = writeln!(out, "target   {} (OIP REST JSON), at {pacing}", r.target);
    let skipped = r.selection.skipped_total();
    let _ = write!(out, "skipped  {skipped} rows");
    if skipped > 0 {
        let reasons = counts(r.selection.skipped.iter().map(|(k, n)| (k.key(), *n)));
        let _ = write!(out, " ({reasons})");
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "replayed {} requests in {:.2} s: {:.1} req/s, {} answered, {} errors",
        r.replayed(),
        r.elapsed.as_secs_f64(),
        r.throughput(),
        s.answers,
        s.error_count()
    );
    if s.answers > 0 {
        let p = s.percentiles();
        let _ = writeln!(
            out,
            "latency  p50 {}  p90 {}  p99 {}  max {}  (from the intended send time)",
            us(p.p50_us),
            us(p.p90_us),
            us(p.p99_us),
            us(p.max_us)
        );
        let l = s.lag.summary();
        let _ = writeln!(
            out,
            "send lag p50 {}  p99 {}  max {}  (how late requests left: every connection was busy)",
            us(l.p50_us),
            us(l.p99_us),
            us(l.max_us)
        );
    }
    if !s.errors.is_empty() {
        let _ = writeln!(out, "errors   {}", counts(s.error_map()));
        for e in &s.error_examples {
            let _ = writeln!(out, "         e.g. {e}");
        }
    }
    if let Some(c) = &r.comparison {
        let _ = write!(
            out,
            "compare  {} answers compared, {} differ",
            c.compared, c.differ
        );
        if !c.differ_by_output.is_empty() {
            let _ = write!(out, " (by output: {})", counts(c.differ_by_output.clone()));
        }
        if !c.not_compared.is_empty() {
            let _ = write!(out, "; not compared: {}", counts(c.not_compared.clone()));
        }
        let _ = writeln!(out);
        for e in &c.examples {
            let _ = writeln!(
                out,
                "         e.g. request {} output {:?}: {}: recorded {} replayed {}",
                e.request_id, e.output, e.detail, e.recorded, e.replayed
            );
        }
    }
    out.push_str(&arm_table(&s.arm_rows()));
    out
}
