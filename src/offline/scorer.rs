//! Runs one loaded model over a stream of record batches on Podium's
//! inference threads, handing the results back in input order.
//!
//! At most two batches per thread are in flight (read, mapped, queued or
//! running), so memory follows `--batch-size × --threads`, never the file.

use std::sync::Arc;

use anyhow::Context;
use arrow_array::RecordBatch;
use futures_util::stream::{FuturesOrdered, StreamExt};

use super::features::FeatureMapping;
use crate::request::InferRequest;
use crate::runtime::pool::InferencePool;
use crate::runtime::LoadedModel;
use crate::tensor::Tensor;

/// One model version and the inference threads that run it.
pub struct Scorer {
    model: Arc<LoadedModel>,
    pool: InferencePool,
    window: usize,
    runtime: tokio::runtime::Runtime,
}

impl Scorer {
    /// A scorer of `model` on `threads` inference threads; `model` must have
    /// been loaded with at least that many sessions.
    pub fn new(model: Arc<LoadedModel>, threads: usize) -> anyhow::Result<Scorer> {
        let threads = threads.max(1);
        let window = threads * 2;
        let pool = InferencePool::start_named("offline", 0, threads, window)
            .context("starting inference threads")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Scorer {
            model,
            pool,
            window,
            runtime,
        })
    }

    pub fn model(&self) -> &Arc<LoadedModel> {
        &self.model
    }

    /// Scores every batch and calls `sink` with each batch and the model's
    /// outputs for it (all outputs, in signature order), in input order.
    /// Stops at the first error: of reading, of mapping, of the model or of
    /// `sink`.
    pub fn score(
        &self,
        batches: impl Iterator<Item = anyhow::Result<RecordBatch>>,
        mapping: &FeatureMapping,
        mut sink: impl FnMut(RecordBatch, Vec<Tensor>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let label = self.model.label();
        let mut batches = batches;
        self.runtime.block_on(async {
            let mut in_flight = FuturesOrdered::new();
            let mut next_row: u64 = 0;
            let mut exhausted = false;
            loop {
                while !exhausted && in_flight.len() < self.window {
                    let Some(batch) = batches.next() else {
                        exhausted = true;
                        break;
                    };
                    let batch = batch?;
                    let first = next_row;
                    next_row += batch.num_rows() as u64;
                    let mut request = InferRequest {
                        inputs: mapping.tensors(&batch, first)?,
                        ..Default::default()
                    };
                    let outputs = self
                        .model
                        .signature
                        .check(&label, &mut request)
                        .with_context(|| format!("rows {first}..{next_row}"))?;
                    let run = self
                        .pool
                        .run(Arc::clone(&self.model), request.inputs, outputs, None);
                    let label = &label;
                    in_flight.push_back(async move {
                        let (outputs, _) = run.await.with_context(|| {
                            format!("{label} failed on rows {first}..{}", next_row)
                        })?;
                        anyhow::Ok((batch, outputs))
                    });
                }
                match in_flight.next().await {
                    Some(done) => {
                        let (batch, outputs) = done?;
                        sink(batch, outputs)?;
                    }
                    None => return Ok(()),
                }
            }
        })
    }
}
