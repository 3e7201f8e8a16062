//! Guardrails: the limits a challenger arm must stay within
//! (`[endpoint.guardrail]`), judged over a sliding window of each arm's
//! calls.
//!
//! The window costs the request path nothing: the experiment loop copies
//! each arm's cumulative counters and latency histogram a few times per
//! window and judges the difference between now and a window ago.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::ArmState;

/// The guardrail defaults (`[endpoint.guardrail]`).
pub const DEFAULT_MIN_REQUESTS: u64 = 100;
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// Snapshots per window: the window slides by a quarter of its length.
pub const TICKS_PER_WINDOW: u32 = 4;

/// The limits of one endpoint's challenger arms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardrailConfig {
    /// Highest share of failed calls of a challenger arm in the window.
    pub max_error_rate: Option<f64>,
    /// Highest ratio of a challenger's p99 latency to the baseline's.
    pub max_p99_ratio: Option<f64>,
    /// Calls an arm needs in the window before it is judged (the baseline
    /// too, for the p99 ratio).
    pub min_requests: u64,
    #[serde(serialize_with = "seconds")]
    pub window: Duration,
    /// Where each trip is POSTed as JSON, if anywhere.
    pub webhook: Option<String>,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Which limit an arm broke (the `rule` label of
/// `podium_guardrail_trips_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    ErrorRate,
    P99Ratio,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::ErrorRate => "error_rate",
            Rule::P99Ratio => "p99_ratio",
        }
    }
}

/// One arm over a guardrail limit, with the numbers that show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breach {
    pub arm: String,
    pub rule: Rule,
    /// The measured value (error rate, or p99 ratio).
    pub value: f64,
    pub limit: f64,
    /// The arm's calls in the window.
    pub requests: u64,
    pub errors: u64,
    /// The arm's and the baseline's p99 in the window, in milliseconds.
    pub p99_ms: Option<f64>,
    pub baseline_p99_ms: Option<f64>,
    /// The numbers in words, for the history and the logs.
    pub why: String,
}

/// One arm's counters since the server started, copied at one moment.
#[derive(Clone)]
pub struct ArmCounts {
    pub requests: u64,
    pub errors: u64,
    pub latency: Option<Histogram<u64>>,
}

impl ArmCounts {
    pub fn of(arm: &ArmState) -> ArmCounts {
        ArmCounts {
            requests: arm.requests(),
            errors: arm.errors(),
            latency: arm.latency_histogram(),
        }
    }

    /// The calls between `earlier` and `self`.
    fn since(&self, earlier: Option<&ArmCounts>) -> ArmCounts {
        let Some(earlier) = earlier else {
            return self.clone();
        };
        let latency = match (&self.latency, &earlier.latency) {
            (Some(now), Some(then)) => {
                let mut window = now.clone();
                window.subtract(then).ok().map(|()| window)
            }
            (now, _) => now.clone(),
        };
        ArmCounts {
            requests: self.requests.saturating_sub(earlier.requests),
            errors: self.errors.saturating_sub(earlier.errors),
            latency,
        }
    }

    fn p99_ms(&self) -> Option<f64> {
        let h = self.latency.as_ref().filter(|h| !h.is_empty())?;
        Some(h.value_at_quantile(0.99) as f64 / 1000.0)
    }
}

/// Every arm's counters at one moment, by alias.
pub type Snapshot = HashMap<String, ArmCounts>;

/// The last window's worth of snapshots, oldest first; it starts with the
/// server's start (no calls).
pub struct Window {
    snapshots: VecDeque<Snapshot>,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            snapshots: VecDeque::from([Snapshot::new()]),
        }
    }
}

impl Window {
    /// Adds the snapshot taken now and answers each arm's calls over the
    /// window (since the oldest snapshot kept, which is at most a window
    /// old: `TICKS_PER_WINDOW` ticks).
    pub fn slide(&mut self, now: Snapshot) -> Snapshot {
        let oldest = self.snapshots.front();
        let window = now
            .iter()
            .map(|(alias, counts)| {
                let earlier = oldest.and_then(|o| o.get(alias));
                (alias.clone(), counts.since(earlier))
            })
            .collect();
        self.snapshots.push_back(now);
        while self.snapshots.len() > TICKS_PER_WINDOW as usize {
            self.snapshots.pop_front();
        }
        window
    }

    /// Forgets what came before now (after a traffic change, so the new
    /// split is judged on its own calls).
    pub fn reset(&mut self, now: Snapshot) {
        self.snapshots.clear();
        self.snapshots.push_back(now);
    }
}

impl GuardrailConfig {
    /// The breaches of `judged` arms in `window`, against `baseline`'s p99.
    pub fn judge(&self, window: &Snapshot, baseline: &str, judged: &[String]) -> Vec<Breach> {
        let mut breaches = Vec::new();
        let base = window.get(baseline);
        let min = self.min_requests;
        for alias in judged {
            let Some(arm) = window.get(alias).filter(|a| a.requests >= min.max(1)) else {
                continue;
            };
            let rate = arm.errors as f64 / arm.requests as f64;
            let base_p99 = base
                .filter(|b| b.requests >= min.max(1))
                .and_then(ArmCounts::p99_ms);
            let breach = |rule, value: f64, limit: f64, why: String| Breach {
                arm: alias.clone(),
                rule,
                value,
                limit,
                requests: arm.requests,
                errors: arm.errors,
                p99_ms: arm.p99_ms(),
                baseline_p99_ms: base_p99,
                why,
            };
            let secs = self.window.as_secs_f64();
            if let Some(limit) = self.max_error_rate.filter(|&l| rate > l) {
                breaches.push(breach(
                    Rule::ErrorRate,
                    rate,
                    limit,
                    format!(
                        "arm \"{alias}\" failed {} of {} calls ({:.2}%) in the last {secs}s; max_error_rate is {:.2}%",
                        arm.errors,
                        arm.requests,
                        rate * 100.0,
                        limit * 100.0
                    ),
                ));
                continue;
            }
            let (Some(limit), Some(p99), Some(base_p99)) =
                (self.max_p99_ratio, arm.p99_ms(), base_p99)
            else {
                continue;
            };
            let ratio = p99 / base_p99.max(0.001);
            if ratio > limit {
                breaches.push(breach(
                    Rule::P99Ratio,
                    ratio,
                    limit,
                    format!(
                        "arm \"{alias}\" p99 {p99:.1} ms is {ratio:.1}x the baseline \"{baseline}\" p99 {base_p99:.1} ms over {} calls in the last {secs}s; max_p99_ratio is {limit}",
                        arm.requests
                    ),
                ));
            }
        }
        breaches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(alias: &str, calls: &[(bool, u64)]) -> ArmState {
        let arm = ArmState::new(alias);
        for &(ok, ms) in calls {
            arm.record_call(ok, Some(1), Duration::from_millis(ms));
        }
        arm
    }

    fn config() -> GuardrailConfig {
        GuardrailConfig {
            max_error_rate: Some(0.1),
            max_p99_ratio: Some(3.0),
            min_requests: 10,
            window: Duration::from_secs(60),
            webhook: None,
        }
    }

    fn snapshot(arms: &[&ArmState]) -> Snapshot {
        arms.iter()
            .map(|a| (a.alias.clone(), ArmCounts::of(a)))
            .collect()
    }

    #[test]
    fn an_arm_is_judged_on_its_window_only() {
        let base = arm("champion", &[(true, 10); 20]);
        let challenger = arm("challenger", &[(false, 10); 5]);
        let judged = vec!["challenger".to_string()];
        let mut window = Window::default();
        // 5 calls: below min_requests, not judged yet.
        let w = window.slide(snapshot(&[&base, &challenger]));
        assert_eq!(config().judge(&w, "champion", &judged), vec![]);
        for _ in 0..10 {
            challenger.record_call(true, Some(1), Duration::from_millis(10));
        }
        let w = window.slide(snapshot(&[&base, &challenger]));
        let breaches = config().judge(&w, "champion", &judged);
        assert_eq!(breaches.len(), 1, "{breaches:?}");
        assert_eq!(
            (breaches[0].rule, breaches[0].requests),
            (Rule::ErrorRate, 15)
        );
        assert!(
            breaches[0].why.contains("failed 5 of 15 calls (33.33%)"),
            "{}",
            breaches[0].why
        );
        // A window later, the 5 failures have slid out.
        for _ in 0..TICKS_PER_WINDOW {
            for _ in 0..10 {
                challenger.record_call(true, Some(1), Duration::from_millis(10));
            }
            window.slide(snapshot(&[&base, &challenger]));
        }
        let w = window.slide(snapshot(&[&base, &challenger]));
        assert_eq!(w["challenger"].errors, 0);
        assert_eq!(config().judge(&w, "champion", &judged), vec![]);
    }

    #[test]
    fn a_slow_arm_breaks_the_p99_ratio_once_both_arms_have_calls() {
        let base = arm("champion", &[(true, 2); 9]);
        let slow = arm("challenger", &[(true, 500); 10]);
        let judged = vec!["challenger".to_string()];
        let w = Window::default().slide(snapshot(&[&base, &slow]));
        assert_eq!(
            config().judge(&w, "champion", &judged),
            vec![],
            "baseline below min"
        );
        base.record_call(true, Some(1), Duration::from_millis(2));
        let w = Window::default().slide(snapshot(&[&base, &slow]));
        let breaches = config().judge(&w, "champion", &judged);
        assert_eq!(breaches[0].rule, Rule::P99Ratio);
        assert!((240.0..260.0).contains(&breaches[0].value), "{breaches:?}");
    }
}
