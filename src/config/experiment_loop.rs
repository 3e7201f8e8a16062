//! An endpoint's `[endpoint.guardrail]` and `[endpoint.rollout]` sub-tables:
//! what its experiment loop protects and how it rolls the challenger out.
//!
//! ```toml
//! [endpoint.guardrail]
//! max_error_rate = 0.02   # a challenger arm's failed share of calls in the window
//! max_p99_ratio = 3.0     # a challenger's p99 latency ÷ the baseline's
//! min_requests = 100      # calls per arm in the window before judging [default: 100]
//! window_secs = 60        # the sliding window, seconds (fractions allowed) [default: 60]
//! action = "stop"         # the offending arm's weight -> 0 [default: stop]
//! webhook = "http://alerts.internal/podium"   # a JSON POST per trip [default: none]
//!
//! [endpoint.rollout]
//! steps = [1, 5, 25, 50]  # the challenger's weight in %, strictly increasing
//! step_secs = 600         # least time per step (and min_samples labels) [default: 600]
//! promote = true          # after the last step, promote when promote_if holds [default: false]
//! promote_if = "better"   # better | not_worse [default: better]
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::experiments::guardrail::{DEFAULT_MIN_REQUESTS, DEFAULT_WINDOW};
use crate::experiments::rollout::DEFAULT_STEP;
use crate::experiments::{GuardrailConfig, PromoteIf, ReadoutConfig, RolloutConfig};
use crate::routing::Arm;

/// Longest window or step: a day.
const MAX_SECS: f64 = 86_400.0;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GuardrailToml {
    #[serde(default)]
    max_error_rate: Option<f64>,
    #[serde(default)]
    max_p99_ratio: Option<f64>,
    #[serde(default)]
    min_requests: Option<u64>,
    #[serde(default)]
    window_secs: Option<f64>,
    #[serde(default)]
    action: Option<Action>,
    #[serde(default)]
    webhook: Option<String>,
}

/// What a trip does; `stop` is the only action so far.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    Stop,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RolloutToml {
    steps: Vec<f64>,
    #[serde(default)]
    step_secs: Option<f64>,
    #[serde(default)]
    promote: bool,
    #[serde(default)]
    promote_if: Option<PromoteIf>,
}

fn seconds(key: &str, value: Option<f64>, default: Duration) -> Result<Duration, String> {
    let Some(secs) = value else {
        return Ok(default);
    };
    if !(secs > 0.0 && secs <= MAX_SECS) {
        return Err(format!(
            "{key} {secs} is not more than 0 and at most {MAX_SECS} (a day); fractions such as 0.5 are allowed"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl GuardrailToml {
    pub(super) fn check(self, readout: Option<&ReadoutConfig>) -> Result<GuardrailConfig, String> {
        if readout.is_none() {
            return Err("guardrail: needs an [endpoint.readout] table, whose per-arm counts it judges; add one (e.g. metric = \"accuracy\", prediction_output = \"label\")".into());
        }
        let _ = self.action.unwrap_or(Action::Stop);
        if self.max_error_rate.is_none() && self.max_p99_ratio.is_none() {
            return Err("guardrail: sets no limit; add max_error_rate (e.g. 0.02) and/or max_p99_ratio (e.g. 3.0)".into());
        }
        if let Some(rate) = self.max_error_rate.filter(|r| !(0.0..1.0).contains(r)) {
            return Err(format!(
                "guardrail: max_error_rate {rate} is not a share from 0 to below 1 (0.02 stops an arm failing more than 2% of its calls)"
            ));
        }
        if let Some(ratio) = self.max_p99_ratio.filter(|r| !(r.is_finite() && *r >= 1.0)) {
            return Err(format!(
                "guardrail: max_p99_ratio {ratio} is below 1; it bounds a challenger's p99 latency as a multiple of the baseline's (e.g. 3.0)"
            ));
        }
        let min_requests = self.min_requests.unwrap_or(DEFAULT_MIN_REQUESTS);
        if min_requests == 0 {
            return Err("guardrail: min_requests 0 would judge an arm on no calls; use 1 or more (default 100)".into());
        }
        let window = seconds("guardrail: window_secs", self.window_secs, DEFAULT_WINDOW)?;
        if let Some(url) = &self.webhook {
            let parsed = reqwest::Url::parse(url).map_err(|e| {
                format!(
                    "guardrail: webhook \"{url}\" is not a URL ({e}); use http://host:port/path"
                )
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!(
                    "guardrail: webhook \"{url}\" is not an http:// or https:// URL"
                ));
            }
        }
        Ok(GuardrailConfig {
            max_error_rate: self.max_error_rate,
            max_p99_ratio: self.max_p99_ratio,
            min_requests,
            window,
            webhook: self.webhook,
        })
    }
}

impl RolloutToml {
    pub(super) fn check(
        self,
        readout: Option<&ReadoutConfig>,
        arms: &[Arm],
    ) -> Result<RolloutConfig, String> {
        let Some(readout) = readout else {
            return Err("rollout: needs an [endpoint.readout] table, whose decision and min_samples the steps and the promotion wait for; add one".into());
        };
        if arms.len() != 2 {
            return Err(format!(
                "rollout: steps one challenger against the baseline \"{}\", but the endpoint has {} arms; give it exactly two",
                readout.baseline,
                arms.len()
            ));
        }
        if self.steps.is_empty() {
            return Err("rollout: steps is empty; list the challenger's weights in %, e.g. steps = [1, 5, 25, 50]".into());
        }
        for (i, &step) in self.steps.iter().enumerate() {
            if !(0.0..=100.0).contains(&step) {
                return Err(format!(
                    "rollout: step {step} is not a weight in % from 0 to 100"
                ));
            }
            if i > 0 && step <= self.steps[i - 1] {
                return Err(format!(
                    "rollout: steps must increase strictly, but {step} follows {}",
                    self.steps[i - 1]
                ));
            }
        }
        let step = seconds("rollout: step_secs", self.step_secs, DEFAULT_STEP)?;
        if self.promote_if.is_some() && !self.promote {
            return Err("rollout: promote_if has no effect without promote = true; add promote = true or remove promote_if".into());
        }
        Ok(RolloutConfig {
            steps: self.steps,
            step,
            promote: self.promote,
            promote_if: self.promote_if.unwrap_or(PromoteIf::Better),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Lookup};
    use super::*;

    fn aliases(_: &str) -> Lookup {
        Lookup::Aliases(vec!["champion".into(), "challenger".into(), "other".into()])
    }

    const AB: &str = "[[endpoint]]\nname = \"e\"\nmodel = \"fraud\"\narms = [{ alias = \"champion\", weight = 90 }, { alias = \"challenger\", weight = 10 }]\n[endpoint.readout]\nmetric = \"mean\"\n";

    fn error(extra: &str) -> String {
        parse(&format!("{AB}{extra}"), &aliases).unwrap_err()
    }

    #[test]
    fn guardrail_and_rollout_parse_with_their_defaults() {
        let text = format!("{AB}[endpoint.guardrail]\nmax_error_rate = 0.02\nwindow_secs = 0.5\n[endpoint.rollout]\nsteps = [1, 5, 25, 50]\npromote = true\n");
        let config = parse(&text, &aliases).unwrap();
        let l = &config.loops[0];
        assert_eq!(l.endpoint, "e");
        let g = l.guardrail.as_ref().unwrap();
        assert_eq!(
            (g.max_error_rate, g.max_p99_ratio, g.min_requests),
            (Some(0.02), None, 100)
        );
        assert_eq!(g.window, Duration::from_millis(500));
        let r = l.rollout.as_ref().unwrap();
        assert_eq!(r.steps, vec![1.0, 5.0, 25.0, 50.0]);
        assert_eq!(
            (r.step, r.promote, r.promote_if),
            (DEFAULT_STEP, true, PromoteIf::Better)
        );
        assert!(parse(AB, &aliases).unwrap().loops.is_empty());
    }

    #[test]
    fn bad_tables_are_refused_naming_the_endpoint_and_the_fix() {
        let cases = [
            (
                "[endpoint.guardrail]\nmax_error_rate = 0.02\nwindow = 60\n",
                "unknown field `window`",
            ),
            (
                "[endpoint.guardrail]\nmin_requests = 5\n",
                "endpoint \"e\": guardrail: sets no limit; add max_error_rate",
            ),
            (
                "[endpoint.guardrail]\nmax_error_rate = 1.5\n",
                "max_error_rate 1.5 is not a share",
            ),
            (
                "[endpoint.guardrail]\nmax_p99_ratio = 0.5\n",
                "max_p99_ratio 0.5 is below 1",
            ),
            (
                "[endpoint.guardrail]\nmax_error_rate = 0.1\nwindow_secs = 0\n",
                "window_secs 0 is not more than 0",
            ),
            (
                "[endpoint.guardrail]\nmax_error_rate = 0.1\naction = \"alert\"\n",
                "unknown variant `alert`, expected `stop`",
            ),
            (
                "[endpoint.guardrail]\nmax_error_rate = 0.1\nwebhook = \"ftp://x\"\n",
                "not an http:// or https:// URL",
            ),
            (
                "[endpoint.rollout]\nsteps = [5, 5]\n",
                "steps must increase strictly, but 5 follows 5",
            ),
            (
                "[endpoint.rollout]\nsteps = [5, 101]\n",
                "step 101 is not a weight in % from 0 to 100",
            ),
            ("[endpoint.rollout]\nsteps = []\n", "steps is empty"),
            (
                "[endpoint.rollout]\nsteps = [5]\npromote_if = \"better\"\n",
                "promote_if has no effect without promote = true",
            ),
            (
                "[endpoint.rollout]\nsteps = [5]\npromote = true\npromote_if = \"maybe\"\n",
                "unknown variant `maybe`",
            ),
        ];
        for (extra, expected) in cases {
            let e = error(extra);
            assert!(e.contains(expected), "{extra}: {e}");
        }
        let no_readout = "[[endpoint]]\nname = \"e\"\nmodel = \"fraud\"\narms = [{ alias = \"champion\", weight = 90 }, { alias = \"challenger\", weight = 10 }]\n[endpoint.rollout]\nsteps = [5]\n";
        let e = parse(no_readout, &aliases).unwrap_err();
        assert!(
            e.contains("endpoint \"e\": rollout: needs an [endpoint.readout] table"),
            "{e}"
        );
        let three = AB.replace(
            "weight = 10 }]",
            "weight = 10 }, { alias = \"other\", weight = 1 }]",
        );
        let e = parse(
            &format!("{three}[endpoint.rollout]\nsteps = [5]\n"),
            &aliases,
        )
        .unwrap_err();
        assert!(
            e.contains("the endpoint has 3 arms; give it exactly two"),
            "{e}"
        );
    }
}
