"""`methane-seg sources`: how far the leak coordinates lie from the simulator's true sources.

    methane-seg sources --n 160 --seed 3300000 --q 30000 --out runs/sources

Simulates N scenes of 256 x 256 pixels, each with one source of Q kg/h and no clouds; segments each
with the graph and threshold that the model repository serves on CPU (metadata.json's
cpu_onnx_file, run in process: one tile per scene, as Triton runs it; the heat map averaged over
--views views of the tile, as the client asks for it); traces the plumes with
core.plumes.find_plumes, as `methane-seg segment` does; and measures, for each scene where a plume
is found, the distance in pixels from the true source to the nearest source point (with the model's
source heat map where it has one; and with its highest peak alone), and how many of all the source
points lie within 2 px of it (each scene has one leak: every other point is a false one). The same is done tracing the
source upwind without the heat map, without the facility step, told the wind direction, without
joining a plume's downwind puffs to it, keeping small pieces without a source, and on the simulator's own masks (what the source step
reaches when the mask is right). Prints a table, writes sources.json and sources.png
(the share of sources within d pixels against d).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from core import plumes as plume_records
from core.contract import Scene, scene_profile
from core.segmentation import SegmentationResult
from core.tiling import SOURCE_VIEWS, VIEW_COUNTS, mean_of_views, views

WITHIN_PX = 2.0  # issue #6: a source point within 2 pixels of the true source
VARIANTS = {
    "model": "served model (mask and, where it has one, source heat map)",
    "model_heat_top": "served model, highest heat peak (not scored)",
    "model_no_heat": "served model's mask, source traced upwind (no heat map)",
    "model_no_facility": "served model's mask, traced, without the facility step",
    "model_wind": "served model's mask, traced, told the wind direction",
    "model_no_join": "served model, downwind puffs not joined to their plume",
    "model_keep_sourceless": "served model, small pieces without a source kept",
    "truth": "simulator's own mask",
}


def served_model(model_dir: Path):
    """(onnxruntime session, threshold) of the graph the repository serves on CPU."""
    import onnxruntime as ort

    from core.model_files import read_metadata, served_onnx_name

    meta = read_metadata(model_dir)
    onnx_path = model_dir / served_onnx_name(meta)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"{model_dir / 'metadata.json'} names {onnx_path.name}, which is not in {model_dir}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    return session, float(meta.get("threshold", 0.5))


def _result(sim, probability: np.ndarray, mask: np.ndarray, threshold: float,
            source: np.ndarray | None = None) -> SegmentationResult:
    height, width = mask.shape
    scene = Scene(data=sim.data, profile=scene_profile(sim.crs, sim.transform, height, width),
                  valid=np.ones((height, width), bool), name=f"seed {sim.meta.get('seed', '')}")
    return SegmentationResult(scene=scene, probability=probability, mask=mask.astype(np.uint8),
                              threshold=threshold, model_name="in-process", model_version="", source=source)


def source_errors(result: SegmentationResult, source: dict, **find) -> list[float]:
    """Pixels from the true source to each traced source point (none when no plume is found).
    find: find_plumes' keywords."""
    return [float(np.hypot(p.source_row - source["row"], p.source_col - source["col"]))
            for p in plume_records.find_plumes(result, **find)]


def measure(n: int, seed: int, q_kg_h: float, model_dir: Path, progress: bool = True,
            n_views: int = SOURCE_VIEWS) -> dict:
    """{variant: [[each source point's error in px] per scene]} over n simulated scenes (an empty
    list where no plume was found); the heat map is the mean of the tile's n_views views, as the
    client asks for it (client.segmenter)."""
    from tqdm import tqdm

    from training.simulate import simulate_scene

    session, threshold = served_model(model_dir)
    name = session.get_inputs()[0].name
    errors = {v: [] for v in VARIANTS}
    for s in tqdm(range(seed, seed + n), desc="sources", disable=not progress):
        sim = simulate_scene(seed=s, size=256, n_sources=1, q_kg_h=q_kg_h, clouds=False)
        src = sim.meta["sources"][0]
        outs = session.run(None, {name: np.stack(views(sim.data, n_views))})
        prob = outs[0][0, 0]  # the tile's own view
        # the source heat map (training/source.py), averaged over the views
        heat = mean_of_views(outs[1][:, 0]) if len(outs) > 1 else None
        served = _result(sim, prob, prob >= threshold, threshold, source=heat)
        errors["model"].append(source_errors(served, src))
        errors["model_heat_top"].append(source_errors(served, src, heat_choice="highest"))
        traced = _result(sim, prob, prob >= threshold, threshold)
        errors["model_no_heat"].append(source_errors(traced, src))
        errors["model_no_facility"].append(source_errors(traced, src, facility_step=False))
        errors["model_wind"].append(source_errors(traced, src, wind_to_deg=src["wind_to_deg"]))
        errors["model_no_join"].append(source_errors(served, src, join_downwind=False))
        errors["model_keep_sourceless"].append(source_errors(served, src, drop_sourceless=False))
        truth = sim.mask == 1
        errors["truth"].append(source_errors(_result(sim, truth.astype(np.float32), truth, 0.5), src))
    return errors


def nearest(points: list) -> np.ndarray:
    """Each scene's nearest source point's error (scenes with a plume found)."""
    return np.array([min(p) for p in points if p])


def summarise(errors: dict) -> dict:
    out = {}
    for variant, points in errors.items():
        e, every = nearest(points), np.array([x for p in points for x in p])
        out[variant] = {"scenes": len(points), "found": int(e.size),
                        "within_2px": float(np.mean(e <= WITHIN_PX)) if e.size else None,
                        "median_px": float(np.median(e)) if e.size else None,
                        "points": int(every.size),
                        "points_within_2px": float(np.mean(every <= WITHIN_PX)) if every.size else None}
    return out


def format_table(summary: dict) -> str:
    lines = [f"{'masks':<62} {'found':>9} {'within 2 px':>12} {'median px':>10} {'points':>7} "
             f"{'points within 2 px':>19}"]
    for variant, r in summary.items():
        share = "n/a" if r["within_2px"] is None else f"{100 * r['within_2px']:.0f} %"
        median = "n/a" if r["median_px"] is None else f"{r['median_px']:.2f}"
        points = "n/a" if r["points_within_2px"] is None else f"{100 * r['points_within_2px']:.0f} %"
        lines.append(f"{VARIANTS[variant]:<62} {r['found']:>4}/{r['scenes']:<4} {share:>12} {median:>10} "
                     f"{r['points']:>7} {points:>19}")
    return "\n".join(lines)


def plot(errors: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = np.linspace(0, 20, 201)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant, points in errors.items():
        e = nearest(points)
        if e.size:
            ax.plot(d, [np.mean(e <= x) for x in d], label=f"{VARIANTS[variant]} ({e.size} plumes)")
    ax.axvline(WITHIN_PX, color="grey", ls="--", lw=1)
    ax.set_xlabel("distance from the true source (pixels of 20 m)")
    ax.set_ylabel("share of plumes found with a source point this close")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sources_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="methane-seg sources", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=160, help="scenes to simulate (default 160)")
    p.add_argument("--seed", type=int, default=3_300_000, help="seed of the first scene (default 3300000)")
    p.add_argument("--q", type=float, default=30_000.0, help="source rate, kg/h (default 30000)")
    p.add_argument("--model-dir", type=Path, default=Path("model_repository/methane_seg/1"),
                   help="the served model's version folder (metadata.json and the ONNX files)")
    p.add_argument("--views", type=int, choices=VIEW_COUNTS, default=SOURCE_VIEWS,
                   help=f"views of each scene whose heat maps are averaged, as the client's --source-views "
                        f"(default {SOURCE_VIEWS})")
    p.add_argument("--out", type=Path, help="write sources.json and sources.png here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    if a.n < 1 or not (math.isfinite(a.q) and a.q > 0):
        p.error("--n must be at least 1 and --q positive")
    try:
        errors = measure(a.n, a.seed, a.q, a.model_dir, progress=not a.quiet, n_views=a.views)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = summarise(errors)
    print(format_table(summary))
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        settings = {"n": a.n, "seed": a.seed, "q_kg_h": a.q, "model_dir": str(a.model_dir), "views": a.views}
        (a.out / "sources.json").write_text(json.dumps({"settings": settings, "summary": summary,
                                                        "errors_px": errors}, indent=1))
        plot(errors, a.out / "sources.png",
             f"Leak sources: {a.n} scenes at {a.q:,.0f} kg/h, seeds {a.seed}+")
        print(f"wrote {a.out / 'sources.json'} and {a.out / 'sources.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(sources_main(sys.argv[1:]))
