"""Shared pieces of the benchmarks: measurement conditions, sample tiles, timing, Triton repository
variants and the perf_analyzer binary's environment. No figures live here."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # scripts run as `python perf/x.py`
    sys.path.insert(0, str(ROOT))

MODEL_NAME = "methane_seg"
MULTIPASS_MODEL_NAME = "methane_seg_multipass"
DEFAULT_REPOSITORY = ROOT / "model_repository"
DEFAULT_ONNX = DEFAULT_REPOSITORY / MODEL_NAME / "1" / "model.onnx"

_T0 = time.monotonic()


def log(msg: str) -> None:
    """Progress line on stderr (stdout stays for results)."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def write_json(path, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, default=float) + "\n")


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def conditions(onnx_path=DEFAULT_ONNX) -> dict:
    """What the figures were measured on."""
    import onnxruntime

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "cpu": cpu_model(),
        "cores": cores,
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "model_file": str(Path(onnx_path).resolve().relative_to(ROOT)) if str(Path(onnx_path).resolve()).startswith(
            str(ROOT)) else str(onnx_path),
        "model_sha256": file_sha256(onnx_path),
    }


def model_tile_size(repository=DEFAULT_REPOSITORY) -> int:
    meta = json.loads((Path(repository) / MODEL_NAME / "1" / "metadata.json").read_text())
    return int(meta.get("tile_size", 256))


def sample_tiles(n: int, tile: int, seed: int = 7_100_000) -> np.ndarray:
    """(n, 6, tile, tile) uint16: real simulated reflectance (with plumes), not random numbers."""
    from training.simulate import simulate_scene

    out = np.empty((n, 6, tile, tile), dtype=np.uint16)
    for i in range(n):
        out[i] = simulate_scene(seed + i, size=max(64, tile), n_sources=1, q_kg_h=8000.0).data[:, :tile, :tile]
    return out


# -- timing -------------------------------------------------------------------------------------
def summarise(latencies_s: list[float], items: int, wall_s: float) -> dict:
    """Throughput and latency percentiles (ms) of a run."""
    lat = np.asarray(latencies_s) * 1000.0
    return {
        "calls": len(lat), "items": items, "wall_s": round(wall_s, 3),
        "items_per_s": round(items / wall_s, 2) if wall_s > 0 else 0.0,
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
        "p95_ms": round(float(np.percentile(lat, 95)), 2) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
        "mean_ms": round(float(lat.mean()), 2) if len(lat) else None,
    }


def run_workers(fns, seconds: float, items_per_call: int, warmup_calls: int = 1, min_calls: int = 2) -> dict:
    """Call each of `fns` in its own thread, back to back, for `seconds`; one worker per function
    (so len(fns) calls are in flight). Returns summarise() over all calls after the warm-up."""
    for fn in fns:
        for _ in range(warmup_calls):
            fn()
    latencies: list[float] = []
    lock = threading.Lock()
    start = time.perf_counter()
    deadline = start + seconds
    errors: list[BaseException] = []

    def worker(fn):
        mine = []
        try:
            while True:
                t = time.perf_counter()
                if t >= deadline and len(mine) >= min_calls:
                    break
                fn()
                mine.append(time.perf_counter() - t)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        with lock:
            latencies.extend(mine)

    if len(fns) == 1:
        worker(fns[0])
    else:
        threads = [threading.Thread(target=worker, args=(fn,)) for fn in fns]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return summarise(latencies, len(latencies) * items_per_call, wall)


def median_of(runs: list[dict], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


# -- onnxruntime ----------------------------------------------------------------------------------
def ort_session(path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def ort_runner(sess, batch: np.ndarray):
    name = sess.get_inputs()[0].name
    if sess.get_inputs()[0].type == "tensor(float)":
        batch = batch.astype(np.float32)
    feed = {name: batch}
    return lambda: sess.run(None, feed)


def measure_layout(path, layout: tuple[int, int], batch: np.ndarray, seconds: float) -> dict:
    """`layout` = (sessions, threads each): that many sessions, each run back to back in its own thread."""
    sessions, threads = layout
    fns = [ort_runner(ort_session(path, threads), batch) for _ in range(sessions)]
    return run_workers(fns, seconds, items_per_call=len(batch))


# -- Triton model repository variants ------------------------------------------------------------
def served_onnx(repository=DEFAULT_REPOSITORY, pair: bool = False) -> Path:
    """The ONNX file the repository's CPU instances serve (config.pbtxt's onnx_file: the INT8 variant
    where export/int8.py found that it holds its gates). In-process baselines use the same file.
    pair: the multi-pass model's."""
    from core.model_files import latest_version, served_onnx as version_onnx

    return version_onnx(latest_version(repository, MULTIPASS_MODEL_NAME if pair else MODEL_NAME))


def repository_variant(dst: Path, *, instances: int, threads: int, dynamic: bool, dtype: str = "uint16",
                       queue_delay_us: int = 2000, source=DEFAULT_REPOSITORY, onnx_file: Path | None = None) -> Path:
    """A copy of the served model's repository under `dst` with a modified config.pbtxt.

    dtype float32 also rewrites the ONNX input to float (the graph's first Cast becomes float->float).
    """
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    src = Path(source) / MODEL_NAME
    model_dir = Path(dst) / MODEL_NAME
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    for name in ("model.py", "metadata.json"):
        shutil.copy2(src / "1" / name, model_dir / "1" / name)
    config = text_format.Parse((src / "config.pbtxt").read_text(), mc.ModelConfig())
    onnx_src = Path(onnx_file) if onnx_file else src / "1" / config.parameters["onnx_file"].string_value
    if dtype == "float32":
        import onnx

        m = onnx.load(str(onnx_src))
        m.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
        onnx.save(m, str(model_dir / "1" / "model.onnx"))
        config.input[0].data_type = mc.TYPE_FP32
        for w in config.model_warmup:
            for inp in w.inputs.values():
                inp.data_type = mc.TYPE_FP32
    else:
        shutil.copy2(onnx_src, model_dir / "1" / "model.onnx")
    config.parameters["onnx_file"].string_value = "model.onnx"
    if "plume_onnx_file" in config.parameters:  # the plume-only twin of this variant's graph
        from export.plume_graph import plume_only_beside

        twin = plume_only_beside(model_dir / "1" / "model.onnx")
        if twin is None:
            del config.parameters["plume_onnx_file"]
        else:
            config.parameters["plume_onnx_file"].string_value = twin.name
    config.parameters["intra_op_threads"].string_value = str(threads)
    del config.instance_group[:]
    config.instance_group.add(count=instances, kind=mc.ModelInstanceGroup.KIND_CPU)
    if dynamic:
        config.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    else:
        config.ClearField("dynamic_batching")
    (model_dir / "config.pbtxt").write_text(text_format.MessageToString(config))
    return Path(dst)


# -- perf_analyzer ------------------------------------------------------------------------------
class PerfAnalyzer:
    """The perf_analyzer binary of the tritonclient wheel with the two libraries it wants by other names
    (libb64.so.0d, libcudart.so.12) linked from nvidia_pytriton.libs in a private folder."""

    def __init__(self):
        binary = Path(sys.executable).parent / "perf_analyzer"
        if not binary.exists():
            found = shutil.which("perf_analyzer")
            if not found:
                raise RuntimeError("perf_analyzer not found (pip install 'tritonclient[all]==2.51.0')")
            binary = Path(found)
        self.binary = binary
        import pytriton

        libs = Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"
        self._dir = Path(tempfile.mkdtemp(prefix="perf-analyzer-libs-"))
        for want, pattern in (("libb64.so.0d", "libb64*.so*"), ("libcudart.so.12", "libcudart*.so*")):
            matches = sorted(libs.glob(pattern))
            if not matches:
                raise RuntimeError(f"no {pattern} in {libs}")
            (self._dir / want).symlink_to(matches[0])
        self.env = dict(os.environ)
        self.env["LD_LIBRARY_PATH"] = ":".join(
            p for p in (str(self._dir), str(libs), os.environ.get("LD_LIBRARY_PATH", "")) if p)

    def cleanup(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)
