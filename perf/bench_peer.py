"""Benchmark (c): Triton beside the peer a user would otherwise build (perf/peer_server.py: a plain
web server running the model inside each request), loaded by the same client.

    python perf/bench_peer.py [--concurrency 1,2,4,8] [--seconds 5] [--rounds 1] [--json FILE]

The load driver here keeps N requests in flight (N threads, one tile of the model's size per request,
each thread with its own keep-alive connection) against each target over HTTP, interleaved level
by level: the peer, Triton as shipped (model_repository/ unchanged), and Triton with
--triton-variant (default 2 instances x 1 thread, no dynamic batching). Tiles/s and latency
percentiles per level; in-process onnxruntime (best layout at batch 1) is measured in each round too.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (DEFAULT_REPOSITORY, MODEL_NAME, ROOT, conditions, log, measure_layout,  # noqa: E402
                    model_tile_size, repository_variant, run_workers, sample_tiles, served_onnx, write_json)


class PeerTarget:
    def __init__(self, url: str):
        self.host, self.port = url.split(":")
        self._local = threading.local()

    def __call__(self, tile: np.ndarray) -> np.ndarray:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self.host, int(self.port), timeout=120)
        conn.request("POST", "/infer", body=tile.tobytes(),
                     headers={"X-Shape": ",".join(map(str, tile.shape)), "Content-Type": "application/octet-stream"})
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"peer answered {r.status}")
        return np.frombuffer(body, dtype="<f4")


class TritonTarget:
    """tritonclient over HTTP with binary tensors, one client per thread (what client/segmenter.py does)."""

    def __init__(self, url: str):
        self.url = url
        self._local = threading.local()

    def __call__(self, tile: np.ndarray) -> np.ndarray:
        import tritonclient.http as th

        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = th.InferenceServerClient(self.url, network_timeout=120)
        inp = th.InferInput("reflectance", list(tile.shape), "UINT16")
        inp.set_data_from_numpy(tile, binary_data=True)
        out = th.InferRequestedOutput("probability", binary_data=True)
        return client.infer(MODEL_NAME, [inp], outputs=[out]).as_numpy("probability")


def drive(target, tile: np.ndarray, in_flight: int, seconds: float) -> dict:
    """`in_flight` threads, each sending one tile at a time back to back."""
    fns = [lambda: target(tile) for _ in range(in_flight)]
    return run_workers(fns, seconds, items_per_call=len(tile))


def wait_http(url: str, timeout: float = 60.0) -> None:
    from serving.ready import wait_for_url

    wait_for_url(url, timeout, interval=0.2)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repository", default=str(DEFAULT_REPOSITORY))
    p.add_argument("--concurrency", default="1,2,4,8")
    p.add_argument("--seconds", type=float, default=5.0, help="per target and level")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--triton-variant", default="2x1-nobatch", help="LAYOUT-(dyn|nobatch), or none")
    p.add_argument("--json")
    a = p.parse_args(argv)
    from serving.tritonserver import TritonServer, free_port

    levels = [int(c) for c in a.concurrency.split(",")]
    onnx = str(served_onnx(a.repository))  # the file Triton serves: same model on both sides
    tile = sample_tiles(1, model_tile_size(a.repository))[:1]
    servers, procs = [], []
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
            port = free_port()
            procs.append(subprocess.Popen([sys.executable, str(ROOT / "perf" / "peer_server.py"), "--port", str(port),
                                           "--onnx", onnx], cwd=ROOT))
            targets = {"peer": PeerTarget(f"127.0.0.1:{port}")}
            shipped = TritonServer(a.repository).start()
            servers.append(shipped)
            targets["triton-shipped"] = TritonTarget(shipped.http_url)
            if a.triton_variant != "none":
                layout, mode = a.triton_variant.split("-")
                inst, threads = (int(v) for v in layout.split("x"))
                repo = repository_variant(Path(tmp) / "repo", instances=inst, threads=threads,
                                          dynamic=(mode == "dyn"), source=a.repository)
                variant = TritonServer(repo).start()
                servers.append(variant)
                targets[f"triton-{a.triton_variant}"] = TritonTarget(variant.http_url)
            wait_http(f"http://127.0.0.1:{port}/ready")
            log(f"bench_peer: targets {list(targets)}, levels {levels}, {a.seconds} s each")
            baselines = []
            for rnd in range(a.rounds):
                base = max(measure_layout(onnx, (2, 1), tile, a.seconds)["items_per_s"],
                           measure_layout(onnx, (1, 2), tile, a.seconds)["items_per_s"])
                baselines.append(base)
                log(f"round {rnd + 1}: in-process onnxruntime {base} tiles/s")
                for c in levels:
                    for name, target in targets.items():
                        r = drive(target, tile, c, a.seconds)
                        rows.append({"target": name, "in_flight": c, "round": rnd, **r})
                        log(f"  {name} x{c}: {r['items_per_s']} tiles/s, p50 {r['p50_ms']} ms")
    finally:
        for s in servers:
            s.cleanup()
        for pr in procs:
            pr.terminate()
            pr.wait(timeout=10)
    summary = {}
    for r in rows:
        summary.setdefault(r["target"], {}).setdefault(r["in_flight"], []).append(r)
    table = [{"target": t, "in_flight": c, "tiles_per_s": round(float(np.median([r["items_per_s"] for r in rs])), 2),
              "p50_ms": round(float(np.median([r["p50_ms"] for r in rs])), 1),
              "p95_ms": round(float(np.median([r["p95_ms"] for r in rs])), 1)}
             for t, by in summary.items() for c, rs in sorted(by.items())]
    out = {"conditions": conditions(onnx), "levels": levels, "table": table, "runs": rows,
           "inprocess_tiles_per_s": baselines, "settings": {"seconds": a.seconds, "rounds": a.rounds,
                                                            "triton_variant": a.triton_variant}}
    print(json.dumps(table))
    if a.json:
        write_json(a.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
