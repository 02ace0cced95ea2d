"""Methane plumes for the simulator: Gaussian-plume dispersion with turbulence.

Units: column enhancement dOmega in mol/m2, source rate Q in kg/h at the API
(kg/s inside the formula), wind speed in m/s, distances in metres.
Band transmittance and the labelling rule live in core/physics.py (docs/simulator.md).
"""

from __future__ import annotations

import numpy as np

from core.physics import M_CH4
from training.noise import smooth_field

# Briggs (1973) rural sigma_y = c * x * (1 + 1e-4 x)^-1/2
BRIGGS_SIGMA_Y = {"A": 0.22, "B": 0.16, "C": 0.11, "D": 0.08, "E": 0.06, "F": 0.04}


def sigma_y(x_m, stability: str = "D"):
    """Briggs rural crosswind spread (m) at downwind distance x (m), x >= 0."""
    x = np.maximum(np.asarray(x_m, dtype=np.float64), 0.0)
    return BRIGGS_SIGMA_Y[stability] * x / np.sqrt(1.0 + 1e-4 * x)


def plume_column(
    n: int,
    src_rc: tuple[float, float],
    q_kg_h: float,
    wind_ms: float,
    wind_to_deg: float,
    stability: str = "D",
    pixel_m: float = 20.0,
    rng: np.random.Generator | None = None,
    turbulence: bool = True,
) -> np.ndarray:
    """Vertically integrated methane enhancement (mol/m2) on an (n, n) pixel grid.

    Steady Gaussian plume dOmega = Q / (sqrt(2 pi) sigma_y u M) exp(-y^2 / 2 sigma_y^2),
    evaluated at pixel centres. Sub-pixel handling: sigma_y is widened by the
    pixel footprint (sigma^2 + pixel^2/12, the variance of a one-pixel box)
    plus a floor of half a pixel, so sampling at pixel centres keeps the
    crosswind integral Q/u even for a plume narrower than a pixel; along the wind the source pixel gets the fraction of its length
    lying downwind of the source. With `turbulence`, the centreline meanders
    (a smooth random lateral offset growing with distance) and the column is
    multiplied by a correlated lognormal field (mean 1), so the plume is patchy
    but the mass flux is kept on average.

    src_rc: source position in (row, col) pixel coordinates (pixel centres are integers).
    wind_to_deg: direction the plume travels, degrees clockwise from north.
    """
    q = q_kg_h / 3600.0
    u = max(float(wind_ms), 0.1)
    rows, cols = np.mgrid[0:n, 0:n].astype(np.float32)
    th = np.deg2rad(wind_to_deg)
    ex, ny = np.float32(np.sin(th)), np.float32(np.cos(th))  # downwind unit vector (east, north)
    de = (cols - np.float32(src_rc[1])) * np.float32(pixel_m)
    dn = -(rows - np.float32(src_rc[0])) * np.float32(pixel_m)
    x = de * ex + dn * ny  # downwind distance (m)
    y = -de * ny + dn * ex  # crosswind distance (m)
    if turbulence and rng is not None:
        # meander: smooth lateral offset of the centreline as a function of x
        L = n * pixel_m * 1.5
        k = rng.uniform(0.5, 3.0, size=3) * 2 * np.pi / L
        ph = rng.uniform(0, 2 * np.pi, size=3)
        amp = rng.uniform(0.05, 0.25)  # offset / x ratio scale
        xs = np.maximum(x, 0)
        wander = np.zeros_like(x)
        for kk, pp in zip(k, ph):
            wander += np.sin(kk * xs + pp) - np.sin(pp)
        y = y - np.float32(amp / 3.0) * xs * wander
    sig = sigma_y(x, stability).astype(np.float32)
    sig = np.sqrt(sig * sig + np.float32(pixel_m * pixel_m / 12.0 + (0.5 * pixel_m) ** 2))
    # fraction of the pixel's along-wind length lying downwind of the source
    frac = np.clip(x / np.float32(pixel_m) + 0.5, 0.0, 1.0)
    col = (q / (np.sqrt(2 * np.pi) * u * M_CH4)) / sig * np.exp(-0.5 * (y / sig) ** 2) * frac
    col = col.astype(np.float32)
    if turbulence and rng is not None:
        s = np.float32(rng.uniform(0.25, 0.6))
        z = smooth_field(rng, n, rng.uniform(2.0, 5.0))
        col *= np.exp(s * z - 0.5 * s * s)
    return col
