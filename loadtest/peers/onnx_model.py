"""What the Python peers of loadtest/peers.sh share: their command line and
ONNX Runtime sessions set up as Podium sets up its own (CPU, one intra-op and
one inter-op thread per session, sequential execution, no spinning, every
graph optimisation), so that the servers differ in their serving stack, not
in how the model runs.
"""

import argparse

import numpy as np
import onnxruntime as ort

# ONNX Runtime's element types as numpy dtypes and OIP datatype names.
DTYPES = {
    "tensor(float)": (np.float32, "FP32"),
    "tensor(double)": (np.float64, "FP64"),
    "tensor(int64)": (np.int64, "INT64"),
    "tensor(int32)": (np.int32, "INT32"),
    "tensor(bool)": (np.bool_, "BOOL"),
}


def arguments(description):
    """The peers' command line: ports on 127.0.0.1, instances, NAME=PATH models."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--metrics-port", type=int, default=0)
    p.add_argument("--workspace", help="Triton: the folder for its model store and sockets (default: a new one)")
    p.add_argument("--instances", type=int, default=1, help="model instances, one ONNX Runtime session each")
    p.add_argument("--model", action="append", required=True, metavar="NAME=PATH")
    args = p.parse_args()
    args.models = []
    for spec in args.model:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            p.error(f"--model {spec!r}: write NAME=PATH, e.g. fraud=models/fraud/v1.onnx")
        args.models.append((name, path))
    return args


def session(path):
    """One ONNX Runtime session of the model at PATH, configured like Podium's."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def signature(sess):
    """([(name, dtype, OIP datatype, shape with -1 for symbolic dims)] of inputs, of outputs)."""

    def describe(args):
        out = []
        for a in args:
            if a.type not in DTYPES:
                raise SystemExit(f"peer: {a.name} is {a.type}, which this peer does not serve")
            dtype, datatype = DTYPES[a.type]
            shape = [d if isinstance(d, int) else -1 for d in a.shape]
            out.append((a.name, dtype, datatype, shape))
        return out

    return describe(sess.get_inputs()), describe(sess.get_outputs())


def ort_version():
    return f"onnxruntime {ort.__version__} (Python), 1 intra-op thread per session"
