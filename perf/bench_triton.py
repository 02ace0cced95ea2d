"""Benchmark (b): the real Triton server under perf_analyzer, beside in-process onnxruntime.

    python perf/bench_triton.py [--concurrency 1,2,4,8,16] [--protocols grpc,http]
                                [--configs all|NAME,...] [--batch 1,8] [--shared-memory none,system]
                                [--json FILE]

For each configuration (dynamic batching on/off x 1 instance x 2 threads / 2 instances x 1 thread
x uint16 / float32 input), a temporary copy of model_repository/ gets a modified config.pbtxt
(float32: the ONNX input is made float too), the pip tritonserver is started on it with
serving/tritonserver.py, and perf_analyzer (the tritonclient 2.51 wheel's binary) measures it over each
protocol at each concurrency, sending a real simulated tile: `--batch 1` (one tile per request) and
`--batch 8` (8 tiles per request, as perf/bench_client.py's client sends them), over the socket and,
with `--shared-memory none,system`, through system shared memory as the client does when Triton runs
on its host (client/shm.py). Before and after each configuration, with no server running, in-process
onnxruntime is measured at the same batch in both layouts: the Triton figures are divided by the mean
of the two, so that the machine's drift during a configuration weighs on both sides.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (DEFAULT_REPOSITORY, MODEL_NAME, PerfAnalyzer, conditions, log,  # noqa: E402
                    measure_layout, model_tile_size, repository_variant, sample_tiles, served_onnx, write_json)

LAYOUTS = {"1x2": (1, 2), "2x1": (2, 1)}  # Triton: instances x onnxruntime threads each


def all_configs() -> list[dict]:
    out = []
    for dtype in ("uint16", "float32"):
        for dyn in (False, True):
            for layout in ("1x2", "2x1"):
                out.append({"name": f"{layout}-{'dyn' if dyn else 'nobatch'}-{dtype}", "layout": layout,
                            "dynamic": dyn, "dtype": dtype})
    return out


def parse_csv(text: str, stdout: str = "") -> dict:
    """perf_analyzer's -f CSV: one row per concurrency; latencies in microseconds. The mean latency
    and the request count are in its printed summary only."""
    row = next(csv.DictReader(io.StringIO(text)))
    avg = re.search(r"Avg latency: (\d+) usec", stdout)
    count = re.search(r"Request count: (\d+)", stdout)
    us = lambda k: float(row[k]) / 1000.0  # noqa: E731  -> ms
    return {
        "concurrency": int(row["Concurrency"]),
        "infer_per_s": float(row["Inferences/Second"]),
        "p50_ms": us("p50 latency"), "p90_ms": us("p90 latency"), "p95_ms": us("p95 latency"),
        "p99_ms": us("p99 latency"), "avg_ms": float(avg.group(1)) / 1000.0 if avg else None,
        "requests": int(count.group(1)) if count else None,
        "server_queue_ms": us("Server Queue"), "server_compute_ms": us("Server Compute Infer"),
        "client_send_ms": us("Client Send"), "client_recv_ms": us("Client Recv"),
    }


def run_perf_analyzer(pa: PerfAnalyzer, url: str, protocol: str, concurrency: int, input_dir: Path,
                      window_requests: int, trials: int, workdir: Path, batch: int = 1,
                      shared_memory: str = "none", output_bytes: int = 0) -> dict:
    """One concurrency level. Windows of at least `window_requests` requests (count_windows: the
    same statistical weight at every concurrency); stable when 3 windows agree within 15 %, else
    retried with a wider band and more windows (the figure records which band it met)."""
    out_csv = workdir / f"pa-{protocol}-{concurrency}-b{batch}.csv"
    base = [str(pa.binary), "-m", MODEL_NAME, "-u", url, "-i", protocol, "-b", str(batch),
            "--concurrency-range", f"{concurrency}:{concurrency}", "--input-data", str(input_dir),
            "--measurement-mode", "count_windows", "--measurement-request-count", str(window_requests),
            "-f", str(out_csv)]
    if shared_memory != "none":  # tensors through the server's shared memory, not the socket (local clients)
        base += [f"--shared-memory={shared_memory}", f"--output-shared-memory-size={output_bytes}"]
    last = ""
    for stability, more in ((15, 0), (30, 2), (100, 4)):  # a drifting machine: widen the band rather than fail
        out_csv.unlink(missing_ok=True)
        done = subprocess.run(base + ["-s", str(stability), "-r", str(trials + more)], capture_output=True,
                              text=True, env=pa.env, timeout=600)
        if done.returncode == 0 and out_csv.exists():
            r = parse_csv(out_csv.read_text(), done.stdout)
            r["stability_pct"] = stability
            return r
        last = (done.stdout + done.stderr)[-1500:]
    raise RuntimeError(f"perf_analyzer failed ({protocol}, concurrency {concurrency}):\n{last}")


def baseline(onnx: str, tile: np.ndarray, seconds: float, batch: int = 1) -> dict:
    """In-process onnxruntime at `batch` tiles per call, one call at a time: 1 session x 2 threads and
    1 session x 1 thread (the latency a request could have); 2 sessions x 1 thread side by side (the
    throughput)."""
    out = {"batch": batch}
    tiles = np.repeat(tile[None], batch, axis=0)
    for name, layout in (("1x2", (1, 2)), ("1x1", (1, 1)), ("2x1", (2, 1))):
        r = measure_layout(onnx, layout, tiles, seconds)
        out[name] = {"tiles_per_s": r["items_per_s"], "p50_ms": r["p50_ms"], "p95_ms": r["p95_ms"]}
    out["best_tiles_per_s"] = max(out[k]["tiles_per_s"] for k in ("1x2", "2x1"))
    out["best_p50_ms"] = min(out[k]["p50_ms"] for k in ("1x2", "1x1"))
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repository", default=str(DEFAULT_REPOSITORY))
    p.add_argument("--configs", default="all", help="all, or names such as 2x1-nobatch-uint16,1x2-dyn-uint16")
    p.add_argument("--protocols", default="grpc,http")
    p.add_argument("--concurrency", default="1,2,4,8,16")
    p.add_argument("--shared-memory", default="none",
                   help="none and/or system (comma-separated): perf_analyzer passes the tensors in system shared "
                        "memory, as the client does on the server's host (client/shm.py)")
    p.add_argument("--batch", default="1", help="tiles per request (perf_analyzer -b); the client sends 8")
    p.add_argument("--window-requests", type=int, default=30, help="requests per perf_analyzer window")
    p.add_argument("--trials", type=int, default=4, help="perf_analyzer windows at most per point")
    p.add_argument("--queue-delay-us", type=int, default=2000, help="dynamic batching's max queue delay")
    p.add_argument("--baseline-seconds", type=float, default=3.0)
    p.add_argument("--server-args", default="", help="extra tritonserver flags, space-separated (e.g. "
                   "--backend-config=python,shm-default-byte-size=16777216)")
    p.add_argument("--json")
    return p


def _plan(p: argparse.ArgumentParser, a: argparse.Namespace) -> dict:
    """The configurations, protocols, concurrency levels, batches and transports the flags name
    (argparse's error for an unknown one)."""
    configs = all_configs()
    if a.configs != "all":
        wanted = a.configs.split(",")
        configs = [c for c in configs if c["name"] in wanted]
        if len(configs) != len(wanted):
            p.error(f"unknown configuration in {wanted}; known: {[c['name'] for c in all_configs()]}")
    transports = a.shared_memory.split(",")
    if not set(transports) <= {"none", "system"}:
        p.error(f"--shared-memory takes none and/or system, not {a.shared_memory!r}")
    return {"configs": configs, "protocols": a.protocols.split(","),
            "levels": [int(c) for c in a.concurrency.split(",")],
            "batches": [int(b) for b in a.batch.split(",")], "transports": transports}


def write_inputs(tile: np.ndarray, folder: Path) -> dict:
    """perf_analyzer's --input-data folders, one per input type: the tile as raw binary."""
    inputs = {}
    for dtype, np_type in (("uint16", np.uint16), ("float32", np.float32)):
        d = folder / f"input-{dtype}"
        d.mkdir()
        tile.astype(np_type).tofile(d / "reflectance")  # raw binary, one file per input
        inputs[dtype] = d
    return inputs


def measure_point(pa: PerfAnalyzer, server, cfg: dict, base: dict, point: tuple, a: argparse.Namespace,
                  inputs: dict, tile_size: int, tmp: Path) -> dict:
    """perf_analyzer at one (batch, transport, protocol, concurrency) of a running configuration,
    with its ratios to the in-process baseline `base` measured before it."""
    b, sm, proto, c = point
    url = server.grpc_url if proto == "grpc" else server.http_url
    r = run_perf_analyzer(pa, url, proto, c, inputs[cfg["dtype"]], a.window_requests, a.trials, tmp, batch=b,
                          shared_memory=sm, output_bytes=4 * tile_size * tile_size * b)
    threads = LAYOUTS[cfg["layout"]][1]
    r.update(config=cfg["name"], layout=cfg["layout"], dynamic=cfg["dynamic"],
             dtype=cfg["dtype"], protocol=proto, batch=b, shared_memory=sm,
             baseline_tiles_per_s=base["best_tiles_per_s"],
             baseline_p50_ms=base["best_p50_ms"],
             ratio_to_inprocess=round(r["infer_per_s"] / base["best_tiles_per_s"], 3),
             # one request at a time: against the best in-process latency, and against
             # in-process with the instance's own thread count
             latency_over_inprocess_ms=round(r["p50_ms"] - base["best_p50_ms"], 2),
             latency_over_same_threads_ms=round(
                 r["p50_ms"] - base[f"1x{threads}"]["p50_ms"], 2))
    return r


def measure_config(cfg: dict, plan: dict, a: argparse.Namespace, pa: PerfAnalyzer, onnx: str, tile: np.ndarray,
                   inputs: dict, tmp: Path, failed: list, label: str) -> tuple[list, list]:
    """One configuration: in-process baselines, its server under perf_analyzer at every point of the
    plan (a failed point is appended to `failed`), baselines again. Returns its points (each ratio to
    the mean of the baselines before and after) and the baselines."""
    from serving.tritonserver import TritonServer

    batches = plan["batches"]
    bases = {b: baseline(onnx, tile, a.baseline_seconds, b) for b in batches}
    for b, base in bases.items():
        log(f"{label} {cfg['name']}: in-process baseline at batch {b}: "
            f"{base['best_tiles_per_s']} tiles/s, p50 {base['best_p50_ms']} ms")
    inst, threads = LAYOUTS[cfg["layout"]]
    repo = repository_variant(tmp / f"repo-{cfg['name']}", instances=inst, threads=threads,
                              dynamic=cfg["dynamic"], dtype=cfg["dtype"],
                              queue_delay_us=a.queue_delay_us, source=a.repository)
    server = TritonServer(repo, extra_args=a.server_args.split())
    points = []
    try:
        server.start()
        grid = [(b, sm, proto, c) for b in batches for sm in plan["transports"] for proto in plan["protocols"]
                for c in plan["levels"]]
        for b, sm, proto, c in grid:
            where = f"{proto} b={b} {'shm' if sm == 'system' else 'socket'} c={c}"
            try:
                r = measure_point(pa, server, cfg, bases[b], (b, sm, proto, c), a, inputs, tile.shape[-1], tmp)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:  # one point, not the run
                failed.append({"config": cfg["name"], "protocol": proto, "concurrency": c,
                               "batch": b, "shared_memory": sm, "error": str(exc)[-600:]})
                log(f"    {where}: FAILED ({str(exc)[-200:]})")
                continue
            points.append(r)
            log(f"    {where}: {r['infer_per_s']:.1f}/s ({r['ratio_to_inprocess']:.2f}x "
                f"in-process), p50 {r['p50_ms']:.1f} ms, queue {r['server_queue_ms']:.1f} ms")
    finally:
        server.cleanup()
    # In-process again after the configuration: each ratio is to the mean of the two, so that
    # the machine's drift during the configuration's minutes weighs on both sides.
    after = {b: baseline(onnx, tile, a.baseline_seconds, b) for b in batches}
    for r in points:
        b = r["batch"]
        mean = (bases[b]["best_tiles_per_s"] + after[b]["best_tiles_per_s"]) / 2
        r.update(baseline_tiles_per_s=round(mean, 2),
                 baseline_before_after=[bases[b]["best_tiles_per_s"], after[b]["best_tiles_per_s"]],
                 ratio_to_inprocess=round(r["infer_per_s"] / mean, 3))
    baselines = []
    for b in batches:
        log(f"{label} {cfg['name']}: in-process after, batch {b}: "
            f"{after[b]['best_tiles_per_s']} tiles/s (before {bases[b]['best_tiles_per_s']})")
        baselines.append({"config": cfg["name"], **bases[b], "when": "before"})
        baselines.append({"config": cfg["name"], **after[b], "when": "after"})
    return points, baselines


def main(argv=None) -> int:
    p = _parser()
    a = p.parse_args(argv)
    plan = _plan(p, a)
    onnx = str(served_onnx(a.repository))  # the file Triton serves: same model on both sides
    tile_size = model_tile_size(a.repository)
    tile = sample_tiles(1, tile_size)[0]
    pa = PerfAnalyzer()
    points, baselines, failed = [], [], []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-triton-") as tmp:
            tmp = Path(tmp)
            inputs = write_inputs(tile, tmp)
            for i, cfg in enumerate(plan["configs"], 1):
                done, bases = measure_config(cfg, plan, a, pa, onnx, tile, inputs, tmp, failed,
                                             f"[{i}/{len(plan['configs'])}]")
                points += done
                baselines += bases
    finally:
        pa.cleanup()
    out = {"conditions": conditions(onnx), "tile": tile_size, "points": points, "baselines": baselines,
           "failed_points": failed,
           "settings": {"window_requests": a.window_requests, "trials": a.trials, "queue_delay_us": a.queue_delay_us,
                        "concurrency": plan["levels"], "protocols": plan["protocols"], "batches": plan["batches"],
                        "shared_memory": plan["transports"], "server_args": a.server_args,
                        "baseline_seconds": a.baseline_seconds}}
    print(json.dumps([{k: r[k] for k in ("config", "batch", "shared_memory", "protocol", "concurrency", "infer_per_s",
                                         "ratio_to_inprocess")}
                      for r in points]))
    if a.json:
        write_json(a.json, out)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
