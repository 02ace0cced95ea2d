"""`make bench`: every benchmark of issue #8 in one go on this machine, then the report.

    python perf/bench_all.py [--quick] [--out DIR] [--only int8,models,triton,triton-local,peer,client,upload]

Runs, one after another (each alone on the machine, each as its own process):
  int8    export/int8.py: INT8 model, its plume IoU against FP32 and its speed-up
  models  perf/bench_models.py (a): PyTorch, onnxruntime FP32/INT8 per layout and batch, FLOPs, peak
  triton  perf/bench_triton.py (b): Triton under perf_analyzer, every configuration, HTTP and gRPC
  triton-local  the same on the shipped layouts with 1 and 8 tiles per request, over the socket and
          through system shared memory (as the client sends them beside a local server)
  peer    perf/bench_peer.py (c): Triton beside a plain web server, same client
  client  perf/bench_client.py (d): a 5490 x 5490 scene through the client, Triton as shipped; then
          client-2x1-fp32 / client-2x1-int8: the same on a copy served 2 instances x 1 thread without
          batching, with model.onnx (FP32) and a fresh INT8 file (model_repository/ is not changed);
          client-socket: as shipped, but the tiles over the socket instead of shared memory;
          client-source-all: as shipped, but every tile asks for the source heat map too (one pass)
          client-one-view: as shipped, but the heat-map tiles in one view (not turned)
          client-four-views: as shipped, but the heat-map tiles in four views (turned and flipped both ways)
  upload  perf/bench_upload.py (e): Locust against the Flask API with 1024 x 1024 uploads, then one
          user uploading 2048 x 2048 scenes (the largest answered in the request) against 10 s each
then perf/report.py writes DIR/RESULTS.md, DIR/results.png and DIR/results.json. A part that fails
is recorded (errors.json, and in RESULTS.md) and the others still run.

The full run (tens of minutes on 2 cores) writes into perf/. --quick (also BENCH_QUICK=1) runs every
part on a tiny setting (a few minutes) into var/bench-quick/: it checks the pipeline, its figures
are not results. Run it on a quiet machine: every figure is bounded by the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_ONNX as FP32_MODEL  # noqa: E402  (model.onnx; the repository serves INT8 on CPU)

ROOT = Path(__file__).resolve().parent.parent
PERF = ROOT / "perf"

FULL = {
    "int8": ["-m", "export.int8", "--calib", "32", "--n-test", "300", "--speed-seconds", "3", "--speed-rounds", "3"],
    "models": [str(PERF / "bench_models.py"), "--batches", "1,4,8,16", "--seconds", "3", "--rounds", "2"],
    "triton": [str(PERF / "bench_triton.py"), "--concurrency", "1,2,4,8,16", "--protocols", "grpc,http",
               "--window-requests", "30", "--baseline-seconds", "2"],
    "triton-local": [str(PERF / "bench_triton.py"), "--configs", "2x1-nobatch-uint16,1x2-nobatch-uint16",
                     "--batch", "1,8", "--shared-memory", "none,system", "--concurrency", "1,4,8,16",
                     "--protocols", "grpc,http", "--window-requests", "30", "--baseline-seconds", "2"],
    "peer": [str(PERF / "bench_peer.py"), "--concurrency", "1,2,4,8", "--seconds", "5", "--rounds", "2"],
    "client": [str(PERF / "bench_client.py"), "--size", "5490"],
    "client-2x1-fp32": [str(PERF / "bench_client.py"), "--size", "5490", "--variant", "2x1-nobatch", "--onnx", "FP32"],
    "client-2x1-int8": [str(PERF / "bench_client.py"), "--size", "5490", "--variant", "2x1-nobatch", "--onnx", "INT8"],
    "client-socket": [str(PERF / "bench_client.py"), "--size", "5490", "--shared-memory", "none"],
    "client-source-all": [str(PERF / "bench_client.py"), "--size", "5490", "--source-margin", "all"],
    "client-one-view": [str(PERF / "bench_client.py"), "--size", "5490", "--source-views", "1"],
    "client-four-views": [str(PERF / "bench_client.py"), "--size", "5490", "--source-views", "4"],
    "upload": [str(PERF / "bench_upload.py"), "--users", "1,4", "--seconds", "60", "--largest-seconds", "60"],
}
QUICK = {
    "int8": ["-m", "export.int8", "--calib", "4", "--n-test", "8", "--speed-seconds", "0.5", "--speed-rounds", "1"],
    "models": [str(PERF / "bench_models.py"), "--batches", "1,4", "--seconds", "0.5", "--rounds", "1",
               "--peak-seconds", "1.5"],
    "triton": [str(PERF / "bench_triton.py"), "--configs", "2x1-nobatch-uint16,1x2-dyn-uint16",
               "--concurrency", "1,4", "--protocols", "grpc,http", "--window-requests", "5", "--trials", "3",
               "--baseline-seconds", "0.3"],
    "triton-local": [str(PERF / "bench_triton.py"), "--configs", "2x1-nobatch-uint16", "--batch", "1,8",
                     "--shared-memory", "none,system", "--concurrency", "4", "--protocols", "grpc",
                     "--window-requests", "5", "--trials", "3", "--baseline-seconds", "0.3"],
    "peer": [str(PERF / "bench_peer.py"), "--concurrency", "1,4", "--seconds", "1", "--rounds", "1"],
    "client": [str(PERF / "bench_client.py"), "--size", "1024"],
    "client-2x1-int8": [str(PERF / "bench_client.py"), "--size", "1024", "--variant", "2x1-nobatch", "--onnx", "INT8"],
    "client-socket": [str(PERF / "bench_client.py"), "--size", "1024", "--shared-memory", "none"],
    "client-source-all": [str(PERF / "bench_client.py"), "--size", "1024", "--source-margin", "all"],
    "client-one-view": [str(PERF / "bench_client.py"), "--size", "1024", "--source-views", "1"],
    "upload": [str(PERF / "bench_upload.py"), "--users", "1", "--seconds", "8", "--largest-seconds", "1"],
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK", "") not in ("", "0"))
    p.add_argument("--out", help="where RESULTS.md, results.png, results.json go (default perf/, quick: "
                                 "var/bench-quick/)")
    p.add_argument("--only", help="comma-separated parts (default all)")
    a = p.parse_args(argv)
    plan = QUICK if a.quick else FULL
    parts = a.only.split(",") if a.only else list(plan)
    out = Path(a.out) if a.out else (ROOT / "var" / "bench-quick" if a.quick else PERF)
    work = out / "raw" if a.quick else ROOT / "var" / "bench"
    work.mkdir(parents=True, exist_ok=True)
    errors = {}
    t_all = time.monotonic()
    for i, part in enumerate(parts, 1):
        int8_model = work / "model_int8.onnx"
        if "INT8" in plan[part] and not int8_model.exists():
            print(f"== {part}: skipped, no INT8 model (the int8 part did not run)", flush=True)
            continue
        args = [str(int8_model) if x == "INT8" else str(FP32_MODEL) if x == "FP32" else x
                for x in plan[part]] + ["--json", str(work / f"{part}.json")]
        if part == "int8":
            args += ["--out", str(work / "model_int8.onnx")]
        if part == "models" and (work / "model_int8.onnx").exists() and "int8" in parts:
            args += ["--int8", str(work / "model_int8.onnx")]
        (work / f"{part}.json").unlink(missing_ok=True)
        print(f"== [{i}/{len(parts)}] {part} ({'quick' if a.quick else 'full'}); "
              f"{time.monotonic() - t_all:.0f} s so far", flush=True)
        t0 = time.monotonic()
        done = subprocess.run([sys.executable] + args, cwd=ROOT)
        print(f"== {part}: exit {done.returncode} after {time.monotonic() - t0:.0f} s", flush=True)
        if done.returncode != 0 or not (work / f"{part}.json").exists():
            errors[part] = f"exit code {done.returncode} (see the log above)"
    (work / "errors.json").write_text(json.dumps(errors, indent=1))
    title = "Performance results (issue #8)" + (" - QUICK MODE: pipeline check, not results" if a.quick else "")
    rep = subprocess.run([sys.executable, str(PERF / "report.py"), "--work", str(work), "--out", str(out),
                          "--title", title], cwd=ROOT)
    print(f"== all done in {time.monotonic() - t_all:.0f} s; report in {out}", flush=True)
    return 1 if rep.returncode != 0 else (2 if errors else 0)


if __name__ == "__main__":
    raise SystemExit(main())
