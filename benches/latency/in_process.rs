//! Layers 1 to 3 (raw ORT, Podium's runtime, the inference pool), the
//! thread ping-pong diagnostic, and the check of every fraud answer.

use super::*;

// ---------------------------------------------------------------- layer 1

/// Layer 1: ONNX Runtime itself through `ort`, on a session opened with
/// Podium's own settings (`podium::runtime::ort::open_session`: one intra-op
/// thread, no spinning), with no Podium code in the call.
pub(crate) struct RawSession {
    pub(crate) session: ort::session::Session,
}

impl RawSession {
    pub(crate) fn open(path: &Path) -> RawSession {
        let session = podium::runtime::ort::open_session(path, "fraud v1 (raw)")
            .unwrap_or_else(|e| panic!("{e}"));
        RawSession { session }
    }

    /// One call: tensor in, `run`, outputs copied out (as Podium's `run`).
    pub(crate) fn run(&mut self, row: &[f32]) -> (Vec<i64>, Vec<f32>) {
        let input = OrtTensor::from_array((vec![1i64, 30], row.to_vec())).expect("input tensor");
        let outputs = self
            .session
            .run(ort::inputs!["input" => input])
            .expect("run");
        let (_, label) = outputs["label"].try_extract_tensor::<i64>().expect("label");
        let (_, probabilities) = outputs["probabilities"]
            .try_extract_tensor::<f32>()
            .expect("probabilities");
        (label.to_vec(), probabilities.to_vec())
    }

    pub(crate) fn run_checked(&mut self) -> impl FnOnce() {
        let (label, probabilities) = self.run(&ROW);
        move || expect_answer(&label, &probabilities, "raw ORT")
    }
}

pub(crate) fn fraud_inputs() -> Vec<Tensor> {
    vec![Tensor::new("input".into(), vec![1, 30], TensorData::Fp32(ROW.to_vec())).expect("tensor")]
}

pub(crate) fn check_tensors(out: &[Tensor], layer: &'static str) {
    match (&out[0].data, &out[1].data) {
        (TensorData::Int64(label), TensorData::Fp32(p)) => expect_answer(label, p, layer),
        other => panic!("{layer}: unexpected outputs {other:?}"),
    }
}

pub(crate) fn runtime_call(model: &LoadedModel, outputs: &[usize]) -> impl FnOnce() {
    let out = model
        .run(0, fraud_inputs(), outputs)
        .expect("LoadedModel::run");
    move || check_tensors(&out, "podium runtime")
}

pub(crate) async fn pool_batch(
    plan: Plan,
    pool: &InferencePool,
    model: &Arc<LoadedModel>,
    outputs: &[usize],
) -> Batch {
    let mut batch = Batch::with_capacity(plan.calls);
    let t = Instant::now();
    while plan.more(batch.calls, t) {
        let t0 = Instant::now();
        let (out, _) = pool
            .run(Arc::clone(model), fraud_inputs(), outputs.to_vec(), None)
            .await
            .expect("InferencePool::run");
        batch.record(t0.elapsed());
        check_tensors(&out, "podium pool");
    }
    batch.wall = t.elapsed();
    batch
}

/// Times calls of `call` as `plan` says; the closure `call` returns checks
/// the answer after the clock has stopped.
pub(crate) fn time_calls<C: FnOnce()>(plan: Plan, mut call: impl FnMut() -> C) -> Batch {
    let mut batch = Batch::with_capacity(plan.calls);
    let t = Instant::now();
    while plan.more(batch.calls, t) {
        let t0 = Instant::now();
        let verify = call();
        batch.record(t0.elapsed());
        verify();
    }
    batch.wall = t.elapsed();
    batch
}

pub(crate) fn expect_answer(label: &[i64], probabilities: &[f32], layer: &str) {
    let close = probabilities.len() == 2
        && probabilities
            .iter()
            .zip(EXPECTED)
            .all(|(a, b)| (a - b).abs() <= TOLERANCE);
    assert!(
        close && label == [EXPECTED_LABEL],
        "{layer}: fraud v1 answered label {label:?}, probabilities {probabilities:?}; expected {EXPECTED_LABEL}, {EXPECTED:?}"
    );
}

// ------------------------------------------ diagnostic: thread wake-ups

/// A thread that echoes what it is sent; both sides block, so each round
/// trip is two wake-ups, like the hop to an inference thread and back.
pub(crate) struct PingPong {
    pub(crate) tx: std::sync::mpsc::Sender<u64>,
    pub(crate) rx: std::sync::mpsc::Receiver<u64>,
}

impl PingPong {
    pub(crate) fn start() -> PingPong {
        let (tx, their_rx) = std::sync::mpsc::channel::<u64>();
        let (their_tx, rx) = std::sync::mpsc::channel::<u64>();
        std::thread::Builder::new()
            .name("bench-echo".into())
            .spawn(move || {
                for v in their_rx {
                    if their_tx.send(v).is_err() {
                        break;
                    }
                }
            })
            .expect("start echo thread");
        PingPong { tx, rx }
    }

    pub(crate) fn call(&self) -> impl FnOnce() {
        self.tx.send(7).expect("echo thread alive");
        let v = self.rx.recv().expect("echo");
        move || assert_eq!(v, 7)
    }
}
