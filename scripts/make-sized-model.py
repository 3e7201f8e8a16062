#!/usr/bin/env python3
"""Writes an ONNX model of about SIZE_MB megabytes of weights that costs
almost nothing to run: y = Gather(W, idx), W float32 [rows, 16].

Used by the load-on-demand tests (tests/memory_budget.rs) and by
scripts/bench-cold-load.sh to stand in for a registry of many big models.
Gather with a request-time index keeps ONNX Runtime from folding the
weights away, so a loaded copy really holds SIZE_MB of memory.

    make-sized-model.py SIZE_MB OUT.onnx [SEED]
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

COLUMNS = 16


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    size_mb = float(sys.argv[1])
    out = sys.argv[2]
    seed = int(sys.argv[3]) if len(sys.argv) == 4 else 0
    rows = max(1, int(size_mb * 1e6 / (4 * COLUMNS)))
    weights = np.random.default_rng(seed).standard_normal((rows, COLUMNS), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["W", "idx"], ["y"], axis=0)],
        "sized",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, COLUMNS])],
        [numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, out)


if __name__ == "__main__":
    main()
