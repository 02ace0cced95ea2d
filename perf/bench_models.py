"""Benchmark (a): the serving model in-process, on its tile size, against this machine's FP32 peak.

    python perf/bench_models.py [--batches 1,4,8,16] [--seconds 3] [--rounds 2] [--int8 FILE] [--json FILE]

Measures, interleaved round by round (the machine's speed drifts from minute to minute):
- PyTorch eager (the same architecture, from metadata.json; weights from --checkpoint or random:
  the cost of a CNN does not depend on its weights), one process x all threads;
- onnxruntime FP32 (the served model.onnx) and, with --int8, the INT8 model, in each thread
  layout: 1 session x 2 threads, 2 sessions x 1 thread (each session in its own thread);
- the model's FLOPs per tile (Conv layers, from the shapes onnxruntime computes) and the achieved
  GFLOP/s against the measured peak: a large float32 matrix product on the same cores;
- where a tile's time goes (onnxruntime's profiler, one thread): the U-Net's layers, the input
  features computed in the graph before it, and layout reorders; hence the U-Net's own GFLOP/s.
Figures are medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (DEFAULT_ONNX, ROOT, conditions, log, measure_layout, model_tile_size, run_workers,  # noqa: E402
                    sample_tiles, write_json)


# -- FLOPs ----------------------------------------------------------------------------------------
def onnx_flops_per_tile(path, tile: int) -> dict:
    """FLOPs of one tile (2 x multiply-adds of Conv/ConvTranspose/Gemm/MatMul), from the output shapes
    onnxruntime computes at batch 1; element-wise work is counted apart (one op per output element)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i).shape for i in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    inits[n.output[0]] = tuple(a.t.dims)
    outputs = {o.name for o in m.graph.output}
    have = set(outputs)
    for n in m.graph.node:
        for o in n.output:
            if o and o not in have:
                m.graph.output.append(helper.make_empty_tensor_value_info(o))
                have.add(o)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dtype = np.uint16 if inp.type == "tensor(uint16)" else np.float32
    x = np.full((1, 6, tile, tile), 2000, dtype=dtype)
    names = [o.name for o in sess.get_outputs()]
    shapes = dict(zip(names, (np.shape(v) for v in sess.run(names, {inp.name: x}))))
    shapes[inp.name] = x.shape
    conv = other = net = 0
    for n in m.graph.node:
        out = shapes.get(n.output[0])
        if out is None:
            continue
        f = 0
        if n.op_type == "Conv":
            w = inits[n.input[1]]  # (Cout, Cin/g, kh, kw)
            f = 2 * int(np.prod(out)) * int(np.prod(w[1:]))
        elif n.op_type == "ConvTranspose":
            w = inits[n.input[1]]  # (Cin, Cout/g, kh, kw)
            f = 2 * int(np.prod(shapes[n.input[0]])) * int(np.prod(w[1:]))
        elif n.op_type in ("MatMul", "Gemm"):
            a = shapes[n.input[0]]
            f = 2 * int(np.prod(out)) * int(a[-1])
        elif n.op_type not in ("Shape", "Gather", "Unsqueeze", "Concat", "Constant", "Slice", "Cast", "Reshape"):
            other += int(np.prod(out))
        conv += f
        if _in_net(n.name, set(n.output) & outputs):
            net += f
    return {"conv_gflop": conv / 1e9, "elementwise_gop": other / 1e9, "net_conv_gflop": net / 1e9}


NET_MARK = "/net/"  # the exporter's node names: /model/net/... is the smp U-Net, /model/... the features


def _in_net(name: str, makes_output) -> bool:
    """A node of the U-Net (or its head, which makes the graph's output) rather than of the input
    features computed before it."""
    return NET_MARK in name or bool(makes_output)


def time_split(path, tile: int, runs: int = 20) -> dict:
    """Share of one tile's kernel time per part of the graph, from onnxruntime's profiler (one
    thread, batch 1, after a warm-up): the U-Net's layers, the in-graph input features (log-ratio,
    anomaly, regression, blurs, normalisation) and layout reorders (NCHW <-> blocked)."""
    import tempfile

    import onnxruntime as ort

    x = sample_tiles(1, tile)
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        x = x if sess.get_inputs()[0].type == "tensor(uint16)" else x.astype(np.float32)
        for _ in range(3):
            sess.run(None, {name: x})
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "ort")
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            sess.run(None, {name: x})
        outputs = {o.name for o in sess.get_outputs()}
        events = json.loads(Path(sess.end_profiling()).read_text())
    us = {"net": 0.0, "features": 0.0, "reorder": 0.0}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        node, op = e["name"][:-len("_kernel_time")], e["args"].get("op_name", "")
        part = ("reorder" if op.startswith("Reorder") else
                "net" if _in_net(node, node.removesuffix("_nchwc") in outputs) else "features")
        us[part] += e["dur"]
    total = sum(us.values())
    return {"ms_per_tile": round(total / runs / 1000, 2), **{f"{k}_share": round(v / total, 3) for k, v in us.items()}}


# -- PyTorch ------------------------------------------------------------------------------------
def torch_model(meta: dict, checkpoint: str | None):
    """The served architecture (from metadata.json) in PyTorch, with its source branch where the
    model has one; weights from `checkpoint` if given."""
    from core.contract import SOURCE_OUTPUT
    from training.model import DEFAULT_FEATURES, PlumeNet, SourcePlumeNet, load_checkpoint
    from export.onnx_import import arch_from_metadata

    if checkpoint:
        model, _ = load_checkpoint(checkpoint)
        return model.eval(), "checkpoint"
    cls = SourcePlumeNet if any(o["name"] == SOURCE_OUTPUT for o in meta.get("outputs", [])) else PlumeNet
    return (cls(arch_from_metadata(meta), feature_set=meta.get("features", DEFAULT_FEATURES)).eval(),
            "random weights, same architecture")


def torch_flops_per_tile(model, tile: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.full((1, 6, tile, tile), 2000.0))
    return fc.get_total_flops() / 1e9


def measure_torch(model, batch: np.ndarray, seconds: float) -> dict:
    import torch

    x = torch.from_numpy(batch.astype(np.float32))

    def call():
        with torch.inference_mode():
            torch.sigmoid(model(x))

    return run_workers([call], seconds, items_per_call=len(batch))


# -- peak ---------------------------------------------------------------------------------------
def ort_matmul(n: int, threads: int):
    """A one-node ONNX graph, C = A @ B (n x n, float32), in onnxruntime: the GEMM kernels (MLAS)
    that also run the model's convolutions."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    b = numpy_helper.from_array(rng.standard_normal((n, n), dtype=np.float32), "B")
    g = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["C"])], "mm",
                          [helper.make_tensor_value_info("A", TensorProto.FLOAT, [n, n])],
                          [helper.make_tensor_value_info("C", TensorProto.FLOAT, [n, n])], [b])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feed = {"A": rng.standard_normal((n, n), dtype=np.float32)}
    return lambda: sess.run(None, feed)


def measure_peak(seconds: float, sizes=(1024, 2048)) -> dict:
    """FP32 GFLOP/s of large matrix products on all cores: onnxruntime's MatMul (MLAS), torch.mm (MKL)
    and numpy (OpenBLAS) at a few sizes; the best is the peak."""
    import torch

    cores = len(os.sched_getaffinity(0))
    out = {}
    for n in sizes:
        a = torch.randn(n, n)
        b = torch.randn(n, n)
        an, bn = a.numpy(), b.numpy()
        libs = (("onnxruntime_matmul", ort_matmul(n, cores)), ("torch_mm", lambda: torch.mm(a, b)),
                ("numpy_matmul", lambda: an @ bn))
        for lib, fn in libs:
            r = run_workers([fn], seconds / (len(libs) * len(sizes)), items_per_call=1, min_calls=3)
            out[f"{lib}_{n}_gflops"] = round(2 * n**3 * r["items_per_s"] / 1e9, 1)
    out["peak_gflops"] = max(out.values())
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--onnx", default=str(DEFAULT_ONNX), help="the FP32 model (default: the served one)")
    p.add_argument("--int8", help="the INT8 model from export/int8.py (left out: not measured)")
    p.add_argument("--checkpoint", help="PyTorch weights for the eager run (default: random, same architecture)")
    p.add_argument("--batches", default="1,4,8,16")
    p.add_argument("--layouts", default="1x2,2x1", help="sessions x threads each")
    p.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    p.add_argument("--rounds", type=int, default=2, help="interleaved repetitions; medians are reported")
    p.add_argument("--peak-seconds", type=float, default=4.0, help="per peak measurement (all sizes)")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--json")
    return p


def model_metadata(onnx: str) -> dict:
    """metadata.json beside the ONNX file, else the served model's."""
    beside = Path(onnx).parent / "metadata.json"
    return json.loads(beside.read_text()) if beside.exists() else json.loads(
        (ROOT / "model_repository/methane_seg/1/metadata.json").read_text())


def measure_rounds(a: argparse.Namespace, variants: list, layouts: list, batches: list, tiles: np.ndarray,
                   model, cores: int) -> tuple[dict, list]:
    """Every engine x layout x batch once per round, a peak measurement before each round and after
    the last: ({"engine|layout|batch": [one run per round]}, [peaks])."""
    cells: dict[str, list[dict]] = {}
    peaks = []

    def measured(key: str, r: dict) -> None:
        cells.setdefault(key, []).append(r)
        log(f"  {key}: {r['items_per_s']} tiles/s, p50 {r['p50_ms']} ms")

    for rnd in range(a.rounds):
        peaks.append(measure_peak(a.peak_seconds))
        log(f"round {rnd + 1}/{a.rounds}: peak {peaks[-1]['peak_gflops']} GFLOP/s")
        for b in batches:
            batch = tiles[:b]
            for name, path in variants:
                for layout in layouts:
                    measured(f"{name}|{layout[0]}x{layout[1]}|{b}", measure_layout(path, layout, batch, a.seconds))
            if model is not None:
                measured(f"pytorch-eager|1x{cores}|{b}", measure_torch(model, batch, a.seconds))
    peaks.append(measure_peak(a.peak_seconds))
    return cells, peaks


def table_rows(cells: dict, conv_gflop: float) -> list[dict]:
    """One row per engine x layout x batch: medians over rounds, the best round, GFLOP/s."""
    rows = []
    for key, runs in cells.items():
        engine, layout, b = key.split("|")
        tps = float(np.median([r["items_per_s"] for r in runs]))
        top = float(max(r["items_per_s"] for r in runs))
        rows.append({"engine": engine, "layout": layout, "batch": int(b), "tiles_per_s": round(tps, 2),
                     "tiles_per_s_best": round(top, 2), "gflops_best": round(top * conv_gflop, 1),
                     "p50_ms": round(float(np.median([r["p50_ms"] for r in runs])), 2),
                     "p95_ms": round(float(np.median([r["p95_ms"] for r in runs])), 2),
                     "gflops": round(tps * conv_gflop, 1),
                     "rounds": [r["items_per_s"] for r in runs]})
    return rows


def time_splits(a: argparse.Namespace, tile: int, flops: dict, best: dict, peak: float) -> dict:
    """Where a tile's time goes in the FP32 (and INT8) file, and the U-Net's own share of the peak."""
    split = {"fp32": time_split(a.onnx, tile)}
    if a.int8:
        split["int8"] = time_split(a.int8, tile)
    for k, v in split.items():
        eng = best.get(f"onnxruntime-{k}")
        if eng and v["net_share"] > 0:  # the U-Net's GFLOP/s when its layers' share of the time is all it gets
            v["net_fraction_of_peak"] = round(flops["net_conv_gflop"] * eng["tiles_per_s_best"] / v["net_share"] / peak, 3)
        log(f"time split {k}: {v}")
    return split


def main(argv=None) -> int:
    p = _parser()
    a = p.parse_args(argv)

    import torch

    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    meta = model_metadata(a.onnx)
    tile = int(meta.get("tile_size") or model_tile_size())
    batches = [int(b) for b in a.batches.split(",")]
    layouts = [tuple(int(v) for v in s.split("x")) for s in a.layouts.split(",")]
    log(f"bench_models: tile {tile}, batches {batches}, layouts {layouts}, {a.seconds} s x {a.rounds} rounds")
    tiles = sample_tiles(max(batches), tile)

    flops = onnx_flops_per_tile(a.onnx, tile)
    model, weights = (None, None) if a.no_torch else torch_model(meta, a.checkpoint)
    if model is not None:
        flops["torch_counter_gflop"] = round(torch_flops_per_tile(model, tile), 4)
    log(f"FLOPs per tile: {flops}")

    variants = [("onnxruntime-fp32", a.onnx)] + ([("onnxruntime-int8", a.int8)] if a.int8 else [])
    cells, peaks = measure_rounds(a, variants, layouts, batches, tiles, model, cores)
    rows = table_rows(cells, flops["conv_gflop"])
    peak = max(p["peak_gflops"] for p in peaks)
    best = {}
    for r in rows:
        if r["engine"] not in best or r["tiles_per_s"] > best[r["engine"]]["tiles_per_s"]:
            best[r["engine"]] = r
    split = time_splits(a, tile, flops, best, peak)
    result = {
        "conditions": conditions(a.onnx),
        "tile": tile, "flops": flops, "torch_weights": weights,
        "peak": {"gflops": peak, "runs": peaks},
        "rows": rows,
        # both sides best-of-rounds: what the machine and the model can do when nothing else runs
        "best": {k: {**v, "fraction_of_peak": round(v["gflops_best"] / peak, 3)} for k, v in best.items()},
        "time_split": split,
        "settings": {"seconds": a.seconds, "rounds": a.rounds, "batches": batches, "layouts": a.layouts},
    }
    for k, v in result["best"].items():
        log(f"best {k}: {v['tiles_per_s']} tiles/s ({v['layout']}, batch {v['batch']}), {v['gflops_best']} GFLOP/s (best round) = "
            f"{100 * v['fraction_of_peak']:.0f} % of peak {peak}")
    print(json.dumps(result["best"]))
    if a.json:
        write_json(a.json, result)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
