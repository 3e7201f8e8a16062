//! The metrics of `podium compare`, computed as scikit-learn computes them:
//! `accuracy` (accuracy_score), `log_loss` (log_loss, probabilities clipped
//! to [ε, 1−ε] with ε the float64 machine epsilon), `roc_auc`
//! (roc_auc_score, binary: ties count one half), `rmse`
//! (root_mean_squared_error) and `mae` (mean_absolute_error).
//!
//! A model's predictions are reduced once to [`RowScores`], the per-row
//! material of the metric, so a bootstrap resample re-weighs rows instead
//! of re-scoring anything.

use std::fmt;
use std::str::FromStr;

/// A metric `podium compare` can decide on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Accuracy,
    LogLoss,
    RocAuc,
    Rmse,
    Mae,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::Accuracy,
        Metric::LogLoss,
        Metric::RocAuc,
        Metric::Rmse,
        Metric::Mae,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::LogLoss => "log_loss",
            Metric::RocAuc => "roc_auc",
            Metric::Rmse => "rmse",
            Metric::Mae => "mae",
        }
    }

    /// Whether a larger value is a better model (accuracy, roc_auc), or a
    /// smaller one (log_loss, rmse, mae).
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::Accuracy | Metric::RocAuc)
    }

    /// Whether the metric scores class predictions (else regression values).
    pub fn is_classification(self) -> bool {
        !matches!(self, Metric::Rmse | Metric::Mae)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = String;

    fn from_str(s: &str) -> Result<Metric, String> {
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
                format!("unknown metric \"{s}\"; use one of {}", names.join(", "))
            })
    }
}

/// One model's per-row material for one metric.
#[derive(Debug, Clone)]
pub enum RowScores {
    /// A mean over rows of `per_row` (1/0 for accuracy, the row's loss for
    /// log_loss, squared error for rmse, absolute error for mae), with a
    /// square root taken at the end for rmse.
    Mean { per_row: Vec<f64>, root: bool },
    /// ROC AUC: each row's positive-class score and whether it is positive,
    /// with the rows in ascending score order.
    Ranking {
        scores: Vec<f64>,
        positive: Vec<bool>,
        order: Vec<u32>,
    },
}

impl RowScores {
    /// Accuracy material: whether each predicted class equals the label.
    pub fn accuracy(predicted: &[i64], labels: &[i64]) -> RowScores {
        let per_row = predicted
            .iter()
            .zip(labels)
            .map(|(p, y)| if p == y { 1.0 } else { 0.0 })
            .collect();
        RowScores::Mean {
            per_row,
            root: false,
        }
    }

    /// Log-loss material from each row's probability of its true class.
    pub fn log_loss(true_class_probability: &[f64]) -> RowScores {
        let eps = f64::EPSILON;
        let per_row = true_class_probability
            .iter()
            .map(|&p| -p.clamp(eps, 1.0 - eps).ln())
            .collect();
        RowScores::Mean {
            per_row,
            root: false,
        }
    }

    /// Squared errors (`root`: rmse) or absolute errors (mae).
    pub fn errors(predicted: &[f64], targets: &[f64], root: bool) -> RowScores {
        let per_row = predicted
            .iter()
            .zip(targets)
            .map(|(p, y)| {
                if root {
                    (y - p) * (y - p)
                } else {
                    (y - p).abs()
                }
            })
            .collect();
        RowScores::Mean { per_row, root }
    }

    /// ROC AUC material: positive-class scores and the binary labels.
    pub fn ranking(scores: Vec<f64>, positive: Vec<bool>) -> RowScores {
        let mut order: Vec<u32> = (0..scores.len() as u32).collect();
        order.sort_by(|&a, &b| scores[a as usize].total_cmp(&scores[b as usize]));
        RowScores::Ranking {
            scores,
            positive,
            order,
        }
    }

    pub fn rows(&self) -> usize {
        match self {
            RowScores::Mean { per_row, .. } => per_row.len(),
            RowScores::Ranking { scores, .. } => scores.len(),
        }
    }

    /// The metric over all rows, or with row `i` counted `weights[i]` times
    /// (a bootstrap resample). `None` where it is undefined: no rows, or
    /// for roc_auc a single class.
    pub fn value(&self, weights: Option<&[u32]>) -> Option<f64> {
        let w = |i: usize| weights.map_or(1.0, |w| f64::from(w[i]));
        match self {
            RowScores::Mean { per_row, root } => {
                let (mut sum, mut total) = (0.0, 0.0);
                for (i, x) in per_row.iter().enumerate() {
                    let wi = w(i);
                    sum += wi * x;
                    total += wi;
                }
                let mean = (total > 0.0).then(|| sum / total)?;
                Some(if *root { mean.sqrt() } else { mean })
            }
            RowScores::Ranking {
                scores,
                positive,
                order,
            } => {
                // Walk the rows in ascending score; a positive beats every
                // negative below it and ties with those of equal score.
                let (mut area, mut negatives_below, mut positives) = (0.0, 0.0, 0.0);
                let mut i = 0;
                while i < order.len() {
                    let score = scores[order[i] as usize];
                    let (mut pos, mut neg) = (0.0, 0.0);
                    while i < order.len() && scores[order[i] as usize] == score {
                        let row = order[i] as usize;
                        if positive[row] {
                            pos += w(row);
                        } else {
                            neg += w(row);
                        }
                        i += 1;
                    }
                    area += pos * (negatives_below + 0.5 * neg);
                    negatives_below += neg;
                    positives += pos;
                }
                (positives > 0.0 && negatives_below > 0.0)
                    .then(|| area / (positives * negatives_below))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn metrics_match_scikit_learn_on_small_cases() {
        // accuracy_score([0,1,1,0], [0,1,0,0]) == 0.75
        close(
            RowScores::accuracy(&[0, 1, 0, 0], &[0, 1, 1, 0])
                .value(None)
                .unwrap(),
            0.75,
        );
        // log_loss([1,0], [[.1,.9],[.8,.2]]) == -(ln .9 + ln .8)/2
        close(
            RowScores::log_loss(&[0.9, 0.8]).value(None).unwrap(),
            -(0.9f64.ln() + 0.8f64.ln()) / 2.0,
        );
        // A probability of 0 for the true class is clipped, not infinite.
        assert!(RowScores::log_loss(&[0.0]).value(None).unwrap().is_finite());
        // roc_auc_score([0,0,1,1], [0.1,0.4,0.35,0.8]) == 0.75
        let auc = RowScores::ranking(vec![0.1, 0.4, 0.35, 0.8], vec![false, false, true, true]);
        close(auc.value(None).unwrap(), 0.75);
        // Ties count one half: roc_auc_score([0,1], [0.5,0.5]) == 0.5
        let tie = RowScores::ranking(vec![0.5, 0.5], vec![false, true]);
        close(tie.value(None).unwrap(), 0.5);
        // One class only: undefined.
        assert_eq!(RowScores::ranking(vec![0.2], vec![true]).value(None), None);
        // root_mean_squared_error([3,-0.5,2,7], [2.5,0,2,8]) == sqrt(0.375)
        let y = [3.0, -0.5, 2.0, 7.0];
        let p = [2.5, 0.0, 2.0, 8.0];
        close(
            RowScores::errors(&p, &y, true).value(None).unwrap(),
            0.375f64.sqrt(),
        );
        close(RowScores::errors(&p, &y, false).value(None).unwrap(), 0.5);
    }

    #[test]
    fn weights_count_rows_again() {
        let acc = RowScores::accuracy(&[1, 0, 1], &[1, 1, 1]);
        close(acc.value(Some(&[2, 0, 1])).unwrap(), 1.0);
        close(acc.value(Some(&[0, 3, 1])).unwrap(), 0.25);
        assert_eq!(acc.value(Some(&[0, 0, 0])), None);
        let auc = RowScores::ranking(vec![0.1, 0.4, 0.35, 0.8], vec![false, false, true, true]);
        // Dropping the negative at 0.4 leaves a perfect ranking.
        close(auc.value(Some(&[1, 0, 1, 1])).unwrap(), 1.0);
    }

    #[test]
    fn metric_names_and_directions() {
        assert_eq!("log_loss".parse::<Metric>(), Ok(Metric::LogLoss));
        let e = "f1".parse::<Metric>().unwrap_err();
        assert_eq!(
            e,
            "unknown metric \"f1\"; use one of accuracy, log_loss, roc_auc, rmse, mae"
        );
        assert!(Metric::RocAuc.higher_is_better());
        assert!(!Metric::Mae.higher_is_better());
    }
}
