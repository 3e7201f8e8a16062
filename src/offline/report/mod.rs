//! `podium experiment report`: an endpoint's experiment readout computed
//! from files — the inference table's calls joined with the feedback
//! table's labels on `request_id` (else `client_request_id`) — with the
//! live readout's arithmetic ([`EndpointReadout`], replayed), so its JSON
//! has the shape and numbers of `GET /admin/experiments/{endpoint}`.
//!
//! ```text
//! <table>/endpoint=<e>/…  ─read::calls─▶ calls (time order) ─replay_call─▶ arm counts, latency
//! <table>/_feedback/…     ─read::feedback─▶ labels (received order) ─join, first label per call─▶
//!                           replay_label; one mSPRT evaluation per feedback request
//! ─▶ ReadoutView (text, --json)  and  timeline::Timeline ─html─▶ one self-contained page
//! ```
//!
//! What can differ from the live readout, by design: the report joins every
//! label to its call, where the live ledger only joins calls it still holds
//! (`--readout-ledger-size`); it starts from the table's first call (or
//! `--since`), where the live readout starts at the server's start; and its
//! latency is the table's `total_duration_ms`.

pub mod html;
pub mod read;
pub mod timeline;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::experiments::{ArmPolicy, EndpointReadout, ReadoutConfig, ReadoutView};

pub use read::{Call, Labelled};
pub use timeline::Timeline;

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The inference table's directory (a server's `--table-dir`).
    pub table: PathBuf,
    /// The readout settings; `endpoint` names the endpoint.
    pub readout: ReadoutConfig,
    /// The experiment's name (the endpoint's `experiment`).
    pub experiment: String,
    /// The endpoint's arms and their configured weights, for the SRM check.
    pub arms: Vec<(String, f64)>,
    /// Calls from this time (microseconds since the epoch)...
    pub since: Option<i64>,
    /// ...until before this one.
    pub until: Option<i64>,
}

/// The readout and the data behind the page's charts.
pub struct Report {
    pub view: ReadoutView,
    pub timeline: Timeline,
    /// Feedback items whose call is not among the endpoint's calls in range.
    pub unmatched: usize,
}

/// Reads the tables and computes the report.
pub fn report(options: &ReportOptions) -> anyhow::Result<Report> {
    let config = &options.readout;
    anyhow::ensure!(
        options.table.is_dir(),
        "{} is not a directory; pass the directory given to `podium serve --table-dir`",
        options.table.display()
    );
    let output = match config.metric {
        crate::experiments::Metric::Accuracy => config.prediction_output.as_deref(),
        _ => None,
    };
    let calls = read::calls(
        &options.table,
        &config.endpoint,
        options.since,
        options.until,
        output,
    )?;
    anyhow::ensure!(
        !calls.is_empty(),
        "{} holds no calls to endpoint \"{}\"{}; check the name (`podium table summary {}` lists the endpoints) and the --since/--until range (a server publishes a file every --table-roll-secs)",
        options.table.display(),
        config.endpoint,
        if options.since.is_some() || options.until.is_some() { " in the time range" } else { "" },
        options.table.display()
    );
    let labels = read::feedback(&options.table)?;
    Ok(replay(options, &calls, &labels))
}

/// The report of `calls` (time order) and `labels` (received order).
pub fn replay(options: &ReportOptions, calls: &[Call], labels: &[Labelled]) -> Report {
    let config = &options.readout;
    let since = options.since.unwrap_or(calls.first().map_or(0, |c| c.time));
    let readout = EndpointReadout::replayed(config.clone(), system_time(since));
    for call in calls {
        let latency = Duration::from_secs_f64(call.total_ms.max(0.0) / 1000.0);
        readout.replay_call(&call.arm, call.ok, call.version, latency);
    }
    let by_id: HashMap<&str, usize> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| (c.request_id.as_str(), i))
        .collect();
    let by_client: HashMap<&str, usize> = calls
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Some((c.client_request_id.as_deref()?, i)))
        .collect();
    let mut labelled = vec![false; calls.len()];
    // (index of the call, outcome counted) per joined label, for the timeline.
    let mut joined = Vec::new();
    let mut unmatched = 0;
    let mut i = 0;
    while i < labels.len() {
        // One feedback request's items share their received time: the live
        // readout evaluates once per request.
        let batch_time = labels[i].time;
        let mut counted = false;
        while i < labels.len() && labels[i].time == batch_time {
            let item = &labels[i];
            i += 1;
            let call = item
                .request_id
                .as_deref()
                .and_then(|id| by_id.get(id))
                .or_else(|| by_client.get(item.client_request_id.as_deref()?))
                .copied();
            let Some(c) = call else {
                unmatched += 1;
                continue;
            };
            let call = &calls[c];
            let scorable =
                call.ok && (output_needed(config).is_none() || call.prediction.is_some());
            if labelled[c] || !scorable {
                continue;
            }
            if readout.replay_label(&call.arm, &item.label, call.prediction.as_ref()) {
                labelled[c] = true;
                counted = true;
                joined.push((c, item.label.clone()));
            }
        }
        if counted {
            readout.replay_evaluate();
        }
    }
    let policy = policy(options, calls);
    let model = most_common(calls.iter().filter_map(|c| c.model.as_deref())).unwrap_or_default();
    let view = readout.view(&options.experiment, &model, &policy);
    let timeline = Timeline::build(config, calls, &joined);
    Report {
        view,
        timeline,
        unmatched,
    }
}

fn output_needed(config: &ReadoutConfig) -> Option<&str> {
    match config.metric {
        crate::experiments::Metric::Accuracy => config.prediction_output.as_deref(),
        _ => None,
    }
}

/// The configured arms with the version each served last in `calls`.
fn policy(options: &ReportOptions, calls: &[Call]) -> Vec<ArmPolicy> {
    options
        .arms
        .iter()
        .map(|(alias, weight)| ArmPolicy {
            alias: alias.clone(),
            weight: *weight,
            version: calls
                .iter()
                .rev()
                .find(|c| &c.arm == alias && c.version.is_some())
                .and_then(|c| c.version),
            outputs: None,
        })
        .collect()
}

fn most_common<'a>(names: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for n in names {
        *counts.entry(n).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(n, _)| n.to_string())
}

fn system_time(us: i64) -> SystemTime {
    if us >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_micros(us as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_micros(us.unsigned_abs())
    }
}
