//! A readout rebuilt from recorded calls and labels rather than live ones
//! (`podium experiment report` reads them from the inference and feedback
//! tables): the same arm state, the same mSPRT evaluation and the same
//! [`super::ReadoutView`], so offline and live numbers cannot disagree.

use std::time::{Duration, SystemTime};

use super::{EndpointReadout, Label, Prediction, ReadoutConfig};

impl EndpointReadout {
    /// An empty readout of `config` that counts from `since`.
    pub fn replayed(config: ReadoutConfig, since: SystemTime) -> EndpointReadout {
        let mut readout = EndpointReadout::new(config);
        readout.started = since;
        readout
    }

    /// Counts one recorded call of arm `alias`, as the live tracker does.
    pub fn replay_call(&self, alias: &str, ok: bool, version: Option<u64>, latency: Duration) {
        self.with_arm(alias, |_, arm| arm.record_call(ok, version, latency));
    }

    /// Joins the first label of a recorded call of arm `alias` (with its
    /// prediction, for accuracy); false when the metric cannot count it.
    pub fn replay_label(
        &self,
        alias: &str,
        label: &Label,
        prediction: Option<&Prediction>,
    ) -> bool {
        let Some(value) = self.config.metric.outcome(label, prediction) else {
            return false;
        };
        self.with_arm(alias, |_, arm| arm.record_outcome(value));
        true
    }

    /// One always-valid evaluation, as after each live feedback request.
    pub fn replay_evaluate(&self) {
        self.evaluate();
    }
}
