//! Latency histograms: HDR histograms of nanoseconds with 3 significant
//! digits, so p99.9 of a million samples costs a few kilobytes and no sort.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Duration;

/// Largest latency kept exactly: one hour. Longer ones are clamped to it.
const HIGHEST_NS: u64 = 3_600_000_000_000;

/// A latency histogram; [`Latency::merge`] adds another worker's samples.
#[derive(Clone, Debug)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Latency {
        Latency::new()
    }
}

impl Latency {
    pub fn new() -> Latency {
        // Auto-resizing: it covers only the range actually recorded, so a
        // worker's few histograms stay small at c=64.
        Latency(Histogram::new(3).expect("valid histogram precision"))
    }

    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let ns = ns.clamp(1, HIGHEST_NS);
        // `record` grows the histogram; it fails only if growing does.
        if self.0.record(ns).is_err() {
            self.0.saturating_record(ns);
        }
    }

    pub fn merge(&mut self, other: &Latency) {
        // Both auto-resize: `add` cannot fail.
        let _ = self.0.add(&other.0);
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The value at `quantile` (0.0–1.0) in microseconds; 0 when empty.
    pub fn quantile_us(&self, quantile: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.value_at_quantile(quantile) as f64 / 1000.0
    }

    pub fn max_us(&self) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.max() as f64 / 1000.0
    }

    pub fn mean_us(&self) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.mean() / 1000.0
    }

    pub fn summary(&self) -> Percentiles {
        Percentiles {
            count: self.count(),
            p50_us: self.quantile_us(0.50),
            p90_us: self.quantile_us(0.90),
            p99_us: self.quantile_us(0.99),
            p999_us: self.quantile_us(0.999),
            max_us: self.max_us(),
            mean_us: self.mean_us(),
        }
    }
}

/// What the summary and `--json` print of a histogram, in microseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = Latency::new();
        // 1..=1000 µs, once each.
        for i in 1..=1000 {
            h.record(us(i));
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        // 3 significant digits: within 0.1% of the exact value.
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(close(s.p50_us, 500.0), "p50 {}", s.p50_us);
        assert!(close(s.p90_us, 900.0), "p90 {}", s.p90_us);
        assert!(close(s.p99_us, 990.0), "p99 {}", s.p99_us);
        assert!(close(s.p999_us, 999.0), "p99.9 {}", s.p999_us);
        assert!(close(s.max_us, 1000.0), "max {}", s.max_us);
        assert!(close(s.mean_us, 500.5), "mean {}", s.mean_us);
    }

    #[test]
    fn merge_adds_the_samples_of_both() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        for _ in 0..99 {
            a.record(us(100));
        }
        b.record(us(50_000));
        a.merge(&b);
        assert_eq!(a.count(), 100);
        assert!((a.quantile_us(0.5) - 100.0).abs() < 0.1);
        assert!((a.max_us() - 50_000.0).abs() < 50.0);
    }

    #[test]
    fn empty_and_out_of_range_samples() {
        let mut h = Latency::new();
        assert_eq!(h.summary(), Percentiles::default());
        h.record(Duration::ZERO);
        h.record(Duration::from_secs(10_000));
        assert_eq!(h.count(), 2);
        // Clamped to one hour, not dropped.
        assert!(h.max_us() >= 3_599_000_000.0);
    }
}
