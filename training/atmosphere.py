"""Atmosphere of one pass: haze, cumulus clouds with their shadows.

Order in the simulator: surface x cloud shadow x methane -> haze -> cloud (then the sensor,
training/sensor.py). Haze and cloud are affine in the surface signal (refl * t + path and
refl * (1 - a) + a * cloud), so the label's methane-free B12 goes through exactly the same
haze and cloud as the observed one without drawing them twice.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from training.noise import fbm, smooth_field, threshold_fraction

# Additive path reflectance per unit aerosol optical depth (Rayleigh + aerosol, strongest in the blue).
PATH_PER_AOD = np.array([0.10, 0.07, 0.045, 0.02, 0.006, 0.003], np.float32)
RAYLEIGH_PATH = np.array([0.045, 0.025, 0.012, 0.003, 0.0003, 0.0001], np.float32)
# Two-way transmittance loss per unit AOD (multiplicative on the surface signal).
TRANS_PER_AOD = np.array([0.35, 0.30, 0.25, 0.16, 0.07, 0.05], np.float32)
# Cumulus (water cloud) reflectance: bright and flat in VNIR, lower in the SWIR (droplet absorption).
CLOUD_REFL = np.array([0.62, 0.60, 0.60, 0.62, 0.45, 0.30], np.float32)
# Fraction of light left in a cloud shadow (diffuse sky light; bluer, so the SWIR darkens most).
SHADOW_DIFFUSE = np.array([0.45, 0.36, 0.28, 0.18, 0.10, 0.08], np.float32)


def aerosol_field(rng, n: int, aod: float) -> np.ndarray:
    """(n, n) optical depth: the pass's AOD with smooth spatial variation (a few tens of km)."""
    var = 1 + 0.3 * smooth_field(rng, n, rng.uniform(80, 300))
    return (np.float32(aod) * np.clip(var, 0.3, 2.0)).astype(np.float32)


def apply_haze(refl: np.ndarray, tau: np.ndarray, bands=slice(None)) -> np.ndarray:
    """Surface x two-way transmission + path reflectance; `bands` selects rows of the band tables."""
    t = 1 - TRANS_PER_AOD[bands, None, None] * tau[None]
    return refl * t + (RAYLEIGH_PATH[bands, None, None] + PATH_PER_AOD[bands, None, None] * tau[None])


def clouds(rng, n: int, cover: float, sza_deg: float, saa_deg: float, pixel_m: float = 20.0):
    """Cumulus opacity (0..1) and the shadow fraction (0..1) shifted away from the sun.

    cover: cloud fraction of the scene. Returns (opacity, shadow, cloud_height_m).
    """
    if cover <= 0:
        z = np.zeros((n, n), np.float32)
        return z, z, 0.0
    f = fbm(rng, n, scales=(rng.uniform(20, 60), 8, 2.5), weights=(1, 0.5, 0.2))
    t = threshold_fraction(f, cover)
    tau = np.clip((f - t) * rng.uniform(8, 25), 0, None)  # optical thickness
    opacity = (1 - np.exp(-tau)).astype(np.float32)
    height = rng.uniform(800, 2500)
    d = height * np.tan(np.deg2rad(sza_deg)) / pixel_m  # shadow offset (pixels), away from the sun
    az = np.deg2rad(saa_deg)
    shift = (d * np.cos(az), -d * np.sin(az))  # (rows, cols), rows run south: content moves away from the sun azimuth
    shadow = ndimage.shift(opacity, shift, order=1, mode="constant", cval=0.0, prefilter=False)
    return opacity, np.clip(shadow, 0, 1).astype(np.float32), float(height)


def apply_shadow(refl: np.ndarray, shadow: np.ndarray) -> np.ndarray:
    return refl * (1 - shadow[None] * (1 - SHADOW_DIFFUSE[:, None, None]))


def cloud_reflectance(rng) -> np.ndarray:
    return (CLOUD_REFL * np.float32(rng.uniform(0.85, 1.15))).astype(np.float32)


def apply_cloud(refl: np.ndarray, opacity: np.ndarray, cloud_refl: np.ndarray) -> np.ndarray:
    a = opacity[None]
    return refl * (1 - a) + a * np.asarray(cloud_refl, np.float32).reshape(-1, 1, 1)
