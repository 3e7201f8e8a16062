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

/// Work for one inference thread; receives the worker's index.
pub type Task = Box<dyn FnOnce(usize) + Send>;

/// Where work for the inference threads goes: the pool, or in tests a
/// stand-in. Never waits: a full queue is an immediate error.
pub trait Executor: Send + Sync + 'static {
    /// Queues `task`; [`Error::Overloaded`] when the queue is full.
    fn submit(&self, task: Task) -> Result<(), Error>;
}

impl Executor for InferencePool {
    fn submit(&self, task: Task) -> Result<(), Error> {
        InferencePool::submit(self, task)
    }
}

/// A pool of inference threads; worker `i` uses session `i` of each model.
pub struct InferencePool {
    tx: Sender<Task>,
    workers: usize,
    queue_depth: usize,
}

impl InferencePool {
    /// Starts `workers` threads sharing a queue of `queue_depth` waiting tasks.
    /// The threads stop when the pool is dropped and the queue drains.
    pub fn start(workers: usize, queue_depth: usize) -> std::io::Result<InferencePool> {
        InferencePool::start_named("infer", 0, workers, queue_depth)
    }

    /// A pool whose workers use session indexes `first_session..`, so two
    /// pools (requests and shadow copies) never share a session.
    pub fn start_named(
        role: &str,
        first_session: usize,
        workers: usize,
        queue_depth: usize,
    ) -> std::io::Result<InferencePool> {
        let workers = workers.max(1);
        let queue_depth = queue_depth.max(1);
        let (tx, rx) = bounded::<Task>(queue_depth);
        for worker in first_session..first_session + workers {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("podium-{role}-{worker}"))
                .spawn(move || {
                    for task in rx.iter() {
                        // A panicking task must not take the worker down with it.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| task(worker)));
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

    /// Tasks waiting for a thread now.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// Queues `task` without waiting; [`Error::Overloaded`] when the queue is full.
    fn submit(&self, task: Task) -> Result<(), Error> {
        match self.tx.try_send(task) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Error::Overloaded(format!(
                "inference queue is full ({} requests waiting for {} workers); retry shortly, or raise --queue-depth / --inference-threads",
                self.queue_depth, self.workers
            ))),
            Err(TrySendError::Disconnected(_)) => {
                Err(Error::Unavailable("inference workers have stopped".into()))
            }
        }
    }

    /// Runs `model` on a worker thread and waits for the answer without
    /// blocking the async runtime. Fails at once when the queue is full; a
    /// request still queued when `deadline` passes is dropped before it runs.
    pub async fn run(
        &self,
        model: Arc<LoadedModel>,
        inputs: Vec<Tensor>,
        outputs: Vec<usize>,
        deadline: Option<Instant>,
    ) -> Result<(Vec<Tensor>, Timing), Error> {
        let (reply, answer) = oneshot::channel();
        let enqueued = Instant::now();
        self.submit(Box::new(move |worker| {
            if reply.is_closed() {
                return; // The client went away, or its deadline passed, while it waited.
            }
            let queue = enqueued.elapsed();
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let _ = reply.send(Err(past_deadline(queue)));
                return;
            }
            let started = Instant::now();
            let result =
                std::panic::catch_unwind(AssertUnwindSafe(|| model.run(worker, inputs, &outputs)))
                    .unwrap_or_else(|_| {
                        Err(Error::Internal(format!(
                            "inference of {} panicked; the server stays up, see its log",
                            model.label()
                        )))
                    });
            let timing = Timing {
                queue,
                inference: started.elapsed(),
                batch_size: None,
            };
            let _ = reply.send(result.map(|out| (out, timing)));
        }))?;
        let answer = match deadline {
            None => answer.await,
            Some(d) => match tokio::time::timeout_at(d.into(), answer).await {
                Ok(answer) => answer,
                Err(_) => return Err(past_deadline(enqueued.elapsed())),
            },
        };
        answer.map_err(|_| Error::Internal("an inference worker dropped the request".into()))?
    }
}

pub(crate) fn past_deadline(waited: std::time::Duration) -> Error {
    Error::DeadlineExceeded(format!(
        "the request's deadline passed after {:.1} ms in the inference queue and model; raise its timeout (x-podium-timeout-ms, grpc-timeout, the OIP timeout parameter or the endpoint's timeout_ms), or add inference threads",
        waited.as_secs_f64() * 1000.0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_full_queue_refuses_at_once_and_recovers() {
        let pool = InferencePool::start(1, 1).unwrap();
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        pool.submit(Box::new(move |_| {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv();
        }))
        .unwrap();
        started.recv().unwrap(); // the only worker is now busy
        let (done_tx, done) = mpsc::channel();
        let tx = done_tx.clone();
        pool.submit(Box::new(move |w| tx.send(w).unwrap())).unwrap(); // fills the queue
        let err = pool.submit(Box::new(|_| {})).unwrap_err();
        assert!(
            matches!(err, Error::Overloaded(ref m) if m.contains("queue is full (1 requests waiting for 1 workers)")),
            "{err}"
        );
        release.send(()).unwrap();
        assert_eq!(done.recv().unwrap(), 0);
        pool.submit(Box::new(move |w| done_tx.send(w).unwrap()))
            .unwrap();
        assert_eq!(done.recv().unwrap(), 0);
    }

    #[test]
    fn a_panicking_task_does_not_kill_its_worker() {
        let pool = InferencePool::start(1, 4).unwrap();
        pool.submit(Box::new(|_| panic!("boom"))).unwrap();
        let (tx, rx) = mpsc::channel();
        pool.submit(Box::new(move |w| tx.send(w).unwrap())).unwrap();
        assert_eq!(rx.recv().unwrap(), 0);
    }
}
