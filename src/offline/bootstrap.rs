//! The paired bootstrap: the confidence interval of the difference of a
//! metric between two models scored on the same rows.
//!
//! Each resample draws the rows with replacement (the same draw for both
//! models, hence "paired") and takes challenger − champion. Resample `r`
//! is drawn from its own generator seeded by `(seed, r)`, so the interval
//! depends on the seed only, never on the number of threads.

use super::metrics::RowScores;

/// A percentile interval of the paired differences.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
    /// Resamples on which the metric was undefined (e.g. roc_auc on a
    /// resample holding one class), left out.
    pub skipped: usize,
}

/// The `confidence` (e.g. 0.95) interval of `challenger − champion` over
/// `resamples` paired resamples, computed on `threads` threads.
pub fn paired_difference(
    champion: &RowScores,
    challenger: &RowScores,
    resamples: usize,
    seed: u64,
    confidence: f64,
    threads: usize,
) -> anyhow::Result<Interval> {
    let rows = champion.rows();
    anyhow::ensure!(
        rows == challenger.rows() && rows > 0,
        "both models must be scored on the same, non-empty rows"
    );
    anyhow::ensure!(resamples > 0, "--bootstrap must be at least 1");
    let threads = threads.clamp(1, resamples);
    let per_thread = resamples.div_ceil(threads);
    let mut differences: Vec<f64> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let range = t * per_thread..((t + 1) * per_thread).min(resamples);
                scope.spawn(move || {
                    let mut counts = vec![0u32; rows];
                    range
                        .filter_map(|r| {
                            draw(&mut counts, seed, r);
                            let a = champion.value(Some(&counts))?;
                            let b = challenger.value(Some(&counts))?;
                            Some(b - a)
                        })
                        .collect::<Vec<f64>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    let skipped = resamples - differences.len();
    anyhow::ensure!(
        differences.len() * 2 >= resamples,
        "the metric is undefined on {skipped} of {resamples} bootstrap resamples (for roc_auc: too few rows of one class); use a larger held-out set or another metric"
    );
    differences.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    Ok(Interval {
        low: quantile(&differences, tail),
        high: quantile(&differences, 1.0 - tail),
        skipped,
    })
}

/// Fills `counts` with how often each row is drawn in resample `r`.
fn draw(counts: &mut [u32], seed: u64, r: usize) {
    counts.fill(0);
    // SplitMix64's increment spreads consecutive resamples apart.
    let mut rng = fastrand::Rng::with_seed(seed ^ (r as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let rows = counts.len();
    for _ in 0..rows {
        counts[rng.usize(..rows)] += 1;
    }
}

/// The `q` quantile of sorted `values`, interpolated linearly between
/// neighbours (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let fraction = position - below as f64;
    sorted[below] + (sorted[above] - sorted[below]) * fraction
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accuracy(correct: &[bool]) -> RowScores {
        let p: Vec<i64> = correct.iter().map(|&c| i64::from(c)).collect();
        RowScores::accuracy(&p, &vec![1; p.len()])
    }

    #[test]
    fn the_interval_depends_on_the_seed_not_the_threads() {
        let a = accuracy(&(0..400).map(|i| i % 3 != 0).collect::<Vec<_>>());
        let b = accuracy(&(0..400).map(|i| i % 5 != 0).collect::<Vec<_>>());
        let one = paired_difference(&a, &b, 500, 7, 0.95, 1).unwrap();
        let four = paired_difference(&a, &b, 500, 7, 0.95, 4).unwrap();
        assert_eq!(one, four);
        let other_seed = paired_difference(&a, &b, 500, 8, 0.95, 1).unwrap();
        assert_ne!(one, other_seed);
        // b is right on 80% of rows, a on 66.7%: the difference is clearly positive.
        assert!(one.low > 0.0 && one.high > one.low, "{one:?}");
    }

    #[test]
    fn identical_models_have_a_zero_interval() {
        let a = accuracy(&[true, false, true, true]);
        let i = paired_difference(&a, &a.clone(), 100, 0, 0.95, 2).unwrap();
        assert_eq!((i.low, i.high, i.skipped), (0.0, 0.0, 0));
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        // numpy.quantile([1, 2, 3, 4], 0.25) == 1.75
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.25), 1.75);
        assert_eq!(quantile(&[5.0], 0.975), 5.0);
    }
}
