"""A PNG gallery of simulated scenes: false-colour SWIR composite with the plume mask outlined.

    python -m training.gallery --out docs/simulator_gallery.png [--n 12 --seed 0 --split val]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from core.outputs import stretch
from core.contract import BANDS


def swir_composite(data: np.ndarray) -> np.ndarray:
    idx = [BANDS.index(b) for b in ("B12", "B11", "B8")]
    return stretch(data[idx], np.any(data != 0, axis=0))


def draw_gallery(sims, path: Path, cols: int = 4) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = int(np.ceil(len(sims) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.5 * rows), squeeze=False)
    for ax, sim in zip(axes.ravel(), sims):
        ax.imshow(swir_composite(sim.data), interpolation="nearest")
        if sim.mask.any():
            ax.contour(sim.mask, levels=[0.5], colors="yellow", linewidths=0.8)
        for src in sim.meta["sources"]:
            ax.plot(src["col"], src["row"], marker="x", color="cyan", markersize=6)
        qs = ", ".join(f"{s['q_kg_h']:.0f}" for s in sim.meta["sources"]) or "no plume"
        ax.set_title(f"{sim.meta['surface']}\nQ {qs} kg/h", fontsize=8)
        ax.set_axis_off()
    for ax in axes.ravel()[len(sims):]:
        ax.set_axis_off()
    fig.suptitle("Simulated Sentinel-2 scenes: B12/B11/B8 false colour, plume mask (yellow), sources (x)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    from training.simulate import simulate_scene
    from training.splits import seeds_for

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("docs/simulator_gallery.png"))
    p.add_argument("--n", type=int, default=12)
    p.add_argument("--seed", type=int, default=0, help="offset into the split's seeds")
    p.add_argument("--split", default="val")
    p.add_argument("--size", type=int, default=256)
    a = p.parse_args(argv)
    sims = [simulate_scene(s, size=a.size) for s in seeds_for(a.split, a.n, a.seed)]
    print(draw_gallery(sims, a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
