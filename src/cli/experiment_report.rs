//! `podium experiment report TABLE_DIR --endpoint E`: the readout of an
//! endpoint's experiment from the inference and feedback tables, as text,
//! as the admin API's JSON (`--json`), and as one self-contained HTML page
//! (`--html FILE`).

use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};

use crate::config::{self, Lookup};
use crate::experiments::{
    Metric, ReadoutConfig, DEFAULT_ALPHA, DEFAULT_BASELINE, DEFAULT_MIN_SAMPLES,
};
use crate::inference_table::record::format_micros;
use crate::offline::report::{self, html, ReportOptions};

use super::admin_client::Readout;
use super::parse::parse_assignment;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// The inference table's directory (the server's --table-dir); its
    /// feedback table is read from TABLE_DIR/_feedback.
    table: PathBuf,
    /// The endpoint whose experiment to report.
    #[arg(long)]
    endpoint: String,
    /// Only calls received at or after this time (RFC 3339, e.g.
    /// 2026-11-27T09:00:00Z, or a date: its midnight UTC) [default: the first].
    #[arg(long, value_parser = parse_time)]
    since: Option<DateTime<Utc>>,
    /// Only calls received before this time (RFC 3339, or a date) [default: all].
    #[arg(long, value_parser = parse_time)]
    until: Option<DateTime<Utc>>,
    /// Print the readout as JSON, in the shape of GET /admin/experiments/{endpoint}.
    #[arg(long)]
    json: bool,
    /// Also write the report as one self-contained HTML page (charts inline,
    /// nothing fetched from the network) to this file.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// The endpoint configuration the server ran with (serve's --config): the
    /// endpoint's arms and weights, experiment name and [endpoint.readout].
    /// Flags below override its readout settings.
    #[arg(
        long,
        visible_alias = "endpoints",
        env = "PODIUM_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
    /// accuracy, conversion or mean [default: from --config].
    #[arg(long, value_parser = parse_metric)]
    metric: Option<Metric>,
    /// The output holding the predicted class (accuracy only) [default: from --config].
    #[arg(long)]
    prediction_output: Option<String>,
    /// The arm every other arm is compared with [default: from --config, else champion].
    #[arg(long)]
    baseline: Option<String>,
    /// Labels per arm before any decision [default: from --config, else 200].
    #[arg(long)]
    min_samples: Option<u64>,
    /// Significance level; intervals at 1 - alpha [default: from --config, else 0.05].
    #[arg(long)]
    alpha: Option<f64>,
    /// An arm and its configured weight, for the sample-ratio check (repeat
    /// per arm, e.g. --weight champion=90 --weight challenger=10)
    /// [default: the endpoint's arms in --config].
    #[arg(long = "weight", value_name = "ALIAS=WEIGHT")]
    weights: Vec<String>,
}

impl ReportArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let options = self.options()?;
        let report = report::report(&options)?;
        let value = serde_json::to_value(&report.view)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            let readout: Readout = serde_json::from_value(value)?;
            print!("{}", super::experiment::render(&readout));
            if report.unmatched > 0 {
                println!(
                    "{} feedback items name no call of this endpoint in the range (other endpoints, or calls outside --since/--until)",
                    report.unmatched
                );
            }
        }
        if let Some(path) = &self.html {
            let range = match (report.timeline.ends.first(), report.timeline.ends.last()) {
                (Some(_), Some(&last)) => {
                    format!("{} to {}", report.view.since, format_micros(last))
                }
                _ => report.view.since.clone(),
            };
            std::fs::write(path, html::page(&report.view, &report.timeline, &range))
                .with_context(|| format!("cannot write the report to {}", path.display()))?;
            if !self.json {
                println!("report written to {}", path.display());
            }
        }
        Ok(())
    }

    /// The readout settings: the endpoint's in --config, overridden by flags.
    fn options(&self) -> anyhow::Result<ReportOptions> {
        let endpoint = &self.endpoint;
        let (mut readout, mut arms, experiment) = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                // No registry offline: every alias the file names is taken as known.
                let mut aliases = Vec::new();
                if let Ok(value) = toml::from_str::<toml::Value>(&text) {
                    collect_aliases(&value, &mut aliases);
                }
                let known = |_: &str| Lookup::Aliases(aliases.clone());
                let config = config::parse(&text, &known)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                let e = config
                    .endpoints
                    .iter()
                    .find(|e| &e.name == endpoint)
                    .with_context(|| {
                        format!("{} has no endpoint \"{endpoint}\"", path.display())
                    })?;
                let readout = config
                    .readouts
                    .into_iter()
                    .find(|r| &r.endpoint == endpoint);
                let arms: Vec<(String, f64)> =
                    e.arms.iter().map(|a| (a.alias.clone(), a.weight)).collect();
                (readout, arms, e.experiment.clone())
            }
            None => (None, Vec::new(), endpoint.clone()),
        };
        if !self.weights.is_empty() {
            arms = self
                .weights
                .iter()
                .map(|w| parse_assignment(w, "WEIGHT"))
                .collect::<anyhow::Result<_>>()?;
        }
        anyhow::ensure!(
            !arms.is_empty(),
            "the report needs the endpoint's arms and weights for its sample-ratio check: pass --config FILE (the server's endpoint configuration) or --weight ALIAS=WEIGHT per arm"
        );
        let metric = match (self.metric, &readout) {
            (Some(m), _) => m,
            (None, Some(r)) => r.metric,
            (None, None) => anyhow::bail!(
                "endpoint \"{endpoint}\" has no [endpoint.readout] in --config; say what to measure with --metric accuracy|conversion|mean"
            ),
        };
        let r = readout.get_or_insert_with(|| ReadoutConfig {
            endpoint: endpoint.clone(),
            metric,
            prediction_output: None,
            baseline: DEFAULT_BASELINE.into(),
            min_samples: DEFAULT_MIN_SAMPLES,
            alpha: DEFAULT_ALPHA,
        });
        r.metric = metric;
        if let Some(output) = &self.prediction_output {
            r.prediction_output = Some(output.clone());
        }
        if let Some(baseline) = &self.baseline {
            r.baseline = baseline.clone();
        }
        if let Some(min) = self.min_samples {
            r.min_samples = min;
        }
        if let Some(alpha) = self.alpha {
            anyhow::ensure!(
                alpha > 0.0 && alpha < 1.0,
                "--alpha {alpha} is not between 0 and 1; 0.05 gives 95% intervals"
            );
            r.alpha = alpha;
        }
        anyhow::ensure!(
            r.metric != Metric::Accuracy || r.prediction_output.is_some(),
            "metric accuracy needs the output holding the predicted class: add --prediction-output NAME (e.g. label)"
        );
        anyhow::ensure!(
            arms.iter().any(|(alias, _)| *alias == r.baseline),
            "the baseline \"{}\" is not one of the arms ({}); pass --baseline ALIAS",
            r.baseline,
            arms.iter()
                .map(|(a, _)| a.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let (Some(since), Some(until)) = (self.since, self.until) {
            anyhow::ensure!(
                since < until,
                "--since {since} is not before --until {until}: the range holds no call"
            );
        }
        Ok(ReportOptions {
            table: self.table.clone(),
            readout: r.clone(),
            experiment,
            arms,
            since: self.since.map(|t| t.timestamp_micros()),
            until: self.until.map(|t| t.timestamp_micros()),
        })
    }
}

/// Every string under an `alias` key of the configuration file.
fn collect_aliases(value: &toml::Value, out: &mut Vec<String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, v) in table {
                match (key.as_str(), v) {
                    ("alias", toml::Value::String(alias)) => out.push(alias.clone()),
                    _ => collect_aliases(v, out),
                }
            }
        }
        toml::Value::Array(items) => items.iter().for_each(|v| collect_aliases(v, out)),
        _ => {}
    }
}

fn parse_metric(s: &str) -> Result<Metric, String> {
    serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase()))
        .map_err(|_| format!("{s:?} is not a metric; use accuracy, conversion or mean"))
}

/// RFC 3339, or a date (its midnight UTC).
fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Some(t) = s
        .parse::<NaiveDate>()
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        return Ok(t.and_utc());
    }
    Err(format!(
        "{s:?} is not a time; write RFC 3339 (2026-11-27T09:00:00Z) or a date (2026-11-27)"
    ))
}
