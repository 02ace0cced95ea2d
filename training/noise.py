"""Cheap correlated random fields for texture, turbulence and clouds.

Fields are made at low resolution (white noise smoothed with a Gaussian) and
zoomed bilinearly to full size, so a 256x256 field costs well under a
millisecond whatever its correlation length. All fields are float32 with
zero mean and unit standard deviation (normalised empirically).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def smooth_field(rng: np.random.Generator, n: int, scale_px: float) -> np.ndarray:
    """(n, n) Gaussian random field, correlation length about `scale_px` pixels."""
    scale_px = float(max(scale_px, 0.5))
    if scale_px <= 3.0:
        f = rng.standard_normal((n, n), dtype=np.float32)
        f = ndimage.gaussian_filter(f, sigma=scale_px / 2.0, mode="wrap")
    else:
        step = scale_px / 3.0  # low-res pixel size in full-res pixels
        m = int(np.ceil(n / step)) + 3
        f = rng.standard_normal((m, m), dtype=np.float32)
        f = ndimage.gaussian_filter(f, sigma=1.0, mode="wrap")
        f = ndimage.zoom(f, step, order=1, prefilter=False)
        off = rng.integers(0, max(1, f.shape[0] - n) + 1, size=2)
        f = f[off[0]:off[0] + n, off[1]:off[1] + n]
        if f.shape != (n, n):  # rounding of zoom: pad by edge
            f = np.pad(f, ((0, n - f.shape[0]), (0, n - f.shape[1])), mode="edge")
    f = f - f.mean()
    s = f.std()
    return (f / s if s > 0 else f).astype(np.float32, copy=False)


def fbm(rng: np.random.Generator, n: int, scales=(64.0, 16.0, 4.0), weights=(1.0, 0.5, 0.25)) -> np.ndarray:
    """Multi-scale (fractal-like) field: weighted sum of smooth fields, unit std."""
    f = np.zeros((n, n), np.float32)
    for s, w in zip(scales, weights):
        f += np.float32(w) * smooth_field(rng, n, s)
    return f / np.float32(f.std() or 1.0)


def threshold_fraction(field: np.ndarray, fraction: float) -> float:
    """Threshold above which `fraction` of the field lies."""
    fraction = float(np.clip(fraction, 0.0, 1.0))
    return float(np.quantile(field, 1.0 - fraction)) if 0 < fraction < 1 else (np.inf if fraction <= 0 else -np.inf)
