"""Water bodies as a height above the nominal water level, so that a pass's level moves the shore.

A site holds `shore_elev` (m above the nominal level; large where no water body is near):
lakes and coasts from a thresholded multi-scale field, rivers from the distance to a
meandering centreline, ponds (produced-water and evaporation pits, stock tanks) as shallow
boxes. A pass floods every pixel below its level (`water_cover`); the strip just above it is
wet (dark in the SWIR, a classic false methane signal) by an amount of its own.
"""

from __future__ import annotations

import numpy as np

from training import shapes
from training.noise import fbm, smooth_field, threshold_fraction

DRY = np.float32(1e3)  # shore_elev where no water body is near
SHALLOW_M = 0.6  # e-folding depth over which the bottom shows through


def _scaled_to_slope(e: np.ndarray, slope_m_per_px: float) -> np.ndarray:
    """Scale a field so that its gradient near the zero line is `slope_m_per_px`."""
    g = np.hypot(*np.gradient(e))
    near = np.abs(e) < np.quantile(np.abs(e), 0.05) + 1e-6
    return (e * np.float32(slope_m_per_px / max(float(np.median(g[near])), 1e-6))).astype(np.float32)


def lake(rng, n: int, coast: bool = False) -> np.ndarray:
    """shore_elev of a lake (several basins) or a coast (a sea on one side)."""
    f = fbm(rng, n, scales=(rng.uniform(60, 200), 30, 8), weights=(1, 0.35, 0.12))
    if coast:
        th = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
        f = f * 0.6 + ((yy - n / 2) * np.float32(np.sin(th)) + (xx - n / 2) * np.float32(np.cos(th))) / np.float32(n / 4)
    t = threshold_fraction(f, rng.uniform(0.15, 0.5))
    return _scaled_to_slope(t - f, rng.uniform(0.1, 0.6))


def river(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(shore_elev of a meandering river, distance to its centreline in px)."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    th = rng.uniform(0, np.pi)
    u = xx * np.float32(np.cos(th)) + yy * np.float32(np.sin(th))
    v = -xx * np.float32(np.sin(th)) + yy * np.float32(np.cos(th))
    uu = np.arange(-n, 2 * n, dtype=np.float32)
    centre = np.zeros_like(uu)
    for _ in range(int(rng.integers(2, 5))):
        lam = rng.uniform(25, 250)
        centre += np.float32(rng.uniform(0.03, 0.18) * lam) * np.sin(2 * np.pi * uu / lam + rng.uniform(0, 2 * np.pi))
    walk = np.cumsum(rng.normal(0, 1, uu.size)).astype(np.float32)  # a random walk, smoothed: irregular bends
    k = np.exp(-0.5 * (np.arange(-60, 61) / 20.0) ** 2)
    centre += np.float32(rng.uniform(0.2, 1.0)) * np.convolve(walk - walk.mean(), k / k.sum(), mode="same")
    v0 = np.float32((np.cos(th) - np.sin(th)) * n / 2 + rng.uniform(-0.3, 0.3) * n)  # through the middle third
    slope = np.gradient(centre)
    c = np.interp(u.ravel(), uu, centre).reshape(n, n)
    s = np.interp(u.ravel(), uu, slope).reshape(n, n)
    dist = np.abs(v - v0 - c) / np.sqrt(1 + s * s)
    half_w = rng.uniform(0.6, 5.0) * (1 + 0.25 * smooth_field(rng, n, 60))
    bank = rng.uniform(0.15, 0.8)  # m per px of the banks
    return ((dist - half_w) * np.float32(bank)).astype(np.float32), dist.astype(np.float32)


def pond(rng, n: int, shore: np.ndarray, centre, half_h: float, half_w: float, angle: float) -> None:
    """In place: a shallow pit with steep berms (its depth decides whether a lower level dries it)."""
    m, (r0, r1, c0, c1) = shapes.rect(n, centre, half_h, half_w, angle)
    if not m.any():
        return
    depth = rng.uniform(0.1, 1.5)
    e = np.where(m > 0.5, -depth * np.clip(m * 2, 0, 1), DRY).astype(np.float32)
    np.minimum(shore[r0:r1, c0:c1], e, out=shore[r0:r1, c0:c1])


def water_cover(shore_elev: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """(water fraction 0..1, depth in m) of every pixel at water level `level` (m)."""
    depth = np.float32(level) - shore_elev
    frac = np.clip(depth / np.float32(0.05) + 0.5, 0, 1)  # a shoreline inside a pixel mixes it
    return frac.astype(np.float32), np.maximum(depth, 0)


def wet_shore(shore_elev: np.ndarray, level: float, amount: float, width_m: float) -> np.ndarray:
    """Wetness (0..1) of the strip above the water line (wave run-up, a falling level's wet sediment)."""
    above = shore_elev - np.float32(level)
    return (np.float32(amount) * np.exp(-np.maximum(above, 0) / np.float32(width_m)) * (above > 0)).astype(np.float32)


def water_spectrum(deep: np.ndarray, shallow: np.ndarray, turbid: np.ndarray, turbidity: float,
                   depth: np.ndarray) -> np.ndarray:
    """(6, H, W) water reflectance: the bottom shows through shallow water; turbidity brightens VNIR."""
    d = (deep * (1 - turbidity) + turbid * turbidity)[:, None, None]
    k = np.exp(-depth / np.float32(SHALLOW_M))[None]
    return (d * (1 - k) + shallow[:, None, None] * k).astype(np.float32)
