//! The data behind the report page's charts, per arm: the metric over time
//! (cumulative, with its interval, as the readout would have shown it at
//! each moment), the latency distribution, and the traffic share over time.

use crate::experiments::stats::{self, Moments};
use crate::experiments::{Label, ReadoutConfig};

use super::read::Call;

/// Time buckets the experiment's span is cut into.
pub const BUCKETS: usize = 24;
/// Latency bins: log-spaced from 10 µs to 10 s.
const LATENCY_BINS: usize = 30;
const LATENCY_MIN_MS: f64 = 0.01;
const LATENCY_MAX_MS: f64 = 10_000.0;

/// A metric value with its interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// See the module doc.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub metric: &'static str,
    /// The level of the intervals (1 − alpha).
    pub confidence: f64,
    /// Arms in order of first call.
    pub arms: Vec<String>,
    /// The end of each time bucket, microseconds since the epoch.
    pub ends: Vec<i64>,
    /// Per arm, per bucket: the metric over the labelled calls up to the
    /// bucket's end (None: no label yet).
    pub metric_over_time: Vec<Vec<Option<Point>>>,
    /// Per arm, per bucket: the arm's share of the bucket's calls (None: no calls).
    pub share: Vec<Vec<Option<f64>>>,
    /// Upper edges of the latency bins, in ms (the last bin also holds
    /// everything slower).
    pub latency_edges: Vec<f64>,
    /// Per arm, per bin: calls.
    pub latency: Vec<Vec<u64>>,
}

impl Timeline {
    /// From the calls (time order) and the labels joined to them.
    pub fn build(config: &ReadoutConfig, calls: &[Call], joined: &[(usize, Label)]) -> Timeline {
        let mut arms: Vec<String> = Vec::new();
        for c in calls {
            if !arms.contains(&c.arm) {
                arms.push(c.arm.clone());
            }
        }
        let arm_of = |name: &str| arms.iter().position(|a| a == name).unwrap_or(0);
        let (first, last) = (
            calls.first().map_or(0, |c| c.time),
            calls.last().map_or(0, |c| c.time),
        );
        let span = (last - first).max(1);
        let bucket = |t: i64| {
            ((((t - first) as f64 / span as f64) * BUCKETS as f64) as usize).min(BUCKETS - 1)
        };
        let ends: Vec<i64> = (1..=BUCKETS)
            .map(|b| first + (span as f64 * b as f64 / BUCKETS as f64).round() as i64)
            .collect();

        let mut counts = vec![vec![0u64; BUCKETS]; arms.len()];
        let latency_edges: Vec<f64> = (1..=LATENCY_BINS)
            .map(|i| {
                LATENCY_MIN_MS
                    * (LATENCY_MAX_MS / LATENCY_MIN_MS).powf(i as f64 / LATENCY_BINS as f64)
            })
            .collect();
        let mut latency = vec![vec![0u64; LATENCY_BINS]; arms.len()];
        for c in calls {
            let a = arm_of(&c.arm);
            counts[a][bucket(c.time)] += 1;
            let bin = latency_edges
                .iter()
                .position(|&edge| c.total_ms <= edge)
                .unwrap_or(LATENCY_BINS - 1);
            latency[a][bin] += 1;
        }
        let share = (0..arms.len())
            .map(|a| {
                (0..BUCKETS)
                    .map(|b| {
                        let all: u64 = counts.iter().map(|arm| arm[b]).sum();
                        (all > 0).then(|| counts[a][b] as f64 / all as f64)
                    })
                    .collect()
            })
            .collect();

        // Outcomes by the bucket of their call, then accumulated.
        let mut outcomes = vec![vec![Vec::new(); BUCKETS]; arms.len()];
        for (c, label) in joined {
            let call = &calls[*c];
            if let Some(value) = config.metric.outcome(label, call.prediction.as_ref()) {
                outcomes[arm_of(&call.arm)][bucket(call.time)].push(value);
            }
        }
        let metric_over_time = outcomes
            .iter()
            .map(|arm| {
                let mut m = Moments::default();
                arm.iter()
                    .map(|values| {
                        for v in values {
                            m.push(*v);
                        }
                        point(config, &m)
                    })
                    .collect()
            })
            .collect();
        Timeline {
            metric: config.metric.name(),
            confidence: 1.0 - config.alpha,
            arms,
            ends,
            metric_over_time,
            share,
            latency_edges,
            latency,
        }
    }
}

/// The metric of `m` with the readout's interval for it.
fn point(config: &ReadoutConfig, m: &Moments) -> Option<Point> {
    let value = m.mean()?;
    let interval = if config.metric.is_proportion() {
        stats::wilson(m.sum().round() as u64, m.count(), config.alpha)
    } else {
        stats::t_interval(m, config.alpha)
    };
    let (low, high) = interval.map_or((value, value), |i| (i.low, i.high));
    Some(Point { value, low, high })
}
