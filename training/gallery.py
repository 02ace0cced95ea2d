"""A PNG gallery of simulated scenes: target and reference pass side by side, and what changed.

    python -m training.gallery --out docs/simulator_gallery.png [--n 11 --seed 0 --split val]

Each scene takes three panels: the target and its reference in B12/B11/B8 false colour (one
stretch for both, so that SWIR changes between the dates show), and the change of log(B12/B11)
from the reference to the target (the multi-pass methane signal: blue = B12 darker on the target
date), with the plume mask outlined (yellow) and the sources (x, cyan; the reference's own plume
source: +, magenta). Scene i is drawn over surface type i of SURFACE_TYPES (cycling).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from core.contract import BANDS

FALSE_COLOUR = ("B12", "B11", "B8")
RATIO_RANGE = 0.05  # +- change of log(B12/B11) shown at full colour
SMOOTH_PX = 0.8
DPI = 60


def swir_composite(data: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 B12/B11/B8 composite of one pass (6 bands) with the product's preview stretch."""
    from core.outputs import stretch

    return stretch(data[[BANDS.index(b) for b in FALSE_COLOUR]], np.any(data != 0, axis=0))


def false_colour(data: np.ndarray, lo=None, hi=None):
    """(H, W, 3) float image of B12/B11/B8 with a 2-98 % stretch (or the given one); returns (image, lo, hi)."""
    x = data[[BANDS.index(b) for b in FALSE_COLOUR]].astype(np.float32)
    if lo is None:
        lo, hi = np.percentile(x, 2, axis=(1, 2), keepdims=True), np.percentile(x, 98, axis=(1, 2), keepdims=True)
    return np.clip((x - lo) / np.maximum(hi - lo, 1e-6), 0, 1).transpose(1, 2, 0), lo, hi


def ratio_change(target: np.ndarray, reference: np.ndarray, smooth_px: float = SMOOTH_PX) -> np.ndarray:
    """log(B12/B11) of the target minus the reference's, less its scene median, lightly smoothed
    (a Gaussian of `smooth_px`) so that structure shows through the per-pixel noise."""
    from scipy import ndimage

    t, r = target.astype(np.float64), reference.astype(np.float64)
    i11, i12 = BANDS.index("B11"), BANDS.index("B12")
    d = np.log(t[i12] / t[i11]) - np.log(r[i12] / r[i11])
    return ndimage.gaussian_filter(d - np.median(d), smooth_px) if smooth_px else d - np.median(d)


def draw_gallery(sims, path: Path, per_row: int = 2) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = int(np.ceil(len(sims) / per_row))
    fig, axes = plt.subplots(rows, 3 * per_row, figsize=(2.9 * 3 * per_row, 3.25 * rows), squeeze=False)
    for k, sim in enumerate(sims):
        ax = axes[k // per_row, 3 * (k % per_row):3 * (k % per_row) + 3]
        tgt, lo, hi = false_colour(sim.data)
        ref, _, _ = false_colour(sim.reference, lo, hi)
        ax[0].imshow(tgt, interpolation="nearest")
        ax[1].imshow(ref, interpolation="nearest")
        ax[2].imshow(ratio_change(sim.data, sim.reference), cmap="RdBu", vmin=-RATIO_RANGE, vmax=RATIO_RANGE,
                     interpolation="nearest")
        m, r = sim.meta, sim.meta["reference"]
        for a in ax:
            if sim.mask.any():
                a.contour(sim.mask, levels=[0.5], colors="yellow", linewidths=0.7)
            for src in m["sources"]:
                a.plot(src["col"], src["row"], marker="x", color="cyan", markersize=5)
            for src in r["sources"]:
                a.plot(src["col"], src["row"], marker="+", color="magenta", markersize=7)
            a.set_axis_off()
        qs = ", ".join(f"{s['q_kg_h']:.0f}" for s in m["sources"]) or "no source"
        ax[0].set_title(f"{m['surface']}: target\nQ {qs} kg/h, {m['plume_pixels']} px", fontsize=7)
        ax[1].set_title(f"reference, {r['days_before']} days earlier\nSZA {m['sza_deg']:.0f} -> {r['sza_deg']:.0f} deg, "
                        f"AOD {r['aod']:.2f} / {m['aod']:.2f}", fontsize=7)
        changed = [c for c in r["changes"] if c not in ("sun", "haze", "gains", "shift")]
        ax[2].set_title("change of log(B12/B11), smoothed\n" + (", ".join(changed) or "sun, haze, gains only"), fontsize=7)
    for a in axes.ravel()[3 * len(sims):]:
        a.set_axis_off()
    fig.suptitle("Simulated target / reference pairs: B12/B11/B8 false colour (one stretch per pair), "
                 "change of log(B12/B11) (blue: B12 darker on the target date), plume mask (yellow)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.975))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    from training.simulate import simulate_scene
    from training.site import SURFACE_TYPES
    from training.splits import seeds_for

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("docs/simulator_gallery.png"))
    p.add_argument("--n", type=int, default=len(SURFACE_TYPES))
    p.add_argument("--seed", type=int, default=0, help="offset into the split's seeds")
    p.add_argument("--split", default="val")
    p.add_argument("--size", type=int, default=256)
    a = p.parse_args(argv)
    seeds = seeds_for(a.split, a.n, a.seed)
    sims = [simulate_scene(s, size=a.size, surface=SURFACE_TYPES[i % len(SURFACE_TYPES)]) for i, s in enumerate(seeds)]
    print(draw_gallery(sims, a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
