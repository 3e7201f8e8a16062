//! `podium compare`: score a held-out file with the champion and the
//! challenger, compute one metric for each, and decide from the paired
//! bootstrap interval of the difference whether the challenger is better.
//!
//! Which output each metric reads, and how labels are read: [`super::predictions`].

use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use super::bootstrap::paired_difference;
use super::features::{FeatureMapping, MappingOptions};
use super::metrics::{Metric, RowScores};
use super::predictions::{is_integer, label_values, reading, width, Collected, Reading};
use super::progress::Progress;
use super::scorer::Scorer;
use super::source::Source;
use crate::runtime::Signature;

/// The confidence of the interval the decision is taken on.
pub const CONFIDENCE: f64 = 0.95;

/// What to compare on, and how.
#[derive(Debug, Clone)]
pub struct CompareJob {
    pub input: PathBuf,
    /// The column holding the true label (or target value).
    pub label: String,
    /// None: accuracy for a classifier, rmse otherwise.
    pub metric: Option<Metric>,
    /// The model output to read, instead of the rules above.
    pub prediction: Option<String>,
    pub features: Option<Vec<String>>,
    pub batch_size: usize,
    pub bootstrap: usize,
    pub seed: u64,
    /// Threads for the bootstrap (scoring uses each scorer's own).
    pub threads: usize,
}

/// One side of the comparison.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ArmResult {
    pub version: u64,
    pub value: f64,
}

/// What `podium compare` found: the `--json` object.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Comparison {
    pub metric: String,
    pub rows: u64,
    pub champion: ArmResult,
    pub challenger: ArmResult,
    /// challenger − champion.
    pub diff: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub decision: Decision,
    /// Whether `--promote-if-better` moved the champion alias.
    pub promoted: bool,
}

/// The verdict on the challenger, oriented by the metric: `better` means
/// better for that metric (a lower log_loss, a higher accuracy).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Better,
    Worse,
    NoDifference,
}

impl Decision {
    /// `better` when the whole interval favours the challenger, `worse`
    /// when it all favours the champion, else `no_difference`.
    pub fn from_interval(metric: Metric, low: f64, high: f64) -> Decision {
        let (gain_low, gain_high) = if metric.higher_is_better() {
            (low, high)
        } else {
            (-high, -low)
        };
        if gain_low > 0.0 {
            Decision::Better
        } else if gain_high < 0.0 {
            Decision::Worse
        } else {
            Decision::NoDifference
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Decision::Better => "better",
            Decision::Worse => "worse",
            Decision::NoDifference => "no_difference",
        }
    }
}

/// Everything checked before the first row is scored.
struct Prepared {
    source: Source,
    mapping: FeatureMapping,
    reading: Reading,
    label: usize,
}

impl CompareJob {
    /// The metric compared: `--metric`, or the default for `signature`.
    pub fn metric_for(&self, signature: &Signature) -> Metric {
        self.metric.unwrap_or_else(|| {
            let classifier = signature
                .outputs
                .iter()
                .any(|o| is_integer(o) && width(o) == Some(1))
                || signature.outputs.iter().any(|o| {
                    o.datatype.is_float() && o.shape.len() == 2 && width(o).is_some_and(|w| w >= 2)
                });
            if classifier {
                Metric::Accuracy
            } else {
                Metric::Rmse
            }
        })
    }

    /// Scores the file with both models and compares them on the metric.
    pub fn run(&self, champion: &Scorer, challenger: &Scorer) -> anyhow::Result<Comparison> {
        let metric = self.metric_for(&champion.model().signature);
        // Refuse a bad file, label or mapping for either model before scoring.
        let first = self.prepare(champion, metric)?;
        let second = self.prepare(challenger, metric)?;
        let rows = first.source.rows();
        let a = self.score(champion, first, metric)?;
        let b = self.score(challenger, second, metric)?;
        let value = |s: &RowScores, who: &Scorer| {
            s.value(None).with_context(|| {
                format!(
                    "{metric} of {} is undefined on this file (roc_auc needs rows of both classes)",
                    who.model().label()
                )
            })
        };
        let (va, vb) = (value(&a, champion)?, value(&b, challenger)?);
        let interval =
            paired_difference(&a, &b, self.bootstrap, self.seed, CONFIDENCE, self.threads)?;
        if interval.skipped > 0 {
            eprintln!(
                "note: {metric} was undefined on {} of {} bootstrap resamples, left out",
                interval.skipped, self.bootstrap
            );
        }
        Ok(Comparison {
            metric: metric.name().to_string(),
            rows,
            champion: ArmResult {
                version: champion.model().version,
                value: va,
            },
            challenger: ArmResult {
                version: challenger.model().version,
                value: vb,
            },
            diff: vb - va,
            ci_low: interval.low,
            ci_high: interval.high,
            decision: Decision::from_interval(metric, interval.low, interval.high),
            promoted: false,
        })
    }

    fn prepare(&self, scorer: &Scorer, metric: Metric) -> anyhow::Result<Prepared> {
        let model = scorer.model();
        let source = Source::open(&self.input, self.batch_size)?;
        let label = source.schema().index_of(&self.label).map_err(|_| {
            let columns: Vec<&str> = source.schema().fields().iter().map(|f| f.name().as_str()).collect();
            anyhow::anyhow!(
                "{} has no label column \"{}\"; its columns are: {}; name the column holding the true labels with --label",
                source.path().display(),
                self.label,
                columns.join(", ")
            )
        })?;
        let options = MappingOptions {
            features: self.features.clone(),
            exclude: vec![self.label.clone()],
        };
        let mapping =
            FeatureMapping::new(source.schema(), &model.signature, &model.label(), &options)
                .with_context(|| format!("cannot score {}", source.path().display()))?;
        let reading = reading(
            metric,
            &model.signature,
            &model.label(),
            self.prediction.as_deref(),
        )?;
        Ok(Prepared {
            source,
            mapping,
            reading,
            label,
        })
    }

    fn score(
        &self,
        scorer: &Scorer,
        prepared: Prepared,
        metric: Metric,
    ) -> anyhow::Result<RowScores> {
        let Prepared {
            source,
            mapping,
            reading,
            label,
        } = prepared;
        let label_name = self.label.clone();
        let mut progress = Progress::new(
            &format!("scoring with {}", scorer.model().label()),
            source.rows(),
        );
        let mut collected = Collected::default();
        let mut first_row = 0u64;
        scorer.score(source.batches(), &mapping, |batch, outputs| {
            let rows = batch.num_rows();
            let labels = label_values(batch.column(label), &label_name, metric, first_row)?;
            collected.add(metric, reading, &outputs, labels, first_row)?;
            first_row += rows as u64;
            progress.advance(rows as u64);
            Ok(())
        })?;
        progress.finish();
        Ok(collected.finish(metric))
    }
}
