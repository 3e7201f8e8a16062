//! What a call of a loaded version typically costs, learnt from its own
//! runs, so the pool can tell a microsecond model (worth running on the
//! caller's thread when nothing waits) from one that would hold a tokio
//! worker too long.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::tensor::Tensor;

/// Nothing measured yet: every estimate is "too long".
const UNKNOWN: u64 = u64::MAX;

/// A moving average of picoseconds per input element over a version's runs
/// (each new run weighs 1/8), warm-up runs included. Per element rather
/// than per call, so a request carrying a large batch is estimated as
/// large. Updated without locks; a lost update between two threads only
/// drops one sample.
#[derive(Debug)]
pub struct RunCost {
    ps_per_element: AtomicU64,
}

impl Default for RunCost {
    fn default() -> Self {
        RunCost {
            ps_per_element: AtomicU64::new(UNKNOWN),
        }
    }
}

impl RunCost {
    /// Counts one run over `elements` input elements that took `took`.
    pub fn record(&self, elements: u64, took: Duration) {
        let took_ps = u64::try_from(took.as_nanos())
            .unwrap_or(u64::MAX / 1000)
            .saturating_mul(1000);
        let sample = took_ps / elements.max(1);
        let old = self.ps_per_element.load(Ordering::Relaxed);
        let new = if old == UNKNOWN {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.ps_per_element.store(new, Ordering::Relaxed);
    }

    /// The expected time of a run over `elements` input elements; `None`
    /// until a run has been measured.
    pub fn estimate(&self, elements: u64) -> Option<Duration> {
        let per = self.ps_per_element.load(Ordering::Relaxed);
        (per != UNKNOWN).then(|| Duration::from_nanos(per.saturating_mul(elements.max(1)) / 1000))
    }
}

/// Input elements of a request: what [`RunCost`] scales with.
pub fn elements(inputs: &[Tensor]) -> u64 {
    inputs.iter().map(|t| t.data.len() as u64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_until_measured_then_scales_with_the_input() {
        let cost = RunCost::default();
        assert_eq!(cost.estimate(30), None);
        cost.record(30, Duration::from_micros(6));
        assert_eq!(cost.estimate(30), Some(Duration::from_micros(6)));
        assert_eq!(cost.estimate(30 * 64), Some(Duration::from_micros(384)));
    }

    #[test]
    fn a_slow_first_run_fades_as_fast_runs_follow() {
        let cost = RunCost::default();
        cost.record(10, Duration::from_millis(5)); // lazy initialisation
        for _ in 0..60 {
            cost.record(10, Duration::from_micros(4));
        }
        let now = cost.estimate(10).unwrap();
        assert!(now < Duration::from_micros(6), "{now:?}");
        // One slow outlier moves it by an eighth, not to the outlier.
        cost.record(10, Duration::from_micros(400));
        let after = cost.estimate(10).unwrap();
        assert!(after < Duration::from_micros(60), "{after:?}");
    }
}
