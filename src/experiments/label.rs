//! Ground truth and what the model said: a feedback [`Label`], the
//! [`Prediction`] a call kept, and the outcome a label counts as under each
//! [`Metric`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::request::InferResponse;
use crate::tensor::TensorData;

/// What the readout measures per arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// The share of labelled calls whose predicted class equals the label.
    Accuracy,
    /// The share of labelled calls whose outcome is 1 (true).
    Conversion,
    /// The mean of numeric outcomes.
    Mean,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Conversion => "conversion",
            Metric::Mean => "mean",
        }
    }

    /// Whether the metric is a proportion (tested with the two-proportion z-test).
    pub fn is_proportion(self) -> bool {
        !matches!(self, Metric::Mean)
    }

    /// Why `label` cannot be an outcome of this metric, if it cannot.
    pub fn check(self, label: &Label) -> Result<(), String> {
        match (self, label) {
            (Metric::Accuracy, _) => Ok(()),
            (Metric::Conversion, Label::Bool(_)) => Ok(()),
            (Metric::Conversion, Label::Number(x)) if *x == 0.0 || *x == 1.0 => Ok(()),
            (Metric::Conversion, other) => Err(format!(
                "label {other} is not a conversion outcome; send 0, 1, true or false"
            )),
            (Metric::Mean, Label::Number(_)) => Ok(()),
            (Metric::Mean, other) => Err(format!(
                "label {other} is not a number; the metric \"mean\" averages numeric outcomes"
            )),
        }
    }

    /// The outcome `label` counts as: 1 or 0 for a proportion (for accuracy,
    /// whether it equals `prediction`), the number itself for a mean. None
    /// when [`Metric::check`] refuses the label or accuracy has no prediction.
    pub fn outcome(self, label: &Label, prediction: Option<&Prediction>) -> Option<f64> {
        self.check(label).ok()?;
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        match (self, label) {
            (Metric::Accuracy, label) => Some(flag(prediction?.matches(label))),
            (_, Label::Bool(b)) => Some(flag(*b)),
            (_, Label::Number(x)) => Some(*x),
            (_, Label::Text(_)) => None,
        }
    }
}

/// A ground-truth label as feedback sends it: a JSON number, string or bool.
#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    Number(f64),
    Text(String),
    Bool(bool),
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Label::Number(x) => write!(f, "{x}"),
            Label::Text(s) => write!(f, "{s:?}"),
            Label::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// What a call predicted: the first element (batch row 0) of the output
/// the readout names. Numbers, bools (as 1/0) and integers are numbers;
/// BYTES elements are text.
#[derive(Debug, Clone, PartialEq)]
pub enum Prediction {
    Number(f64),
    Text(Box<str>),
}

impl Prediction {
    /// Row 0 of output `output` of `response`; None when the response has
    /// no such output (the client asked for other outputs) or it is empty.
    pub fn of(response: &InferResponse, output: &str) -> Option<Prediction> {
        let tensor = response.outputs.iter().find(|t| t.name == output)?;
        let number = |x: f64| Some(Prediction::Number(x));
        match &tensor.data {
            TensorData::Bool(v) => number(if *v.first()? { 1.0 } else { 0.0 }),
            TensorData::Uint8(v) => number(f64::from(*v.first()?)),
            TensorData::Uint16(v) => number(f64::from(*v.first()?)),
            TensorData::Uint32(v) => number(f64::from(*v.first()?)),
            TensorData::Uint64(v) => number(*v.first()? as f64),
            TensorData::Int8(v) => number(f64::from(*v.first()?)),
            TensorData::Int16(v) => number(f64::from(*v.first()?)),
            TensorData::Int32(v) => number(f64::from(*v.first()?)),
            TensorData::Int64(v) => number(*v.first()? as f64),
            TensorData::Fp16(v) => number(v.first()?.to_f64()),
            TensorData::Bf16(v) => number(v.first()?.to_f64()),
            TensorData::Fp32(v) => number(f64::from(*v.first()?)),
            TensorData::Fp64(v) => number(*v.first()?),
            TensorData::Bytes(v) => {
                Some(Prediction::Text(String::from_utf8_lossy(v.first()?).into()))
            }
        }
    }

    /// Whether `label` names this prediction: numbers compare as numbers
    /// (true = 1, false = 0; a string label that parses as a number counts
    /// as that number), text compares exactly (a number or bool label is
    /// compared with the text read as a number, and `"true"`/`"false"`).
    pub fn matches(&self, label: &Label) -> bool {
        let as_number = |s: &str| s.trim().parse::<f64>().ok();
        match (self, label) {
            (Prediction::Number(p), Label::Number(l)) => p == l,
            (Prediction::Number(p), Label::Bool(b)) => *p == if *b { 1.0 } else { 0.0 },
            (Prediction::Number(p), Label::Text(t)) => as_number(t) == Some(*p),
            (Prediction::Text(p), Label::Text(t)) => **p == **t,
            (Prediction::Text(p), Label::Number(l)) => as_number(p) == Some(*l),
            (Prediction::Text(p), Label::Bool(b)) => {
                p.eq_ignore_ascii_case(if *b { "true" } else { "false" })
                    || as_number(p) == Some(if *b { 1.0 } else { 0.0 })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;

    #[test]
    fn labels_match_predictions_across_types() {
        let one = Prediction::Number(1.0);
        assert!(one.matches(&Label::Number(1.0)));
        assert!(one.matches(&Label::Bool(true)));
        assert!(one.matches(&Label::Text("1".into())));
        assert!(!one.matches(&Label::Number(0.0)));
        assert!(!one.matches(&Label::Text("one".into())));
        let cat = Prediction::Text("cat".into());
        assert!(cat.matches(&Label::Text("cat".into())));
        assert!(!cat.matches(&Label::Text("Cat".into())));
        assert!(!cat.matches(&Label::Number(1.0)));
        let yes = Prediction::Text("true".into());
        assert!(yes.matches(&Label::Bool(true)));
        assert!(!yes.matches(&Label::Bool(false)));
    }

    #[test]
    fn metrics_take_the_labels_they_can_count() {
        assert_eq!(
            Metric::Conversion.outcome(&Label::Bool(true), None),
            Some(1.0)
        );
        assert_eq!(
            Metric::Conversion.outcome(&Label::Number(0.0), None),
            Some(0.0)
        );
        let half = Metric::Conversion.check(&Label::Number(0.5)).unwrap_err();
        assert!(half.contains("send 0, 1, true or false"), "{half}");
        assert_eq!(Metric::Mean.outcome(&Label::Number(2.5), None), Some(2.5));
        assert!(Metric::Mean.check(&Label::Text("2".into())).is_err());
        let p = Prediction::Number(0.0);
        assert_eq!(
            Metric::Accuracy.outcome(&Label::Number(0.0), Some(&p)),
            Some(1.0)
        );
        assert_eq!(Metric::Accuracy.outcome(&Label::Number(0.0), None), None);
    }

    #[test]
    fn the_prediction_is_row_0_of_the_named_output() {
        let response = InferResponse {
            model_name: "fraud".into(),
            model_version: 1,
            id: None,
            outputs: vec![
                Tensor::new("label".into(), vec![2], TensorData::Int64(vec![1, 0])).unwrap(),
                Tensor::new(
                    "name".into(),
                    vec![1],
                    TensorData::Bytes(vec![b"fraud".to_vec()]),
                )
                .unwrap(),
            ],
            timing: Default::default(),
        };
        assert_eq!(
            Prediction::of(&response, "label"),
            Some(Prediction::Number(1.0))
        );
        assert_eq!(
            Prediction::of(&response, "name"),
            Some(Prediction::Text("fraud".into()))
        );
        assert_eq!(Prediction::of(&response, "probabilities"), None);
    }
}
