"""Load simulated scenes (tif + mask) into memory and draw augmented training crops."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


def list_scenes(folder) -> list[Path]:
    return sorted(p for p in Path(folder).glob("*.tif") if not p.name.endswith("_mask.tif"))


def load_scenes(folder, limit: int | None = None, bands: int = 6):
    """(N, bands, H, W) uint16 and (N, H, W) uint8 masks (scenes must share one size).

    bands 6: the target's BANDS; 12: the target's, then its reference pass's (ALL_BANDS), which
    the simulator writes into each scene's 12-band document."""
    import rasterio

    from core.contract import ALL_BANDS, BANDS, read_scene

    if bands not in (len(BANDS), len(ALL_BANDS)):
        raise ValueError(f"bands must be {len(BANDS)} or {len(ALL_BANDS)}, not {bands}")
    paths = list_scenes(folder)[:limit]
    if not paths:
        raise FileNotFoundError(f"no scenes (*.tif) in {folder}")
    xs = ys = None  # filled in place: no second copy of thousands of scenes at the end
    for n, p in enumerate(paths):
        scene = read_scene(p)
        if bands == len(BANDS):
            x = scene.data
        elif scene.reference is None:
            raise ValueError(f"{p} has no reference pass: the multi-pass network needs 12-band documents "
                             "(`methane-seg simulate` writes them)")
        else:
            x = np.concatenate([scene.data, scene.reference])
        if xs is None:
            xs = np.empty((len(paths),) + x.shape, np.uint16)
            ys = np.empty((len(paths),) + x.shape[1:], np.uint8)
        if x.shape != xs.shape[1:]:
            raise ValueError(f"{p} is {x.shape[2]}x{x.shape[1]}; the scenes of {folder} must share one size")
        xs[n] = x
        with rasterio.open(p.with_name(p.stem + "_mask.tif")) as ds:
            ys[n] = ds.read(1)
    return xs, ys


@dataclass
class PassAugment:
    """Augmentations that keep the physics of a crop and its label (the label is the methane's own
    effect, whatever the sensor adds): each pass's own gain (overall and per band, as detectors and
    calibration differ between dates), extra sensor noise, and for a target + reference crop a
    sub-pixel misregistration of the reference. Zero (nodata) stays zero."""

    gain_sigma: float = 0.02  # std of a pass's overall gain
    band_gain_sigma: float = 0.005  # std of each band's own gain on top of it
    noise_max: float = 0.006  # extra noise, relative, drawn up to this per crop
    shift_max_px: float = 0.5  # reference shift, per axis, drawn up to this (12-band crops)

    def __call__(self, xs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        bands = 6
        out = xs.astype(np.float32)
        nodata = out == 0
        for p in range(out.shape[0] // bands):
            sl = slice(p * bands, (p + 1) * bands)
            gain = 1 + rng.normal(0, self.gain_sigma) + rng.normal(0, self.band_gain_sigma, bands)
            out[sl] *= gain.astype(np.float32)[:, None, None]
            noise = rng.uniform(0, self.noise_max)
            if noise > 0:
                out[sl] *= 1 + np.float32(noise) * rng.standard_normal(out[sl].shape, dtype=np.float32)
        if out.shape[0] > bands and self.shift_max_px > 0:
            dy, dx = rng.uniform(-self.shift_max_px, self.shift_max_px, 2)
            out[bands:] = subpixel_shift(out[bands:], dy, dx)
            nodata[bands:] = subpixel_shift(nodata[bands:].astype(np.float32), dy, dx) > 0.5
        out[nodata] = 0
        return np.clip(out, 0, 65535)


def subpixel_shift(a: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """out[:, y, x] = a[:, y - dy, x - dx] for a (C, H, W) array, |dy|, |dx| <= 1: bilinear, edges
    repeated (scipy.ndimage.shift's order=1, at a fraction of its cost on small crops)."""
    p = np.pad(a, ((0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = a.shape[1:]
    sy, sx = (-1 if dy >= 0 else 1), (-1 if dx >= 0 else 1)  # the neighbour towards the source
    fy, fx = np.float32(abs(dy)), np.float32(abs(dx))

    def at(oy, ox):
        return p[:, 1 + oy:1 + oy + h, 1 + ox:1 + ox + w]

    return ((1 - fy) * (1 - fx) * at(0, 0) + fy * (1 - fx) * at(sy, 0) + (1 - fy) * fx * at(0, sx)
            + fy * fx * at(sy, sx)).astype(a.dtype)


class CropSampler:
    """Random crops with flips / 90-degree rotations; a share (plume_frac) is centred near plume pixels
    and, when plume heads are given (`head_masks`), a share (head_frac) near a plume's head.
    augment: a PassAugment applied to each crop (None: geometry only)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, crop: int, seed: int = 0, plume_frac: float = 0.5,
                 heads: np.ndarray | None = None, head_frac: float = 0.0, augment: "PassAugment | None" = None):
        self.x, self.y, self.crop = x, y, int(min(crop, x.shape[-1], x.shape[-2]))
        self.rng = np.random.default_rng(seed)
        self.plume_frac = plume_frac
        self.with_plume = np.flatnonzero(y.reshape(len(y), -1).max(1) > 0)
        self.heads = heads
        self.head_frac = head_frac if heads is not None else 0.0
        self.with_head = np.flatnonzero(heads.reshape(len(heads), -1).max(1) > 0) if heads is not None else []
        self.augment = augment

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
            if self.augment is not None:
                xs = self.augment(xs, self.rng)
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
