"""`methane-seg report`: a markdown quality report with PNGs, the model beside the classical baseline.

    methane-seg report --truth data/test --pred runs/pred_test --baseline runs/pred_baseline --out docs/report

Reads the simulated truth (`<stem>_mask.tif`, `<stem>.json`) and two prediction folders written by
`methane-seg segment` and `methane-seg baseline` (`<stem>_prob.tif`, `<stem>_mask.tif`), scores both
with training/evaluate.py, and writes OUT/report.md with: the headline table, the pixel
precision-recall curve, detection probability against emission rate, IoU per surface type, and a
gallery of the model's best and worst scenes beside the baseline.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from training.evaluate import EvaluationError, evaluate, load_pair
from training.metrics import Q_BINS

N_BINS = 1000  # probability histogram bins for the pooled precision-recall curve


def pr_curve(truth_dir: Path, pred_dir: Path, stems: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Pooled pixel precision and recall at N_BINS probability thresholds (histograms, so memory
    stays flat however many scenes)."""
    pos = np.zeros(N_BINS, np.int64)
    neg = np.zeros(N_BINS, np.int64)
    edges = np.linspace(0.0, 1.0, N_BINS + 1)
    for stem in stems:
        truth, prob, _ = load_pair(truth_dir, pred_dir, stem)
        t = truth.ravel().astype(bool)
        pos += np.histogram(prob.ravel()[t], edges)[0]
        neg += np.histogram(prob.ravel()[~t], edges)[0]
    tp = np.cumsum(pos[::-1])  # pixels at or above each threshold, highest threshold first
    fp = np.cumsum(neg[::-1])
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / max(int(pos.sum()), 1)
    return precision, recall


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pr(curves: dict, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, (precision, recall, ap) in curves.items():
        ax.plot(recall, precision, label=f"{name} (pooled pixel AP {ap:.3f})")
    ax.set_xlabel("recall (labelled plume pixels)")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Pixel precision-recall, test scenes")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_detection(reports: dict, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    grid = np.logspace(2, math.log10(30000), 200)
    edges = np.array([100, 300, 1000, 2000, 3000, 5000, 10000, 20000, 40000])
    for (name, rep), color in zip(reports.items(), ("C0", "C1", "C2")):
        q = np.array([p["q_kg_h"] for p in rep["plumes"]])
        det = np.array([p["detected"] for p in rep["plumes"]], float)
        centres, rates, counts = [], [], []
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = (q >= lo) & (q < hi)
            if sel.any():
                centres.append(math.sqrt(lo * hi))
                rates.append(det[sel].mean())
                counts.append(int(sel.sum()))
        ax.scatter(centres, rates, color=color, s=[10 + 2 * c for c in counts], alpha=0.7,
                   label=f"{name}: detected share per bin (marker size: plumes)")
        c = rep.get("detection_curve")
        if c and all(math.isfinite(c[k]) for k in ("a", "b")):
            ax.plot(grid, 1 / (1 + np.exp(-(c["a"] + c["b"] * np.log10(grid)))), color=color,
                    label=f"{name}: logistic fit, 50 % at {c['q50_kg_h']:.0f} kg/h")
    ax.axvline(1000, color="grey", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("emission rate Q (kg/h)")
    ax.set_ylabel("probability of detection")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax.set_title("Detection against emission rate (target: 50 % at 1000 kg/h, dotted)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_surfaces(reports: dict, path: Path) -> None:
    plt = _plt()
    surfaces = sorted({s for rep in reports.values() for s in rep["by_surface"]})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.8 / max(len(reports), 1)
    x = np.arange(len(surfaces))
    for ax, key, label in ((axes[0], "pooled_iou", "pooled pixel IoU"), (axes[1], "seed_ap", "seed AP")):
        for k, (name, rep) in enumerate(reports.items()):
            vals = [rep["by_surface"].get(s, {}).get(key, float("nan")) for s in surfaces]
            ax.bar(x + k * width, np.nan_to_num(vals), width, label=name)
        ax.set_xticks(x + width * (len(reports) - 1) / 2)
        ax.set_xticklabels(surfaces, rotation=40, ha="right", fontsize=8)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.suptitle("Quality per surface type (test scenes)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_gallery(truth_dir: Path, preds: dict, picks: list[tuple[str, str]], path: Path) -> None:
    """One row per picked scene: SWIR composite with the true outline, then each predictor's mask."""
    from core.contract import read_scene
    from training.gallery import swir_composite

    plt = _plt()
    cols = 1 + len(preds)
    fig, axes = plt.subplots(len(picks), cols, figsize=(2.6 * cols, 2.7 * len(picks)), squeeze=False)
    for row, (stem, why) in zip(axes, picks):
        meta = json.loads((truth_dir / f"{stem}.json").read_text())
        scene = read_scene(truth_dir / f"{stem}.tif").data
        truth = None
        row[0].imshow(swir_composite(scene), interpolation="nearest")
        qs = ", ".join(f"{s['q_kg_h']:.0f}" for s in meta["sources"]) or "none"
        row[0].set_title(f"{stem} {why}\n{meta['surface']}, Q {qs} kg/h", fontsize=7)
        for ax, (name, pred_dir) in zip(row[1:], preds.items()):
            truth, prob, mask = load_pair(truth_dir, pred_dir, stem)
            ax.imshow(prob, vmin=0, vmax=1, cmap="magma", interpolation="nearest")
            if mask.any():
                ax.contour(mask, levels=[0.5], colors="cyan", linewidths=0.7)
            inter, union = int((truth & mask).sum()), int((truth | mask).sum())
            ax.set_title(f"{name}: IoU {inter / union if union else 1.0:.2f}", fontsize=7)
        for ax in row:
            if truth is not None and truth.any():
                ax.contour(truth, levels=[0.5], colors="yellow", linewidths=0.6)
            ax.set_axis_off()
    fig.suptitle("Yellow: labelled plume; cyan: predicted mask; colour: probability", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def pick_gallery(report: dict, n: int = 4) -> list[tuple[str, str]]:
    with_plume = [s for s in report["scenes"] if s["truth_pixels"] > 0]
    ranked = sorted(with_plume, key=lambda s: (s["iou"], s["ap"] or 0.0))
    worst = [(s["scene"], "(worst)") for s in ranked[:n]]
    best = [(s["scene"], "(best)") for s in ranked[::-1][:n]]
    return best + worst


def _f(x, pct=False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.1f} %" if pct else f"{x:.3f}"


def headline(reports: dict) -> str:
    names = list(reports)
    rows = ["| on the test scenes | " + " | ".join(names) + " | target |", "|---|" + "---|" * (len(names) + 1)]

    def row(label, get, target, pct=False):
        rows.append(f"| {label} | " + " | ".join(_f(get(r), pct) for r in reports.values()) + f" | {target} |")

    row("pooled pixel IoU, Q ≥ 1000 kg/h", lambda r: r["q_ge_1000"]["pooled_iou"], "≥ 0.75")
    row("seed AP (mean per-image AP), Q ≥ 1000 kg/h", lambda r: r["q_ge_1000"]["seed_ap"], "≥ 0.75")
    row("pooled pixel IoU, all scenes", lambda r: r["all"]["pooled_iou"], "")
    row("seed AP, all scenes", lambda r: r["all"]["seed_ap"], "")
    row("pooled pixel AP, all scenes", lambda r: r["all"]["pooled_pixel_ap"], "")
    row("scene detection recall", lambda r: r["all"]["detection"]["recall"], "")
    row("scene detection precision", lambda r: r["all"]["detection"]["precision"], "")
    row("plume-free scenes flagged", lambda r: r["all"]["detection"]["false_positive_rate"], "≤ 5 %", pct=True)
    for name, _, _ in Q_BINS:
        row(f"plumes detected, {name} kg/h", lambda r, n=name: r["by_q_bin"][n]["plume_detection_rate"], "", pct=True)
        row(f"pooled pixel IoU, {name} kg/h", lambda r, n=name: r["by_q_bin"][n].get("pooled_iou"), "")
    rows.append("| 50 % of plumes detected at | " + " | ".join(
        (f"{r['detection_curve']['q50_kg_h']:.0f} kg/h" if r.get("detection_curve")
         and r["detection_curve"]["q50_kg_h"] < 1e5 else "not reached") for r in reports.values()) + " | ≤ 1000 kg/h |")
    scenes = next(iter(reports.values()))["all"]
    return (f"{scenes['scenes']} test scenes, {scenes['detection']['negative_scenes']} of them plume-free.\n\n"
            + "\n".join(rows))


def write_report(truth_dir: Path, preds: dict, out: Path, progress: bool = True) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    reports = {name: evaluate(truth_dir, d, progress=progress) for name, d in preds.items()}
    stems = [s["scene"] for s in next(iter(reports.values()))["scenes"]]
    curves = {}
    for name, d in preds.items():
        precision, recall = pr_curve(truth_dir, d, stems)
        curves[name] = (precision, recall, reports[name]["all"]["pooled_pixel_ap"])
    plot_pr(curves, out / "pr_curve.png")
    plot_detection(reports, out / "detection_vs_q.png")
    plot_surfaces(reports, out / "iou_by_surface.png")
    first = next(iter(reports))
    plot_gallery(truth_dir, preds, pick_gallery(reports[first]), out / "gallery.png")
    (out / "evaluation.json").write_text(json.dumps(
        {k: {kk: vv for kk, vv in r.items() if kk not in ("scenes", "plumes")} for k, r in reports.items()},
        indent=1, default=float))
    surf_rows = ["| surface | scenes | " + " | ".join(f"{n} IoU / seed AP" for n in reports) + " |",
                 "|---|---|" + "---|" * len(reports)]
    for s in sorted(reports[first]["by_surface"]):
        cells = [f"{_f(r['by_surface'][s]['pooled_iou'])} / {_f(r['by_surface'][s]['seed_ap'])}"
                 for r in reports.values()]
        surf_rows.append(f"| {s} | {reports[first]['by_surface'][s]['scenes']} | " + " | ".join(cells) + " |")
    md = f"""# Quality report

Generated by `methane-seg report` from `{truth_dir}` (truth) and {", ".join(f"`{d}` ({n})" for n, d in preds.items())}.
Definitions: [docs/metrics.md](../metrics.md).

## Headline

{headline(reports)}

## Precision and recall over labelled pixels

![pixel precision-recall curve](pr_curve.png)

## Detection against emission rate

A plume counts as detected when at least 5 predicted pixels lie within 25 pixels of its source.

![detection probability against emission rate](detection_vs_q.png)

## Per surface type

{chr(10).join(surf_rows)}

![IoU and AP per surface type](iou_by_surface.png)

## Best and worst scenes ({first}), beside the other predictors

![gallery of the best and worst scenes](gallery.png)
"""
    path = out / "report.md"
    path.write_text(md)
    return path


def report_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="methane-seg report", description=__doc__.split("\n\n")[0])
    p.add_argument("--truth", required=True, type=Path, help="folder written by `methane-seg simulate`")
    p.add_argument("--pred", required=True, type=Path, help="the model's predictions (`methane-seg segment`)")
    p.add_argument("--baseline", type=Path, help="the baseline's predictions (`methane-seg baseline`)")
    p.add_argument("--out", required=True, type=Path, help="folder for report.md and its PNGs")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    preds = {"model": a.pred}
    if a.baseline:
        preds["baseline"] = a.baseline
    for d in (a.truth, *preds.values()):
        if not d.is_dir():
            print(f"methane-seg: error: no such folder: {d}", file=sys.stderr)
            return 2
    try:
        path = write_report(a.truth, preds, a.out, progress=not a.quiet)
    except EvaluationError as exc:
        print(f"methane-seg: error: {exc}", file=sys.stderr)
        return 2
    print(f"report written to {path}")
    return 0
