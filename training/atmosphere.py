"""Atmosphere and sensor: haze, cumulus clouds with shadows, noise, quantisation.

Order in the simulator: surface (x shadow) x methane -> haze -> cloud -> noise -> uint16.
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
# Noise: std in reflectance units at SNR 1 (radiance-like noise: constant std, so dark pixels get lower SNR).
REF_REFL = np.array([0.15, 0.15, 0.15, 0.30, 0.30, 0.30], np.float32)


def haze(rng, refl: np.ndarray, n: int, aod: float) -> np.ndarray:
    """Spatially smooth haze: surface x transmission + path reflectance."""
    var = 1 + 0.3 * smooth_field(rng, n, rng.uniform(80, 300))
    a = np.float32(aod) * np.clip(var, 0.3, 2.0)[None]
    t = 1 - TRANS_PER_AOD[:, None, None] * a
    path = RAYLEIGH_PATH[:, None, None] + PATH_PER_AOD[:, None, None] * a
    return refl * t + path


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


def apply_cloud(refl: np.ndarray, opacity: np.ndarray, rng) -> np.ndarray:
    cr = CLOUD_REFL * np.float32(rng.uniform(0.85, 1.15))
    a = opacity[None]
    return refl * (1 - a) + a * cr[:, None, None]


def add_noise_and_quantise(rng, refl: np.ndarray, snr_swir: float) -> np.ndarray:
    """Gaussian noise (constant std per band, set by SNR at the reference reflectance) -> uint16.

    snr_swir: SNR of B11/B12 at reflectance 0.3 (100..200 for Sentinel-2); VNIR bands get about 1.5x.
    """
    snr = np.array([1.5, 1.5, 1.5, 1.5, 1.0, 0.9], np.float32) * np.float32(snr_swir)
    sd = (REF_REFL / snr)[:, None, None]
    noisy = refl + sd * rng.standard_normal(refl.shape, dtype=np.float32)
    return np.clip(np.rint(noisy * 10000.0), 1, 65535).astype(np.uint16)
