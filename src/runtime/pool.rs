//! The inference threads: a fixed set of OS threads behind a bounded queue.
//!
//! A request is handed to the queue without waiting; a full queue is an
//! immediate [`Error::Overloaded`], so overload shows up as fast, explicit
//! rejections instead of a growing wait.
//!
//! Run to completion: a pool started [`InferencePool::with_caller_runs`] runs
//! a request on the calling (tokio) thread instead when it is the only
//! request in the pool (none queued, running or on its way back), that
//! thread has gone idle since it last did so ([`super::idle`]), the model
//! typically answers such a request within the limit (a few microseconds for
//! tabular models), and one of the pool's sessions is free. That saves two
//! thread wake-ups, which cost more than such a model at low concurrency;
//! on a saturated server it costs throughput, so it is off unless asked for
//! (BENCHMARKS.md, "Run to completion on the caller"). No request jumps the
//! queue, no more runs happen at once than the pool has sessions, and a
//! tokio worker is never held longer than about the limit.

use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender, TrySendError};
use crossbeam_utils::CachePadded;
use tokio::sync::oneshot;

use super::{idle, LoadedModel};
use crate::error::Error;
use crate::request::Timing;
use crate::tensor::Tensor;

/// What a run answers: the outputs and where the time went.
type Answer = Result<(Vec<Tensor>, Timing), Error>;

/// Work for one inference thread; receives the worker's index.
pub type Task = Box<dyn FnOnce(usize) + Send>;

/// Where work for the inference threads goes: the pool, or in tests a
/// stand-in. Never waits: a full queue is an immediate error.
pub trait Executor: Send + Sync + 'static {
    /// Queues `task`; [`Error::Overloaded`] when the queue is full.
    fn submit(&self, task: Task) -> Result<(), Error>;
    /// The most tasks the queue holds (`--queue-depth`).
    fn queue_depth(&self) -> usize;
}

impl Executor for InferencePool {
    fn submit(&self, task: Task) -> Result<(), Error> {
        InferencePool::submit(self, task)
    }
    fn queue_depth(&self) -> usize {
        self.queue_depth
    }
}

/// A pool of inference threads; worker `i` uses session `i` of each model.
pub struct InferencePool {
    tx: Sender<Task>,
    workers: usize,
    queue_depth: usize,
    /// The session indexes this pool's workers use.
    sessions: Range<usize>,
    /// Run on the caller when a run typically takes at most this long.
    caller_runs: Option<Duration>,
    /// Requests inside [`InferencePool::run`] now, wherever they are: the
    /// load signal for running on the caller (only a request alone in the
    /// pool may).
    active: AtomicUsize,
    /// Runs done on a caller's thread.
    ran_on_caller: AtomicU64,
    /// Tasks each of the pool's threads has started (a batch counts once):
    /// a counter per thread, so counting moves no cache line between cores.
    ran_on_pool: Arc<[CachePadded<AtomicU64>]>,
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
        let ran_on_pool: Arc<[CachePadded<AtomicU64>]> = (0..workers)
            .map(|_| CachePadded::new(AtomicU64::new(0)))
            .collect();
        for worker in first_session..first_session + workers {
            let rx = rx.clone();
            let ran = Arc::clone(&ran_on_pool);
            std::thread::Builder::new()
                .name(format!("podium-{role}-{worker}"))
                .spawn(move || {
                    for task in rx.iter() {
                        ran[worker - first_session].fetch_add(1, Ordering::Relaxed);
                        // A panicking task must not take the worker down with it.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| task(worker)));
                    }
                })?;
        }
        Ok(InferencePool {
            tx,
            workers,
            queue_depth,
            sessions: first_session..first_session + workers,
            caller_runs: None,
            active: AtomicUsize::new(0),
            ran_on_caller: AtomicU64::new(0),
            ran_on_pool,
        })
    }

    /// Runs a request on the calling thread when it is alone in the pool,
    /// one of this pool's sessions is free and the model typically answers
    /// it within `limit` (see the module's doc), and, when the runtime
    /// reports parks ([`super::idle::worker_idle`]), the thread has run out
    /// of work since its last such run. `Duration::ZERO` turns it off.
    pub fn with_caller_runs(mut self, limit: Duration) -> InferencePool {
        self.caller_runs = (!limit.is_zero()).then_some(limit);
        self
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Runs so far: on a caller's thread, and on the pool's own threads
    /// (counted as they start; a batch counts once).
    pub fn runs(&self) -> (u64, u64) {
        let on_pool = self
            .ran_on_pool
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum();
        (self.ran_on_caller.load(Ordering::Relaxed), on_pool)
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
        // Counted only when it can matter: the count is one more atomic
        // shared by every core.
        let _active = self.caller_runs.map(|_| Active::enter(&self.active));
        let inputs = match self.run_here(&model, inputs, &outputs, deadline) {
            Ok(answer) => return answer,
            Err(inputs) => inputs,
        };
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

impl InferencePool {
    /// The run-to-completion path: runs `model` on this thread when the
    /// pool allows it (see the module's doc), else hands `inputs` back.
    fn run_here(
        &self,
        model: &LoadedModel,
        inputs: Vec<Tensor>,
        outputs: &[usize],
        deadline: Option<Instant>,
    ) -> Result<Answer, Vec<Tensor>> {
        let Some(limit) = self.caller_runs else {
            return Err(inputs);
        };
        if self.active.load(Ordering::Relaxed) > 1 || !self.tx.is_empty() {
            // Others are queued (batches too), running or on their way back:
            // this one waits its turn, and under load the hand-off keeps the
            // tokio workers free for the network.
            return Err(inputs);
        }
        if !idle::idle_since_caller_run() {
            // This worker has not run out of work since its last run here:
            // a busy server, where the hand-off keeps it on the network.
            return Err(inputs);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(Err(past_deadline(Duration::ZERO)));
        }
        let started = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            model.try_run_here(self.sessions.clone(), limit, inputs, outputs)
        }))
        .unwrap_or_else(|_| {
            Ok(Err(Error::Internal(format!(
                "inference of {} panicked; the server stays up, see its log",
                model.label()
            ))))
        })?;
        self.ran_on_caller.fetch_add(1, Ordering::Relaxed);
        idle::ran_on_caller();
        let timing = Timing {
            queue: Duration::ZERO,
            inference: started.elapsed(),
            batch_size: None,
        };
        Ok(result.map(|out| (out, timing)))
    }
}

/// Counts one request in [`InferencePool::run`] for as long as it lives.
struct Active<'a>(&'a AtomicUsize);

impl<'a> Active<'a> {
    fn enter(count: &'a AtomicUsize) -> Active<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        Active(count)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
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

    /// Keeps one worker of `pool` busy until the returned sender sends.
    fn occupy(pool: &InferencePool) -> mpsc::Sender<()> {
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        pool.submit(Box::new(move |_| {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv();
        }))
        .unwrap();
        started.recv().unwrap();
        release
    }

    #[test]
    fn a_full_queue_refuses_at_once_and_recovers() {
        let pool = InferencePool::start(1, 1).unwrap();
        let release = occupy(&pool); // the only worker is now busy
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

    /// Fraud v1 (3–5 µs a row) with `sessions` sessions, warmed up, so its
    /// run cost is known.
    fn fraud(sessions: usize) -> Arc<LoadedModel> {
        crate::runtime::ort::init(None).expect("run scripts/setup-ort.sh");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fraud/v1.onnx");
        let model = LoadedModel::load("fraud", 1, &path, sessions).unwrap();
        model.warm_up().unwrap();
        Arc::new(model)
    }

    fn row() -> Vec<Tensor> {
        let data = crate::tensor::TensorData::Fp32(vec![0.5; 30]);
        vec![Tensor::new("input".into(), vec![1, 30], data).unwrap()]
    }

    /// A limit no debug build of the tensor conversion comes near, so the
    /// tests below are about where a run happens, never about speed.
    const GENEROUS: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn an_idle_pool_runs_a_microsecond_model_on_the_caller() {
        let model = fraud(1);
        let pool = InferencePool::start(1, 4)
            .unwrap()
            .with_caller_runs(GENEROUS);
        let handed_off = InferencePool::start(1, 4).unwrap();
        for _ in 0..3 {
            let (here, timing) = pool
                .run(Arc::clone(&model), row(), vec![0, 1], None)
                .await
                .unwrap();
            assert_eq!(timing.queue, Duration::ZERO);
            let (there, _) = handed_off
                .run(Arc::clone(&model), row(), vec![0, 1], None)
                .await
                .unwrap();
            assert_eq!(here, there, "the same answer wherever it runs");
        }
        assert_eq!(pool.runs(), (3, 0));
        assert_eq!(handed_off.runs(), (0, 3), "off unless asked for");
    }

    #[tokio::test]
    async fn a_worker_that_has_not_run_out_of_work_hands_off() {
        let model = fraud(1);
        let pool = InferencePool::start(1, 4)
            .unwrap()
            .with_caller_runs(GENEROUS);
        // As `podium serve`'s runtime reports it: this worker ran out of work.
        idle::worker_idle();
        pool.run(Arc::clone(&model), row(), vec![0], None)
            .await
            .unwrap();
        assert_eq!(pool.runs(), (1, 0));
        // No park since: the next request, alone in the pool too, is handed off.
        pool.run(Arc::clone(&model), row(), vec![0], None)
            .await
            .unwrap();
        assert_eq!(pool.runs(), (1, 1));
        idle::worker_idle();
        pool.run(model, row(), vec![0], None).await.unwrap();
        assert_eq!(pool.runs(), (2, 1));
    }

    #[tokio::test]
    async fn a_request_never_overtakes_one_waiting_in_the_queue() {
        let model = fraud(1);
        let pool = Arc::new(
            InferencePool::start(1, 4)
                .unwrap()
                .with_caller_runs(GENEROUS),
        );
        let release = occupy(&pool); // the only worker is busy...
        pool.submit(Box::new(|_| {})).unwrap(); // ...and a task waits behind it
        let call = tokio::spawn({
            let (pool, model) = (Arc::clone(&pool), Arc::clone(&model));
            async move { pool.run(model, row(), vec![0], None).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!call.is_finished(), "ran although a task was waiting");
        release.send(()).unwrap();
        let (_, timing) = call.await.unwrap().unwrap();
        assert!(timing.queue > Duration::ZERO);
        assert_eq!(pool.runs(), (0, 3), "the two tasks before it, then it");
    }

    #[tokio::test]
    async fn a_request_not_alone_in_the_pool_is_handed_off() {
        let model = fraud(2);
        let pool = Arc::new(
            InferencePool::start(1, 4)
                .unwrap()
                .with_caller_runs(GENEROUS),
        );
        // Another request of the pool, busy on its inference thread.
        let _other = Active::enter(&pool.active);
        let release = occupy(&pool);
        let call = tokio::spawn({
            let (pool, model) = (Arc::clone(&pool), Arc::clone(&model));
            async move { pool.run(model, row(), vec![0], None).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !call.is_finished(),
            "ran on the caller beside another request"
        );
        release.send(()).unwrap();
        call.await.unwrap().unwrap();
        assert_eq!(pool.runs(), (0, 2), "the other task, then it");
    }

    #[tokio::test]
    async fn a_model_slower_than_the_limit_is_handed_off() {
        let model = fraud(1);
        let pool = InferencePool::start(1, 4)
            .unwrap()
            .with_caller_runs(Duration::from_nanos(1));
        pool.run(Arc::clone(&model), row(), vec![0], None)
            .await
            .unwrap();
        // A request a thousand times larger than typical is estimated as such.
        let generous = InferencePool::start(1, 4)
            .unwrap()
            .with_caller_runs(GENEROUS);
        let big = crate::tensor::TensorData::Fp32(vec![0.5; 30 * 4096 * 16]);
        let big = vec![Tensor::new("input".into(), vec![4096 * 16, 30], big).unwrap()];
        generous
            .run(Arc::clone(&model), big, vec![0], None)
            .await
            .unwrap();
        assert_eq!(pool.runs(), (0, 1));
        assert_eq!(generous.runs(), (0, 1));
    }

    #[tokio::test]
    async fn a_past_deadline_is_refused_on_the_caller_too() {
        let model = fraud(1);
        let pool = InferencePool::start(1, 4)
            .unwrap()
            .with_caller_runs(GENEROUS);
        let past = Instant::now() - Duration::from_millis(1);
        let err = pool
            .run(model, row(), vec![0], Some(past))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DeadlineExceeded(_)), "{err}");
        assert_eq!(pool.runs(), (0, 0), "refused before it ran anywhere");
    }
}
