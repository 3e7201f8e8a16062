//! The `[model.<name>]` tables: settings of a model, whichever endpoints
//! route to it. Today one: its dynamic batching.
//!
//! ```toml
//! [model.mlp_large.batching]
//! max_batch_size = 64                   # the most rows one run takes (2..=4096)
//! max_queue_delay_us = 200              # the longest a request waits for company [default: 0]
//! preferred_batch_sizes = [8, 16, 32, 64]  # sent at once at these sizes [default: none]
//! ```

use serde::Deserialize;

use crate::runtime::batch::BatchingPolicy;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModelToml {
    #[serde(default)]
    batching: Option<BatchingToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchingToml {
    max_batch_size: usize,
    #[serde(default)]
    max_queue_delay_us: u64,
    #[serde(default)]
    preferred_batch_sizes: Vec<usize>,
}

impl ModelToml {
    /// The model's batching policy, if it has one, checked; errors name
    /// the setting and the fix.
    pub(super) fn batching(self, model: &str) -> Result<Option<BatchingPolicy>, String> {
        self.batching
            .map(|b| {
                BatchingPolicy::new(
                    model,
                    b.max_batch_size,
                    b.max_queue_delay_us,
                    b.preferred_batch_sizes,
                )
            })
            .transpose()
    }
}
