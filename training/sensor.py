"""The sensor side of a pass: resampling onto the product grid, radiometric gains, noise, uint16.

- Resampling: an L1C product is the image resampled onto the UTM grid; each pass has its own
  sub-pixel phase, and the difference of two passes' phases is their misregistration. Both
  passes go through the same cubic (Keys, a = -0.5) interpolation, so neither is sharper by
  construction.
- Gains: a relative calibration per band, and in some passes a detector boundary crossing the
  scene (near the along-track direction) with a per-band gain step between its two sides.
- Noise: Gaussian, sd(rho) = sd_ref * sqrt((alpha + rho) / (alpha + rho_ref)) per band, sd_ref set
  by the pass's SNR at rho_ref; alpha sets how strongly noise grows with signal (small alpha:
  photon-noise-like, dark pixels quieter but with lower SNR; large alpha: nearly constant,
  radiance-like). Then rint(x 10000), clipped to 1..65535 (0 is nodata, never produced).
"""

from __future__ import annotations

import numpy as np

# Reflectance at which the SNR is quoted, per band, and each band's SNR relative to B11's.
REF_REFL = np.array([0.15, 0.15, 0.15, 0.30, 0.30, 0.30], np.float32)
SNR_FACTOR = np.array([1.5, 1.5, 1.5, 1.5, 1.0, 0.9], np.float32)


def _keys(t: float) -> list[float]:
    """Cubic-convolution weights (a = -0.5) of the four samples around fractional offset t in [0, 1)."""
    a = -0.5

    def k(x):
        x = abs(x)
        if x <= 1:
            return (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1
        if x < 2:
            return a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a
        return 0.0

    return [k(1 + t), k(t), k(1 - t), k(2 - t)]


def resample(img: np.ndarray, phase: tuple[float, float], margin: int, n: int) -> np.ndarray:
    """(B, n, n) from a (B, n + 2 margin, ...) site image, its content moved by phase = (dy, dx) px.

    out[:, y, x] = img[:, y + margin - dy, x + margin - dx], cubic interpolation.
    """
    out = img
    for axis, d in ((1, phase[0]), (2, phase[1])):
        p = margin - d
        i0 = int(np.floor(p))
        w = _keys(p - i0)
        if i0 - 1 < 0 or i0 + 2 + n > out.shape[axis]:
            raise ValueError(f"shift {d} exceeds the site margin {margin}")
        acc = None
        for k, wk in enumerate(w):
            sl = [slice(None)] * 3
            sl[axis] = slice(i0 - 1 + k, i0 - 1 + k + n)
            term = out[tuple(sl)] * np.float32(wk)
            acc = term if acc is None else acc + term
        out = acc
    return out.astype(np.float32, copy=False)


def gain_map(n: int, gains: np.ndarray, step: dict | None) -> np.ndarray:
    """(6, 1, 1) band gains, or (6, n, n) when a detector boundary crosses the scene."""
    g = np.asarray(gains, np.float32)[:, None, None]
    if step is None:
        return g
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    th = np.deg2rad(step["angle"])
    across = (xx - n / 2 - step["offset"] * n) * np.float32(np.cos(th)) + (yy - n / 2) * np.float32(np.sin(th))
    side = np.clip(across + 0.5, 0, 1)  # the boundary is about a pixel wide
    return g * (1 + np.asarray(step["gains"], np.float32)[:, None, None] * side[None])


def add_noise_and_quantise(rng, refl: np.ndarray, snr_swir: float, alpha: float = 1e3) -> np.ndarray:
    """Gaussian noise (sd growing with signal as sqrt(alpha + rho)) -> uint16 reflectance x 10000."""
    sd_ref = (REF_REFL / (SNR_FACTOR * np.float32(snr_swir)))[:, None, None]
    a = np.float32(alpha)
    sd = sd_ref * np.sqrt((a + np.maximum(refl, 0)) / (a + REF_REFL[:, None, None]))
    noisy = refl + sd * rng.standard_normal(refl.shape, dtype=np.float32)
    return np.clip(np.rint(noisy * 10000.0), 1, 65535).astype(np.uint16)
