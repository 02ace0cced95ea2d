"""The natural ground of a site: soils, SWIR mineral texture, vegetation cover, burn scars, playas, wadis.

All static (the same on every date); what changes between dates (moisture, vegetation vigour)
is applied when a pass is rendered (training/render.py).

The mineral texture is what makes B11/B12 vary independently of B2-B8: clay (Al-OH near
2.2 um), carbonate (2.33 um) and gypsum (1.75 and 2.2 um) abundances lower B12 (gypsum B11 too)
in blobs and, over relief, in strata that follow the contours, and a SWIR albedo field changes
both SWIR bands together. A single-pass B12/B11 retrieval reads a few per cent of it as methane.
"""

from __future__ import annotations

import numpy as np

from training.noise import fbm, smooth_field, soft_step, threshold_fraction
from training.spectra import jitter, mix, spec

# Band-average absorption depth of a pure mineral, relative to the soil continuum: (B11, B12).
MINERAL_DEPTH = {"clay": (0.02, 0.22), "carbonate": (0.01, 0.14), "gypsum": (0.12, 0.26)}


def soil_background(rng, n: int, palette, scale: float | None = None) -> np.ndarray:
    """Mixture of endmembers with smooth abundances, plus fine brightness texture.

    Composition (which changes band ratios) varies over tens of pixels; the pixel-scale texture
    of natural surfaces (roughness, shading, moisture speckle) changes brightness, which scales
    all bands alike.
    """
    scale = scale or rng.uniform(30, 120)
    fr = [np.exp(1.2 * fbm(rng, n, scales=(scale, scale / 4), weights=(1, 0.4))) for _ in palette]
    r = mix(fr, [jitter(rng, spec(nm)) for nm in palette])
    tex = fbm(rng, n, scales=(100, 25, 6, 1.5), weights=(1, 0.6, 0.4, 0.3))
    r *= (1 + np.float32(rng.uniform(0.03, 0.10)) * tex)[None]
    return r


def _abundance(rng, n: int, scale: float, share: float) -> np.ndarray:
    """0..1 abundance: patches covering about `share` of the scene, soft edges, graded inside."""
    f = fbm(rng, n, scales=(scale, scale / 3, 3.0), weights=(1, 0.4, 0.15))
    t = threshold_fraction(f, share)
    return np.clip((f - t) / 1.2, 0, 1) ** 0.7


def mineral_texture(rng, n: int, strength: float, height=None, interdune=None):
    """Multiplicative (B11, B12) factors, each (n, n), and the mean abundances for the metadata."""
    m11 = np.ones((n, n), np.float32)
    m12 = np.ones((n, n), np.float32)
    info = {}
    if strength <= 0:
        return m11, m12, info
    for name, (d11, d12) in MINERAL_DEPTH.items():
        if rng.random() > 0.6:
            continue
        a = _abundance(rng, n, rng.uniform(8, 80), rng.uniform(0.05, 0.4)) * np.float32(rng.uniform(0.2, 0.8))
        if height is not None and float(height.max() - height.min()) > 20 and rng.random() < 0.6:
            # strata: a layer outcrops where the terrain crosses its elevation
            thick = rng.uniform(15, 60)
            warp = smooth_field(rng, n, 60) * thick * 0.5
            layer = np.cos(2 * np.pi * (height + warp) / thick) > rng.uniform(0.5, 0.9)
            a = np.maximum(a, layer * np.float32(rng.uniform(0.2, 0.6)))
        if interdune is not None and rng.random() < 0.7:
            a = np.maximum(a, interdune * np.float32(rng.uniform(0.3, 0.9)))
        a *= np.float32(strength)
        m11 *= 1 - np.float32(d11) * a
        m12 *= 1 - np.float32(d12) * a
        info[name] = round(float(a.mean()), 4)
    # SWIR albedo the visible bands do not predict (grain size, organic matter, iron vs. clay)
    g = smooth_field(rng, n, rng.uniform(10, 80)) * np.float32(rng.uniform(0.02, 0.08) * strength)
    m11 *= 1 + g
    m12 *= 1 + g
    # fine B12-only speckle (sub-pixel mineral mixture): methane-like patchiness at the per-cent level
    m12 *= 1 + smooth_field(rng, n, rng.uniform(1.5, 8)) * np.float32(rng.uniform(0.002, 0.012) * strength)
    return m11, m12, info


def vegetation_cover(rng, n: int, mean: float, scale: float | None = None) -> np.ndarray:
    """Natural vegetation cover fraction (shrubs, grass): clumpy at the pixel scale, patchy at larger ones."""
    if mean <= 0:
        return np.zeros((n, n), np.float32)
    scale = scale or rng.uniform(4, 30)
    f = fbm(rng, n, scales=(scale * 4, scale, 1.5), weights=(0.6, 1.0, 0.5))
    off = np.log(mean / (1 - mean))
    return (0.85 / (1 + np.exp(-(1.2 * f + off)))).astype(np.float32)  # mixed pixels: rarely a closed canopy


def burn_scar(rng, n: int) -> np.ndarray:
    """A burnt area (soft 0..1 mask): lobed blob elongated along the fire's wind, with unburnt islands."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    cy, cx = rng.uniform(0.1 * n, 0.9 * n, 2)
    th = rng.uniform(0, np.pi)
    a, b = rng.uniform(0.08, 0.35) * n, rng.uniform(0.04, 0.15) * n
    u = ((yy - cy) * np.cos(th) + (xx - cx) * np.sin(th)) / a
    v = (-(yy - cy) * np.sin(th) + (xx - cx) * np.cos(th)) / b
    f = 1 - np.sqrt(u * u + v * v) + 0.35 * fbm(rng, n, scales=(30, 8, 2.5), weights=(1, 0.5, 0.3))
    return soft_step(f, 0.15)


def salt_flat(rng, n: int):
    """A playa: (crust mask 0..1, zone field) — halite in the centre, gypsum / clay rings outside."""
    f = fbm(rng, n, scales=(rng.uniform(80, 250), 40, 10), weights=(1, 0.2, 0.04))
    t = threshold_fraction(f, rng.uniform(0.25, 0.8))
    crust = soft_step(f - t, 0.08)  # a playa's edge is sharp at 20 m
    return crust, (f - t).astype(np.float32)


def channels(rng, n: int, width_px: float, scale: float | None = None) -> np.ndarray:
    """Meandering reaches (pieces of the zero lines of a smooth field): wadis and drainage lines."""
    f = smooth_field(rng, n, scale or rng.uniform(25, 80))
    g = np.hypot(*np.gradient(f)) + 1e-3
    d = np.abs(f) / g  # approximate distance to the zero line in pixels
    keep = np.clip(smooth_field(rng, n, rng.uniform(30, 90)) + 0.3, 0, 1)  # breaks closed loops into reaches
    return (np.clip(width_px / 2 + 0.5 - d, 0, 1) * keep).astype(np.float32)
