//! `podium monitor TABLE_DIR`: profile and drift tables of an endpoint's
//! inference table against a baseline, breaches posted to a webhook; once,
//! or with `--watch` again whenever new table files appear.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::experiments::label::Metric;
use crate::offline::monitor::drift::Thresholds;
use crate::offline::monitor::observe::Quality;
use crate::offline::monitor::webhook::Webhook;
use crate::offline::monitor::window::{parse_range, Window};
use crate::offline::monitor::{BaselineSource, Monitor, MonitorOptions, Report};

#[derive(Args)]
#[command(group = clap::ArgGroup::new("baseline_source").required(true).args(["baseline", "baseline_window"]))]
pub struct MonitorArgs {
    /// The inference table: the directory a server writes with --table-dir.
    table_dir: PathBuf,
    /// The endpoint to monitor.
    #[arg(long, env = "PODIUM_MONITOR_ENDPOINT")]
    endpoint: String,
    /// The baseline: a Parquet or CSV file of features (columns named x[0] …
    /// or in signature order; output columns by name).
    #[arg(long, env = "PODIUM_MONITOR_BASELINE")]
    baseline: Option<PathBuf>,
    /// The baseline: the endpoint's own calls between two RFC 3339 times,
    /// START..END (END excluded), all arms together.
    #[arg(long, env = "PODIUM_MONITOR_BASELINE_WINDOW")]
    baseline_window: Option<String>,
    /// Where to write profile.parquet and drift.parquet (created if missing).
    #[arg(long, env = "PODIUM_MONITOR_OUT")]
    out: PathBuf,
    /// The length of the windows (1h, 1d, 15m, …), aligned to UTC midnight.
    #[arg(long, env = "PODIUM_MONITOR_WINDOW", default_value = "1d")]
    window: String,
    /// A PSI above this is a breach.
    #[arg(long, env = "PODIUM_MONITOR_PSI_THRESHOLD", default_value_t = 0.2)]
    psi_threshold: f64,
    /// A Kolmogorov–Smirnov p-value below this is a breach.
    #[arg(long, env = "PODIUM_MONITOR_KS_ALPHA", default_value_t = 0.01)]
    ks_alpha: f64,
    /// POST one JSON object per breach here (endpoint, arm, column, metric,
    /// value, threshold, window).
    #[arg(long, env = "PODIUM_MONITOR_WEBHOOK")]
    webhook: Option<String>,
    /// All webhook posts of one run, retries included, take at most this long.
    #[arg(
        long,
        env = "PODIUM_MONITOR_WEBHOOK_BUDGET_SECS",
        default_value_t = 30.0
    )]
    webhook_budget_secs: f64,
    /// The quality metric over the feedback labels: accuracy, conversion or mean.
    #[arg(long, env = "PODIUM_MONITOR_METRIC", default_value = "accuracy", value_parser = parse_metric)]
    metric: Metric,
    /// The output holding the prediction that accuracy compares with the
    /// label [default: `label` when the model has it, else the first output].
    #[arg(long, env = "PODIUM_MONITOR_PREDICTION")]
    prediction: Option<String>,
    /// Keep running: read the table again whenever its files change, until
    /// Ctrl-C or SIGTERM.
    #[arg(long, env = "PODIUM_MONITOR_WATCH")]
    watch: bool,
    /// How often --watch looks for new files.
    #[arg(long, env = "PODIUM_MONITOR_POLL_SECS", default_value_t = 10.0)]
    poll_secs: f64,
}

fn parse_metric(text: &str) -> Result<Metric, String> {
    match text {
        "accuracy" => Ok(Metric::Accuracy),
        "conversion" => Ok(Metric::Conversion),
        "mean" => Ok(Metric::Mean),
        other => Err(format!(
            "{other:?} is not a metric; give accuracy, conversion or mean"
        )),
    }
}

fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{flag} {value}: give a positive number of seconds"))
}

impl MonitorArgs {
    fn options(&self) -> anyhow::Result<MonitorOptions> {
        let baseline = match (&self.baseline, &self.baseline_window) {
            (Some(path), _) => BaselineSource::File(path.clone()),
            (None, Some(range)) => {
                let (a, b) = parse_range(range)?;
                BaselineSource::Range(a, b)
            }
            (None, None) => anyhow::bail!("give --baseline FILE or --baseline-window START..END"),
        };
        anyhow::ensure!(
            self.psi_threshold.is_finite() && self.psi_threshold >= 0.0,
            "--psi-threshold {}: give a number of 0 or more (0.1 slight, 0.2 significant shift)",
            self.psi_threshold
        );
        anyhow::ensure!(
            self.ks_alpha > 0.0 && self.ks_alpha < 1.0,
            "--ks-alpha {}: give a significance level between 0 and 1, e.g. 0.01",
            self.ks_alpha
        );
        let webhook = match &self.webhook {
            Some(url) => {
                anyhow::ensure!(
                    url.starts_with("http://") || url.starts_with("https://"),
                    "--webhook {url:?}: give an http:// or https:// URL"
                );
                Some(Webhook {
                    url: url.clone(),
                    budget: seconds("--webhook-budget-secs", self.webhook_budget_secs)?,
                })
            }
            None => None,
        };
        Ok(MonitorOptions {
            table_dir: self.table_dir.clone(),
            endpoint: self.endpoint.clone(),
            baseline,
            out: self.out.clone(),
            window: Window::parse(&self.window)?,
            thresholds: Thresholds {
                psi: self.psi_threshold,
                ks_alpha: self.ks_alpha,
            },
            webhook,
            quality: Quality {
                metric: self.metric,
                prediction: self.prediction.clone(),
            },
        })
    }

    pub fn run(self) -> anyhow::Result<()> {
        let poll = seconds("--poll-secs", self.poll_secs)?;
        let mut monitor = Monitor::new(self.options()?)?;
        if !self.watch {
            return monitor.run().map(|r| print(&r, &self.out));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let mut stop = std::pin::pin!(shutdown());
            // The first run names bad input at once; later failures (a file
            // that went away between listing and reading, a full disk) are
            // reported and tried again.
            print(&monitor.run()?, &self.out);
            loop {
                match monitor
                    .has_new_files()
                    .and_then(|new| new.then(|| monitor.run()).transpose())
                {
                    Ok(Some(report)) => print(&report, &self.out),
                    Ok(None) => {}
                    Err(e) => eprintln!("monitor: {e:#}; trying again in {poll:?}"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = &mut stop => {
                        eprintln!("monitor: stopping");
                        return Ok(());
                    }
                }
            }
        })
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Breaches on stdout, one line each; the summary on stderr.
fn print(report: &Report, out: &std::path::Path) {
    for b in &report.breaches {
        println!(
            "breach: {} arm {} column {} {} {:.6} (threshold {}) window {}..{}",
            b.endpoint,
            b.arm,
            b.column,
            b.metric,
            b.value,
            b.threshold,
            b.window.start,
            b.window.end
        );
    }
    for failure in &report.post_failures {
        eprintln!("monitor: webhook not delivered: {failure}");
    }
    eprintln!(
        "monitor: {} rows from {} files ({} successful calls without OIP JSON payloads skipped), {} window × arm groups; wrote {} profile rows and {} drift rows to {}; {} breaches ({} posted)",
        report.rows,
        report.files,
        report.undecoded,
        report.groups,
        report.profile_rows,
        report.drift_rows,
        out.display(),
        report.breaches.len(),
        report.posted
    );
}
