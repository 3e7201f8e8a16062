//! An endpoint's `[endpoint.readout]` sub-table: what its experiment
//! measures and how it decides.
//!
//! ```toml
//! [endpoint.readout]
//! metric = "accuracy"          # accuracy | conversion | mean
//! prediction_output = "label"  # accuracy only: the output holding the predicted class
//! baseline = "champion"        # the arm every other arm is compared with [default: champion]
//! min_samples = 200            # labels per arm before any decision [default: 200]
//! alpha = 0.05                 # significance; intervals at 1 - alpha [default: 0.05]
//! ```

use serde::Deserialize;

use crate::experiments::{
    Metric, ReadoutConfig, DEFAULT_ALPHA, DEFAULT_BASELINE, DEFAULT_MIN_SAMPLES,
};
use crate::routing::Arm;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadoutToml {
    metric: Metric,
    #[serde(default)]
    prediction_output: Option<String>,
    #[serde(default)]
    baseline: Option<String>,
    #[serde(default)]
    min_samples: Option<u64>,
    #[serde(default)]
    alpha: Option<f64>,
}

impl ReadoutToml {
    /// The readout of endpoint `endpoint` over `arms`, checked; errors name
    /// the key and the fix.
    pub(super) fn check(self, endpoint: &str, arms: &[Arm]) -> Result<ReadoutConfig, String> {
        let prediction_output = match (self.metric, self.prediction_output) {
            (Metric::Accuracy, Some(output)) if !output.is_empty() => Some(output),
            (Metric::Accuracy, _) => {
                return Err("readout: metric \"accuracy\" needs prediction_output, the model output holding the predicted class (e.g. prediction_output = \"label\")".into())
            }
            (metric, Some(_)) => {
                return Err(format!(
                    "readout: prediction_output is only used by metric \"accuracy\"; remove it (metric \"{}\" reads the outcome from the feedback label)",
                    metric.name()
                ))
            }
            (_, None) => None,
        };
        let baseline = self.baseline.unwrap_or_else(|| DEFAULT_BASELINE.into());
        if !arms.iter().any(|a| a.alias == baseline) {
            let aliases: Vec<&str> = arms.iter().map(|a| a.alias.as_str()).collect();
            return Err(format!(
                "readout: baseline \"{baseline}\" is not one of the endpoint's arms ({}); set baseline to one of them",
                aliases.join(", ")
            ));
        }
        let min_samples = self.min_samples.unwrap_or(DEFAULT_MIN_SAMPLES);
        if min_samples < 2 {
            return Err(format!(
                "readout: min_samples {min_samples} is too small; a variance needs at least 2 labels per arm"
            ));
        }
        let alpha = self.alpha.unwrap_or(DEFAULT_ALPHA);
        if !(alpha > 0.0 && alpha < 0.5) {
            return Err(format!(
                "readout: alpha {alpha} is not between 0 and 0.5 (exclusive); 0.05 gives 95% intervals"
            ));
        }
        Ok(ReadoutConfig {
            endpoint: endpoint.to_string(),
            metric: self.metric,
            prediction_output,
            baseline,
            min_samples,
            alpha,
        })
    }
}
