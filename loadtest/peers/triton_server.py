"""Triton Inference Server through PyTriton, serving ONNX models for
loadtest/peers.sh.

The nvidia-pytriton wheel bundles tritonserver with its Python backend only
(no ONNX Runtime backend), so each model is a Python callable: Triton's
Python backend stub hands every request to this process over PyTriton's
proxy, where an ONNX Runtime session runs it. One session per model
instance (--instances), no dynamic batching (Podium's demo models run
unbatched too). HTTP, gRPC and metrics listen on 127.0.0.1 only.

    python triton_server.py --http-port 8000 --grpc-port 8001 --metrics-port 8002 \
        --instances 2 --model fraud=models/fraud/v1.onnx
"""

import importlib.metadata
import os
import signal
import sys
import sysconfig

from onnx_model import arguments, ort_version, session, signature
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig


def infer_function(sess, output_names):
    """A PyTriton callable running SESS on each request of a list (no batching)."""

    def infer(requests):
        return [dict(zip(output_names, sess.run(output_names, dict(r.data)))) for r in requests]

    return infer


def use_this_libpython():
    """Points the dynamic loader at this interpreter's shared libpython.

    Triton's Python backend stub (a separate program) embeds whichever
    libpython3.X.so the loader finds and then imports this virtualenv's
    standard library; with another build of the same minor version (say
    Debian's 3.11.2 under a pyenv 3.11.7 virtualenv) model loading fails in
    multiprocessing. tritonserver and its stubs inherit this environment.
    """
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        raise SystemExit(
            f"peer: Triton's Python backend needs a shared libpython; {sys.executable} ({sys.version.split()[0]}) "
            "was built without one. Make the virtualenv with another python3 (PEERS_PYTHON=/usr/bin/python3)."
        )
    libdir = sysconfig.get_config_var("LIBDIR")
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH")) if p)


def main():
    args = arguments("Triton (PyTriton) serving ONNX models on 127.0.0.1, for loadtest/peers.sh")
    use_this_libpython()
    # SIGTERM leaves through `with Triton`, which stops tritonserver and
    # removes the workspace (the default action would leave both behind).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_address="127.0.0.1",
        metrics_port=args.metrics_port,
        log_verbose=0,
    )
    models = []
    for name, path in args.models:
        sessions = [session(path) for _ in range(args.instances)]
        models.append((name, sessions, *signature(sessions[0])))
    with Triton(config=config, workspace=args.workspace) as triton:
        for name, sessions, inputs, outputs in models:
            output_names = [o[0] for o in outputs]
            triton.bind(
                model_name=name,
                infer_func=[infer_function(s, output_names) for s in sessions],
                inputs=[Tensor(name=n, dtype=d, shape=tuple(s)) for n, d, _, s in inputs],
                outputs=[Tensor(name=n, dtype=d, shape=tuple(s)) for n, d, _, s in outputs],
                config=ModelConfig(batching=False),
                strict=False,
            )
        store = "base64 over ZeroMQ" if os.environ.get("PYTRITON_NO_TENSORSTORE") else "shared-memory tensor store"
        print(
            f"peer: Triton Inference Server (nvidia-pytriton {importlib.metadata.version('nvidia-pytriton')}, "
            f"its bundled tritonserver, Python backend, PyTriton's {store}), no dynamic batching, "
            f"{args.instances} model instances; {ort_version()}",
            flush=True,
        )
        triton.serve()


if __name__ == "__main__":
    main()
