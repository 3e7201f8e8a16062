//! The inference threads: a fixed set of OS threads behind a bounded queue.
//!
//! Inference never runs on a tokio worker. A request is handed to the queue
//! without waiting; a full queue is an immediate [`Error::Overloaded`], so
//! overload shows up as fast, explicit rejections instead of a growing wait.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, Sender, TrySendError};
use tokio::sync::oneshot;

use super::LoadedModel;
use crate::error::Error;
use crate::request::Timing;
use crate::tensor::Tensor;

struct Job {
    model: Arc<LoadedModel>,
    inputs: Vec<Tensor>,
    outputs: Vec<usize>,
    enqueued: Instant,
    reply: oneshot::Sender<Result<(Vec<Tensor>, Timing), Error>>,
}

/// A pool of inference threads; worker `i` uses session `i` of each model.
pub struct InferencePool {
    tx: Sender<Job>,
    workers: usize,
    queue_depth: usize,
}

impl InferencePool {
    /// Starts `workers` threads sharing a queue of `queue_depth` waiting jobs.
    /// The threads stop when the pool is dropped and the queue drains.
    pub fn start(workers: usize, queue_depth: usize) -> std::io::Result<InferencePool> {
        let workers = workers.max(1);
        let queue_depth = queue_depth.max(1);
        let (tx, rx) = bounded::<Job>(queue_depth);
        for worker in 0..workers {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("podium-infer-{worker}"))
                .spawn(move || {
                    for job in rx.iter() {
                        if job.reply.is_closed() {
                            continue; // The client went away while it waited.
                        }
                        let queue = job.enqueued.elapsed();
                        let started = Instant::now();
                        let Job {
                            model,
                            inputs,
                            outputs,
                            reply,
                            ..
                        } = job;
                        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            model.run(worker, inputs, &outputs)
                        }))
                        .unwrap_or_else(|_| {
                            Err(Error::Internal(format!(
                                "inference of {} panicked; the server stays up, see its log",
                                model.label()
                            )))
                        });
                        let timing = Timing {
                            queue,
                            inference: started.elapsed(),
                        };
                        let _ = reply.send(result.map(|out| (out, timing)));
                    }
                })?;
        }
        Ok(InferencePool {
            tx,
            workers,
            queue_depth,
        })
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Runs `model` on a worker thread and waits for the answer without
    /// blocking the async runtime. Fails at once when the queue is full.
    pub async fn run(
        &self,
        model: Arc<LoadedModel>,
        inputs: Vec<Tensor>,
        outputs: Vec<usize>,
    ) -> Result<(Vec<Tensor>, Timing), Error> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            model,
            inputs,
            outputs,
            enqueued: Instant::now(),
            reply,
        };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(Error::Overloaded(format!(
                    "inference queue is full ({} requests waiting for {} workers); retry shortly, or raise --queue-depth / --inference-threads",
                    self.queue_depth, self.workers
                )))
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(Error::Unavailable("inference workers have stopped".into()))
            }
        }
        answer
            .await
            .map_err(|_| Error::Internal("an inference worker dropped the request".into()))?
    }
}
