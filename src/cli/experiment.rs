//! `podium experiment show`: an endpoint's live readout from a running
//! server, as a table a person reads (or its JSON with `--json`).

use std::fmt::Write;

use clap::Subcommand;

use super::admin_client::{Readout, Remote};

#[derive(Subcommand)]
pub enum ExperimentCommand {
    /// Show an endpoint's live readout: per arm its traffic, errors, latency
    /// and metric with its interval, the SRM check, and each arm against the
    /// baseline with its decision.
    Show {
        endpoint: String,
        /// Print the admin API's JSON as it is.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// The same readout from files, after the fact: the inference table's
    /// calls joined with the feedback table's labels on request_id; text,
    /// --json, and a self-contained --html page with charts.
    Report(Box<super::experiment_report::ReportArgs>),
}

impl ExperimentCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let (endpoint, json, remote) = match self {
            ExperimentCommand::Show {
                endpoint,
                json,
                remote,
            } => (endpoint, json, remote),
            ExperimentCommand::Report(args) => return args.run(),
        };
        let Some(admin) = remote.client()? else {
            anyhow::bail!(
                "the readout lives in a running server: add --server http://HOST:PORT (or PODIUM_SERVER)"
            );
        };
        let (readout, raw) = admin.readout(&endpoint)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&raw)?);
        } else {
            print!("{}", render(&readout));
        }
        Ok(())
    }
}

/// The readout as text: a heading, one line per arm, the SRM line, one line
/// per comparison, and the warnings.
pub fn render(r: &Readout) -> String {
    let mut out = String::new();
    let level = format!("{}%", trim((1.0 - r.alpha) * 100.0));
    let _ = writeln!(
        out,
        "endpoint {}  experiment {}  metric {}  baseline {}  (alpha {}, min_samples {}, since {})",
        r.endpoint, r.experiment, r.metric, r.baseline, r.alpha, r.min_samples, r.since
    );
    let _ = writeln!(
        out,
        "{:<14} {:>7} {:>7} {:>9} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9}  {} CI",
        "ARM",
        "VERSION",
        "WEIGHT",
        "REQUESTS",
        "ERRORS",
        "P50 MS",
        "P95 MS",
        "P99 MS",
        "FEEDBACK",
        r.metric.to_uppercase(),
        level
    );
    for a in &r.arms {
        let _ = writeln!(
            out,
            "{:<14} {:>7} {:>7} {:>9} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9}  {}",
            a.arm,
            a.version.map_or("-".into(), |v| v.to_string()),
            trim(a.weight),
            a.requests,
            a.error_rate
                .map_or("-".into(), |e| format!("{:.1}%", e * 100.0)),
            number(a.latency_ms.p50, 2),
            number(a.latency_ms.p95, 2),
            number(a.latency_ms.p99, 2),
            a.feedback,
            number(a.metric.value, 4),
            interval(a.metric.ci_low, a.metric.ci_high),
        );
    }
    let _ = writeln!(
        out,
        "SRM: {} (chi-square p = {:.4}; below 0.001 the split does not match the weights)",
        if r.srm.ok { "ok" } else { "FAILED" },
        r.srm.p_value
    );
    for c in &r.comparisons {
        let _ = writeln!(
            out,
            "{} vs {}: diff {} {}, p = {}, always-valid p = {:.4} -> {}",
            c.arm,
            r.baseline,
            c.diff.map_or("-".into(), |d| format!("{d:+.4}")),
            interval(c.ci_low, c.ci_high),
            number(c.p_value, 4),
            c.always_valid_p_value,
            c.decision
        );
    }
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

fn number(x: Option<f64>, places: usize) -> String {
    x.map_or("-".into(), |x| format!("{x:.places$}"))
}

fn interval(low: Option<f64>, high: Option<f64>) -> String {
    match (low, high) {
        (Some(l), Some(h)) => format!("[{l:.4}, {h:.4}]"),
        _ => "-".into(),
    }
}

/// A weight or percentage without trailing zeros (90, 2.5).
fn trim(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readout_reads_as_a_table() {
        let readout: Readout = serde_json::from_value(serde_json::json!({
            "endpoint": "fraud-ab", "experiment": "exp", "model": "fraud", "metric": "accuracy",
            "baseline": "champion", "alpha": 0.05, "confidence": 0.95, "min_samples": 200,
            "since": "2026-01-01T00:00:00.000Z",
            "arms": [
                {"arm": "champion", "alias": "champion", "version": 1, "versions_seen": [1], "weight": 90.0,
                 "requests": 900, "errors": 9, "error_rate": 0.01,
                 "latency_ms": {"p50": 1.25, "p95": 2.5, "p99": 4.0}, "feedback": 300,
                 "metric": {"name": "accuracy", "value": 0.81, "ci_low": 0.76, "ci_high": 0.85}},
                {"arm": "challenger", "alias": "challenger", "version": null, "versions_seen": [], "weight": 10.0,
                 "requests": 0, "errors": 0, "error_rate": null,
                 "latency_ms": {"p50": null, "p95": null, "p99": null}, "feedback": 0,
                 "metric": {"name": "accuracy", "value": null, "ci_low": null, "ci_high": null}}
            ],
            "srm": {"p_value": 0.0, "ok": false, "chi_square": null, "threshold": 0.001},
            "comparisons": [{"arm": "challenger", "baseline": "champion", "diff": null, "ci_low": null,
                "ci_high": null, "p_value": null, "test": "pooled_two_proportion_z",
                "always_valid_p_value": 1.0, "decision": "insufficient_data"}],
            "warnings": ["arm \"challenger\" has no version serving"]
        }))
        .unwrap();
        let text = render(&readout);
        assert!(text.contains("ACCURACY  95% CI"), "{text}");
        assert!(text.contains("champion             1      90       900    1.0%     1.25     2.50     4.00       300    0.8100  [0.7600, 0.8500]"), "{text}");
        assert!(
            text.contains("challenger           -      10         0       -        -"),
            "{text}"
        );
        assert!(text.contains("SRM: FAILED"), "{text}");
        assert!(text.contains("challenger vs champion: diff - -, p = -, always-valid p = 1.0000 -> insufficient_data"), "{text}");
        assert!(
            text.contains("warning: arm \"challenger\" has no version serving"),
            "{text}"
        );
    }
}
