"""INT8 variant of the served ONNX model: onnxruntime static quantisation, and its check.

    python -m export.int8 [--onnx model_repository/methane_seg/1/model.onnx] [--out runs/int8/model_int8.onnx]
                          [--calib 32] [--test data/test] [--n-test 300] [--json FILE]

Where it quantises: only the U-Net (nodes under /model/net/, QDQ, activations uint8 asymmetric with
ranges from percentile calibration, weights int8, per channel by default). The input is uint16 with a Cast inside the graph and the
feature extraction in front of the U-Net takes log(B12/B11) and a 31-pixel local anomaly of it:
a 0.5 % ratio change is the methane signal, far below an 8-bit step, so that part stays FP32
(as in the FP16 variant). The segmentation head (the last Conv, whose logits meet a 0.999
threshold) stays FP32 too unless --quantise-head.

Calibration runs over simulated training-split tiles (seeds apart from the test split). The check
runs FP32 and INT8 on the test scenes (`s*.tif` with `*_mask.tif` truths under --test; simulated
if the folder is absent) and reports plume IoU of each against the truth at the served threshold,
their difference (the gate: <= 0.01), the IoU of the INT8 mask against the FP32 mask, and the
speed of both measured side by side (the gate: >= 1.4x). Without --serve nothing is written to the
model repository. With --serve, the INT8 file goes beside the FP32 one as model_int8.onnx, the report
into its metadata.json ("int8"), and the version's repository is rewritten: CPU instances then serve
model_int8.onnx if both gates hold, model.onnx otherwise (metadata "cpu_onnx_file" says which, and why).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ONNX = ROOT / "model_repository" / "methane_seg" / "1" / "model.onnx"
IOU_TOL = 0.01
SPEEDUP_MIN = 1.4
from training.metrics import SCENE_MIN_PIXELS as DETECT_PIXELS  # noqa: E402  scene flagged at >= this many mask pixels
CALIB_SEED = 7_300_000  # training split seeds (training.splits): not the test scenes


def log(msg: str) -> None:
    print(f"int8: {msg}", file=sys.stderr, flush=True)


def calibration_tiles(n: int, tile: int) -> np.ndarray:
    """Simulated tiles, half with a plume, some with clouds (uint16, (n, 6, tile, tile))."""
    from training.simulate import simulate_scene

    out = np.empty((n, 6, tile, tile), dtype=np.uint16)
    for i in range(n):
        sim = simulate_scene(CALIB_SEED + i, size=tile, n_sources=(1 if i % 2 == 0 else 0),
                             q_kg_h=float(np.geomspace(1000, 20000, max(n, 2))[i]) if i % 2 == 0 else None)
        out[i] = sim.data
    return out


def unet_nodes(path, quantise_head: bool) -> list[str]:
    import onnx

    from training.model import NET_PREFIX

    m = onnx.load(str(path))
    names = [n.name for n in m.graph.node if n.name.startswith(NET_PREFIX)]
    if not quantise_head:
        names = [n for n in names if "segmentation_head" not in n]
    return names


def quantise(onnx_path, out_path, calib: np.ndarray, per_channel: bool = True, quantise_head: bool = False,
             method: str = "percentile") -> Path:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"reflectance": calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.items, None)

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
        except Exception as exc:  # pre-processing is an optimisation, not a requirement
            log(f"pre-processing skipped ({exc})")
            pre = Path(onnx_path)
        methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                   "entropy": CalibrationMethod.Entropy}
        quantize_static(
            str(pre), str(out_path), Reader(),
            quant_format=QuantFormat.QDQ, per_channel=per_channel,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_quantize=unet_nodes(pre, quantise_head),
            calibrate_method=methods[method],
            extra_options={"CalibTensorRangeSymmetric": False},
        )
    return out_path


def test_scenes(test_dir: Path | None, n: int):
    """(data (6, H, W) uint16, truth (H, W) bool) pairs: files under test_dir, or simulated test seeds."""
    if test_dir is not None and test_dir.is_dir() and sorted(test_dir.glob("s*_mask.tif")):
        import rasterio

        from core.contract import read_scene

        masks = sorted(test_dir.glob("s*_mask.tif"))[:n]
        for mp in masks:
            scene = read_scene(mp.with_name(mp.name.replace("_mask.tif", ".tif")))
            with rasterio.open(mp) as ds:
                truth = ds.read(1) == 1
            yield scene.data, truth
        return
    from training.simulate import simulate_scene

    log(f"no test scenes under {test_dir}: simulating {n} (test split seeds)")
    for k in range(n):
        sim = simulate_scene(2_000_000 + k, size=256)
        yield sim.data, sim.mask.astype(bool)


def session(path, threads: int):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=o, providers=["CPUExecutionProvider"])


def compare_quality(fp32_path, int8_path, test_dir, n: int, threshold: float) -> dict:
    s32, s8 = session(fp32_path, 0), session(int8_path, 0)
    c = {"fp32": [0, 0], "int8": [0, 0], "agree": [0, 0]}
    max_diff = source_diff = 0.0
    scenes = 0
    flagged = {"fp32": 0, "int8": 0, "both": 0}
    for data, truth in test_scenes(test_dir, n):
        x = data[None]
        o32, o8 = s32.run(None, {"reflectance": x}), s8.run(None, {"reflectance": x})
        p32, p8 = o32[0][0, 0], o8[0][0, 0]
        max_diff = max(max_diff, float(np.abs(p32 - p8).max()))
        if len(o32) > 1:  # the source heat map
            source_diff = max(source_diff, float(np.abs(o32[1] - o8[1]).max()))
        m32, m8 = p32 >= threshold, p8 >= threshold
        for key, a, b in (("fp32", m32, truth), ("int8", m8, truth), ("agree", m8, m32)):
            c[key][0] += int((a & b).sum())
            c[key][1] += int((a | b).sum())
        f32, f8 = int(m32.sum()) >= DETECT_PIXELS, int(m8.sum()) >= DETECT_PIXELS
        flagged["fp32"] += f32
        flagged["int8"] += f8
        flagged["both"] += f32 and f8
        scenes += 1
    iou = {k: (i / u if u else 1.0) for k, (i, u) in c.items()}
    extra = {"source_max_abs_diff": source_diff} if len(s32.get_outputs()) > 1 else {}
    return {**extra, "scenes": scenes, "threshold": threshold, "iou_fp32": iou["fp32"], "iou_int8": iou["int8"],
            "iou_delta": abs(iou["int8"] - iou["fp32"]), "mask_iou_int8_vs_fp32": iou["agree"],
            "max_abs_prob_diff": max_diff, "tolerance": IOU_TOL,
            "scenes_flagged": flagged, "detect_pixels": DETECT_PIXELS}


def _rate(sessions, x, seconds: float) -> float:
    """Tiles/s of `sessions` each run back to back in its own thread (one session: this thread)."""
    import threading

    counts = [0] * len(sessions)
    deadline = time.perf_counter() + seconds

    def work(i):
        while counts[i] < 2 or time.perf_counter() < deadline:
            sessions[i].run(None, {"reflectance": x})
            counts[i] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(1, len(sessions))]
    for t in threads:
        t.start()
    work(0)
    for t in threads:
        t.join()
    return sum(counts) * len(x) / (time.perf_counter() - t0)


def compare_speed(fp32_path, int8_path, tile: int, batch: int, seconds: float, rounds: int, threads: int) -> dict:
    """Tiles/s of both at `batch` in each thread layout (1 session x `threads` threads, `threads` sessions x 1
    thread), alternating FP32 and INT8 `rounds` times; medians. The speed-up compares each model's best layout."""
    x = calibration_tiles(1, tile).repeat(batch, axis=0)
    layouts = {f"1x{threads}": (1, threads)}
    if threads > 1:
        layouts[f"{threads}x1"] = (threads, 1)
    sess = {(m, name): [session(path, t) for _ in range(n)]
            for m, path in (("fp32", fp32_path), ("int8", int8_path)) for name, (n, t) in layouts.items()}
    for group in sess.values():
        for s in group:
            s.run(None, {"reflectance": x})
    runs = {k: [] for k in sess}
    for _ in range(rounds):
        for name in layouts:
            for m in ("fp32", "int8"):
                runs[(m, name)].append(_rate(sess[(m, name)], x, seconds))
    med = {k: float(np.median(v)) for k, v in runs.items()}
    best = {m: max(med[(m, name)] for name in layouts) for m in ("fp32", "int8")}
    return {"batch": batch, "layouts": list(layouts), "fp32_tiles_per_s": round(best["fp32"], 2),
            "int8_tiles_per_s": round(best["int8"], 2), "speedup": round(best["int8"] / best["fp32"], 3),
            "per_layout": {name: {"fp32": round(med[("fp32", name)], 2), "int8": round(med[("int8", name)], 2),
                                  "speedup": round(med[("int8", name)] / med[("fp32", name)], 3)} for name in layouts},
            "rounds": {f"{m} {name}": [round(v, 2) for v in vs] for (m, name), vs in runs.items()},
            "target": SPEEDUP_MIN}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.int8", description=__doc__.split("\n\n")[0])
    p.add_argument("--onnx", default=str(DEFAULT_ONNX), help="FP32 model (uint16 input)")
    p.add_argument("--out", default=None, help="INT8 model to write (default: beside the JSON or a temp file)")
    p.add_argument("--calib", type=int, default=32, help="calibration tiles")
    p.add_argument("--method", choices=["minmax", "percentile", "entropy"], default="percentile",
                   help="calibration (percentile kept the masks closest to FP32 in a comparison on 100 test scenes)")
    p.add_argument("--per-tensor", action="store_true", help="per-tensor weights (default per channel)")
    p.add_argument("--quantise-head", action="store_true", help="quantise the last Conv too")
    p.add_argument("--test", default=str(ROOT / "data" / "test"), help="test scenes (s*.tif + *_mask.tif)")
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--threshold", type=float, help="mask threshold (default: metadata.json's)")
    p.add_argument("--speed-seconds", type=float, default=3.0)
    p.add_argument("--speed-rounds", type=int, default=3)
    p.add_argument("--speed-batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--json", help="write the report here")
    p.add_argument("--serve", action="store_true",
                   help="record the decision in the version folder of --onnx and rewrite its model repository")
    p.add_argument("--speed-override", metavar="REASON",
                   help="serve INT8 although the speed gate missed on this machine, if the quality gate holds; "
                        "REASON (why this machine's figure does not decide) is recorded with the measured speed-up")
    a = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))

    meta_path = Path(a.onnx).parent / "metadata.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    tile = int(meta.get("tile_size", 256))
    threshold = a.threshold if a.threshold is not None else float(meta.get("threshold", 0.5))
    out = Path(a.out) if a.out else (Path(a.json).with_suffix(".onnx") if a.json else
                                      Path(tempfile.mkdtemp(prefix="int8-")) / "model_int8.onnx")
    t0 = time.perf_counter()
    log(f"calibrating on {a.calib} simulated tiles of {tile}")
    calib = calibration_tiles(a.calib, tile)
    quantise(a.onnx, out, calib, per_channel=not a.per_tensor, quantise_head=a.quantise_head, method=a.method)
    log(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f} s; checking quality")
    quality = compare_quality(a.onnx, out, Path(a.test) if a.test else None, a.n_test, threshold)
    log(f"plume IoU fp32 {quality['iou_fp32']:.4f}, int8 {quality['iou_int8']:.4f} on {quality['scenes']} scenes;"
        " measuring speed")
    speed = compare_speed(a.onnx, out, tile, a.speed_batch, a.speed_seconds, a.speed_rounds, a.threads)
    report = {
        "fp32": str(a.onnx), "int8": str(out),
        "settings": {"calib_tiles": a.calib, "method": a.method, "per_channel": not a.per_tensor,
                     "head_quantised": a.quantise_head, "format": "QDQ U8S8", "quantised": "U-Net (/model/net/)"},
        "quality": quality, "speed": speed,
        "iou_ok": quality["iou_delta"] <= IOU_TOL, "speed_ok": speed["speedup"] >= SPEEDUP_MIN,
    }
    report["serve"] = report["iou_ok"] and report["speed_ok"]
    reasons = []
    if not report["speed_ok"]:
        reasons.append(f"speed-up {speed['speedup']:.2f}x < {SPEEDUP_MIN}x")
    if not report["iou_ok"]:
        reasons.append(f"plume IoU differs by {quality['iou_delta']:.4f} > {IOU_TOL}")
    report["reason"] = "; ".join(reasons) or "both gates hold"
    if a.speed_override and report["iou_ok"] and not report["speed_ok"]:
        report["serve"] = True
        report["speed_override"] = a.speed_override
        report["reason"] += f" on this machine; served all the same: {a.speed_override}"
    print(json.dumps({k: report[k] for k in ("quality", "speed", "serve", "reason")}))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(report, indent=1) + "\n")
    if a.serve:
        record_decision(Path(a.onnx), out, report)
    return 0


def record_decision(fp32_path: Path, int8_path: Path, report: dict) -> None:
    """Put the INT8 file and the decision into fp32_path's version folder and rewrite the repository
    around it (config.pbtxt's onnx_file follows metadata["cpu_onnx_file"])."""
    import shutil

    from export.repository import write_model_repository

    version_dir = fp32_path.parent
    meta_path = version_dir / "metadata.json"
    meta = json.loads(meta_path.read_text())
    target = version_dir / "model_int8.onnx"
    if int8_path.resolve() != target.resolve():
        shutil.copyfile(int8_path, target)
    meta["int8"] = {"file": target.name, "served": report["serve"], "reason": report["reason"],
                    "settings": report["settings"], "quality": report["quality"],
                    "speedup": report["speed"]["speedup"], "iou_tolerance": IOU_TOL, "speedup_min": SPEEDUP_MIN}
    meta["cpu_onnx_file"] = target.name if report["serve"] else fp32_path.name
    version = int(meta.pop("version", version_dir.name))
    target_kind = meta.pop("target", "cpu")
    write_model_repository(version_dir.parent.parent, fp32_path, meta, name=version_dir.parent.name,
                           version=version, target=target_kind)
    log(f"CPU instances serve {meta['cpu_onnx_file']} ({report['reason']})")


if __name__ == "__main__":
    raise SystemExit(main())
