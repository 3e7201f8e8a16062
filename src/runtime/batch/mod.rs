//! Dynamic batching: requests queued for the same loaded version are
//! concatenated along dim 0, run once, and each caller gets exactly its rows.
//!
//! A batch is *open* from its first request. It is handed to the inference
//! threads when it reaches a preferred size (or the maximum), or when its
//! first request has waited `max_queue_delay` — whichever comes first, so
//! no request waits longer than the delay for company. Until a thread takes
//! it, a handed-over batch keeps accepting requests up to `max_batch_size`:
//! under load, batches grow while the threads are busy instead of queueing
//! one by one. Each loaded version has its own [`Batcher`], so versions
//! never mix; requests whose other dimensions differ go to separate batches.
//! With `max_concurrent_batches`, at most that many batches of a version
//! are with the inference threads at once; a batch that is ready meanwhile
//! is held, still taking requests, and goes when one of them finishes, so
//! batches grow with the load instead of spreading over every thread.
//!
//! The inference queue's bound holds: a batch is one task in it, and a full
//! queue fails the batch's requests at once with [`Error::Overloaded`];
//! held batches are bounded by the same depth.
//! When ONNX Runtime fails a batched run, each of its requests runs again
//! on its own, so only a request that fails alone fails.

#[cfg(test)]
mod cap_tests;
mod places;
mod policy;
mod rows;
#[cfg(test)]
mod tests;
mod timer;

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::oneshot;

pub use policy::{BatchingPolicy, MAX_BATCH_SIZE_LIMIT, MAX_QUEUE_DELAY_LIMIT};

use super::pool::{past_deadline, Executor};
use crate::error::Error;
use crate::request::Timing;
use crate::tensor::Tensor;
use places::InFlight;

/// What a batch runs on: a loaded version (or, in tests, a stand-in).
pub trait BatchModel: Send + Sync + 'static {
    /// Runs `inputs` (checked, in signature order) on worker `worker`;
    /// `outputs` are indexes into the signature's outputs.
    fn run(
        &self,
        worker: usize,
        inputs: Vec<Tensor>,
        outputs: &[usize],
    ) -> Result<Vec<Tensor>, Error>;
    /// The model's name: the `model` label of `podium_batch_size`.
    fn name(&self) -> &str;
    /// `fraud v3`: how the model is named in messages.
    fn label(&self) -> String;
}

type Answer = Result<(Vec<Tensor>, Timing), Error>;

/// One request waiting in a batch.
struct Job {
    inputs: Vec<Tensor>,
    outputs: Vec<usize>,
    rows: usize,
    enqueued: Instant,
    deadline: Option<Instant>,
    reply: oneshot::Sender<Answer>,
}

/// The non-batch dimensions of every input: requests concatenate only
/// with requests of the same key.
type Key = Vec<Vec<i64>>;

/// Requests that will run together.
struct Batch {
    id: u64,
    jobs: Vec<Job>,
    rows: usize,
    /// Handed to the inference threads; waiting for one to take it.
    handed_over: bool,
}

#[derive(Default)]
struct Queue {
    /// Per key, the batches not yet taken by a thread, oldest first; only
    /// the newest one accepts requests.
    batches: HashMap<Key, VecDeque<Batch>>,
    next_id: u64,
    /// Batches with the inference threads (queued or running), counted
    /// only under `max_concurrent_batches`.
    in_flight: usize,
    /// Batches ready to go while `max_concurrent_batches` are in flight,
    /// oldest first; each is still in `batches`, taking requests.
    held: VecDeque<(Key, u64)>,
    /// A thread is handing held batches over ([`Runner::pump`]).
    pumping: bool,
}

/// The dynamic batcher of one loaded version; dropped with it.
pub struct Batcher {
    policy: BatchingPolicy,
    queue: Arc<Mutex<Queue>>,
    timer: Arc<dyn timer::Timer>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("policy", &self.policy)
            .finish()
    }
}

/// What hands a batch to an inference thread, and which model it runs on.
#[derive(Clone)]
struct Runner {
    model: Arc<dyn BatchModel>,
    executor: Arc<dyn Executor>,
    queue: Arc<Mutex<Queue>>,
    /// `max_concurrent_batches`, if the policy caps them.
    limit: Option<usize>,
}

impl Batcher {
    pub fn new(policy: BatchingPolicy) -> Batcher {
        Batcher {
            policy,
            queue: Arc::default(),
            timer: timer::ClockThread::shared(),
        }
    }

    /// A batcher whose delays run on tokio's clock, which tests pause.
    #[cfg(test)]
    fn on_tokio_clock(policy: BatchingPolicy) -> Batcher {
        Batcher {
            policy,
            queue: Arc::default(),
            timer: Arc::new(timer::TokioClock),
        }
    }

    pub fn policy(&self) -> &BatchingPolicy {
        &self.policy
    }

    /// Runs one request (inputs checked against the signature) in a batch
    /// with other requests to `model` and waits for its rows of the
    /// answer. A request that cannot share a run (inputs that disagree on
    /// dim 0, no rows, more rows than `max_batch_size`) runs alone. Fails
    /// at once when the inference queue is full; a request still waiting
    /// when `deadline` passes is answered with [`Error::DeadlineExceeded`].
    pub async fn run(
        &self,
        model: Arc<dyn BatchModel>,
        executor: Arc<dyn Executor>,
        inputs: Vec<Tensor>,
        outputs: Vec<usize>,
        deadline: Option<Instant>,
    ) -> Answer {
        let (reply, answer) = oneshot::channel();
        let enqueued = Instant::now();
        let runner = Runner {
            model,
            executor,
            queue: Arc::clone(&self.queue),
            limit: self.policy.max_concurrent_batches,
        };
        let rows =
            rows::rows_of(&inputs).filter(|&r| (1..=self.policy.max_batch_size).contains(&r));
        let job = Job {
            rows: rows.unwrap_or(0),
            inputs,
            outputs,
            enqueued,
            deadline,
            reply,
        };
        match rows {
            Some(_) => self.join(runner, job)?,
            None => runner.run_alone(job)?,
        }
        let answer = match deadline {
            None => answer.await,
            Some(d) => match tokio::time::timeout_at(d.into(), answer).await {
                Ok(answer) => answer,
                Err(_) => return Err(past_deadline(enqueued.elapsed())),
            },
        };
        answer.map_err(|_| Error::Internal("an inference worker dropped the request".into()))?
    }

    /// Adds `job` to the open batch of its key (opening one, and starting
    /// its clock, if there is none) and hands over what is ready.
    fn join(&self, runner: Runner, job: Job) -> Result<(), Error> {
        let key = rows::batch_key(&job.inputs);
        let mut hand_over = Vec::new();
        let mut guard = lock(&self.queue);
        let queue = &mut *guard;
        let batches = queue.batches.entry(key.clone()).or_default();
        let fits = batches
            .back()
            .is_some_and(|b| b.rows + job.rows <= self.policy.max_batch_size);
        if !fits {
            // The newest batch cannot take these rows: it is as full as it gets.
            if let Some(b) = batches.back_mut().filter(|b| !b.handed_over) {
                b.handed_over = true;
                hand_over.push(b.id);
            }
            batches.push_back(Batch {
                id: queue.next_id,
                jobs: Vec::new(),
                rows: 0,
                handed_over: false,
            });
            queue.next_id += 1;
        }
        let batch = batches.back_mut().expect("pushed above");
        let opened = batch.jobs.is_empty();
        batch.rows += job.rows;
        batch.jobs.push(job);
        let id = batch.id;
        let ready = self.policy.is_ready(batch.rows) || self.policy.max_queue_delay.is_zero();
        if !batch.handed_over && ready {
            batch.handed_over = true;
            hand_over.push(id);
        } else if opened {
            let runner = runner.clone();
            let key = key.clone();
            self.timer.after(
                self.policy.max_queue_delay,
                Box::new(move || {
                    let waiting = lock(&runner.queue)
                        .batches
                        .get_mut(&key)
                        .and_then(|bs| bs.iter_mut().find(|b| b.id == id && !b.handed_over))
                        .map(|batch| batch.handed_over = true)
                        .is_some();
                    if waiting {
                        runner.ready(&key, id);
                    }
                }),
            );
        }
        drop(guard); // Handing over takes the lock again.
        for id in hand_over {
            runner.ready(&key, id);
        }
        Ok(())
    }
}

impl Runner {
    /// Answers every request of batch `id` of `key` with `e`.
    fn fail(&self, key: &Key, id: u64, e: &Error) {
        for job in self.take(key, id).map(|b| b.jobs).unwrap_or_default() {
            let _ = job.reply.send(Err(clone_error(e)));
        }
    }

    /// Queues a task that runs batch `id` of `key` (with whatever joined it
    /// until then); `place` is its place under `max_concurrent_batches`,
    /// given up when the task ends or is dropped unrun. A full inference
    /// queue fails the batch's requests at once.
    fn hand_over(&self, key: &Key, id: u64, place: Option<InFlight>) {
        let runner = self.clone();
        let task_key = key.clone();
        let submitted = self.executor.submit(Box::new(move |worker| {
            let _place = place;
            if let Some(batch) = runner.take(&task_key, id) {
                runner.run_batch(worker, batch);
            }
        }));
        if let Err(e) = submitted {
            self.fail(key, id, &e);
        }
    }

    /// Removes batch `id` of `key` from the queue: no request joins it after.
    fn take(&self, key: &Key, id: u64) -> Option<Batch> {
        let mut queue = lock(&self.queue);
        let batches = queue.batches.get_mut(key)?;
        let at = batches.iter().position(|b| b.id == id)?;
        let batch = batches.remove(at);
        if batches.is_empty() {
            queue.batches.remove(key);
        }
        batch
    }

    /// Queues one request on its own.
    fn run_alone(&self, job: Job) -> Result<(), Error> {
        let runner = self.clone();
        self.executor.submit(Box::new(move |worker| {
            if let Some(job) = live(job) {
                let rows = job
                    .inputs
                    .first()
                    .and_then(|t| t.shape.first())
                    .map_or(0, |&d| d.max(0) as usize);
                runner.run_one(worker, job, rows);
            }
        }))
    }

    /// Runs a batch that a thread took: all its requests in one run, each
    /// answered with its rows.
    fn run_batch(&self, worker: usize, batch: Batch) {
        let jobs: Vec<Job> = batch.jobs.into_iter().filter_map(live).collect();
        match jobs.len() {
            0 => return,
            1 => {
                let job = jobs.into_iter().next().expect("one job");
                let rows = job.rows;
                return self.run_one(worker, job, rows);
            }
            _ => {}
        }
        let rows: usize = jobs.iter().map(|j| j.rows).sum();
        let mut wanted: Vec<usize> = jobs
            .iter()
            .flat_map(|j| j.outputs.iter().copied())
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let started = Instant::now();
        let inputs = rows::concat(jobs.iter().map(|j| j.inputs.as_slice()), rows);
        let result = self.guarded(worker, inputs, &wanted);
        let inference = started.elapsed();
        let outputs = match result {
            Ok(outputs)
                if outputs
                    .iter()
                    .all(|t| t.shape.first() == Some(&(rows as i64))) =>
            {
                outputs
            }
            failed => {
                // One bad request must not fail the others: each runs alone.
                if let Err(e) = failed {
                    tracing::debug!("a batch of {rows} rows of {} failed ({e}); running its requests one by one", self.model.label());
                }
                for job in jobs {
                    let rows = job.rows;
                    self.run_one(worker, job, rows);
                }
                return;
            }
        };
        record_batch(self.model.name(), rows);
        let mut start = 0;
        for job in jobs {
            let mine = job
                .outputs
                .iter()
                .map(|i| {
                    let at = wanted
                        .binary_search(i)
                        .expect("wanted holds every job's outputs");
                    rows::slice(&outputs[at], start, job.rows)
                })
                .collect();
            start += job.rows;
            let timing = Timing {
                queue: started.saturating_duration_since(job.enqueued),
                inference,
                batch_size: Some(rows),
            };
            let _ = job.reply.send(Ok((mine, timing)));
        }
    }

    /// Runs one request by itself; a run of `rows` rows.
    fn run_one(&self, worker: usize, job: Job, rows: usize) {
        let started = Instant::now();
        let result = self.guarded(worker, job.inputs, &job.outputs);
        record_batch(self.model.name(), rows);
        let timing = Timing {
            queue: started.saturating_duration_since(job.enqueued),
            inference: started.elapsed(),
            batch_size: Some(rows),
        };
        let _ = job.reply.send(result.map(|out| (out, timing)));
    }

    /// The model's run, with a panic turned into an error.
    fn guarded(
        &self,
        worker: usize,
        inputs: Vec<Tensor>,
        outputs: &[usize],
    ) -> Result<Vec<Tensor>, Error> {
        std::panic::catch_unwind(AssertUnwindSafe(|| self.model.run(worker, inputs, outputs)))
            .unwrap_or_else(|_| {
                Err(Error::Internal(format!(
                    "inference of {} panicked; the server stays up, see its log",
                    self.model.label()
                )))
            })
    }
}

/// The job, unless its caller went away or its deadline passed (then it
/// is answered here).
fn live(job: Job) -> Option<Job> {
    if job.reply.is_closed() {
        return None;
    }
    if job.deadline.is_some_and(|d| Instant::now() >= d) {
        let _ = job.reply.send(Err(past_deadline(job.enqueued.elapsed())));
        return None;
    }
    Some(job)
}

fn record_batch(model: &str, rows: usize) {
    metrics::histogram!("podium_batch_size", "model" => model.to_string()).record(rows as f64);
}

/// The errors a hand-over can fail with, for each request of the batch.
fn clone_error(e: &Error) -> Error {
    match e {
        Error::Overloaded(m) => Error::Overloaded(m.clone()),
        Error::Unavailable(m) => Error::Unavailable(m.clone()),
        other => Error::Internal(other.to_string()),
    }
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    // Every critical section leaves the queue consistent.
    queue.lock().unwrap_or_else(|p| p.into_inner())
}
