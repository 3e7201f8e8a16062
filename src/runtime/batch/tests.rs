//! The batcher on tokio's paused clock, with a stand-in model and an
//! executor whose queue the test drains by hand.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::*;
use crate::runtime::pool::Task;
use crate::tensor::{Tensor, TensorData};

/// Inputs `a` FP32 `[-1, k]` and `b` BYTES `[-1]`; outputs 0: `a * version`
/// (FP32), 1: `b` reversed (BYTES), 2: the row sums of `a` (INT64 `[-1]`).
/// A NaN in `a` fails the whole run, as a model that rejects a value does.
pub(super) struct Stand {
    version: f32,
    runs: Mutex<Vec<usize>>,
}

impl Stand {
    pub(super) fn new(version: f32) -> Arc<Stand> {
        Arc::new(Stand {
            version,
            runs: Mutex::new(Vec::new()),
        })
    }
    pub(super) fn runs(&self) -> Vec<usize> {
        self.runs.lock().unwrap().clone()
    }
}

impl BatchModel for Stand {
    fn run(
        &self,
        _worker: usize,
        inputs: Vec<Tensor>,
        outputs: &[usize],
    ) -> Result<Vec<Tensor>, Error> {
        let (a, b) = (&inputs[0], &inputs[1]);
        self.runs.lock().unwrap().push(a.shape[0] as usize);
        let TensorData::Fp32(av) = &a.data else {
            panic!("a is FP32")
        };
        let TensorData::Bytes(bv) = &b.data else {
            panic!("b is BYTES")
        };
        if av.iter().any(|x| x.is_nan()) {
            return Err(Error::InvalidInput("a holds NaN".into()));
        }
        let k = a.shape[1] as usize;
        Ok(outputs
            .iter()
            .map(|&i| {
                match i {
                    0 => Tensor::new(
                        "y".into(),
                        a.shape.clone(),
                        TensorData::Fp32(av.iter().map(|x| x * self.version).collect()),
                    ),
                    1 => Tensor::new(
                        "z".into(),
                        b.shape.clone(),
                        TensorData::Bytes(
                            bv.iter()
                                .map(|s| s.iter().rev().copied().collect())
                                .collect(),
                        ),
                    ),
                    _ => Tensor::new(
                        "s".into(),
                        vec![a.shape[0]],
                        TensorData::Int64(
                            av.chunks(k).map(|r| r.iter().sum::<f32>() as i64).collect(),
                        ),
                    ),
                }
                .unwrap()
            })
            .collect())
    }
    fn name(&self) -> &str {
        "stand"
    }
    fn label(&self) -> String {
        format!("stand v{}", self.version)
    }
}

/// Holds tasks until the test runs them; refuses past `capacity`, or
/// every task once `refusing` is set.
pub(super) struct Held {
    pub(super) tasks: Mutex<Vec<Task>>,
    capacity: usize,
    pub(super) refusing: std::sync::atomic::AtomicBool,
}

impl Held {
    pub(super) fn new(capacity: usize) -> Arc<Held> {
        Arc::new(Held {
            tasks: Mutex::new(Vec::new()),
            capacity,
            refusing: Default::default(),
        })
    }
    pub(super) fn queued(&self) -> usize {
        self.tasks.lock().unwrap().len()
    }
    /// Runs every queued task, as free inference threads would.
    pub(super) fn drain(&self) {
        let tasks: Vec<Task> = std::mem::take(&mut *self.tasks.lock().unwrap());
        for task in tasks {
            task(0);
        }
    }
}

impl Executor for Held {
    fn submit(&self, task: Task) -> Result<(), Error> {
        let mut tasks = self.tasks.lock().unwrap();
        if tasks.len() >= self.capacity || self.refusing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Overloaded("inference queue is full".into()));
        }
        tasks.push(task);
        Ok(())
    }
    fn queue_depth(&self) -> usize {
        self.capacity
    }
}

/// A request of `rows` rows of `k` columns; row r of request `tag` holds `tag*100 + r`.
pub(super) fn request(tag: u8, rows: usize, k: usize) -> Vec<Tensor> {
    let a: Vec<f32> = (0..rows * k)
        .map(|i| f32::from(tag) * 100.0 + (i / k) as f32)
        .collect();
    let b: Vec<Vec<u8>> = (0..rows)
        .map(|r| format!("{tag}-{r}").into_bytes())
        .collect();
    vec![
        Tensor::new("a".into(), vec![rows as i64, k as i64], TensorData::Fp32(a)).unwrap(),
        Tensor::new("b".into(), vec![rows as i64], TensorData::Bytes(b)).unwrap(),
    ]
}

fn policy(max: usize, delay_us: u64, preferred: Vec<usize>) -> Arc<Batcher> {
    Arc::new(Batcher::on_tokio_clock(
        BatchingPolicy::new("stand", max, delay_us, preferred).unwrap(),
    ))
}

pub(super) fn send(
    batcher: &Arc<Batcher>,
    model: &Arc<Stand>,
    executor: &Arc<Held>,
    inputs: Vec<Tensor>,
    outputs: Vec<usize>,
) -> JoinHandle<Answer> {
    // As `Signature::check` resolves them: none asked for means all three.
    let outputs = if outputs.is_empty() {
        vec![0, 1, 2]
    } else {
        outputs
    };
    let (batcher, model, executor) = (Arc::clone(batcher), Arc::clone(model), Arc::clone(executor));
    tokio::spawn(async move { batcher.run(model, executor, inputs, outputs, None).await })
}

/// Lets spawned requests reach the batcher (the clock does not move).
pub(super) async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

async fn answer(h: JoinHandle<Answer>) -> (Vec<Tensor>, Timing) {
    h.await.unwrap().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_lone_request_waits_exactly_the_delay_for_company() {
    let (model, held) = (Stand::new(1.0), Held::new(8));
    let batcher = policy(8, 2_000, vec![]);
    let h = send(&batcher, &model, &held, request(1, 1, 2), vec![0]);
    settle().await;
    tokio::time::advance(Duration::from_micros(1_999)).await;
    settle().await;
    assert_eq!(held.queued(), 0, "handed over before its delay");
    tokio::time::advance(Duration::from_micros(1)).await;
    settle().await;
    assert_eq!(held.queued(), 1, "not handed over at its delay");
    held.drain();
    let (out, timing) = answer(h).await;
    assert_eq!(timing.batch_size, Some(1));
    assert_eq!(out, model.run(0, request(1, 1, 2), &[0]).unwrap());
}

#[tokio::test(start_paused = true)]
async fn the_clock_starts_with_the_first_request_of_a_batch() {
    let (model, held) = (Stand::new(1.0), Held::new(8));
    let batcher = policy(8, 2_000, vec![]);
    let first = send(&batcher, &model, &held, request(1, 1, 2), vec![]);
    settle().await;
    tokio::time::advance(Duration::from_micros(1_500)).await;
    let second = send(&batcher, &model, &held, request(2, 1, 2), vec![]);
    settle().await;
    tokio::time::advance(Duration::from_micros(500)).await;
    settle().await;
    // The second request waited 0.5 ms, not its own 2 ms: it goes with the first.
    assert_eq!(held.queued(), 1);
    held.drain();
    assert_eq!(answer(first).await.1.batch_size, Some(2));
    assert_eq!(answer(second).await.1.batch_size, Some(2));
    assert_eq!(model.runs(), vec![2]);
}

#[tokio::test(start_paused = true)]
async fn a_preferred_size_goes_at_once_without_waiting_out_the_delay() {
    let (model, held) = (Stand::new(1.0), Held::new(8));
    let batcher = policy(64, 1_000_000, vec![4, 16]);
    let started = tokio::time::Instant::now();
    let hs: Vec<_> = (0..4)
        .map(|t| send(&batcher, &model, &held, request(t, 1, 3), vec![]))
        .collect();
    settle().await;
    assert_eq!(held.queued(), 1);
    held.drain();
    for (t, h) in hs.into_iter().enumerate() {
        let (out, timing) = answer(h).await;
        assert_eq!(timing.batch_size, Some(4));
        assert_eq!(
            out,
            model.run(0, request(t as u8, 1, 3), &[0, 1, 2]).unwrap()
        );
    }
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(model.runs(), vec![4, 1, 1, 1, 1]); // the batch, then the reference runs
}

#[tokio::test(start_paused = true)]
async fn each_caller_gets_exactly_its_rows_of_the_outputs_it_asked_for() {
    let (model, held) = (Stand::new(1.0), Held::new(8));
    let batcher = policy(64, 1_000, vec![]);
    // Requests that carry 1, 3 and 2 rows, asking for different outputs.
    let asks = [(1u8, 1usize, vec![1]), (2, 3, vec![2, 0]), (3, 2, vec![])];
    let hs: Vec<_> = asks
        .iter()
        .map(|(t, rows, outs)| send(&batcher, &model, &held, request(*t, *rows, 4), outs.clone()))
        .collect();
    settle().await;
    tokio::time::advance(Duration::from_millis(1)).await;
    settle().await;
    held.drain();
    for ((t, rows, outs), h) in asks.into_iter().zip(hs) {
        let (out, timing) = answer(h).await;
        assert_eq!(timing.batch_size, Some(6));
        let outs = if outs.is_empty() { vec![0, 1, 2] } else { outs };
        let alone = model.run(0, request(t, rows, 4), &outs).unwrap();
        assert_eq!(out, alone, "request {t}");
        assert_eq!(out[0].shape[0], rows as i64);
    }
    assert_eq!(model.runs()[0], 6);
}

#[tokio::test(start_paused = true)]
async fn versions_never_share_a_run() {
    let held = Held::new(8);
    let (v1, v2) = (Stand::new(1.0), Stand::new(2.0));
    let (b1, b2) = (policy(8, 1_000, vec![]), policy(8, 1_000, vec![]));
    let hs: Vec<_> = (0..4)
        .map(|t| {
            let (b, m) = if t % 2 == 0 { (&b1, &v1) } else { (&b2, &v2) };
            (t, m, send(b, m, &held, request(t, 1, 1), vec![0]))
        })
        .collect();
    settle().await;
    tokio::time::advance(Duration::from_millis(1)).await;
    settle().await;
    assert_eq!(held.queued(), 2);
    held.drain();
    for (t, m, h) in hs {
        let (out, timing) = answer(h).await;
        assert_eq!(timing.batch_size, Some(2));
        assert_eq!(out, m.run(0, request(t, 1, 1), &[0]).unwrap());
    }
    assert_eq!((v1.runs()[0], v2.runs()[0]), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn requests_of_other_shapes_run_in_their_own_batch_and_never_fail() {
    let (model, held) = (Stand::new(1.0), Held::new(8));
    let batcher = policy(8, 1_000, vec![]);
    let narrow = send(&batcher, &model, &held, request(1, 1, 2), vec![]);
    let wide = send(&batcher, &model, &held, request(2, 2, 5), vec![]);
    let narrow2 = send(&batcher, &model, &held, request(3, 1, 2), vec![]);
    settle().await;
    tokio::time::advance(Duration::from_millis(1)).await;
    settle().await;
    held.drain();
    assert_eq!(answer(narrow).await.1.batch_size, Some(2));
    assert_eq!(answer(narrow2).await.1.batch_size, Some(2));
    let (out, timing) = answer(wide).await;
    assert_eq!(timing.batch_size, Some(2));
    assert_eq!(out, model.run(0, request(2, 2, 5), &[0, 1, 2]).unwrap());
    let mut runs = model.runs();
    runs.truncate(2);
    runs.sort_unstable();
    assert_eq!(runs, vec![2, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_runs_again_one_by_one_so_only_the_bad_request_fails() {
    let (model, held) = (Stand::new(1.0), Held::new(8));
    let batcher = policy(8, 0, vec![]);
    let mut bad = request(9, 1, 2);
    bad[0].data = TensorData::Fp32(vec![f32::NAN, 1.0]);
    // A zero delay hands the first request over at once; the others join
    // it while it waits for a thread.
    let hs = vec![
        send(&batcher, &model, &held, request(1, 1, 2), vec![]),
        send(&batcher, &model, &held, bad, vec![]),
        send(&batcher, &model, &held, request(2, 2, 2), vec![]),
    ];
    settle().await;
    assert_eq!(held.queued(), 1);
    held.drain();
    assert_eq!(model.runs(), vec![4, 1, 1, 2]);
    let mut answers = Vec::new();
    for h in hs {
        answers.push(h.await.unwrap());
    }
    let err = answers.remove(1).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput(m) if m == "a holds NaN"),
        "{err}"
    );
    for (answer, rows) in answers.into_iter().zip([1, 2]) {
        assert_eq!(answer.unwrap().1.batch_size, Some(rows));
    }
}

#[tokio::test(start_paused = true)]
async fn a_batch_grows_while_it_waits_for_a_thread_up_to_the_maximum() {
    let (model, held) = (Stand::new(1.0), Held::new(8));
    let batcher = policy(4, 1_000, vec![2]);
    let mut hs: Vec<_> = (0..2)
        .map(|t| send(&batcher, &model, &held, request(t, 1, 1), vec![]))
        .collect();
    settle().await;
    assert_eq!(held.queued(), 1, "a preferred size is handed over at once");
    // Threads busy: three more arrive; two fit, the third opens a new batch.
    hs.extend((2..5).map(|t| send(&batcher, &model, &held, request(t, 1, 1), vec![])));
    settle().await;
    held.drain();
    let sizes: Vec<Option<usize>> = futures_sizes(&mut hs[..4]).await;
    assert_eq!(sizes, vec![Some(4); 4]);
    tokio::time::advance(Duration::from_millis(1)).await;
    settle().await;
    held.drain();
    assert_eq!(answer(hs.pop().unwrap()).await.1.batch_size, Some(1));
    assert_eq!(model.runs(), vec![4, 1]);
}

pub(super) async fn futures_sizes(hs: &mut [JoinHandle<Answer>]) -> Vec<Option<usize>> {
    let mut out = Vec::new();
    for h in hs {
        out.push(h.await.unwrap().unwrap().1.batch_size);
    }
    out
}

#[tokio::test(start_paused = true)]
async fn requests_too_big_or_ragged_for_a_batch_run_alone() {
    let (model, held) = (Stand::new(1.0), Held::new(8));
    let batcher = policy(4, 1_000, vec![]);
    let big = send(&batcher, &model, &held, request(1, 6, 1), vec![]);
    let mut ragged = request(2, 2, 1);
    ragged[1] = Tensor::new("b".into(), vec![3], TensorData::Bytes(vec![vec![]; 3])).unwrap();
    let ragged = tokio::spawn({
        let (batcher, model, held) = (Arc::clone(&batcher), Arc::clone(&model), Arc::clone(&held));
        async move { batcher.run(model, held, ragged, vec![0], None).await }
    });
    settle().await;
    assert_eq!(held.queued(), 2, "neither waits for company");
    held.drain();
    assert_eq!(answer(big).await.1.batch_size, Some(6));
    let (out, timing) = answer(ragged).await;
    assert_eq!(timing.batch_size, Some(2));
    assert_eq!(out[0].shape, vec![2, 1]);
}

#[tokio::test(start_paused = true)]
async fn a_full_inference_queue_fails_the_whole_batch_at_once() {
    let (model, held) = (Stand::new(1.0), Held::new(0));
    let batcher = policy(2, 1_000, vec![]);
    let hs: Vec<_> = (0..2)
        .map(|t| send(&batcher, &model, &held, request(t, 1, 1), vec![]))
        .collect();
    settle().await;
    for h in hs {
        let err = h.await.unwrap().unwrap_err();
        assert!(matches!(err, Error::Overloaded(_)), "{err}");
    }
    assert!(model.runs().is_empty());
    // The queue forgot the failed batch: the next request opens a new one.
    let next = send(&batcher, &model, &held, request(7, 1, 1), vec![]);
    settle().await;
    assert!(lock(&batcher.queue).batches.values().all(|b| b.len() == 1));
    next.abort();
}
