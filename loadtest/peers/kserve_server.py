"""KServe's Python model server serving ONNX models for loadtest/peers.sh.

Each model is a kserve.Model whose async predict hands the request to a
pool of --instances threads, each with its own ONNX Runtime session (ONNX
Runtime releases the GIL while it runs), so KServe gets as many inference
workers as Podium and Triton. One process (uvicorn with one worker) serves
OIP REST and KServe's v2 gRPC; both listen on 127.0.0.1 only (KServe itself
binds every interface, so the two listeners are narrowed here).

    python kserve_server.py --http-port 8080 --grpc-port 8081 --instances 2 \
        --model fraud=models/fraud/v1.onnx
"""

import asyncio
import importlib.metadata
import logging
import queue
from concurrent.futures import ThreadPoolExecutor

import kserve
import kserve.protocol.grpc.server as grpc_server
import kserve.protocol.rest.server as rest_server
from kserve import InferOutput, InferRequest, InferResponse
from kserve.utils.utils import generate_uuid
from onnx_model import arguments, ort_version, session, signature


def bind_loopback():
    """KServe binds 0.0.0.0 (REST) and [::] (gRPC) with no option to narrow them: narrow both to 127.0.0.1."""
    config = rest_server.uvicorn.Config

    class LoopbackConfig(config):
        def __init__(self, *args, **kwargs):
            kwargs["host"] = "127.0.0.1"
            super().__init__(*args, **kwargs)

    rest_server.uvicorn.Config = LoopbackConfig
    make_server = grpc_server.aio.server

    def loopback_server(*args, **kwargs):
        server = make_server(*args, **kwargs)
        add_port = server.add_insecure_port
        server.add_insecure_port = lambda address: add_port("127.0.0.1:" + address.rsplit(":", 1)[1])
        return server

    grpc_server.aio.server = loopback_server


class OnnxModel(kserve.Model):
    """One ONNX model; each call runs on one of the pool's sessions."""

    def __init__(self, name, path, instances):
        super().__init__(name)
        self.sessions = queue.SimpleQueue()
        for _ in range(instances):
            self.sessions.put(session(path))
        probe = self.sessions.get()
        self.inputs, self.outputs = signature(probe)
        self.sessions.put(probe)
        self.output_names = [o[0] for o in self.outputs]
        self.pool = ThreadPoolExecutor(max_workers=instances, thread_name_prefix=f"{name}-ort")
        self.ready = True

    def get_input_types(self):
        return [{"name": n, "datatype": t, "shape": s} for n, _, t, s in self.inputs]

    def get_output_types(self):
        return [{"name": n, "datatype": t, "shape": s} for n, _, t, s in self.outputs]

    def run(self, feeds):
        sess = self.sessions.get()
        try:
            return sess.run(self.output_names, feeds)
        finally:
            self.sessions.put(sess)

    async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        feeds = {i.name: i.as_numpy() for i in payload.inputs}
        results = await asyncio.get_running_loop().run_in_executor(self.pool, self.run, feeds)
        outputs = []
        for (name, _, datatype, _), value in zip(self.outputs, results):
            out = InferOutput(name=name, shape=list(value.shape), datatype=datatype)
            out.set_data_from_numpy(value, binary_data=payload.use_binary_outputs)
            outputs.append(out)
        return InferResponse(response_id=payload.id or generate_uuid(), model_name=self.name,
                             infer_outputs=outputs, model_version="1")


def main():
    args = arguments("KServe serving ONNX models on 127.0.0.1, for loadtest/peers.sh")
    bind_loopback()
    models = [OnnxModel(name, path, args.instances) for name, path in args.models]
    print(
        f"peer: KServe {importlib.metadata.version('kserve')} Python model server (one uvicorn worker, "
        f"gRPC beside it), {args.instances} inference threads with one session each; {ort_version()}",
        flush=True,
    )
    server = kserve.ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, workers=1,
                                enable_latency_logging=False)
    # No log line per request (Podium and Triton write none either): the
    # access log, the latency trace and the gRPC interceptor's line.
    for name in ("uvicorn.access", "kserve.trace", "kserve"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start(models)


if __name__ == "__main__":
    main()
