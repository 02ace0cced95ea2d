"""GPU figures for issue #8 (run by perf/gpu.sh on a machine with an NVIDIA GPU; nothing here runs on CPU).

    python perf/gpu_bench.py [--batches 1,2,4,8,16,32,64] [--parts torch,tensorrt,triton] [--json FILE] [--md FILE]

- torch: the served architecture in PyTorch with FP16 autocast (the feature extraction stays FP32, as in the
  FP16 export), channels_last, eager and replayed as CUDA graphs, tiles/s per batch (CUDA-event timing);
- tensorrt: TensorRT FP16 via trtexec (or polygraphy when trtexec is absent) on the served ONNX with its
  input made float32 (TensorRT has no uint16 tensors), one profile per batch;
- triton: Triton's gain from dynamic batching on the GPU: the NVIDIA container's tritonserver with the
  native onnxruntime backend (configs/onnxruntime_gpu.pbtxt) when present, else the pip tritonserver's
  Python backend with onnxruntime's CUDA provider (onnxruntime-gpu); perf_analyzer at 1..64 in flight,
  dynamic batching on and off.
A part that cannot run says why in the JSON and the Markdown; the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_ONNX, DEFAULT_REPOSITORY, MODEL_NAME, ROOT, log, model_tile_size  # noqa: E402


def gpu_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


# -- PyTorch ------------------------------------------------------------------------------------
def bench_torch(batches: list[int], tile: int, iters: int, checkpoint: str | None) -> dict:
    import torch

    from bench_models import torch_model

    if not torch.cuda.is_available():
        return {"skipped": "torch sees no CUDA device"}
    meta = json.loads((DEFAULT_ONNX.parent / "metadata.json").read_text())
    model, weights = torch_model(meta, checkpoint)
    model = model.cuda().eval().to(memory_format=torch.channels_last)
    torch.backends.cudnn.benchmark = True
    rows = []
    for b in batches:
        x = torch.full((b, 6, tile, tile), 2000.0, device="cuda").to(memory_format=torch.channels_last)

        def step():
            with torch.autocast("cuda", dtype=torch.float16, cache_enabled=False):
                return torch.sigmoid(model(x))

        row = {"batch": b}
        try:
            with torch.inference_mode():
                for _ in range(5):
                    step()
                torch.cuda.synchronize()
                row["eager_tiles_per_s"] = round(b * iters / _cuda_time(step, iters), 1)
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    for _ in range(3):
                        step()
                torch.cuda.current_stream().wait_stream(s)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    step()
                row["graph_tiles_per_s"] = round(b * iters / _cuda_time(graph.replay, iters), 1)
                row["graph_ms_per_batch"] = round(1000 * b / row["graph_tiles_per_s"], 3)
        except torch.cuda.OutOfMemoryError as exc:
            row["error"] = f"out of memory: {exc}"[:200]
        rows.append(row)
        log(f"torch fp16 batch {b}: {row}")
        torch.cuda.empty_cache()
    return {"weights": weights, "rows": rows, "precision": "fp16 autocast, channels_last"}


def _cuda_time(fn, iters: int) -> float:
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000.0


# -- TensorRT -----------------------------------------------------------------------------------
def float_input_onnx(dst: Path) -> Path:
    import onnx

    m = onnx.load(str(DEFAULT_ONNX))
    m.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT  # the first Cast becomes float->float
    onnx.save(m, str(dst))
    return dst


def bench_tensorrt(batches: list[int], tile: int, workdir: Path) -> dict:
    onnx_path = float_input_onnx(workdir / "model_float_input.onnx")
    trtexec = shutil.which("trtexec") or next((p for p in ("/usr/src/tensorrt/bin/trtexec",) if Path(p).exists()), None)
    rows = []
    if trtexec:
        for b in batches:
            shape = f"reflectance:{b}x6x{tile}x{tile}"
            cmd = [trtexec, f"--onnx={onnx_path}", "--fp16", f"--minShapes={shape}", f"--optShapes={shape}",
                   f"--maxShapes={shape}", f"--shapes={shape}", "--useCudaGraph", "--noDataTransfers",
                   "--duration=5", "--warmUp=500"]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            qps = re.search(r"Throughput: ([\d.]+) qps", done.stdout)
            med = re.search(r"GPU Compute Time: .*?median = ([\d.]+) ms", done.stdout)
            row = {"batch": b, "tool": "trtexec"}
            if done.returncode == 0 and qps:
                row.update(tiles_per_s=round(float(qps.group(1)) * b, 1),
                           gpu_ms_median=float(med.group(1)) if med else None)
            else:
                row["error"] = (done.stdout + done.stderr)[-500:]
            rows.append(row)
            log(f"tensorrt fp16 batch {b}: {row}")
        return {"rows": rows, "input": "float32 (uint16 has no TensorRT type)"}
    if shutil.which("polygraphy"):
        for b in batches:
            shape = f"reflectance:[{b},6,{tile},{tile}]"
            cmd = ["polygraphy", "run", str(onnx_path), "--trt", "--fp16", "--trt-min-shapes", shape,
                   "--trt-opt-shapes", shape, "--trt-max-shapes", shape, "--input-shapes", shape,
                   "--iterations", "200"]
            t0 = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            # "[I] trt-runner-N0-... | Completed 200 iteration(s) in 1234 ms | Average inference time: 6.17 ms."
            inf = re.search(r"trt-runner.*?average inference time: ([\d.]+) ms", done.stdout + done.stderr, re.I | re.S)
            row = {"batch": b, "tool": "polygraphy", "wall_s": round(time.perf_counter() - t0, 1)}
            if done.returncode == 0 and inf:
                row.update(ms_per_batch=float(inf.group(1)), tiles_per_s=round(b * 1000 / float(inf.group(1)), 1))
            else:
                row["error"] = (done.stdout + done.stderr)[-500:]
            rows.append(row)
            log(f"tensorrt fp16 batch {b}: {row}")
        return {"rows": rows, "input": "float32 (uint16 has no TensorRT type)",
                "note": "polygraphy's time includes host-device copies; trtexec's does not (--noDataTransfers)"}
    return {"skipped": "neither trtexec nor polygraphy is installed (NVIDIA's TensorRT or Triton container has "
                       "trtexec; `pip install polygraphy tensorrt` gives polygraphy)"}


# -- Triton -------------------------------------------------------------------------------------
def native_tritonserver() -> str | None:
    for p in (os.environ.get("TRITONSERVER"), "/opt/tritonserver/bin/tritonserver"):
        if p and Path(p).exists():
            return p
    return None


def gpu_repository(dst: Path, dynamic: bool, native: bool, max_batch: int) -> Path:
    """A model repository for the GPU: the native onnxruntime backend's config (NVIDIA's container), or
    the Python backend with onnxruntime's CUDA provider in front."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    src = DEFAULT_REPOSITORY / MODEL_NAME
    model_dir = dst / MODEL_NAME
    (model_dir / "1").mkdir(parents=True)
    shutil.copy2(src / "1" / "model.onnx", model_dir / "1" / "model.onnx")
    if native:
        config = text_format.Parse((src / "configs" / "onnxruntime_gpu.pbtxt").read_text(), mc.ModelConfig())
    else:
        config = text_format.Parse((src / "config.pbtxt").read_text(), mc.ModelConfig())
        shutil.copy2(src / "1" / "metadata.json", model_dir / "1" / "metadata.json")
        code = (src / "1" / "model.py").read_text()
        code = code.replace('providers=["CPUExecutionProvider"]',
                            'providers=["CUDAExecutionProvider", "CPUExecutionProvider"]')
        (model_dir / "1" / "model.py").write_text(code)
        del config.instance_group[:]
        config.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_GPU)
    config.max_batch_size = max_batch
    if dynamic:
        config.dynamic_batching.max_queue_delay_microseconds = 1000
        del config.dynamic_batching.preferred_batch_size[:]
    else:
        config.ClearField("dynamic_batching")
    (model_dir / "config.pbtxt").write_text(text_format.MessageToString(config))
    return dst


def bench_triton(levels: list[int], tile: int, workdir: Path) -> dict:
    from bench_triton import run_perf_analyzer
    from serving.tritonserver import TritonServer, free_port
    from common import PerfAnalyzer, sample_tiles

    native = native_tritonserver()
    if not native:
        try:
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                return {"skipped": "no native tritonserver (NVIDIA's container) and onnxruntime has no CUDA "
                                   "provider (pip install onnxruntime-gpu): Triton would run on the CPU"}
        except ImportError:
            return {"skipped": "onnxruntime is not installed"}
    pa = PerfAnalyzer() if (Path(sys.executable).parent / "perf_analyzer").exists() or shutil.which(
        "perf_analyzer") else None
    if pa is None:
        return {"skipped": "perf_analyzer not found"}
    input_dir = workdir / "input"
    input_dir.mkdir(exist_ok=True)
    sample_tiles(1, tile)[0].tofile(input_dir / "reflectance")
    points = []
    try:
        for dynamic in (False, True):
            repo = gpu_repository(workdir / f"repo-{'dyn' if dynamic else 'nobatch'}", dynamic, bool(native),
                                  max(levels))
            if native:
                ports = [free_port() for _ in range(3)]
                proc = subprocess.Popen([native, f"--model-repository={repo}", f"--http-port={ports[0]}",
                                         f"--grpc-port={ports[1]}", f"--metrics-port={ports[2]}"],
                                        stdout=open(workdir / "triton.log", "ab"), stderr=subprocess.STDOUT)
                url, stop = f"127.0.0.1:{ports[1]}", proc.terminate
                _wait_ready(f"http://127.0.0.1:{ports[0]}/v2/health/ready", proc)
            else:
                server = TritonServer(repo).start()
                url, stop = server.grpc_url, server.cleanup
            try:
                for c in levels:
                    r = run_perf_analyzer(pa, url, "grpc", c, input_dir, 50, 5, workdir)
                    r.update(dynamic=dynamic)
                    points.append(r)
                    log(f"triton gpu dynamic={dynamic} c={c}: {r['infer_per_s']:.1f}/s p50 {r['p50_ms']:.1f} ms")
            finally:
                stop()
    finally:
        pa.cleanup()
    on = {p["concurrency"]: p["infer_per_s"] for p in points if p["dynamic"]}
    off = {p["concurrency"]: p["infer_per_s"] for p in points if not p["dynamic"]}
    gain = {c: round(on[c] / off[c], 3) for c in on if c in off and off[c]}
    return {"server": native or "pip tritonserver, Python backend + onnxruntime CUDA provider", "points": points,
            "dynamic_batching_gain": gain}


def _wait_ready(url: str, proc, timeout: float = 180.0) -> None:
    from serving.ready import wait_for_url

    wait_for_url(url, timeout, proc, interval=0.5, what="tritonserver")


def _not_measured(part: dict) -> str:
    if not part:
        return "Not run in this measurement (not among --parts)."
    return f"Not measured: {part.get('skipped') or part.get('error')}"


def markdown(res: dict) -> str:
    L = ["# GPU figures (perf/gpu.sh)", "", f"Card: **{res['gpu']}**; measured {res['date_utc']}; "
         f"model sha256 `{res['model_sha256'][:16]}`.", ""]
    t = res.get("torch", {})
    L += ["## PyTorch FP16 (autocast, channels_last)", ""]
    if "rows" in t:
        L += [f"{res.get('tile', 256)}×{res.get('tile', 256)} tiles, weights: {t.get('weights', '?')}.", "",
              "| batch | eager tiles/s | CUDA graph tiles/s | ms per batch (graph) |", "|---|---|---|---|"]
        L += [f"| {r['batch']} | {r.get('eager_tiles_per_s', r.get('error', '–'))} | {r.get('graph_tiles_per_s', '–')} | "
              f"{r.get('graph_ms_per_batch', '–')} |" for r in t["rows"]]
    else:
        L.append(_not_measured(t))
    t = res.get("tensorrt", {})
    L += ["", "## TensorRT FP16", ""]
    if "rows" in t:
        L += ["| batch | tool | tiles/s |", "|---|---|---|"]
        L += [f"| {r['batch']} | {r['tool']} | {r.get('tiles_per_s', r.get('error', '–'))} |" for r in t["rows"]]
    else:
        L.append(_not_measured(t))
    t = res.get("triton", {})
    L += ["", "## Triton: dynamic batching on the GPU", ""]
    if "points" in t:
        L += [f"Server: {t['server']}.", "", "| in flight | batching off tiles/s | on tiles/s | on/off |", "|---|---|---|---|"]
        off = {p["concurrency"]: p for p in t["points"] if not p["dynamic"]}
        on = {p["concurrency"]: p for p in t["points"] if p["dynamic"]}
        for c in sorted(on):
            if c in off:
                L.append(f"| {c} | {off[c]['infer_per_s']:.1f} | {on[c]['infer_per_s']:.1f} | "
                         f"{t['dynamic_batching_gain'].get(c, '–')} |")
    else:
        L.append(_not_measured(t))
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    from common import conditions

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", default="1,2,4,8,16,32,64")
    p.add_argument("--concurrency", default="1,2,4,8,16,32,64")
    p.add_argument("--parts", default="torch,tensorrt,triton")
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--checkpoint")
    p.add_argument("--json", default=str(ROOT / "var" / "bench-gpu" / "gpu.json"))
    p.add_argument("--md", default=str(ROOT / "perf" / "GPU_RESULTS.md"))
    a = p.parse_args(argv)
    batches = [int(b) for b in a.batches.split(",")]
    levels = [int(c) for c in a.concurrency.split(",")]
    tile = model_tile_size()
    cond = conditions(DEFAULT_ONNX)
    res = {"gpu": gpu_name(), "tile": tile, "date_utc": cond["date_utc"], "model_sha256": cond["model_sha256"], "cpu": cond["cpu"]}
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        for part in a.parts.split(","):
            try:
                if part == "torch":
                    res["torch"] = bench_torch(batches, tile, a.iters, a.checkpoint)
                elif part == "tensorrt":
                    res["tensorrt"] = bench_tensorrt(batches, tile, Path(tmp))
                elif part == "triton":
                    res["triton"] = bench_triton(levels, tile, Path(tmp))
            except Exception as exc:  # one part failing must not lose the others
                res[part] = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
                log(f"{part} failed: {exc}")
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    Path(a.md).write_text(markdown(res))
    print(f"wrote {a.json} and {a.md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
