//! Per-arm traffic over the last minutes, for the console's charts: calls,
//! errors and latency percentiles of each (endpoint, arm) in fixed time
//! buckets. Bounded: [`WINDOW_BUCKETS`] buckets of [`BUCKET_SECS`] seconds
//! per arm, and at most [`MAX_ARMS`] arms (names are bounded already: the
//! call pipeline labels unknown names `_unknown`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::Serialize;

/// The width of one bucket, in seconds.
pub const BUCKET_SECS: u64 = 10;
/// How many buckets each arm keeps: ten minutes.
pub const WINDOW_BUCKETS: usize = 60;
/// The most (endpoint, arm) pairs tracked; calls to more are not charted.
pub const MAX_ARMS: usize = 256;

/// Latency buckets: upper bounds of 50 µs × 1.25^k, k = 0..64 (50 µs to
/// about 65 s), so a percentile read from them is within 25% above the
/// true value.
const LATENCY_BUCKETS: usize = 64;
const LATENCY_FIRST_S: f64 = 0.000_05;
const LATENCY_GROWTH: f64 = 1.25;

/// Every arm's recent traffic. Recording finds its arm without a lock and
/// counts with a few atomic additions; only an arm's first call, and the
/// first call of each bucket, take a lock.
#[derive(Default)]
pub struct ArmSeries {
    arms: ArcSwap<ByEndpoint>,
    /// Held while an arm is added (the map is copied, then swapped).
    adding: Mutex<()>,
}

/// Rings by endpoint, then arm (looked up by `&str`: no allocation per call).
type ByEndpoint = HashMap<String, HashMap<String, Arc<Ring>>>;

/// One arm's chart data in [`ArmSeries::snapshot`].
#[derive(Debug, Serialize)]
pub struct ArmTrace {
    pub endpoint: String,
    pub arm: String,
    /// Oldest first; one per bucket of the window, the last one still
    /// filling.
    pub points: Vec<Point>,
}

/// One bucket of an arm.
#[derive(Debug, Serialize, PartialEq)]
pub struct Point {
    /// The bucket's start, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    pub requests: u64,
    pub errors: u64,
    /// Calls per second over the part of the bucket that has passed.
    pub requests_per_s: f64,
    /// Median and 99th percentile latency in milliseconds (within 25%
    /// above); None without calls.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// One arm's last [`WINDOW_BUCKETS`] buckets: bucket `i` lives at
/// `i % WINDOW_BUCKETS` until bucket `i + WINDOW_BUCKETS` starts there.
struct Ring {
    buckets: Box<[Bucket]>,
    /// The newest bucket started; a call whose clock reads earlier (another
    /// thread's reading, or a clock stepped back) lands in it.
    newest: AtomicU64,
    /// Held while a bucket is started (cleared for its new index).
    starting: Mutex<()>,
}

struct Bucket {
    /// Seconds since the epoch / BUCKET_SECS (0: never started).
    index: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU32; LATENCY_BUCKETS],
}

impl Default for Bucket {
    fn default() -> Bucket {
        Bucket {
            index: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

impl Ring {
    fn new() -> Ring {
        Ring {
            buckets: (0..WINDOW_BUCKETS).map(|_| Bucket::default()).collect(),
            newest: AtomicU64::new(0),
            starting: Mutex::new(()),
        }
    }

    fn record(&self, index: u64, ok: bool, latency: Duration) {
        let mut newest = self.newest.load(Ordering::Acquire);
        if index > newest {
            newest = self.start(index);
        }
        let bucket = &self.buckets[newest as usize % WINDOW_BUCKETS];
        bucket.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            bucket.errors.fetch_add(1, Ordering::Relaxed);
        }
        let slot = &bucket.latency[latency_bucket(latency.as_secs_f64())];
        let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1));
    }

    /// Starts bucket `index` (clearing the one it replaces) unless a newer
    /// one started already; answers the newest bucket's index.
    fn start(&self, index: u64) -> u64 {
        let _starting = self.starting.lock().unwrap_or_else(|p| p.into_inner());
        let newest = self.newest.load(Ordering::Acquire);
        if newest >= index {
            return newest;
        }
        let bucket = &self.buckets[index as usize % WINDOW_BUCKETS];
        bucket.requests.store(0, Ordering::Relaxed);
        bucket.errors.store(0, Ordering::Relaxed);
        for slot in &bucket.latency {
            slot.store(0, Ordering::Relaxed);
        }
        bucket.index.store(index, Ordering::Release);
        self.newest.store(index, Ordering::Release);
        index
    }

    /// Bucket `index`'s counts, when the ring still holds it.
    fn bucket(&self, index: u64) -> Option<(u64, u64, [u32; LATENCY_BUCKETS])> {
        let bucket = &self.buckets[index as usize % WINDOW_BUCKETS];
        if bucket.index.load(Ordering::Acquire) != index {
            return None;
        }
        let latency = std::array::from_fn(|k| bucket.latency[k].load(Ordering::Relaxed));
        Some((
            bucket.requests.load(Ordering::Relaxed),
            bucket.errors.load(Ordering::Relaxed),
            latency,
        ))
    }
}

impl ArmSeries {
    pub fn new() -> ArmSeries {
        ArmSeries::default()
    }

    /// Counts one finished call of `arm` of `endpoint`.
    pub fn record(&self, endpoint: &str, arm: &str, ok: bool, latency: Duration) {
        self.record_at(now_ms(), endpoint, arm, ok, latency);
    }

    fn record_at(&self, now_ms: u64, endpoint: &str, arm: &str, ok: bool, latency: Duration) {
        let index = now_ms / 1000 / BUCKET_SECS;
        let arms = self.arms.load();
        if let Some(ring) = arms.get(endpoint).and_then(|arms| arms.get(arm)) {
            ring.record(index, ok, latency);
        } else if let Some(ring) = self.add(endpoint, arm) {
            ring.record(index, ok, latency);
        }
    }

    /// The ring of a new arm (or of one another call just added); None
    /// when [`MAX_ARMS`] are tracked already.
    fn add(&self, endpoint: &str, arm: &str) -> Option<Arc<Ring>> {
        let _adding = self.adding.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.arms.load_full();
        if let Some(ring) = current.get(endpoint).and_then(|arms| arms.get(arm)) {
            return Some(Arc::clone(ring));
        }
        if current.values().map(HashMap::len).sum::<usize>() >= MAX_ARMS {
            return None;
        }
        let ring = Arc::new(Ring::new());
        let mut endpoints = (*current).clone();
        endpoints
            .entry(endpoint.to_string())
            .or_default()
            .insert(arm.to_string(), Arc::clone(&ring));
        self.arms.store(Arc::new(endpoints));
        Some(ring)
    }

    /// Every arm's last [`WINDOW_BUCKETS`] buckets (empty ones included),
    /// sorted by endpoint and arm.
    pub fn snapshot(&self) -> Vec<ArmTrace> {
        self.snapshot_at(now_ms())
    }

    fn snapshot_at(&self, now_ms: u64) -> Vec<ArmTrace> {
        let current = now_ms / 1000 / BUCKET_SECS;
        let first = current.saturating_sub(WINDOW_BUCKETS as u64 - 1);
        let arms = self.arms.load();
        let mut traces: Vec<ArmTrace> = arms
            .iter()
            .flat_map(|(endpoint, arms)| arms.iter().map(move |(arm, ring)| (endpoint, arm, ring)))
            .map(|(endpoint, arm, ring)| {
                let points = (first..=current)
                    .map(|index| {
                        let start_ms = index * BUCKET_SECS * 1000;
                        let seconds = if index == current {
                            (now_ms.saturating_sub(start_ms) as f64 / 1000.0).max(1.0)
                        } else {
                            BUCKET_SECS as f64
                        };
                        match ring.bucket(index) {
                            Some((requests, errors, latency)) => Point {
                                unix_ms: start_ms,
                                requests,
                                errors,
                                requests_per_s: requests as f64 / seconds,
                                p50_ms: percentile_ms(&latency, 0.50),
                                p99_ms: percentile_ms(&latency, 0.99),
                            },
                            None => Point {
                                unix_ms: start_ms,
                                requests: 0,
                                errors: 0,
                                requests_per_s: 0.0,
                                p50_ms: None,
                                p99_ms: None,
                            },
                        }
                    })
                    .collect();
                ArmTrace {
                    endpoint: endpoint.clone(),
                    arm: arm.clone(),
                    points,
                }
            })
            .collect();
        traces.sort_by(|a, b| (&a.endpoint, &a.arm).cmp(&(&b.endpoint, &b.arm)));
        traces
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn latency_bucket(seconds: f64) -> usize {
    if seconds.is_nan() || seconds <= LATENCY_FIRST_S {
        return 0;
    }
    let k = ((seconds / LATENCY_FIRST_S).ln() / LATENCY_GROWTH.ln()).ceil();
    (k as usize).min(LATENCY_BUCKETS - 1)
}

fn bucket_upper_ms(k: usize) -> f64 {
    LATENCY_FIRST_S * LATENCY_GROWTH.powi(k as i32) * 1000.0
}

/// The upper bound of the bucket holding the `q` quantile; None without calls.
fn percentile_ms(latency: &[u32; LATENCY_BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = latency.iter().map(|&c| u64::from(c)).sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0u64;
    for (k, &count) in latency.iter().enumerate() {
        seen += u64::from(count);
        if seen >= rank {
            return Some(bucket_upper_ms(k));
        }
    }
    Some(bucket_upper_ms(LATENCY_BUCKETS - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000; // a bucket boundary

    #[test]
    fn calls_land_in_their_bucket_with_errors_and_percentiles() {
        let series = ArmSeries::new();
        for i in 0..99 {
            series.record_at(T0 + i, "ep", "a", true, Duration::from_millis(2));
        }
        series.record_at(T0 + 5, "ep", "a", false, Duration::from_millis(400));
        series.record_at(T0 + 15_000, "ep", "a", true, Duration::from_millis(2));
        let traces = series.snapshot_at(T0 + 15_000);
        assert_eq!(traces.len(), 1);
        let points = &traces[0].points;
        assert_eq!(points.len(), WINDOW_BUCKETS);
        let full = &points[WINDOW_BUCKETS - 2];
        assert_eq!((full.unix_ms, full.requests, full.errors), (T0, 100, 1));
        assert_eq!(full.requests_per_s, 10.0);
        let p50 = full.p50_ms.unwrap();
        assert!((2.0..2.5).contains(&p50), "{p50}");
        let p99 = full.p99_ms.unwrap();
        assert!((2.0..2.5).contains(&p99), "{p99}");
        let last = &points[WINDOW_BUCKETS - 1];
        assert_eq!(last.requests, 1);
        assert_eq!(last.requests_per_s, 1.0 / 5.0);
        assert_eq!(points[0].p50_ms, None);
    }

    #[test]
    fn the_window_and_the_number_of_arms_are_bounded() {
        let series = ArmSeries::new();
        for b in 0..(2 * WINDOW_BUCKETS as u64) {
            series.record_at(T0 + b * BUCKET_SECS * 1000, "ep", "a", true, Duration::ZERO);
        }
        let last = 2 * WINDOW_BUCKETS as u64 - 1;
        let kept: Vec<u64> = series.snapshot_at(T0 + last * BUCKET_SECS * 1000)[0]
            .points
            .iter()
            .map(|p| p.requests)
            .collect();
        assert_eq!(kept, vec![1; WINDOW_BUCKETS]);
        for i in 0..(MAX_ARMS + 10) {
            series.record_at(T0, "ep", &format!("arm{i}"), true, Duration::ZERO);
        }
        assert_eq!(series.snapshot_at(T0).len(), MAX_ARMS);
    }

    #[test]
    fn a_slow_call_is_in_the_99th_percentile() {
        let mut latency = [0u32; LATENCY_BUCKETS];
        latency[latency_bucket(0.001)] = 98;
        latency[latency_bucket(1.0)] = 2;
        let p99 = percentile_ms(&latency, 0.99).unwrap();
        assert!((1000.0..1250.0).contains(&p99), "{p99}");
        assert!(percentile_ms(&latency, 0.5).unwrap() < 1.25);
        assert_eq!(latency_bucket(1e9), LATENCY_BUCKETS - 1);
    }
}
