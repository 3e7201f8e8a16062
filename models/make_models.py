#!/usr/bin/env python3
"""Generate the ONNX models and test fixtures used by Podium.

Deterministic: every random source has a fixed seed and BLAS/OpenMP are
pinned to one thread, so re-running with the pinned requirements on the same
platform rewrites byte-identical files.

Outputs (relative to this script's directory, not the cwd):
    fraud/v1.onnx              LogisticRegression "champion"
    fraud/v2.onnx              GradientBoosting "challenger"
    mlp/v1.onnx                64->256->256->10 ReLU MLP built with onnx.helper
    mlp_large/v1.onnx          512->2048->2048->10 ReLU MLP whose weights the graph
                               computes from a formula (ONNX Runtime folds them
                               into constants at load), so the file stays ~17 KB
    fixtures/alltypes.onnx     one Identity per datatype, shapes ["n", "m"]
    fixtures/typed.onnx        the same without fp16: every type that OIP gRPC
                               can send as typed contents (FP16 must go raw)
    fixtures/fixed_shape.onnx  y = x * 2, fixed shape [2, 3]
    fixtures/slow_fraud.onnx   fraud's signature, deliberately slow (a Loop of
                               100,000 MatMuls): a call takes ~0.5 s
    fixtures/flaky_fraud.onnx  fraud's signature; a call fails (a Gather out of
                               bounds) when a row's first feature is > 0

Regenerate with:
    python3 -m venv .venv-models
    .venv-models/bin/pip install -r models/requirements.txt
    .venv-models/bin/python models/make_models.py
"""

import os

# Single-threaded numerics so float results (and thus bytes) don't depend on
# the core count. Must be set before numpy/scipy are imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import hashlib  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from skl2onnx import convert_sklearn  # noqa: E402
from skl2onnx.common.data_types import FloatTensorType  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.ensemble import GradientBoostingClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

OPSET = 17  # ai.onnx opset for every model
ML_OPSET = 3  # ai.onnx.ml opset for the sklearn-converted models
IR_VERSION = 9  # accepted by onnxruntime 1.31 (onnx 1.23 defaults higher)
N_FEATURES = 30


def out_path(*parts):
    path = os.path.join(HERE, *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def save(model, *parts):
    onnx.checker.check_model(model, full_check=True)
    path = out_path(*parts)
    with open(path, "wb") as f:
        f.write(model.SerializeToString(deterministic=True))
    return path


def normalise(model):
    """Clear free-text metadata and de-duplicate opset imports.

    skl2onnx can emit the same (domain, version) opset import twice (one per
    converted step); ORT tolerates that but other ONNX readers may not, so
    keep one entry per domain (the highest version).
    """
    model.doc_string = ""
    model.graph.doc_string = ""
    best = {}
    for op in model.opset_import:
        best[op.domain] = max(best.get(op.domain, 0), op.version)
    del model.opset_import[:]
    for domain in sorted(best):
        model.opset_import.append(helper.make_opsetid(domain, best[domain]))
    return model


# --------------------------------------------------------------------------
# fraud: champion (v1) and challenger (v2) on the same synthetic data
# --------------------------------------------------------------------------


def fraud_data():
    X, y = make_classification(
        n_samples=5000,
        n_features=N_FEATURES,
        n_informative=12,
        weights=[0.9, 0.1],
        random_state=0,
    )
    return X.astype(np.float32), y.astype(np.int64)


def convert_classifier(estimator, final_step):
    model = convert_sklearn(
        estimator,
        name="fraud",
        initial_types=[("input", FloatTensorType([None, N_FEATURES]))],
        options={id(final_step): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
    )
    return normalise(model)


def build_fraud(X, y):
    clf = LogisticRegression(max_iter=1000)
    v1 = Pipeline([("scaler", StandardScaler()), ("clf", clf)])
    v1.fit(X, y)

    gbc = GradientBoostingClassifier(n_estimators=50, max_depth=3, random_state=0)
    gbc.fit(X, y)

    return (
        save(convert_classifier(v1, clf), "fraud", "v1.onnx"),
        save(convert_classifier(gbc, gbc), "fraud", "v2.onnx"),
    )


# --------------------------------------------------------------------------
# mlp: 64 -> 256 -> 256 -> 10 with ReLU, built by hand
# --------------------------------------------------------------------------


def build_mlp():
    rng = np.random.default_rng(42)
    dims = [64, 256, 256, 10]
    initializers = []
    nodes = []
    x = "input"
    n_layers = len(dims) - 1
    for i in range(n_layers):
        fan_in, fan_out = dims[i], dims[i + 1]
        w = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(
            np.float32
        )
        b = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
        wn, bn = f"fc{i + 1}.weight", f"fc{i + 1}.bias"
        initializers += [numpy_helper.from_array(w, wn), numpy_helper.from_array(b, bn)]
        mm, add = f"fc{i + 1}.matmul", f"fc{i + 1}.add"
        nodes.append(helper.make_node("MatMul", [x, wn], [mm], name=mm))
        last = i == n_layers - 1
        add_out = "logits" if last else add
        nodes.append(helper.make_node("Add", [mm, bn], [add_out], name=add))
        if last:
            x = add_out
        else:
            relu = f"fc{i + 1}.relu"
            nodes.append(helper.make_node("Relu", [add_out], [relu], name=relu))
            x = relu

    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        initializer=initializers,
    )
    model = make_model(graph)
    return save(model, "mlp", "v1.onnx")


# --------------------------------------------------------------------------
# mlp_large: 512 -> 2048 -> 2048 -> 10 with ReLU, the batch-friendly demo
# --------------------------------------------------------------------------

MLP_LARGE_DIMS = [512, 2048, 2048, 10]


def build_mlp_large():
    """A model big enough that batching pays: ~5.3M weights (21 MB as
    float32). Stored as initializers the file would be 21 MB; instead each
    weight matrix is computed by the graph, W[i] = sin(i * f) * sqrt(6 /
    fan_in) over the flattened index i (uniform-like, He-scaled), from
    scalar initializers. ONNX Runtime's constant folding turns these nodes
    into plain weights when the session is created, so a run costs exactly
    the three Gemms. The biases are small stored vectors."""
    dims = MLP_LARGE_DIMS
    initializers, nodes = [], []
    x = "input"
    n_layers = len(dims) - 1
    for i in range(n_layers):
        fan_in, fan_out = dims[i], dims[i + 1]
        p = f"fc{i + 1}"
        scalar = lambda v, name: numpy_helper.from_array(np.array(v, dtype=np.float32), name)
        initializers += [
            scalar(0.0, f"{p}.start"),
            scalar(float(fan_in * fan_out), f"{p}.limit"),
            scalar(1.0, f"{p}.delta"),
            scalar(12.9898 + i, f"{p}.freq"),
            scalar(np.sqrt(6.0 / fan_in), f"{p}.scale"),
            numpy_helper.from_array(np.array([fan_in, fan_out], dtype=np.int64), f"{p}.shape"),
            numpy_helper.from_array(
                (np.cos(np.arange(fan_out) * 0.37) * 0.01).astype(np.float32), f"{p}.bias"
            ),
        ]
        last = i == n_layers - 1
        add_out = "logits" if last else f"{p}.add"
        nodes += [
            helper.make_node("Range", [f"{p}.start", f"{p}.limit", f"{p}.delta"], [f"{p}.index"]),
            helper.make_node("Mul", [f"{p}.index", f"{p}.freq"], [f"{p}.phase"]),
            helper.make_node("Sin", [f"{p}.phase"], [f"{p}.wave"]),
            helper.make_node("Mul", [f"{p}.wave", f"{p}.scale"], [f"{p}.flat"]),
            helper.make_node("Reshape", [f"{p}.flat", f"{p}.shape"], [f"{p}.weight"]),
            helper.make_node("MatMul", [x, f"{p}.weight"], [f"{p}.matmul"]),
            helper.make_node("Add", [f"{p}.matmul", f"{p}.bias"], [add_out]),
        ]
        if not last:
            nodes.append(helper.make_node("Relu", [add_out], [f"{p}.relu"]))
            x = f"{p}.relu"
    graph = helper.make_graph(
        nodes,
        "mlp_large",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", dims[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", dims[-1]])],
        initializer=initializers,
    )
    return save(make_model(graph), "mlp_large", "v1.onnx")


def verify_mlp_large(path):
    """Folded to three Gemms at load, and a row's answer is the same alone
    or inside a batch of 64."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    describe(path, sess)
    xin = np.random.default_rng(0).standard_normal((64, MLP_LARGE_DIMS[0])).astype(np.float32)
    (batch,) = sess.run(["logits"], {"input": xin})
    assert batch.shape == (64, 10) and np.all(np.isfinite(batch))
    alone = np.concatenate([sess.run(["logits"], {"input": xin[i : i + 1]})[0] for i in range(64)])
    assert np.allclose(batch, alone, rtol=1e-5, atol=1e-6)
    print(f"  sample: logits[0]={batch[0].tolist()}")


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

ALL_TYPES = [
    ("bool", TensorProto.BOOL),
    ("int8", TensorProto.INT8),
    ("int16", TensorProto.INT16),
    ("int32", TensorProto.INT32),
    ("int64", TensorProto.INT64),
    ("uint8", TensorProto.UINT8),
    ("uint16", TensorProto.UINT16),
    ("uint32", TensorProto.UINT32),
    ("uint64", TensorProto.UINT64),
    ("fp16", TensorProto.FLOAT16),
    ("fp32", TensorProto.FLOAT),
    ("fp64", TensorProto.DOUBLE),
    ("string", TensorProto.STRING),
]


def make_model(graph):
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="podium-make-models",
        producer_version="1",
    )
    model.ir_version = IR_VERSION
    return model


def build_alltypes():
    return build_identities("alltypes", ALL_TYPES)


def build_typed():
    return build_identities("typed", [(t, e) for t, e in ALL_TYPES if t != "fp16"])


def build_identities(name, types):
    nodes, inputs, outputs = [], [], []
    for t, elem in types:
        i, o = f"in_{t}", f"out_{t}"
        inputs.append(helper.make_tensor_value_info(i, elem, ["n", "m"]))
        outputs.append(helper.make_tensor_value_info(o, elem, ["n", "m"]))
        nodes.append(helper.make_node("Identity", [i], [o], name=f"identity_{t}"))
    graph = helper.make_graph(nodes, name, inputs, outputs)
    return save(make_model(graph), "fixtures", f"{name}.onnx")


def build_fixed_shape():
    two = numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"], name="mul_by_two")],
        "fixed_shape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        initializer=[two],
    )
    return save(make_model(graph), "fixtures", "fixed_shape.onnx")


SLOW_ITERATIONS = 100_000


def build_slow_fraud():
    """Same inputs/outputs as fraud v1/v2, but each call runs a Loop of
    SLOW_ITERATIONS (1x256)x(256x256) MatMuls: a model that is slow on
    purpose, for tests of things that must not wait for it. Weights are
    ConstantOfShape, so the file stays tiny."""
    H = 256
    def const(name, shape, value):
        return helper.make_node(
            "ConstantOfShape",
            [name + "_shape"],
            [name],
            value=numpy_helper.from_array(np.array([value], dtype=np.float32)),
        ), numpy_helper.from_array(np.array(shape, dtype=np.int64), name + "_shape")

    n_w1, i_w1 = const("w1", [30, H], 0.01)
    n_w2, i_w2 = const("w2", [H, 2], 0.01)
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["h_in", "w"], ["mm"]),
            helper.make_node("Tanh", ["mm"], ["h_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "slow_body",
        [
            helper.make_tensor_value_info("iter", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_in", TensorProto.FLOAT, ["batch", H]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_out", TensorProto.FLOAT, ["batch", H]),
        ],
    )
    n_w, i_w = const("w", [H, H], 1.0 / H)
    nodes = [
        n_w1, n_w2, n_w,
        helper.make_node("MatMul", ["input", "w1"], ["h0"]),
        helper.make_node("Loop", ["trips", "keep_going", "h0"], ["h"], body=body),
        helper.make_node("MatMul", ["h", "w2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "slow_fraud",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 30])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2]),
        ],
        initializer=[
            i_w1, i_w2, i_w,
            numpy_helper.from_array(np.array(SLOW_ITERATIONS, dtype=np.int64), "trips"),
            numpy_helper.from_array(np.array(True), "keep_going"),
        ],
    )
    return save(make_model(graph), "fixtures", "slow_fraud.onnx")


def build_flaky_fraud():
    """Same inputs/outputs as fraud v1/v2, but the call fails at run time
    when any row's first feature is > 0: that row's index into a 2-element
    table becomes 7, and Gather refuses it. A challenger that fails on part
    of the inputs, for the guardrail's tests."""
    w = numpy_helper.from_array(np.full((30, 2), 0.01, dtype=np.float32), "w")
    table = numpy_helper.from_array(np.zeros(2, dtype=np.float32), "table")
    nodes = [
        helper.make_node("Gather", ["input", "zero"], ["first"], axis=1),
        helper.make_node("Greater", ["first", "threshold"], ["positive"]),
        helper.make_node("Cast", ["positive"], ["positive_i"], to=TensorProto.INT64),
        helper.make_node("Mul", ["positive_i", "seven"], ["index"]),
        helper.make_node("Gather", ["table", "index"], ["picked"], axis=0),
        helper.make_node("Unsqueeze", ["picked", "axis1"], ["bias"]),
        helper.make_node("MatMul", ["input", "w"], ["mm"]),
        helper.make_node("Add", ["mm", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "flaky_fraud",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 30])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2]),
        ],
        initializer=[
            w,
            table,
            numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "threshold"),
            numpy_helper.from_array(np.array(7, dtype=np.int64), "seven"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        ],
    )
    return save(make_model(graph), "fixtures", "flaky_fraud.onnx")


def verify_flaky(path, X):
    sess = session(path)
    describe(path, sess)
    ok = X[:1].astype(np.float32).copy()
    ok[0, 0] = -1.0
    label, probs = sess.run(["label", "probabilities"], {"input": ok})
    assert label.shape == (1,) and probs.shape == (1, 2)
    bad = ok.copy()
    bad[0, 0] = 1.0
    try:
        sess.run(["label"], {"input": bad})
    except Exception as e:  # onnxruntime raises its own error types
        print(f"  first feature > 0 fails as intended: {str(e).splitlines()[0][:100]}")
    else:
        raise AssertionError("flaky_fraud answered a row it must refuse")


# --------------------------------------------------------------------------
# verification with onnxruntime
# --------------------------------------------------------------------------


def session(path):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def describe(path, sess):
    rel = os.path.relpath(path, HERE)
    size = os.path.getsize(path)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()[:16]
    print(f"\n== {rel}  ({size} bytes, sha256 {digest}...)")
    for kind, args in (("input ", sess.get_inputs()), ("output", sess.get_outputs())):
        for a in args:
            print(f"  {kind} {a.name!r:14} {a.type:18} {a.shape}")


def fmt_row(row):
    # str(np.float32) is the shortest repr that round-trips to the same f32.
    return "[" + ", ".join(str(np.float32(v)) for v in row) + "]"


def verify(paths, X, y):
    v1_path, v2_path, mlp_path, alltypes_path, typed_path, fixed_path, slow_path = paths

    # fraud v1 / v2 on a batch of real rows
    batch = X[:8]
    results = {}
    for path in (v1_path, v2_path):
        sess = session(path)
        describe(path, sess)
        label, proba = sess.run(["label", "probabilities"], {"input": batch})
        assert label.dtype == np.int64 and label.shape == (len(batch),)
        assert proba.dtype == np.float32 and proba.shape == (len(batch), 2)
        assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
        results[path] = (label, proba)
        print(f"  sample: label={label[0]} probabilities={proba[0].tolist()}")

    p1, p2 = results[v1_path][1], results[v2_path][1]
    diff = np.abs(p1 - p2)
    print(
        f"\n  fraud v1 vs v2 |p1-p2| over {len(batch)} rows: "
        f"mean={diff.mean():.4f} max={diff.max():.4f}"
    )
    assert diff.max() > 0.05, "fraud v1 and v2 must give visibly different probabilities"
    # X[0], plus the first row v1 labels as fraud (label 1)
    v1_labels = session(v1_path).run(["label"], {"input": X})[0]
    for idx in (0, int(np.argmax(v1_labels == 1))):
        row = X[idx : idx + 1]
        print(f"  sample input row X[{idx}] (y={int(y[idx])}, float32):\n    {fmt_row(row[0])}")
        for name, path in (("v1", v1_path), ("v2", v2_path)):
            label, proba = session(path).run(["label", "probabilities"], {"input": row})
            print(f"    {name}: label={int(label[0])} probabilities={proba[0].tolist()}")

    # mlp
    sess = session(mlp_path)
    describe(mlp_path, sess)
    xin = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    (logits,) = sess.run(["logits"], {"input": xin})
    assert logits.shape == (4, 10) and logits.dtype == np.float32
    assert np.all(np.isfinite(logits))
    print(f"  sample: logits[0]={logits[0].tolist()}")

    # alltypes
    sess = session(alltypes_path)
    describe(alltypes_path, sess)
    np_types = {
        "bool": np.bool_, "int8": np.int8, "int16": np.int16, "int32": np.int32,
        "int64": np.int64, "uint8": np.uint8, "uint16": np.uint16,
        "uint32": np.uint32, "uint64": np.uint64, "fp16": np.float16,
        "fp32": np.float32, "fp64": np.float64,
    }
    feeds = {}
    base = np.arange(6).reshape(2, 3)
    for t, _ in ALL_TYPES:
        if t == "string":
            feeds[f"in_{t}"] = np.array([["a", "bb", "ccc"], ["d", "", "f"]], dtype=object)
        else:
            feeds[f"in_{t}"] = base.astype(np_types[t])
    outs = sess.run([f"out_{t}" for t, _ in ALL_TYPES], feeds)
    for (t, _), out in zip(ALL_TYPES, outs):
        expected = feeds[f"in_{t}"]
        assert out.shape == expected.shape and np.array_equal(out, expected), t
    print(f"  sample: out_fp16={outs[9].tolist()} out_string={outs[12].tolist()}")

    # typed: alltypes without fp16
    sess = session(typed_path)
    describe(typed_path, sess)
    typed_feeds = {k: v for k, v in feeds.items() if k != "in_fp16"}
    outs = sess.run([f"out_{k[3:]}" for k in typed_feeds], typed_feeds)
    for (k, expected), out in zip(typed_feeds.items(), outs):
        assert out.shape == expected.shape and np.array_equal(out, expected), k

    # slow_fraud: fraud's signature, a deliberately slow call
    import time
    sess = session(slow_path)
    describe(slow_path, sess)
    t = time.perf_counter()
    label, probs = sess.run(["label", "probabilities"], {"input": X[:1].astype(np.float32)})
    elapsed = time.perf_counter() - t
    assert label.shape == (1,) and label.dtype == np.int64 and probs.shape == (1, 2)
    print(f"  sample: label={label.tolist()} probabilities={probs.tolist()} in {elapsed * 1000:.0f} ms")

    # fixed_shape
    sess = session(fixed_path)
    describe(fixed_path, sess)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    (y,) = sess.run(["y"], {"x": x})
    assert np.array_equal(y, x * 2)
    print(f"  sample: x={x.tolist()} -> y={y.tolist()}")


def main():
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}")
    X, y = fraud_data()
    v1, v2 = build_fraud(X, y)
    paths = (v1, v2, build_mlp(), build_alltypes(), build_typed(), build_fixed_shape(), build_slow_fraud())
    verify(paths, X, y)
    verify_mlp_large(build_mlp_large())
    verify_flaky(build_flaky_fraud(), X)
    print("\nall models written and verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
