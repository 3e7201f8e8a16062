//! The arithmetic of `podium monitor`: summary statistics of one column and
//! the distances between a window's values and the baseline's (PSI,
//! Jensen–Shannon). The formulas are the README's ("Monitoring drift and
//! quality"); the Python tests check them against numpy and SciPy.

use std::collections::BTreeMap;

/// Bins of the PSI and Jensen–Shannon distance: at the baseline's deciles.
pub const BINS: usize = 10;

/// What an empty bin's share becomes before the PSI takes its logarithm.
pub const EMPTY_BIN_SHARE: f64 = 1e-4;

/// The `q` quantile (0..=1) of sorted values, interpolated linearly between
/// the closest ranks (numpy's default, `method="linear"`).
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

/// Mean and sample standard deviation (n − 1 in the denominator; `None`
/// below two values).
pub fn mean_std(values: &[f64]) -> (Option<f64>, Option<f64>) {
    if values.is_empty() {
        return (None, None);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (Some(mean), None);
    }
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
    (Some(mean), Some(var.sqrt()))
}

/// The inner bin edges: the baseline's deciles 0.1 … 0.9, repeated values
/// dropped (a feature with few distinct values gets fewer bins).
pub fn decile_edges(sorted_baseline: &[f64]) -> Vec<f64> {
    let mut edges: Vec<f64> = (1..BINS)
        .filter_map(|k| quantile(sorted_baseline, k as f64 / BINS as f64))
        .collect();
    edges.dedup();
    edges
}

/// The share of `values` in each bin; bin `i` holds the values in
/// `(edges[i-1], edges[i]]` (the first from −∞, the last to +∞).
pub fn shares(values: &[f64], edges: &[f64]) -> Vec<f64> {
    let mut counts = vec![0u64; edges.len() + 1];
    for v in values {
        counts[edges.partition_point(|e| e < v)] += 1;
    }
    normalise(&counts)
}

/// The share of each category of `baseline`, then the share of every
/// other value in one more bin, for the window's `values` and the baseline.
pub fn category_shares(values: &[String], baseline: &[String]) -> (Vec<f64>, Vec<f64>) {
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for v in baseline {
        let next = index.len();
        index.entry(v.as_str()).or_insert(next);
    }
    let other = index.len();
    let count = |vals: &[String]| {
        let mut counts = vec![0u64; other + 1];
        for v in vals {
            counts[index.get(v.as_str()).copied().unwrap_or(other)] += 1;
        }
        normalise(&counts)
    };
    (count(values), count(baseline))
}

fn normalise(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|&c| {
            if total == 0 {
                0.0
            } else {
                c as f64 / total as f64
            }
        })
        .collect()
}

/// The population stability index `Σ (a_i − e_i) · ln(a_i / e_i)` of the
/// actual shares `a` against the expected (baseline) shares `e`, an empty
/// bin's share taken as [`EMPTY_BIN_SHARE`].
pub fn psi(actual: &[f64], expected: &[f64]) -> f64 {
    actual
        .iter()
        .zip(expected)
        .map(|(&a, &e)| {
            let a = if a == 0.0 { EMPTY_BIN_SHARE } else { a };
            let e = if e == 0.0 { EMPTY_BIN_SHARE } else { e };
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// The Jensen–Shannon distance (base 2, so in [0, 1]) between two
/// distributions over the same bins: `√((KL(p‖m) + KL(q‖m)) / 2)`,
/// `m = (p + q) / 2`, as `scipy.spatial.distance.jensenshannon(p, q, base=2)`.
pub fn js_distance(p: &[f64], q: &[f64]) -> f64 {
    let kl = |x: &[f64], m: &[f64]| -> f64 {
        x.iter()
            .zip(m)
            .filter(|(&xi, _)| xi > 0.0)
            .map(|(&xi, &mi)| xi * (xi / mi).log2())
            .sum()
    };
    let m: Vec<f64> = p.iter().zip(q).map(|(a, b)| (a + b) / 2.0).collect();
    ((kl(p, &m) + kl(q, &m)) / 2.0).max(0.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        // numpy.quantile([1,2,3,4], [0, .25, .5, .9, 1]) = 1, 1.75, 2.5, 3.7, 4
        let got: Vec<f64> = [0.0, 0.25, 0.5, 0.9, 1.0]
            .iter()
            .map(|&q| quantile(&v, q).unwrap())
            .collect();
        for (g, w) in got.iter().zip([1.0, 1.75, 2.5, 3.7, 4.0]) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
        assert_eq!(quantile(&[], 0.5), None);
        let (mean, std) = mean_std(&v);
        assert_eq!(mean, Some(2.5));
        assert!((std.unwrap() - 1.2909944487358056).abs() < 1e-12);
    }

    #[test]
    fn identical_distributions_are_zero_apart() {
        let base: Vec<f64> = (0..100).map(f64::from).collect();
        let edges = decile_edges(&base);
        assert_eq!(edges.len(), 9);
        let s = shares(&base, &edges);
        assert!(s.iter().all(|x| (x - 0.1).abs() < 0.011), "{s:?}");
        assert!(psi(&s, &s).abs() < 1e-15);
        assert!(js_distance(&s, &s).abs() < 1e-7);
    }

    #[test]
    fn a_shift_shows_in_psi_and_js_and_empty_bins_are_smoothed() {
        let base: Vec<f64> = (0..100).map(f64::from).collect();
        let edges = decile_edges(&base);
        let shifted: Vec<f64> = base.iter().map(|x| x + 1000.0).collect();
        let a = shares(&shifted, &edges);
        let e = shares(&base, &edges);
        // All mass in the last bin: finite thanks to the smoothing.
        let p = psi(&a, &e);
        assert!(p.is_finite() && p > 2.0, "{p}");
        // Disjoint supports are at the largest distance (but these overlap in one bin).
        let js = js_distance(&a, &e);
        assert!(js > 0.5 && js <= 1.0, "{js}");
        assert!((js_distance(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_constant_feature_has_one_edge() {
        let base = vec![3.0; 20];
        let edges = decile_edges(&base);
        assert_eq!(edges, vec![3.0]);
        assert_eq!(shares(&[3.0, 4.0], &edges), vec![0.5, 0.5]);
    }

    #[test]
    fn categories_missing_from_the_baseline_share_one_bin() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let (a, e) = category_shares(&s(&["a", "c", "d", "d"]), &s(&["a", "b"]));
        assert_eq!(e, vec![0.5, 0.5, 0.0]);
        assert_eq!(a, vec![0.25, 0.0, 0.75]);
    }
}
