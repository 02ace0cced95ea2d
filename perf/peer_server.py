"""The peer for benchmark (c): what a user would build without Triton. A plain web server (Flask on
waitress, the same stack as webapp/) that runs the model inside each request: no batching, no queue,
one onnxruntime session shared by the server's threads.

    python perf/peer_server.py [--port 8700] [--onnx model_repository/methane_seg/1/model.onnx]
                               [--threads 8] [--intra-threads 0]

    POST /infer   body: raw uint16 (N, 6, T, T) little-endian tiles, header X-Shape: N,6,T,T
                  answer: raw float32 (N, 1, T, T) probabilities
    GET  /ready   200 once the model is loaded
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def create_app(onnx_path: str, intra_threads: int = 0):
    import onnxruntime as ort
    from flask import Flask, Response, abort, request

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_path, sess_options=opts, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0].name
    app = Flask("peer")

    @app.post("/infer")
    def infer():
        try:
            shape = tuple(int(v) for v in request.headers["X-Shape"].split(","))
            tiles = np.frombuffer(request.get_data(), dtype="<u2").reshape(shape)
        except (KeyError, ValueError):
            abort(400)
        prob = session.run(None, {inp: tiles})[0]  # the probability; every output is computed, as in model.py
        return Response(np.ascontiguousarray(prob, dtype="<f4").tobytes(), mimetype="application/octet-stream")

    @app.get("/ready")
    def ready():
        return "ok"

    return app


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("PEER_PORT", "8700")))
    p.add_argument("--onnx", default=str(ROOT / "model_repository" / "methane_seg" / "1" / "model.onnx"))
    p.add_argument("--threads", type=int, default=8, help="web server threads (requests served at once)")
    p.add_argument("--intra-threads", type=int, default=0, help="onnxruntime threads (0: all cores)")
    a = p.parse_args(argv)
    from waitress import serve

    serve(create_app(a.onnx, a.intra_threads), host=a.host, port=a.port, threads=a.threads, _quiet=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
