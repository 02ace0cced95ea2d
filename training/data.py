"""Load simulated scenes (tif + mask) into memory and draw augmented training crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def list_scenes(folder) -> list[Path]:
    return sorted(p for p in Path(folder).glob("*.tif") if not p.name.endswith("_mask.tif"))


def load_scenes(folder, limit: int | None = None):
    """(N, 6, H, W) uint16 in BANDS order and (N, H, W) uint8 masks (scenes must share one size)."""
    import rasterio

    from core.contract import read_scene

    paths = list_scenes(folder)[:limit]
    if not paths:
        raise FileNotFoundError(f"no scenes (*.tif) in {folder}")
    xs, ys = [], []
    for p in paths:
        xs.append(read_scene(p).data)
        with rasterio.open(p.with_name(p.stem + "_mask.tif")) as ds:
            ys.append(ds.read(1))
    return np.stack(xs), np.stack(ys).astype(np.uint8)


class CropSampler:
    """Random crops with flips / 90-degree rotations; a share (plume_frac) is centred near plume pixels
    and, when plume heads are given (`head_masks`), a share (head_frac) near a plume's head."""

    def __init__(self, x: np.ndarray, y: np.ndarray, crop: int, seed: int = 0, plume_frac: float = 0.5,
                 heads: np.ndarray | None = None, head_frac: float = 0.0):
        self.x, self.y, self.crop = x, y, int(min(crop, x.shape[-1], x.shape[-2]))
        self.rng = np.random.default_rng(seed)
        self.plume_frac = plume_frac
        self.with_plume = np.flatnonzero(y.reshape(len(y), -1).max(1) > 0)
        self.heads = heads
        self.head_frac = head_frac if heads is not None else 0.0
        self.with_head = np.flatnonzero(heads.reshape(len(heads), -1).max(1) > 0) if heads is not None else []

    def _near(self, i: int, pixels: np.ndarray) -> tuple[int, int]:
        """Top-left of a crop of scene i that holds one of `pixels` (a bool map) somewhere inside."""
        H, W = self.x.shape[-2:]
        c = self.crop
        rr, cc = np.nonzero(pixels)
        j = int(self.rng.integers(len(rr)))
        return (int(np.clip(rr[j] - self.rng.integers(0, c), 0, H - c)),
                int(np.clip(cc[j] - self.rng.integers(0, c), 0, W - c)))

    def batch(self, b: int):
        """(b, C, c, c) inputs, (b, 1, c, c) targets and (b, 1, c, c) plume-head pixels (0 without heads)."""
        H, W = self.x.shape[-2:]
        c = self.crop
        xb = np.empty((b, self.x.shape[1], c, c), np.float32)
        yb = np.empty((b, 1, c, c), np.float32)
        hb = np.zeros((b, 1, c, c), np.float32)
        for k in range(b):
            u = self.rng.random()
            if len(self.with_head) and u < self.head_frac:
                i = int(self.rng.choice(self.with_head))
                r0, c0 = self._near(i, self.heads[i])
            elif len(self.with_plume) and u < self.head_frac + self.plume_frac:
                i = int(self.rng.choice(self.with_plume))
                r0, c0 = self._near(i, self.y[i])
            else:
                i = int(self.rng.integers(len(self.x)))
                r0, c0 = int(self.rng.integers(0, H - c + 1)), int(self.rng.integers(0, W - c + 1))
            xs = self.x[i, :, r0:r0 + c, c0:c0 + c]
            ys = self.y[i, r0:r0 + c, c0:c0 + c]
            hs = self.heads[i, r0:r0 + c, c0:c0 + c] if self.heads is not None else None
            kr = int(self.rng.integers(4))
            xs, ys = np.rot90(xs, kr, axes=(1, 2)), np.rot90(ys, kr)
            flip = self.rng.random() < 0.5
            if flip:
                xs, ys = xs[:, :, ::-1], ys[:, ::-1]
            xb[k] = xs
            yb[k, 0] = ys
            if hs is not None:
                hs = np.rot90(hs, kr)
                hb[k, 0] = hs[:, ::-1] if flip else hs
        return xb, yb, hb


HEAD_RADIUS_PX = 8  # a plume's head: its labelled pixels this close to the source


def head_masks(folder, labels: np.ndarray, limit: int | None = None, radius: float = HEAD_RADIUS_PX) -> np.ndarray:
    """(N, H, W) uint8: the labelled pixels within `radius` pixels of a source (from each scene's JSON
    sidecar), where segmentations tend to miss a plume's first, one-pixel-wide stretch."""
    import json

    heads = np.zeros_like(labels, dtype=np.uint8)
    rows, cols = np.mgrid[: labels.shape[1], : labels.shape[2]]
    for n, p in enumerate(list_scenes(folder)[:limit]):
        for src in json.loads(p.with_suffix(".json").read_text()).get("sources", []):
            near = np.hypot(rows - src["row"], cols - src["col"]) <= radius
            heads[n] |= (near & (labels[n] > 0)).astype(np.uint8)
    return heads


def _visible_one(job) -> np.ndarray:
    """One scene's visible plume pixels (see `visible_labels`), re-simulated from its JSON sidecar."""
    import json

    from core.physics import transmittance
    from training.simulate import simulate_scene

    path, min_ratio_drop = job
    meta = json.loads(Path(path).with_suffix(".json").read_text())
    sim = simulate_scene(int(meta["seed"]), size=int(meta["size"]))
    drop = 1.0 - transmittance(sim.column, "B12", meta["air_mass_factor"]) / transmittance(
        sim.column, "B11", meta["air_mass_factor"])
    return ((sim.mask == 1) & (drop >= min_ratio_drop)).astype(np.uint8)


def visible_labels(folder, limit: int | None = None, min_ratio_drop: float = 0.02, workers: int = 0) -> np.ndarray:
    """Training targets restricted to the visible part of each plume.

    Re-simulates each scene from its JSON sidecar (the simulator is deterministic per seed) and
    keeps the labelled pixels where methane lowers B12/B11 by at least `min_ratio_drop`: the
    faint tails of the product's label (0.5 % in B12) lie below a pixel's noise, and a loss
    dominated by pixels that cannot be seen teaches the network little. `workers` processes
    re-simulate in parallel (0: one per CPU core, at most 16); the result does not depend on it.
    """
    import os

    jobs = [(str(p), min_ratio_drop) for p in list_scenes(folder)[:limit]]
    workers = workers or min(os.cpu_count() or 1, 16)
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(min(workers, len(jobs))) as pool:
            out = pool.map(_visible_one, jobs, chunksize=max(1, len(jobs) // (4 * workers)))
    else:
        out = [_visible_one(j) for j in jobs]
    return np.stack(out)
