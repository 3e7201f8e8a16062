//! `podium monitor`: drift and quality monitoring over an inference table,
//! in the spirit of Lakehouse Monitoring's profile and drift tables.
//!
//! ```text
//! TABLE_DIR/endpoint=E/**.parquet ─observe (decode payloads, per window × arm)─┐
//! TABLE_DIR/_feedback/**.parquet ─feedback (labels by request id)─────────────┤
//! --baseline FILE | --baseline-window START..END ─baseline───────────────────┤
//!                                                                              ▼
//!              profile ─▶ METRICS_DIR/profile.parquet   drift ─▶ METRICS_DIR/drift.parquet
//!                                                        └─ breaches ─▶ --webhook
//! ```
//!
//! Each run reads the table afresh and replaces both files atomically (a
//! reader never sees half a file); `--watch` runs again whenever the
//! table's files change, and posts each breach once.

pub mod baseline;
pub mod decode;
pub mod drift;
pub mod feedback;
pub mod ks;
pub mod observe;
pub mod profile;
pub mod stats;
pub mod webhook;
pub mod window;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;

use crate::inference_table::reader;
use drift::{Breach, Thresholds};
use observe::{Plan, Quality};
use webhook::Webhook;
use window::Window;

/// What the windows are compared with.
#[derive(Debug, Clone)]
pub enum BaselineSource {
    /// A Parquet or CSV file of features (and optionally outputs).
    File(PathBuf),
    /// The endpoint's own calls in `[start, end)` (µs), all arms pooled.
    Range(i64, i64),
}

/// Everything one monitor needs.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    pub table_dir: PathBuf,
    pub endpoint: String,
    pub baseline: BaselineSource,
    pub out: PathBuf,
    pub window: Window,
    pub thresholds: Thresholds,
    pub webhook: Option<Webhook>,
    pub quality: Quality,
}

/// The names of the two output files in METRICS_DIR.
pub const PROFILE_FILE: &str = "profile.parquet";
pub const DRIFT_FILE: &str = "drift.parquet";

/// What one run did.
#[derive(Debug, Default)]
pub struct Report {
    pub files: usize,
    pub rows: u64,
    pub undecoded: u64,
    pub groups: usize,
    pub profile_rows: usize,
    pub drift_rows: usize,
    /// Every breach of this run (also the ones posted in an earlier run).
    pub breaches: Vec<Breach>,
    /// Breaches posted in this run, and the ones that could not be.
    pub posted: usize,
    pub post_failures: Vec<String>,
}

/// A monitor that can run repeatedly (`--watch`) and remembers which
/// breaches it has posted and which files it has read.
pub struct Monitor {
    options: MonitorOptions,
    posted: HashSet<(String, String, String, &'static str)>,
    last_files: Option<Vec<(PathBuf, u64)>>,
}

impl Monitor {
    /// Checks what can be checked before reading: the output directory.
    pub fn new(options: MonitorOptions) -> Result<Monitor> {
        if options.out.exists() && !options.out.is_dir() {
            bail!(
                "--out {} is a file; give a directory for {PROFILE_FILE} and {DRIFT_FILE}",
                options.out.display()
            );
        }
        std::fs::create_dir_all(&options.out)
            .with_context(|| format!("cannot create --out {}", options.out.display()))?;
        Ok(Monitor {
            options,
            posted: HashSet::new(),
            last_files: None,
        })
    }

    /// The table's and the feedback's files.
    fn current_files(&self) -> Result<Files> {
        let o = &self.options;
        let table = reader::endpoint_files(&o.table_dir, &o.endpoint)?;
        let feedback = feedback::files(&o.table_dir)?;
        let stamp = table
            .iter()
            .chain(&feedback)
            .map(|p| (p.clone(), std::fs::metadata(p).map_or(0, |m| m.len())))
            .collect();
        Ok(Files {
            table,
            feedback,
            stamp,
        })
    }

    /// Whether the table has files this monitor has not read yet (always
    /// true before the first run).
    pub fn has_new_files(&self) -> Result<bool> {
        let stamp = self.current_files()?.stamp;
        Ok(self.last_files.as_ref() != Some(&stamp))
    }

    /// Reads the table, writes both tables, posts new breaches.
    pub fn run(&mut self) -> Result<Report> {
        let Files {
            table: table_files,
            feedback: feedback_files,
            stamp,
        } = self.current_files()?;
        let o = &self.options;
        if table_files.is_empty() {
            bail!(
                "{} holds no complete table files of endpoint {:?} yet (a server publishes one every --table-roll-secs)",
                o.table_dir.display(),
                o.endpoint
            );
        }
        let labels = feedback::read(&feedback_files)?;
        let plan = Plan {
            window_us: o.window.micros,
            baseline_range: match o.baseline {
                BaselineSource::Range(a, b) => Some((a, b)),
                BaselineSource::File(_) => None,
            },
            quality: o.quality.clone(),
        };
        let seen = observe::observe(&table_files, &plan, &labels)?;
        if seen.columns.is_empty() {
            bail!(
                "no call of endpoint {:?} in {} has its request and response logged as OIP JSON, so there are no features to monitor (tables written with log_payloads = false, or only MLflow /invocations calls)",
                o.endpoint,
                o.table_dir.display()
            );
        }
        let baseline = match &o.baseline {
            BaselineSource::File(path) => baseline::read_file(path, &o.endpoint, &seen.columns)?,
            BaselineSource::Range(a, b) => {
                if seen.baseline.is_empty() {
                    bail!(
                        "--baseline-window {}..{} holds no successful calls of endpoint {:?} with logged payloads; choose a range the table covers",
                        Window::rfc3339(*a),
                        Window::rfc3339(*b),
                        o.endpoint
                    );
                }
                seen.baseline.clone()
            }
        };
        let profile = profile::profile(&seen, &o.endpoint, &o.window, o.quality.metric.name())?;
        let (drift, breaches) =
            drift::drift(&seen, &baseline, &o.endpoint, &o.window, o.thresholds)?;
        write_atomically(&o.out.join(PROFILE_FILE), &profile)?;
        write_atomically(&o.out.join(DRIFT_FILE), &drift)?;
        let mut report = Report {
            files: table_files.len(),
            rows: seen.rows,
            undecoded: seen.undecoded,
            groups: seen.groups.len(),
            profile_rows: profile.num_rows(),
            drift_rows: drift.num_rows(),
            ..Report::default()
        };
        if let Some(hook) = &o.webhook {
            let key = |b: &Breach| {
                (
                    b.window.start.clone(),
                    b.arm.clone(),
                    b.column.clone(),
                    b.metric,
                )
            };
            let new: Vec<&Breach> = breaches
                .iter()
                .filter(|b| !self.posted.contains(&key(b)))
                .collect();
            let delivery = hook.deliver(&new);
            for &i in &delivery.delivered {
                self.posted.insert(key(new[i]));
            }
            report.posted = delivery.delivered.len();
            report.post_failures = delivery.failed;
        }
        report.breaches = breaches;
        self.last_files = Some(stamp);
        Ok(report)
    }
}

/// The files one run reads.
struct Files {
    table: Vec<PathBuf>,
    feedback: Vec<PathBuf>,
    /// Every file with its size: a change means a run is due.
    stamp: Vec<(PathBuf, u64)>,
}

/// Writes `batch` to a hidden file beside `path`, then renames it over
/// `path`: readers see the old file or the new one, never half of one.
fn write_atomically(path: &Path, batch: &RecordBatch) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> Result<()> {
        let file = std::fs::File::create(&tmp)?;
        let mut writer = ArrowWriter::try_new(file, Arc::clone(&batch.schema()), None)?;
        writer.write(batch)?;
        writer.close()?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        e.context(format!("cannot write {}", path.display()))
    })
}
