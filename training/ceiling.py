"""How much of the product's label a detector that knew the noise model could see, pixel by pixel.

    python -m training.ceiling --truth data/test [--n 1000] [--json FILE]

Re-simulates each test scene from its sidecar (the simulator is deterministic per seed) to get the
true methane column, and asks, for the pixels the product labels as plume (methane lowers B12 by
at least 1 %): is methane's own signal at least k times the sensor noise that a detector must see
it through, for k = 1 and 2? Three detectors:

- single pass: B12/B11 against a background it must estimate from the target alone, the surface's
  own SWIR texture not counted (a bound, not a method): noise of B11 and B12 of the target;
- with the reference pass (MBMP, per pixel): (B12/B11 of the target) / (B12/B11 of the reference):
  the noise of all four bands; pixels where the reference is nodata or cloudy see nothing;
- with a perfect background (the noise-free surface known): B12 alone against it, the target's B12
  noise only.

A detector that marks exactly the labelled pixels it can see, and nothing else, reaches a pooled IoU
equal to that share: each row is the ceiling of a per-pixel method. A network that pools over a
plume's neighbouring pixels can see further than this per-pixel bound; none can see what the label
counts under an opaque cloud or where the signal is far below the noise everywhere around.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from training.metrics import Q_BINS

SIGMAS = (1.0, 2.0)
DETECTORS = ("single_pass", "reference", "perfect_background")


def relative_noise(refl: np.ndarray, snr_swir: float, alpha: float) -> np.ndarray:
    """(6, H, W) noise sd over reflectance of each band: the simulator's sensor model
    (training/sensor.py), evaluated at the observed reflectance."""
    from training.sensor import REF_REFL, SNR_FACTOR

    rho = np.maximum(refl.astype(np.float64), 1e-4)
    sd_ref = (REF_REFL / (SNR_FACTOR * snr_swir))[:, None, None]
    sd = sd_ref * np.sqrt((alpha + rho) / (alpha + REF_REFL[:, None, None]))
    return sd / rho


def scene_signals(meta: dict) -> tuple[np.ndarray, dict]:
    """(labelled mask, {detector: signal over noise}) of one simulated scene, from its sidecar."""
    from core.masks import cloud_mask, nodata_mask
    from core.physics import transmittance
    from training.simulate import simulate_scene

    sim = simulate_scene(int(meta["seed"]), size=int(meta["size"]))
    amf = meta["air_mass_factor"]
    t12, t11 = transmittance(sim.column, "B12", amf), transmittance(sim.column, "B11", amf)
    ratio_drop, b12_drop = 1.0 - t12 / t11, 1.0 - t12
    t, r = sim.data / 10000.0, sim.reference / 10000.0
    sensor, ref = meta.get("sensor", {}), meta.get("reference", {})
    nt = relative_noise(t, meta["snr_swir"], sensor.get("noise_alpha", 1e3))
    nr = relative_noise(r, ref.get("snr_swir", meta["snr_swir"]), ref.get("noise_alpha", 1e3))
    i11, i12 = 4, 5
    usable = ~nodata_mask(sim.reference) & ~cloud_mask(sim.reference, sim.data)
    signals = {
        "single_pass": ratio_drop / np.hypot(nt[i11], nt[i12]),
        "reference": np.where(usable, ratio_drop / np.sqrt(nt[i11] ** 2 + nt[i12] ** 2 + nr[i11] ** 2 + nr[i12] ** 2),
                              0.0),
        "perfect_background": b12_drop / nt[i12],
    }
    return sim.mask == 1, signals


def ceiling(truth_dir: Path, n: int | None = None, progress: bool = True) -> dict:
    from tqdm import tqdm

    metas = [json.loads(p.read_text()) for p in sorted(truth_dir.glob("*.json"))][:n]
    groups = {"all": [], **{name: [] for name, _, _ in Q_BINS}}
    for meta in tqdm(metas, desc="ceiling", disable=not progress):
        if not meta.get("sources") or not meta.get("plume_pixels"):
            continue
        label, signals = scene_signals(meta)
        if not label.any():
            continue
        row = {"labelled": int(label.sum())}
        for det, s in signals.items():
            for k in SIGMAS:
                row[f"{det}_{k:g}"] = int((s[label] >= k).sum())
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
                     **{f"{det}_{k:g}sigma": sum(r[f"{det}_{k:g}"] for r in rows) / total
                        for det in DETECTORS for k in SIGMAS}}
    return out


def table(result: dict) -> str:
    cols = [(det, k) for det in DETECTORS for k in SIGMAS]
    head = ("| plumes (max Q, kg/h) | scenes | labelled pixels | "
            + " | ".join(f"{det.replace('_', ' ')} ≥ {k:g}σ" for det, k in cols) + " |")
    rows = [head, "|---" * (3 + len(cols)) + "|"]
    for name, r in result.items():
        rows.append(f"| {name} | {r['scenes']} | {r['labelled_pixels']} | "
                    + " | ".join(f"{100 * r[f'{det}_{k:g}sigma']:.0f} %" for det, k in cols) + " |")
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
