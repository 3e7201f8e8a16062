//! One arm's live numbers since start: request and error counts and a
//! latency histogram (written by every tracked call, lock-free or on a
//! per-thread shard), and the outcomes feedback joined (written by feedback
//! only).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::stats::Moments;

/// Latency shards per arm: a call records on its thread's shard, so calls
/// on different threads rarely wait for each other.
const LATENCY_SHARDS: usize = 16;
/// Latencies are recorded in microseconds, from 1 µs to an hour, with two
/// significant digits (1 % resolution).
const LATENCY_MAX_US: u64 = 3_600_000_000;

/// Percentiles of an arm's call latency, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// See the module doc.
pub struct ArmState {
    pub alias: String,
    requests: AtomicU64,
    errors: AtomicU64,
    /// The model version of the latest answered call (0: none yet).
    last_version: AtomicU64,
    /// Every version that answered a call of this arm, in order of first
    /// answer; more than one means the alias moved during the experiment.
    versions: Mutex<Vec<u64>>,
    latency: Box<[Mutex<Histogram<u64>>]>,
    outcomes: Mutex<Moments>,
    /// The always-valid p-value of this arm against the baseline: the
    /// running minimum over evaluations (bits of an f64).
    always_valid_p: AtomicU64,
}

/// What feedback has joined for an arm, copied out of its lock.
pub type Outcomes = Moments;

impl ArmState {
    pub fn new(alias: &str) -> ArmState {
        let histogram = || {
            Mutex::new(
                Histogram::new_with_bounds(1, LATENCY_MAX_US, 2)
                    .expect("fixed, valid histogram bounds"),
            )
        };
        ArmState {
            alias: alias.to_string(),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_version: AtomicU64::new(0),
            versions: Mutex::new(Vec::new()),
            latency: (0..LATENCY_SHARDS).map(|_| histogram()).collect(),
            outcomes: Mutex::new(Moments::default()),
            always_valid_p: AtomicU64::new(1f64.to_bits()),
        }
    }

    /// Counts one call: answered by `version` (None: it failed before a
    /// model ran) or failed, after `latency`.
    pub fn record_call(&self, ok: bool, version: Option<u64>, latency: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(v) = version {
            if self.last_version.swap(v, Ordering::Relaxed) != v {
                let mut seen = lock(&self.versions);
                if !seen.contains(&v) {
                    seen.push(v);
                }
            }
        }
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        lock(&self.latency[thread_shard()]).saturating_record(us.max(1));
    }

    /// Adds the outcome of one joined label.
    pub fn record_outcome(&self, outcome: f64) {
        lock(&self.outcomes).push(outcome);
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub fn versions(&self) -> Vec<u64> {
        lock(&self.versions).clone()
    }

    pub fn outcomes(&self) -> Outcomes {
        lock(&self.outcomes).clone()
    }

    /// p50/p95/p99 over every call so far; None before the first.
    pub fn latency(&self) -> Option<Latency> {
        let all = self.latency_histogram()?;
        if all.is_empty() {
            return None;
        }
        let ms = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
        Some(Latency {
            p50: ms(0.50),
            p95: ms(0.95),
            p99: ms(0.99),
        })
    }

    /// Every call's latency so far, in microseconds (the shards merged).
    pub fn latency_histogram(&self) -> Option<Histogram<u64>> {
        let mut all = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_US, 2).ok()?;
        for shard in self.latency.iter() {
            all.add(&*lock(shard)).ok()?;
        }
        Some(all)
    }

    pub fn always_valid_p(&self) -> f64 {
        f64::from_bits(self.always_valid_p.load(Ordering::Relaxed))
    }

    /// Lowers the always-valid p-value to `p` if that is lower.
    pub fn lower_always_valid_p(&self, p: f64) {
        let _ = self
            .always_valid_p
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                (p < f64::from_bits(bits)).then_some(p.to_bits())
            });
    }
}

/// This thread's latency shard: threads take shards round-robin.
fn thread_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % LATENCY_SHARDS;
    }
    SHARD.with(|s| *s)
}

/// Every update under these locks completes before anything can panic, so
/// a poisoned lock's data is used as is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arm_counts_calls_versions_and_latency() {
        let arm = ArmState::new("challenger");
        assert_eq!(arm.latency(), None);
        arm.record_call(true, Some(2), Duration::from_millis(10));
        arm.record_call(false, None, Duration::from_millis(30));
        arm.record_call(true, Some(3), Duration::from_millis(20));
        arm.record_call(true, Some(2), Duration::from_millis(20));
        assert_eq!((arm.requests(), arm.errors()), (4, 1));
        assert_eq!(arm.versions(), vec![2, 3]);
        let latency = arm.latency().unwrap();
        assert!((19.0..=21.0).contains(&latency.p50), "{latency:?}");
        assert!((29.0..=31.0).contains(&latency.p99), "{latency:?}");
    }

    #[test]
    fn the_always_valid_p_value_never_rises() {
        let arm = ArmState::new("challenger");
        assert_eq!(arm.always_valid_p(), 1.0);
        arm.lower_always_valid_p(0.2);
        arm.lower_always_valid_p(0.5);
        assert_eq!(arm.always_valid_p(), 0.2);
    }
}
