//! A model's dynamic batching settings (`[model.<name>.batching]` in the
//! endpoints file), with Triton's meaning, and the check that a model
//! version can be batched at all.

use std::time::Duration;

use crate::runtime::Signature;
use crate::tensor::fmt_shape;

/// The largest `max_batch_size` accepted: far above any useful batch, low
/// enough that a typo does not make one request wait behind thousands.
pub const MAX_BATCH_SIZE_LIMIT: usize = 4096;

/// The longest `max_queue_delay_us` accepted (1 s): longer is a unit mistake.
pub const MAX_QUEUE_DELAY_LIMIT: Duration = Duration::from_secs(1);

/// The largest `max_concurrent_batches` accepted, as many as `--inference-threads` allows.
pub const MAX_CONCURRENT_BATCHES_LIMIT: usize = 1024;

/// How requests to one model are batched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchingPolicy {
    /// The most rows (dim 0, summed over the requests) one run takes.
    pub max_batch_size: usize,
    /// The longest a request waits for company; the first request of a
    /// batch starts the clock.
    pub max_queue_delay: Duration,
    /// Sizes at which a batch is sent at once, without waiting out the
    /// delay; ascending, each at most `max_batch_size`.
    pub preferred_batch_sizes: Vec<usize>,
    /// The most batches of one loaded version handed to the inference
    /// threads at once (Triton's instance count); `None`: as many as there
    /// are threads. A batch that is ready while this many are in flight
    /// waits, still taking requests up to `max_batch_size`.
    pub max_concurrent_batches: Option<usize>,
}

impl BatchingPolicy {
    /// Checks the values as read from `[model.<model>.batching]`; the error
    /// names the setting and the fix.
    pub fn new(
        model: &str,
        max_batch_size: usize,
        max_queue_delay_us: u64,
        mut preferred_batch_sizes: Vec<usize>,
    ) -> Result<BatchingPolicy, String> {
        let section = format!("[model.{model}.batching]");
        if !(2..=MAX_BATCH_SIZE_LIMIT).contains(&max_batch_size) {
            return Err(format!(
                "{section}: max_batch_size {max_batch_size} is not between 2 and {MAX_BATCH_SIZE_LIMIT}; a batch of 1 is no batching (remove the section instead)"
            ));
        }
        let max_queue_delay = Duration::from_micros(max_queue_delay_us);
        if max_queue_delay > MAX_QUEUE_DELAY_LIMIT {
            return Err(format!(
                "{section}: max_queue_delay_us {max_queue_delay_us} is over 1 s ({} µs); the delay is in microseconds (200 is a common choice)",
                MAX_QUEUE_DELAY_LIMIT.as_micros()
            ));
        }
        for &size in &preferred_batch_sizes {
            if size == 0 || size > max_batch_size {
                return Err(format!(
                    "{section}: preferred batch size {size} is not between 1 and max_batch_size {max_batch_size}"
                ));
            }
        }
        preferred_batch_sizes.sort_unstable();
        if let Some(twice) = preferred_batch_sizes.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!(
                "{section}: preferred batch size {} is listed twice",
                twice[0]
            ));
        }
        Ok(BatchingPolicy {
            max_batch_size,
            max_queue_delay,
            preferred_batch_sizes,
            max_concurrent_batches: None,
        })
    }

    /// The policy with at most `limit` batches in flight at once (`None`
    /// lifts the cap); the error names the setting and the fix.
    pub fn with_max_concurrent_batches(
        mut self,
        model: &str,
        limit: Option<usize>,
    ) -> Result<BatchingPolicy, String> {
        if let Some(n) = limit.filter(|n| !(1..=MAX_CONCURRENT_BATCHES_LIMIT).contains(n)) {
            return Err(format!(
                "[model.{model}.batching]: max_concurrent_batches {n} is not between 1 and {MAX_CONCURRENT_BATCHES_LIMIT}; leave it out to let every inference thread run a batch"
            ));
        }
        self.max_concurrent_batches = limit;
        Ok(self)
    }

    /// Whether a batch of `rows` rows is sent now rather than at its delay:
    /// it reached a preferred size, at least the largest one, or the maximum.
    pub fn is_ready(&self, rows: usize) -> bool {
        rows >= self.max_batch_size
            || self.preferred_batch_sizes.contains(&rows)
            || self
                .preferred_batch_sizes
                .last()
                .is_some_and(|&p| rows >= p)
    }

    /// Whether `label`'s signature can be batched: every input and output
    /// has a dynamic first dimension. The error says which does not, and
    /// the fix.
    pub fn check(&self, model: &str, label: &str, signature: &Signature) -> Result<(), String> {
        let fixed = signature
            .inputs
            .iter()
            .map(|s| ("input", s))
            .chain(signature.outputs.iter().map(|s| ("output", s)))
            .find(|(_, spec)| spec.shape.first().is_none_or(|&d| d >= 0));
        match fixed {
            None => Ok(()),
            Some((kind, spec)) => Err(format!(
                "{label} cannot be batched: {kind} \"{}\" has shape {}, and [model.{model}.batching] needs a dynamic first (batch) dimension on every input and output; export the model with a dynamic batch dimension, or remove the section",
                spec.name,
                fmt_shape(&spec.shape)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::TensorSpec;
    use crate::tensor::DataType;

    #[test]
    fn values_are_checked_with_the_fix() {
        let p = BatchingPolicy::new("m", 64, 200, vec![32, 8, 16]).unwrap();
        assert_eq!(p.preferred_batch_sizes, vec![8, 16, 32]);
        assert_eq!(p.max_queue_delay, Duration::from_micros(200));
        let cases = [
            (
                BatchingPolicy::new("m", 1, 200, vec![]),
                "[model.m.batching]: max_batch_size 1 is not between 2 and 4096",
            ),
            (
                BatchingPolicy::new("m", 8, 2_000_000, vec![]),
                "max_queue_delay_us 2000000 is over 1 s",
            ),
            (
                BatchingPolicy::new("m", 8, 0, vec![16]),
                "preferred batch size 16 is not between 1 and max_batch_size 8",
            ),
            (
                BatchingPolicy::new("m", 8, 0, vec![0]),
                "preferred batch size 0",
            ),
            (
                BatchingPolicy::new("m", 8, 0, vec![4, 4]),
                "preferred batch size 4 is listed twice",
            ),
        ];
        for (got, want) in cases {
            let err = got.unwrap_err();
            assert!(err.contains(want), "{err:?} does not contain {want:?}");
        }
        let capped = p.clone().with_max_concurrent_batches("m", Some(2)).unwrap();
        assert_eq!(capped.max_concurrent_batches, Some(2));
        for n in [0, 1025] {
            let err = p
                .clone()
                .with_max_concurrent_batches("m", Some(n))
                .unwrap_err();
            assert!(
                err.contains(&format!(
                    "[model.m.batching]: max_concurrent_batches {n} is not between 1 and 1024"
                )),
                "{err}"
            );
        }
    }

    #[test]
    fn ready_at_a_preferred_size_past_the_largest_or_at_the_maximum() {
        let p = BatchingPolicy::new("m", 64, 200, vec![8, 16]).unwrap();
        let ready: Vec<usize> = (1..=64).filter(|&r| p.is_ready(r)).collect();
        assert_eq!(ready[..2], [8, 16]);
        assert!(!p.is_ready(9) && p.is_ready(17) && p.is_ready(64));
        let plain = BatchingPolicy::new("m", 4, 200, vec![]).unwrap();
        assert_eq!(
            (1..=4).filter(|&r| plain.is_ready(r)).collect::<Vec<_>>(),
            [4]
        );
    }

    #[test]
    fn only_models_with_a_dynamic_batch_dimension_batch() {
        let spec = |name: &str, shape: Vec<i64>| TensorSpec {
            name: name.into(),
            datatype: DataType::Fp32,
            shape,
        };
        let p = BatchingPolicy::new("m", 8, 0, vec![]).unwrap();
        let mut sig = Signature {
            inputs: vec![spec("x", vec![-1, 3])],
            outputs: vec![spec("y", vec![-1])],
        };
        p.check("m", "m v1", &sig).unwrap();
        sig.outputs[0].shape = vec![2, 3];
        assert_eq!(
            p.check("m", "m v1", &sig).unwrap_err(),
            "m v1 cannot be batched: output \"y\" has shape [2,3], and [model.m.batching] needs a dynamic first (batch) dimension on every input and output; export the model with a dynamic batch dimension, or remove the section"
        );
        sig.outputs[0].shape = vec![];
        assert!(p
            .check("m", "m v1", &sig)
            .unwrap_err()
            .contains("has shape []"));
    }
}
