//! The two-sample Kolmogorov–Smirnov test, two-sided, as SciPy's
//! `scipy.stats.ks_2samp(a, b, method="auto")` computes it: the exact
//! p-value when both samples have at most [`MAX_EXACT_N`] values (Hodges'
//! lattice-path counting in Viehmann's numerically stable form), else the
//! asymptotic Kolmogorov distribution.

/// Above this sample size (either sample) the p-value is asymptotic, as
/// SciPy's `MAX_AUTO_N`.
pub const MAX_EXACT_N: usize = 10_000;

/// How the p-value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Exact,
    Asymptotic,
}

/// The statistic `D = sup |F_a(x) − F_b(x)|` and its p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ks {
    pub statistic: f64,
    pub pvalue: f64,
    pub method: Method,
}

/// The test of two sorted, finite samples; `None` when either is empty.
pub fn ks_2samp(a: &[f64], b: &[f64]) -> Option<Ks> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let d = statistic(a, b);
    if n1.max(n2) <= MAX_EXACT_N {
        if let Some((d, p)) = exact(n1 as u64, n2 as u64, d) {
            return Some(Ks {
                statistic: d,
                pvalue: p,
                method: Method::Exact,
            });
        }
    }
    Some(Ks {
        statistic: d,
        pvalue: asymptotic(n1, n2, d),
        method: Method::Asymptotic,
    })
}

/// The largest distance between the two right-continuous empirical CDFs.
fn statistic(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut d: f64 = 0.0;
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n1 - j as f64 / n2).abs());
    }
    // Past the end of one sample the other's CDF only climbs towards 1,
    // which the last step already bounds from below: the remaining gaps
    // shrink, so nothing larger can follow.
    d
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// SciPy's `_attempt_exact_2kssamp` (two-sided): `d` rounded to the
/// lattice `1/lcm(n1, n2)`, then the probability of a distance at least
/// that large. `None` when the arithmetic leaves [0, 1].
fn exact(n1: u64, n2: u64, d: f64) -> Option<(f64, f64)> {
    let g = gcd(n1, n2);
    let lcm = (n1 / g) * n2;
    let h = (d * lcm as f64).round() as u64;
    let d = h as f64 / lcm as f64;
    if h == 0 {
        return Some((d, 1.0));
    }
    let p = if n1 == n2 {
        prob_outside_square(n1, h)
    } else {
        outer_prob_inside(n1, n2, g, h)
    };
    (p.is_finite() && (0.0..=1.0).contains(&p)).then_some((d, p))
}

/// `P(D_{n,n} ≥ h/n)` by the alternating series, evaluated Horner-style.
fn prob_outside_square(n: u64, h: u64) -> f64 {
    let mut p = 0.0;
    let mut k = (n / h) as i64;
    while k >= 0 {
        let kh = k as u64 * h;
        let mut p1 = 1.0;
        for j in 0..h {
            // n − kh − j may go below zero: the term is then zero.
            p1 = (n as f64 - kh as f64 - j as f64) * p1 / (n as f64 + kh as f64 + j as f64 + 1.0);
        }
        p = p1 * (1.0 - p);
        k -= 1;
    }
    2.0 * p
}

/// The share of lattice paths from (0,0) to (m,n) that leave the band
/// `|x/m − y/n| < h/lcm` (Hodges' inside method, computing `1 − p`
/// directly after Viehmann).
fn outer_prob_inside(m: u64, n: u64, g: u64, h: u64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (mg, ng) = ((m / g) as i64, (n / g) as i64);
    let (m, n, h) = (m as i64, n as i64, h as i64);
    let ceil_div = |a: i64, b: i64| (a as f64 / b as f64).ceil() as i64;
    let floor_div = |a: i64, b: i64| (a as f64 / b as f64).floor() as i64;
    let mut minj: i64 = 0;
    let mut maxj: i64 = ceil_div(h, mg).min(n + 1);
    let mut curlen = maxj - minj;
    let len = (2 * maxj + 2).min(n + 1) as usize;
    let mut a = vec![1.0f64; len];
    for v in a.iter_mut().take(maxj as usize) {
        *v = 0.0;
    }
    for i in 1..=m {
        let (lastminj, lastlen) = (minj, curlen);
        minj = (floor_div(ng * i - h, mg) + 1).max(0).min(n);
        maxj = ceil_div(ng * i + h, mg).min(n + 1);
        if maxj <= minj {
            return 1.0;
        }
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        for jj in 0..(maxj - minj) {
            let j = jj + minj;
            val = (a[(jj + minj - lastminj) as usize] * i as f64 + val * j as f64) / (i + j) as f64;
            a[jj as usize] = val;
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            let from = (maxj - minj) as usize;
            let to = (from + (lastlen - curlen) as usize).min(a.len());
            for v in &mut a[from..to] {
                *v = 1.0;
            }
        }
    }
    a[(maxj - minj - 1) as usize]
}

/// The asymptotic p-value: Kolmogorov's limiting distribution at
/// `(√en + 0.12 + 0.11/√en)·d`, `en = n1·n2/(n1+n2)` (Stephens' small-sample
/// correction). SciPy evaluates the finite-n Kolmogorov distribution at
/// `round(en)` instead; both agree closely for the large samples this path
/// serves.
fn asymptotic(n1: usize, n2: usize, d: f64) -> f64 {
    let en = (n1 as f64 * n2 as f64 / (n1 as f64 + n2 as f64)).sqrt();
    kolmogorov_sf((en + 0.12 + 0.11 / en) * d)
}

/// `Q(λ) = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}`, the Kolmogorov survival function.
fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda < 1e-8 {
        return 1.0;
    }
    if lambda < 1.0 {
        // The alternating series converges slowly here; use the dual form
        // 1 − √(2π)/λ Σ e^{−(2k−1)²π²/(8λ²)}.
        let s: f64 = (1..=20)
            .map(|k| {
                let t = (2 * k - 1) as f64 * std::f64::consts::PI / lambda;
                (-t * t / 8.0).exp()
            })
            .sum();
        return (1.0 - (2.0 * std::f64::consts::PI).sqrt() / lambda * s).clamp(0.0, 1.0);
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let term = (-2.0 * (k * k) as f64 * lambda * lambda).exp();
        sum += if k % 2 == 1 { term } else { -term };
        if term < 1e-17 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut v: Vec<f64>) -> Vec<f64> {
        v.sort_by(f64::total_cmp);
        v
    }

    // Reference values from scipy 1.17.1's ks_2samp on the same data.
    #[test]
    fn exact_p_values_equal_scipys() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        let r = ks_2samp(&a, &b).unwrap();
        assert_eq!(r.method, Method::Exact);
        assert!((r.statistic - 0.5714285714285714).abs() < 1e-12, "{r:?}");
        assert!((r.pvalue - 0.23737373737373738).abs() < 1e-12, "{r:?}");
        // Equal sizes take the square formula.
        let a = [0.1, 0.2, 0.3, 0.4];
        let b = [0.25, 0.5, 0.6, 0.7];
        let r = ks_2samp(&a, &b).unwrap();
        assert!((r.statistic - 0.75).abs() < 1e-12, "{r:?}");
        assert!((r.pvalue - 0.22857142857142862).abs() < 1e-12, "{r:?}");
    }

    #[test]
    fn identical_samples_have_p_one_and_disjoint_ones_d_one() {
        let a = sorted((0..50).map(f64::from).collect());
        let r = ks_2samp(&a, &a).unwrap();
        assert_eq!((r.statistic, r.pvalue), (0.0, 1.0));
        let b: Vec<f64> = a.iter().map(|x| x + 1000.0).collect();
        let r = ks_2samp(&a, &b).unwrap();
        assert_eq!(r.statistic, 1.0);
        assert!(r.pvalue < 1e-20, "{r:?}");
        assert!(ks_2samp(&[], &a).is_none());
    }

    #[test]
    fn the_kolmogorov_distribution_is_continuous_across_its_two_forms() {
        let below = kolmogorov_sf(1.0 - 1e-9);
        let above = kolmogorov_sf(1.0);
        assert!((below - above).abs() < 1e-8, "{below} {above}");
        // scipy.stats.kstwobign.sf at 1.358 and 0.5.
        assert!((kolmogorov_sf(1.358) - 0.05002679733444698).abs() < 1e-12);
        assert!((kolmogorov_sf(0.5) - 0.9639452436648751).abs() < 1e-12);
    }
}
