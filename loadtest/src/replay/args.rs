//! The `--replay` flags and their checks (each error names the fix).

use std::path::PathBuf;

use anyhow::{bail, Result};
use chrono::{DateTime, NaiveDate, Utc};

use super::compare::Tolerance;
use super::table::Filter;
use super::{Pacing, ReplayConfig};
use crate::cli::Args;

/// Replay: send the requests recorded in an inference table again.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ReplayArgs {
    /// Replay the requests recorded in this inference table (a server's --table-dir) against
    /// --url, in recorded order at the recorded pacing (see --speed, --rate); with --replay,
    /// -c is the most requests in flight
    #[arg(
        long,
        value_name = "TABLE_DIR",
        conflicts_with_all = ["model", "duration", "requests", "warmup", "input", "batch", "seed",
                              "distinct_inputs", "sweep", "flip", "protocol", "grpc_connections"]
    )]
    pub replay: Option<PathBuf>,
    /// Replay only this endpoint's requests [default: every endpoint in the table]
    #[arg(long, requires = "replay")]
    pub endpoint: Option<String>,
    /// Replay requests received at or after this time (RFC 3339, e.g. 2026-11-27T09:00:00Z,
    /// or a date: its midnight UTC)
    #[arg(long, requires = "replay", value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Replay requests received before this time (RFC 3339, or a date)
    #[arg(long, requires = "replay", value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    /// Send at the recorded pacing times this: 2 halves every gap between requests
    /// [default: 1]
    #[arg(long, requires = "replay", conflicts_with = "rate")]
    pub speed: Option<f64>,
    /// Replay at most this many requests, the first ones in recorded order
    #[arg(long, requires = "replay")]
    pub max_requests: Option<u64>,
    /// Check each answer against the recorded response: the same outputs, shapes and
    /// datatypes, floats within --rtol/--atol, everything else exactly
    #[arg(long, requires = "replay")]
    pub compare: bool,
    /// Relative tolerance of floating-point outputs with --compare
    /// (|replayed − recorded| ≤ atol + rtol·|recorded|)
    #[arg(long, requires = "compare", default_value_t = 1e-5)]
    pub rtol: f64,
    /// Absolute tolerance of floating-point outputs with --compare
    #[arg(long, requires = "compare", default_value_t = 1e-8)]
    pub atol: f64,
}

/// RFC 3339 (`2026-11-27T09:00:00Z`, `2026-11-27T10:00:00+01:00`), or a
/// date (`2026-11-27`: its midnight UTC).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = s.parse::<NaiveDate>() {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    Err(format!(
        "{s:?} is not a time; write RFC 3339 (2026-11-27T09:00:00Z) or a date (2026-11-27)"
    ))
}

impl Args {
    /// The replay the flags ask for, or `None` without `--replay`
    /// (`terminal`: whether stderr is one).
    pub fn replay_config(&self, terminal: bool) -> Result<Option<ReplayConfig>> {
        let r = &self.replay;
        let Some(table) = &r.replay else {
            return Ok(None);
        };
        let pacing = match (self.rate, r.speed) {
            (Some(rate), _) if rate.is_finite() && rate > 0.0 => Pacing::Fixed { rate },
            (Some(rate), _) => bail!("--rate {rate}: give a positive number of requests per second"),
            (None, Some(speed)) if speed.is_finite() && speed > 0.0 => Pacing::Recorded { speed },
            (None, Some(speed)) => bail!(
                "--speed {speed}: give a positive factor (1 replays at the recorded pacing, 10 ten times as fast), or a fixed --rate"
            ),
            (None, None) => Pacing::Recorded { speed: 1.0 },
        };
        if let (Some(since), Some(until)) = (r.since, r.until) {
            if since >= until {
                bail!("--since {since} is not before --until {until}: the range holds no request");
            }
        }
        if r.max_requests == Some(0) {
            bail!("--max-requests must be at least 1");
        }
        if self.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        for (flag, v) in [("--rtol", r.rtol), ("--atol", r.atol)] {
            if !(v.is_finite() && v >= 0.0) {
                bail!("{flag} {v}: give a tolerance of 0 or more, e.g. {flag} 1e-5");
            }
        }
        Ok(Some(ReplayConfig {
            table: table.clone(),
            filter: Filter {
                endpoint: r.endpoint.clone(),
                since: r.since,
                until: r.until,
                max_requests: r.max_requests,
            },
            url: self
                .url
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:8000".to_string()),
            model_version: self.model_version.clone(),
            headers: self
                .headers
                .iter()
                .map(|h| crate::cli::parse_header(h))
                .collect::<Result<Vec<_>>>()?,
            timeout: self.timeout,
            concurrency: self.concurrency,
            pacing,
            compare: r.compare.then_some(Tolerance {
                rtol: r.rtol,
                atol: r.atol,
            }),
            progress: terminal && !self.quiet && !self.json,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(line: &[&str]) -> Result<ReplayConfig> {
        let mut all = vec!["podium-loadtest"];
        all.extend_from_slice(line);
        let a = Args::try_parse_from(all).map_err(|e| anyhow::anyhow!(e.to_string()))?;
        a.replay_config(false)?
            .ok_or_else(|| anyhow::anyhow!("not a replay"))
    }

    fn error(line: &[&str]) -> String {
        match config(line) {
            Ok(_) => panic!("{line:?} was accepted"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn defaults_and_a_full_line() {
        let c = config(&["--replay", "tables"]).unwrap();
        assert_eq!(c.table, PathBuf::from("tables"));
        assert_eq!(c.url, "http://127.0.0.1:8000");
        assert_eq!(c.pacing, Pacing::Recorded { speed: 1.0 });
        assert_eq!(c.filter, Filter::default());
        assert_eq!((c.compare, c.concurrency), (None, 8));

        let c = config(&[
            "--replay",
            "t",
            "--url",
            "http://127.0.0.1:9000",
            "--endpoint",
            "fraud",
            "--since",
            "2026-11-27T09:00:00+01:00",
            "--until",
            "2026-11-28",
            "--speed",
            "10",
            "--max-requests",
            "50",
            "--compare",
            "--rtol",
            "1e-3",
            "--model-version",
            "challenger",
            "-c",
            "2",
        ])
        .unwrap();
        assert_eq!(c.pacing, Pacing::Recorded { speed: 10.0 });
        assert_eq!(c.filter.endpoint.as_deref(), Some("fraud"));
        assert_eq!(
            c.filter.since.unwrap().to_rfc3339(),
            "2026-11-27T08:00:00+00:00"
        );
        assert_eq!(
            c.filter.until.unwrap().to_rfc3339(),
            "2026-11-28T00:00:00+00:00"
        );
        assert_eq!(c.filter.max_requests, Some(50));
        assert_eq!(
            c.compare,
            Some(Tolerance {
                rtol: 1e-3,
                atol: 1e-8
            })
        );
        assert_eq!(c.model_version.as_deref(), Some("challenger"));
        assert_eq!(c.concurrency, 2);

        let c = config(&["--replay", "t", "--rate", "200"]).unwrap();
        assert_eq!(c.pacing, Pacing::Fixed { rate: 200.0 });
    }

    #[test]
    fn a_load_run_is_not_a_replay() {
        let a = Args::try_parse_from(["podium-loadtest", "-m", "fraud"]).unwrap();
        assert!(a.replay_config(false).unwrap().is_none());
    }

    #[test]
    fn bad_lines_name_the_fix() {
        assert!(error(&["--replay", "t", "--speed", "0"]).contains("positive factor"));
        assert!(error(&["--replay", "t", "--rate", "0"]).contains("positive number"));
        assert!(error(&["--replay", "t", "--speed", "2", "--rate", "5"])
            .contains("cannot be used with"));
        assert!(error(&["--replay", "t", "-m", "fraud"]).contains("cannot be used with"));
        assert!(error(&["--replay", "t", "--duration", "5s"]).contains("cannot be used with"));
        assert!(error(&["--replay", "t", "--protocol", "grpc"]).contains("cannot be used with"));
        assert!(error(&["--compare"]).contains("--replay"));
        assert!(error(&["--replay", "t", "--rtol", "0.1"]).contains("--compare"));
        assert!(error(&["--replay", "t", "--since", "yesterday"]).contains("RFC 3339"));
        assert!(error(&[
            "--replay",
            "t",
            "--since",
            "2026-11-28",
            "--until",
            "2026-11-27"
        ])
        .contains("is not before"));
        assert!(error(&["--replay", "t", "--max-requests", "0"]).contains("at least 1"));
        assert!(error(&["--replay", "t", "--compare", "--rtol=-1"]).contains("0 or more"));
    }
}
