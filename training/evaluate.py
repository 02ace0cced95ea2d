"""`methane-seg evaluate --truth DIR --pred DIR [--json FILE]`: all the seed's metrics from GeoTIFFs.

Truth: `<stem>_mask.tif` and `<stem>.json` as `methane-seg simulate` writes them.
Predictions: `<stem>_prob.tif` and `<stem>_mask.tif` as `methane-seg segment`
(or `baseline`) writes them. Every truth scene must have its predictions, on
the same grid. Definitions: training/metrics.py.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from training.metrics import (
    Q_BINS, average_precision, fit_detection_curve, plume_detected, score_scene, summarise,
)


class EvaluationError(ValueError):
    pass


def _read(path: Path):
    import rasterio

    if not path.is_file():
        raise EvaluationError(f"missing file: {path}")
    try:
        with rasterio.open(path) as ds:
            return ds.read(1), (ds.width, ds.height, ds.crs, ds.transform)
    except rasterio.errors.RasterioIOError as exc:
        raise EvaluationError(f"cannot read {path}: {exc}") from None


def load_pair(truth_dir: Path, pred_dir: Path, stem: str):
    truth, grid = _read(truth_dir / f"{stem}_mask.tif")
    prob, prob_grid = _read(pred_dir / f"{stem}_prob.tif")
    mask, mask_grid = _read(pred_dir / f"{stem}_mask.tif")
    for name, g in (("probability", prob_grid), ("mask", mask_grid)):
        if g != grid:
            raise EvaluationError(
                f"{stem}: the predicted {name} is not on the truth's grid "
                f"({g[0]}x{g[1]} {g[2]} vs {grid[0]}x{grid[1]} {grid[2]}, or another transform)")
    valid = ~np.isnan(prob)
    mask = np.where(mask == 1, 1, 0).astype(np.uint8)
    return (truth == 1).astype(np.uint8), np.where(valid, prob, 0.0).astype(np.float32), mask


def evaluate(truth_dir: Path, pred_dir: Path, progress: bool = True) -> dict:
    from tqdm import tqdm

    stems = sorted(p.stem for p in truth_dir.glob("*.json"))
    if not stems:
        raise EvaluationError(f"no simulated scenes (<stem>.json) in {truth_dir}")
    scores, metas, plume_rows = [], [], []
    pooled_truth, pooled_prob = [], []
    for stem in tqdm(stems, desc="evaluate", unit="scene", disable=not progress):
        meta = json.loads((truth_dir / f"{stem}.json").read_text())
        truth, prob, mask = load_pair(truth_dir, pred_dir, stem)
        s = score_scene(stem, truth, prob, mask)
        scores.append(s)
        metas.append(meta)
        pooled_truth.append(truth.ravel().astype(bool))
        pooled_prob.append(prob.ravel())
        for src in meta.get("sources", []):
            plume_rows.append({"scene": stem, "q_kg_h": float(src["q_kg_h"]),
                               "wind_ms": float(src.get("wind_ms", math.nan)),
                               "truth_pixels": int(src.get("pixels", -1)),
                               "detected": plume_detected(mask, src["row"], src["col"])})
    pooled_ap = average_precision(np.concatenate(pooled_truth), np.concatenate(pooled_prob))
    report = {"truth": str(truth_dir), "pred": str(pred_dir), "all": summarise(scores, pooled_ap)}

    def max_q(meta):
        return max((src["q_kg_h"] for src in meta.get("sources", [])), default=0.0)

    # Scenes whose plumes have Q >= 1000 kg/h (all of them), plus the plume-free scenes.
    strong = [s for s, m in zip(scores, metas)
              if not m.get("sources") or min(src["q_kg_h"] for src in m["sources"]) >= 1000.0]
    report["q_ge_1000"] = summarise(strong, _pooled_ap(strong, scores, pooled_truth, pooled_prob))
    bins = {}
    for name, lo, hi in Q_BINS:
        in_bin = [s for s, m in zip(scores, metas) if m.get("sources") and lo <= max_q(m) < hi]
        plumes = [p for p in plume_rows if lo <= p["q_kg_h"] < hi]
        entry = summarise(in_bin) if in_bin else {"scenes": 0}
        entry["plumes"] = len(plumes)
        entry["plume_detection_rate"] = (sum(p["detected"] for p in plumes) / len(plumes)) if plumes else math.nan
        bins[name] = entry
    report["by_q_bin"] = bins
    surfaces = {}
    for s, m in zip(scores, metas):
        surfaces.setdefault(m.get("surface", "unknown"), []).append(s)
    report["by_surface"] = {k: {"scenes": len(v), "pooled_iou": summarise(v)["pooled_iou"],
                                "seed_ap": summarise(v)["seed_ap"]} for k, v in sorted(surfaces.items())}
    if plume_rows:
        q = np.array([p["q_kg_h"] for p in plume_rows])
        det = np.array([p["detected"] for p in plume_rows])
        report["detection_curve"] = fit_detection_curve(q, det)
    report["plumes"] = plume_rows
    report["scenes"] = [{"scene": s.name, "iou": s.iou, "ap": None if math.isnan(s.ap) else s.ap,
                         "truth_pixels": s.truth_pixels, "pred_pixels": s.pred_pixels,
                         "surface": m.get("surface"), "max_q_kg_h": max_q(m)} for s, m in zip(scores, metas)]
    return report


def _pooled_ap(subset, scores, pooled_truth, pooled_prob) -> float:
    index = {id(s): i for i, s in enumerate(scores)}
    idx = [index[id(s)] for s in subset]
    if not idx:
        return math.nan
    return average_precision(np.concatenate([pooled_truth[i] for i in idx]),
                             np.concatenate([pooled_prob[i] for i in idx]))


def format_table(report: dict) -> str:
    def f(x):
        return "  n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:5.3f}"

    lines = [f"{'subset':<14} {'scenes':>6} {'IoU':>6} {'mIoU':>6} {'AP':>6} {'pixAP':>6} {'det.R':>6} {'det.P':>6} {'FPR':>6}"]
    for name in ("all", "q_ge_1000"):
        r = report[name]
        d = r["detection"]
        lines.append(f"{name:<14} {r['scenes']:>6} {f(r['pooled_iou']):>6} {f(r['mean_scene_iou']):>6} "
                     f"{f(r['seed_ap']):>6} {f(r['pooled_pixel_ap']):>6} {f(d['recall']):>6} "
                     f"{f(d['precision']):>6} {f(d['false_positive_rate']):>6}")
    lines.append("")
    lines.append(f"{'Q bin (kg/h)':<14} {'scenes':>6} {'IoU':>6} {'AP':>6} {'plumes':>6} {'detected':>8}")
    for name, r in report["by_q_bin"].items():
        lines.append(f"{name:<14} {r['scenes']:>6} {f(r.get('pooled_iou')):>6} {f(r.get('seed_ap')):>6} "
                     f"{r['plumes']:>6} {f(r['plume_detection_rate']):>8}")
    curve = report.get("detection_curve")
    if curve:
        lines.append("")
        def rate(q):
            # Beyond the simulated range (20 000 kg/h) the fit only extrapolates.
            return "not reached below 100 000 kg/h" if not q < 1e5 else f"{q:.0f} kg/h"

        lines.append(f"50 % of plumes detected at {rate(curve['q50_kg_h'])}, 90 % at {rate(curve['q90_kg_h'])} "
                     "(logistic fit on log10 Q)")
    return "\n".join(lines)


def evaluate_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="methane-seg evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--truth", required=True, type=Path, help="folder written by `methane-seg simulate`")
    p.add_argument("--pred", required=True, type=Path, help="folder written by `methane-seg segment`/`baseline`")
    p.add_argument("--json", type=Path, help="write the full report here")
    args = p.parse_args(argv)
    for d in (args.truth, args.pred):
        if not d.is_dir():
            print(f"methane-seg: error: no such folder: {d}", file=sys.stderr)
            return 2
    try:
        report = evaluate(args.truth, args.pred)
    except EvaluationError as exc:
        print(f"methane-seg: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=float))
    return 0
