"""How much of the product's label a single-date detector can see at all.

    python -m training.ceiling --truth data/test [--n 1000] [--json FILE]

Re-simulates each test scene from its sidecar (the simulator is deterministic per seed) to get the
true methane column, and asks: of the pixels the product labels as plume (B12 lowered by >= 0.5 %),
how many lower the B12/B11 ratio by at least k (k = 1, 2, 3, 5 %), and by at least twice the
sensor's own noise on that ratio (sqrt(2) / SNR, surface texture not counted)? A detector that
finds exactly the pixels above k, and nothing else, reaches a pooled IoU equal to that share: the
ceiling of any method that marks only what it can see.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from training.metrics import Q_BINS

DROPS = (0.01, 0.02, 0.03, 0.05)


def scene_drops(meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """(labelled mask, B12/B11 ratio drop) of a simulated scene, from its sidecar."""
    from core.physics import transmittance
    from training.simulate import simulate_scene

    sim = simulate_scene(int(meta["seed"]), size=int(meta["size"]))
    amf = meta["air_mass_factor"]
    drop = 1.0 - transmittance(sim.column, "B12", amf) / transmittance(sim.column, "B11", amf)
    return sim.mask == 1, drop


def ceiling(truth_dir: Path, n: int | None = None, progress: bool = True) -> dict:
    from tqdm import tqdm

    metas = [json.loads(p.read_text()) for p in sorted(truth_dir.glob("*.json"))][:n]
    groups = {"all": [], **{name: [] for name, _, _ in Q_BINS}}
    for meta in tqdm(metas, desc="ceiling", disable=not progress):
        if not meta.get("sources"):
            continue
        label, drop = scene_drops(meta)
        if not label.any():
            continue
        d = drop[label]
        noise = np.sqrt(2.0) / float(meta["snr_swir"])
        row = {"labelled": int(d.size), "above_2sigma": int((d >= 2 * noise).sum()),
               **{f"above_{k}": int((d >= k).sum()) for k in DROPS}}
        q = max(s["q_kg_h"] for s in meta["sources"])
        groups["all"].append(row)
        for name, lo, hi in Q_BINS:
            if lo <= q < hi:
                groups[name].append(row)
    out = {}
    for name, rows in groups.items():
        total = sum(r["labelled"] for r in rows)
        if not total:
            continue
        out[name] = {"scenes": len(rows), "labelled_pixels": total,
                     "share_above_2sigma_noise": sum(r["above_2sigma"] for r in rows) / total,
                     **{f"share_above_{int(100 * k)}pct": sum(r[f"above_{k}"] for r in rows) / total for k in DROPS}}
    return out


def table(result: dict) -> str:
    head = ("| plumes (max Q, kg/h) | scenes | labelled pixels | B12/B11 drop ≥ 2σ sensor noise | "
            + " | ".join(f"drop ≥ {int(100 * k)} %" for k in DROPS) + " |")
    rows = [head, "|---" * (4 + len(DROPS)) + "|"]
    for name, r in result.items():
        rows.append(f"| {name} | {r['scenes']} | {r['labelled_pixels']} | {100 * r['share_above_2sigma_noise']:.0f} % | "
                    + " | ".join(f"{100 * r[f'share_above_{int(100 * k)}pct']:.0f} %" for k in DROPS) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.ceiling", description=__doc__.splitlines()[0])
    p.add_argument("--truth", required=True, type=Path, help="folder written by `methane-seg simulate`")
    p.add_argument("--n", type=int, default=0, help="at most this many scenes (0: all)")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    if not a.truth.is_dir():
        print(f"error: no such folder: {a.truth}", file=sys.stderr)
        return 2
    result = ceiling(a.truth, a.n or None)
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
