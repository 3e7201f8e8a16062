//! The readout's statistics: pure functions over per-arm summaries, chosen
//! so that anyone can reproduce every number with scipy / statsmodels.
//!
//! - An arm's proportion (accuracy, conversion): the Wilson score interval
//!   (`statsmodels.stats.proportion.proportion_confint(method="wilson")`).
//! - An arm's mean: the Student's t interval (`scipy.stats.t.interval`).
//! - A difference between arms: the two-sided pooled two-proportion z-test
//!   (`statsmodels.stats.proportion.proportions_ztest`) or Welch's t-test
//!   (`scipy.stats.ttest_ind(equal_var=False)`); its interval by the
//!   unpooled normal approximation.
//! - Sample-ratio mismatch: Pearson's chi-square goodness of fit
//!   (`scipy.stats.chisquare`).
//! - The always-valid p-value: the mixture sequential probability ratio test
//!   (mSPRT) with a normal mixing distribution, Johari et al., "Always Valid
//!   Inference" (2017), see [`msprt_likelihood_ratio`].
//!
//! Intervals are at level 1 − alpha. Functions answer None where the
//! number is undefined (no data, no variance).

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal, StudentsT};

/// The outcomes of one arm: their count, exact sum and variance.
///
/// The sum is exact (Shewchuk's partials, as Python's `math.fsum`), so the
/// mean equals `math.fsum(xs) / n` to the last bit; the variance is
/// Welford's running sum of squared deviations.
#[derive(Debug, Clone, Default)]
pub struct Moments {
    n: u64,
    sum: ExactSum,
    welford_mean: f64,
    m2: f64,
}

impl Moments {
    /// Adds one outcome.
    pub fn push(&mut self, x: f64) {
        self.n += 1;
        self.sum.add(x);
        let delta = x - self.welford_mean;
        self.welford_mean += delta / self.n as f64;
        self.m2 += delta * (x - self.welford_mean);
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    /// The exact sum of the outcomes (for 0/1 outcomes: the successes).
    pub fn sum(&self) -> f64 {
        self.sum.value()
    }

    /// The mean, None without outcomes.
    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum.value() / self.n as f64)
    }

    /// The sample variance (divisor n − 1), None below two outcomes.
    pub fn variance(&self) -> Option<f64> {
        (self.n > 1).then(|| self.m2.max(0.0) / (self.n - 1) as f64)
    }
}

/// An exactly rounded running sum of floats: Shewchuk's algorithm as in
/// CPython's `math.fsum` (non-overlapping partials, rounded once at the end).
#[derive(Debug, Clone, Default)]
pub struct ExactSum {
    partials: Vec<f64>,
}

impl ExactSum {
    pub fn add(&mut self, mut x: f64) {
        let mut i = 0;
        for j in 0..self.partials.len() {
            let mut y = self.partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                self.partials[i] = lo;
                i += 1;
            }
            x = hi;
        }
        self.partials.truncate(i);
        self.partials.push(x);
    }

    /// The sum, correctly rounded (half to even), as `math.fsum` gives it.
    pub fn value(&self) -> f64 {
        let p = &self.partials;
        let Some(mut n) = p.len().checked_sub(1) else {
            return 0.0;
        };
        let mut hi = p[n];
        let mut lo = 0.0;
        while n > 0 {
            n -= 1;
            let x = hi;
            let y = p[n];
            hi = x + y;
            let yr = hi - x;
            lo = y - yr;
            if lo != 0.0 {
                break;
            }
        }
        // Round half-even: when the rest of the partials push the same way
        // as `lo`, the rounding of `hi` goes one further.
        if n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            if y == x - hi {
                hi = x;
            }
        }
        hi
    }
}

/// A two-sided interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// The two-sided critical value of the standard normal at `alpha`.
pub fn z_critical(alpha: f64) -> f64 {
    standard_normal().inverse_cdf(1.0 - alpha / 2.0)
}

fn standard_normal() -> Normal {
    Normal::standard()
}

/// Two-sided p-value of a standard normal statistic.
fn normal_two_sided(z: f64) -> f64 {
    (2.0 * standard_normal().sf(z.abs())).min(1.0)
}

/// The Wilson score interval of `successes` out of `n` at level 1 − alpha.
pub fn wilson(successes: u64, n: u64, alpha: f64) -> Option<Interval> {
    if n == 0 {
        return None;
    }
    let (x, n) = (successes as f64, n as f64);
    let p = x / n;
    let z = z_critical(alpha);
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    Some(Interval {
        low: centre - half,
        high: centre + half,
    })
}

/// The Student's t interval of a mean at level 1 − alpha.
pub fn t_interval(m: &Moments, alpha: f64) -> Option<Interval> {
    let (mean, variance) = (m.mean()?, m.variance()?);
    let n = m.count() as f64;
    let t = StudentsT::new(0.0, 1.0, n - 1.0)
        .ok()?
        .inverse_cdf(1.0 - alpha / 2.0);
    let half = t * (variance / n).sqrt();
    Some(Interval {
        low: mean - half,
        high: mean + half,
    })
}

/// One side of a comparison of proportions: successes out of n.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proportion {
    pub successes: u64,
    pub n: u64,
}

impl Proportion {
    pub fn value(&self) -> Option<f64> {
        (self.n > 0).then(|| self.successes as f64 / self.n as f64)
    }
}

/// A difference between an arm and the baseline, with the fixed-horizon
/// test of "no difference" and the pieces the mSPRT needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Difference {
    /// arm − baseline.
    pub diff: f64,
    /// The unpooled normal interval of `diff`.
    pub interval: Option<Interval>,
    /// The two-sided p-value of the standard test (None: undefined).
    pub p_value: Option<f64>,
    /// The variance of `diff` the test used (pooled for proportions), and
    /// the per-unit variance sum that scales the mSPRT's mixing distribution.
    pub test_variance: f64,
    pub unit_variance: f64,
}

/// The pooled two-proportion z-test of `arm` against `baseline`, and the
/// unpooled normal interval of their difference.
pub fn two_proportions(arm: Proportion, baseline: Proportion, alpha: f64) -> Option<Difference> {
    let (p1, p2) = (arm.value()?, baseline.value()?);
    let (n1, n2) = (arm.n as f64, baseline.n as f64);
    let diff = p1 - p2;
    let pooled = (arm.successes + baseline.successes) as f64 / (n1 + n2);
    let unit_variance = 2.0 * pooled * (1.0 - pooled);
    let test_variance = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2);
    let p_value = (test_variance > 0.0).then(|| normal_two_sided(diff / test_variance.sqrt()));
    let unpooled = p1 * (1.0 - p1) / n1 + p2 * (1.0 - p2) / n2;
    Some(Difference {
        diff,
        interval: normal_interval(diff, unpooled, alpha),
        p_value,
        test_variance,
        unit_variance,
    })
}

/// Welch's t-test of `arm`'s mean against `baseline`'s, and the unpooled
/// normal interval of their difference.
pub fn welch(arm: &Moments, baseline: &Moments, alpha: f64) -> Option<Difference> {
    let (m1, m2) = (arm.mean()?, baseline.mean()?);
    let (v1, v2) = (arm.variance()?, baseline.variance()?);
    let (n1, n2) = (arm.count() as f64, baseline.count() as f64);
    let diff = m1 - m2;
    let (a, b) = (v1 / n1, v2 / n2);
    let test_variance = a + b;
    let p_value = (test_variance > 0.0)
        .then(|| {
            let t = diff / test_variance.sqrt();
            let df = test_variance * test_variance / (a * a / (n1 - 1.0) + b * b / (n2 - 1.0));
            let dist = StudentsT::new(0.0, 1.0, df).ok()?;
            Some((2.0 * dist.sf(t.abs())).min(1.0))
        })
        .flatten();
    Some(Difference {
        diff,
        interval: normal_interval(diff, test_variance, alpha),
        p_value,
        test_variance,
        unit_variance: v1 + v2,
    })
}

fn normal_interval(diff: f64, variance: f64, alpha: f64) -> Option<Interval> {
    let half = z_critical(alpha) * variance.sqrt();
    half.is_finite().then_some(Interval {
        low: diff - half,
        high: diff + half,
    })
}

/// Pearson's chi-square goodness of fit of `observed` counts against
/// `weights` (expected share ∝ weight): the statistic and its p-value with
/// k − 1 degrees of freedom. Categories with weight 0 and no observations
/// are left out; one with weight 0 and observations is an infinite
/// statistic (p = 0). Fewer than two categories or no observations: no
/// evidence of a mismatch (statistic 0, p = 1).
pub fn chi_square_fit(observed: &[u64], weights: &[f64]) -> (f64, f64) {
    let cells: Vec<(f64, f64)> = observed
        .iter()
        .zip(weights)
        .map(|(&o, &w)| (o as f64, w.max(0.0)))
        .filter(|&(o, w)| o > 0.0 || w > 0.0)
        .collect();
    let total: f64 = cells.iter().map(|c| c.0).sum();
    let weight: f64 = cells.iter().map(|c| c.1).sum();
    if cells.len() < 2 || total == 0.0 || weight <= 0.0 {
        return (0.0, 1.0);
    }
    if cells.iter().any(|&(o, w)| w == 0.0 && o > 0.0) {
        return (f64::INFINITY, 0.0);
    }
    let statistic: f64 = cells
        .iter()
        .map(|&(o, w)| {
            let expected = total * w / weight;
            (o - expected).powi(2) / expected
        })
        .sum();
    let p = ChiSquared::new((cells.len() - 1) as f64)
        .map(|d| d.sf(statistic))
        .unwrap_or(1.0);
    (statistic, p)
}

/// The mSPRT's likelihood ratio Λ for a difference `d` whose estimate has
/// variance `v`, under a normal mixing distribution N(0, τ²) of the true
/// difference (Johari et al. 2017, the normal case):
///
/// ```text
/// Λ = sqrt(v / (v + τ²)) · exp( τ² d² / (2 v (v + τ²)) )
/// ```
///
/// The always-valid p-value is the running minimum of 1/Λ (capped at 1)
/// over the evaluations. Podium sets τ² to the variance of the difference
/// at `min_samples` outcomes per arm ([`Difference::unit_variance`] /
/// `min_samples`), so the test is most sensitive to effects of about the
/// size that many outcomes can show. None where v or τ² is 0.
pub fn msprt_likelihood_ratio(diff: &Difference, min_samples: u64) -> Option<f64> {
    let v = diff.test_variance;
    let tau2 = diff.unit_variance / min_samples.max(1) as f64;
    if !(v > 0.0 && tau2 > 0.0 && v.is_finite() && tau2.is_finite()) {
        return None;
    }
    let d = diff.diff;
    Some((v / (v + tau2)).sqrt() * (tau2 * d * d / (2.0 * v * (v + tau2))).exp())
}

/// One evaluation of the always-valid p-value: min(previous, 1/Λ).
pub fn always_valid_p(previous: f64, likelihood_ratio: Option<f64>) -> f64 {
    match likelihood_ratio {
        Some(ratio) if ratio > 0.0 => previous.min((1.0 / ratio).min(1.0)),
        _ => previous,
    }
}

#[cfg(test)]
mod tests {
    //! Reference numbers from scipy 1.17.1 / statsmodels 0.15.0:
    //!
    //! ```python
    //! from statsmodels.stats.proportion import proportion_confint, proportions_ztest
    //! from scipy import stats
    //! proportion_confint(37, 50, alpha=0.05, method="wilson")
    //! proportions_ztest([37, 30], [50, 50])
    //! a = [2.5, 3.0, 4.25, 1.0, 3.5]; b = [1.0, 2.0, 1.5, 2.25]
    //! stats.ttest_ind(a, b, equal_var=False)
    //! stats.t.interval(0.95, len(a) - 1, loc=np.mean(a), scale=stats.sem(a))
    //! stats.chisquare([530, 470], [500, 500])
    //! ```
    use super::*;

    fn close(got: f64, want: f64) {
        let rel = ((got - want) / want).abs();
        assert!(
            rel < 1e-9,
            "got {got:e}, want {want:e} (relative error {rel:e})"
        );
    }

    fn moments(xs: &[f64]) -> Moments {
        let mut m = Moments::default();
        xs.iter().for_each(|&x| m.push(x));
        m
    }

    #[test]
    fn wilson_matches_statsmodels() {
        let i = wilson(37, 50, 0.05).unwrap();
        close(i.low, 0.6044684273515116);
        close(i.high, 0.841284725064476);
        assert_eq!(wilson(0, 0, 0.05), None);
    }

    #[test]
    fn the_pooled_z_test_matches_statsmodels() {
        let d = two_proportions(
            Proportion {
                successes: 37,
                n: 50,
            },
            Proportion {
                successes: 30,
                n: 50,
            },
            0.05,
        )
        .unwrap();
        close(d.diff, 0.14);
        close(d.p_value.unwrap(), 0.13656956347453417);
        // Everyone succeeded on both sides: no variance, no p-value.
        let all = Proportion { successes: 5, n: 5 };
        assert_eq!(two_proportions(all, all, 0.05).unwrap().p_value, None);
    }

    #[test]
    fn welch_and_the_t_interval_match_scipy() {
        let (a, b) = (
            moments(&[2.5, 3.0, 4.25, 1.0, 3.5]),
            moments(&[1.0, 2.0, 1.5, 2.25]),
        );
        let d = welch(&a, &b, 0.05).unwrap();
        close(d.diff, 2.85 - 1.6875);
        close(d.p_value.unwrap(), 0.10770185536121502);
        let i = t_interval(&a, 0.05).unwrap();
        close(i.low, 1.33562798226539);
        close(i.high, 4.36437201773461);
    }

    #[test]
    fn chi_square_matches_scipy() {
        let (stat, p) = chi_square_fit(&[530, 470], &[50.0, 50.0]);
        close(stat, 3.6);
        close(p, 0.05777957112359715);
        assert_eq!(chi_square_fit(&[10, 3], &[1.0, 0.0]), (f64::INFINITY, 0.0));
        assert_eq!(chi_square_fit(&[10, 0], &[1.0, 0.0]), (0.0, 1.0));
        assert_eq!(chi_square_fit(&[0, 0], &[1.0, 1.0]), (0.0, 1.0));
    }

    #[test]
    fn the_exact_sum_rounds_like_math_fsum() {
        let mut s = ExactSum::default();
        for x in [0.1; 10] {
            s.add(x);
        }
        assert_eq!(s.value(), 1.0); // a naive sum gives 0.9999999999999999
        let mut s = ExactSum::default();
        for x in [1e100, 1.0, -1e100, 1e-100, 1e50, -1.0, -1e50] {
            s.add(x);
        }
        assert_eq!(s.value(), 1e-100);
        assert_eq!(moments(&[1.0, 2.0, 4.0]).mean(), Some(7.0 / 3.0));
        assert_eq!(moments(&[1.0]).variance(), None);
    }

    #[test]
    fn the_always_valid_p_value_only_falls() {
        let d = Difference {
            diff: 0.1,
            interval: None,
            p_value: None,
            test_variance: 0.0025,
            unit_variance: 0.5,
        };
        // τ² = 0.5 / 200 = 0.0025 = v: Λ = sqrt(1/2) · exp(0.01 / (2 · 0.0025 · 2)).
        let ratio = msprt_likelihood_ratio(&d, 200).unwrap();
        close(ratio, 0.5f64.sqrt() * 1.0f64.exp());
        let p = always_valid_p(1.0, Some(ratio));
        close(p, 1.0 / ratio);
        assert_eq!(always_valid_p(p, Some(0.5)), p);
        assert_eq!(always_valid_p(p, None), p);
        let flat = Difference {
            test_variance: 0.0,
            ..d
        };
        assert_eq!(msprt_likelihood_ratio(&flat, 200), None);
    }
}
