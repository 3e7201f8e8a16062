//! What the workers saw, added up: latency of good answers, errors by
//! class, and good answers by endpoint, arm and version. Each worker keeps
//! its own [`Stats`] (no shared counters on the hot path); the run merges
//! them at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::hist::{Latency, Percentiles};
use crate::outcome::{Answer, ErrorClass};

/// Error examples kept per run.
pub const EXAMPLES: usize = 5;

/// Where an answer came from: the endpoint, arm and version the server
/// named (`-` when it named none, as a non-Podium server does).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ArmKey {
    pub endpoint: String,
    pub arm: String,
    pub version: String,
}

impl ArmKey {
    pub fn of(answer: &Answer) -> ArmKey {
        let name = |v: Option<&str>| v.unwrap_or("-").to_string();
        ArmKey {
            endpoint: name(answer.endpoint.as_deref()),
            arm: name(answer.arm.as_deref()),
            version: name(answer.version()),
        }
    }
}

/// Good answers of one endpoint/arm/version.
#[derive(Clone, Debug, Default)]
pub struct ArmStats {
    pub answers: u64,
    pub latency: Latency,
}

/// The statistics of one phase (warm-up or measured) of one worker, or of
/// all of them once merged.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Latency of good answers; in an open loop from the intended send time.
    pub latency: Latency,
    /// Open loop only: latency of good answers from the actual send.
    pub service: Latency,
    /// Open loop only: how late requests left (actual − intended send).
    pub lag: Latency,
    pub answers: u64,
    pub errors: BTreeMap<ErrorClass, u64>,
    pub arms: BTreeMap<ArmKey, ArmStats>,
    /// The first few errors, "class: detail".
    pub error_examples: Vec<String>,
}

impl Stats {
    pub fn requests(&self) -> u64 {
        self.answers + self.error_count()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// A good answer. `service` and `lag` are `Some` in an open loop.
    pub fn answer(
        &mut self,
        answer: &Answer,
        latency: Duration,
        service: Option<Duration>,
        lag: Option<Duration>,
    ) {
        self.answers += 1;
        self.latency.record(latency);
        if let Some(s) = service {
            self.service.record(s);
        }
        if let Some(l) = lag {
            self.lag.record(l);
        }
        let key = ArmKey::of(answer);
        let arm = self.arms.entry(key).or_default();
        arm.answers += 1;
        arm.latency.record(latency);
    }

    pub fn error(&mut self, class: ErrorClass, detail: &str) {
        if self.error_examples.len() < EXAMPLES {
            self.error_examples.push(format!("{class}: {detail}"));
        }
        *self.errors.entry(class).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Stats) {
        self.latency.merge(&other.latency);
        self.service.merge(&other.service);
        self.lag.merge(&other.lag);
        self.answers += other.answers;
        for (class, n) in &other.errors {
            *self.errors.entry(class.clone()).or_default() += n;
        }
        for (key, arm) in &other.arms {
            let mine = self.arms.entry(key.clone()).or_default();
            mine.answers += arm.answers;
            mine.latency.merge(&arm.latency);
        }
        for e in &other.error_examples {
            if self.error_examples.len() < EXAMPLES {
                self.error_examples.push(e.clone());
            }
        }
    }

    /// Answers by arm, for the summary and `--json`.
    pub fn arm_rows(&self) -> Vec<ArmRow> {
        self.arms
            .iter()
            .map(|(key, arm)| ArmRow {
                endpoint: key.endpoint.clone(),
                arm: key.arm.clone(),
                version: key.version.clone(),
                answers: arm.answers,
                share: arm.answers as f64 / self.answers.max(1) as f64,
                latency: arm.latency.summary(),
            })
            .collect()
    }

    /// Answers of `arm` (any endpoint and version).
    pub fn answers_of_arm(&self, arm: &str) -> u64 {
        self.arms
            .iter()
            .filter(|(k, _)| k.arm == arm)
            .map(|(_, a)| a.answers)
            .sum()
    }

    /// Answers from `version` (any endpoint and arm).
    pub fn answers_of_version(&self, version: &str) -> u64 {
        self.arms
            .iter()
            .filter(|(k, _)| k.version == version)
            .map(|(_, a)| a.answers)
            .sum()
    }

    pub fn error_map(&self) -> BTreeMap<String, u64> {
        self.errors
            .iter()
            .map(|(c, n)| (c.to_string(), *n))
            .collect()
    }

    pub fn percentiles(&self) -> Percentiles {
        self.latency.summary()
    }
}

/// One row of the per-arm breakdown.
#[derive(Clone, Debug, Serialize)]
pub struct ArmRow {
    pub endpoint: String,
    pub arm: String,
    pub version: String,
    pub answers: u64,
    /// Of all good answers of the phase.
    pub share: f64,
    pub latency: Percentiles,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(endpoint: &str, arm: &str, version: &str) -> Answer {
        Answer {
            endpoint: Some(endpoint.into()),
            arm: Some(arm.into()),
            header_version: Some(version.into()),
            ..Answer::default()
        }
    }

    #[test]
    fn answers_are_counted_per_arm_and_version() {
        let us = Duration::from_micros;
        let mut a = Stats::default();
        for _ in 0..9 {
            a.answer(&answer("fraud-ab", "champion", "1"), us(100), None, None);
        }
        a.answer(&answer("fraud-ab", "challenger", "2"), us(300), None, None);
        let mut b = Stats::default();
        b.answer(&answer("fraud-ab", "champion", "1"), us(100), None, None);
        b.answer(&Answer::default(), us(100), None, None);
        b.error(ErrorClass::Http(503), "overloaded");
        b.error(ErrorClass::Timeout, "5 s");
        b.error(ErrorClass::Http(503), "overloaded");

        a.merge(&b);
        assert_eq!(a.answers, 12);
        assert_eq!(a.requests(), 15);
        assert_eq!(a.error_count(), 3);
        assert_eq!(a.answers_of_arm("champion"), 10);
        assert_eq!(a.answers_of_arm("challenger"), 1);
        assert_eq!(a.answers_of_version("2"), 1);
        let rows = a.arm_rows();
        assert_eq!(rows.len(), 3);
        // A server that names nothing is counted under "-".
        let unnamed = rows.iter().find(|r| r.arm == "-").unwrap();
        assert_eq!(
            (unnamed.endpoint.as_str(), unnamed.version.as_str()),
            ("-", "-")
        );
        let champion = rows.iter().find(|r| r.arm == "champion").unwrap();
        assert_eq!(champion.answers, 10);
        assert!((champion.share - 10.0 / 12.0).abs() < 1e-9);
        assert_eq!(champion.latency.count, 10);
        let errors = a.error_map();
        assert_eq!(errors["http_503"], 2);
        assert_eq!(errors["timeout"], 1);
        assert_eq!(a.error_examples.len(), 3);
        assert_eq!(a.latency.count(), 12);
    }

    #[test]
    fn error_examples_are_bounded() {
        let mut s = Stats::default();
        for i in 0..100 {
            s.error(ErrorClass::Connect, &format!("refused {i}"));
        }
        assert_eq!(s.error_examples.len(), EXAMPLES);
        assert_eq!(s.errors[&ErrorClass::Connect], 100);
        assert_eq!(s.error_examples[0], "connect: refused 0");
    }
}
