"""Terrain height (metres) for a site, and how a sun position lights it.

Height is static (part of the site); illumination is per pass: slope shading
cos(i) / cos(SZA) of the direct beam, cast shadows where the terrain towards the
sun rises above the sun's elevation, and diffuse sky light weighted by the
sky-view factor. Two passes with different sun angles therefore shade dunes
and relief differently, which is one of the things a reference pass changes.
"""

from __future__ import annotations

import numpy as np

from training.noise import fbm, smooth_field

RELIEF_KINDS = ("flat", "plain", "hills", "mesas", "mountains", "dunes")
# Diffuse share of the ground irradiance per band (B2 .. B12) in a clear sky; haze adds to it.
DIFFUSE_CLEAR = np.array([0.22, 0.16, 0.12, 0.08, 0.05, 0.04], np.float32)
DIFFUSE_PER_AOD = np.array([0.45, 0.40, 0.35, 0.25, 0.12, 0.09], np.float32)
MAX_SHADOW_STEPS = 40  # pixels searched towards the sun for a cast shadow


def dunes(rng, n: int, pixel_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Transverse / linear dune ridges with a gentle stoss and a steep lee, and the interdune share.

    Crests are sinuous (phase warped by a smooth field); a second crossing set gives star-like
    patterns in some scenes. Amplitude varies so that flat interdune corridors appear; those
    are returned (0..1) because their floor is another material (gypsum, clay, carbonate).
    """
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    amp = np.float32(rng.uniform(8, 50))  # crest height (m)
    env = 1 / (1 + np.exp(-2.5 * (smooth_field(rng, n, rng.uniform(40, 140)) + rng.uniform(0.0, 1.5))))
    h = np.zeros((n, n), np.float32)
    for k in range(1 if rng.random() < 0.7 else 2):
        th = rng.uniform(0, np.pi)
        lam = rng.uniform(15, 60)  # wavelength (px)
        lee = rng.uniform(0.2, 0.45)  # share of the wavelength taken by the lee face
        warp = rng.uniform(0.3, 1.5) * smooth_field(rng, n, lam * rng.uniform(2, 6))
        ph = (xx * np.float32(np.cos(th)) + yy * np.float32(np.sin(th))) / np.float32(lam) + warp
        p = ph - np.floor(ph)
        prof = np.where(p < 1 - lee, p / (1 - lee), (1 - p) / lee)
        h += np.float32(amp / (k + 1)) * (prof * prof * (3 - 2 * prof))  # smoothstep rounds the crests
    return (h * env).astype(np.float32), (1 - env).astype(np.float32)


def height_map(rng, n: int, relief: str, pixel_m: float = 20.0) -> tuple[np.ndarray, np.ndarray | None]:
    """(height in m, interdune share or None) for a relief kind of RELIEF_KINDS."""
    base = np.float32(rng.uniform(0.5, 4.0)) * fbm(rng, n, scales=(120, 30), weights=(1, 0.3))
    if relief == "flat":
        return base, None
    if relief == "plain":
        return base + np.float32(rng.uniform(2, 12)) * fbm(rng, n, scales=(150, 50, 15), weights=(1, 0.4, 0.15)), None
    if relief == "hills":
        f = fbm(rng, n, scales=(rng.uniform(40, 120), 20, 6), weights=(1, 0.45, 0.15))
        ridged = np.clip(1 - np.abs(f) / 2, 0, 1)  # sharp crests, rounded valleys
        return base + np.float32(rng.uniform(20, 120)) * ridged, None
    if relief == "mesas":
        f = fbm(rng, n, scales=(rng.uniform(50, 150), 25, 8), weights=(1, 0.4, 0.15))
        levels = rng.uniform(2, 5)
        q = (f - f.min()) / max(float(f.max() - f.min()), 1e-6) * np.float32(levels)
        step = np.floor(q) + np.clip((q - np.floor(q) - 0.75) / 0.25, 0, 1)  # flat tops, steep scarps
        return base + np.float32(rng.uniform(15, 60)) * step.astype(np.float32), None
    if relief == "mountains":
        f = fbm(rng, n, scales=(rng.uniform(80, 200), 40, 12, 4), weights=(1, 0.5, 0.25, 0.1))
        return base + np.float32(rng.uniform(100, 350)) * np.clip(1 - np.abs(f) / 2.5, 0, 1) ** 1.5, None
    if relief == "dunes":
        h, inter = dunes(rng, n, pixel_m)
        return base + h, inter
    raise ValueError(f"unknown relief {relief!r}")


def _shifted(padded: np.ndarray, pad: int, dr: int, dc: int, n: int, m: int) -> np.ndarray:
    return padded[pad + dr:pad + dr + n, pad + dc:pad + dc + m]


def cast_shadow(height: np.ndarray, sza_deg: float, saa_deg: float, pixel_m: float) -> np.ndarray:
    """1 where terrain between the pixel and the sun rises above the sun's elevation, else 0."""
    n, m = height.shape
    tan_elev = 1.0 / np.tan(np.deg2rad(sza_deg))
    relief = float(height.max() - height.min())
    steps = int(min(MAX_SHADOW_STEPS, np.ceil(relief / (pixel_m * tan_elev))))
    if steps < 1:
        return np.zeros((n, m), np.float32)
    az = np.deg2rad(saa_deg)
    d_row, d_col = -np.cos(az), np.sin(az)  # towards the sun (rows run south)
    padded = np.pad(height, steps + 1, mode="edge")
    shade = np.zeros((n, m), bool)
    for k in range(1, steps + 1):
        dr, dc = int(round(k * d_row)), int(round(k * d_col))
        dist = np.hypot(dr, dc) * pixel_m
        shade |= _shifted(padded, steps + 1, dr, dc, n, m) - height > np.float32(dist * tan_elev)
    return shade.astype(np.float32)


def illumination(height: np.ndarray, sza_deg: float, saa_deg: float, aod: float, pixel_m: float = 20.0):
    """(6, H, W) factor on surface reflectance for this sun (1 on flat, unshadowed ground).

    I_b = (1 - f_b) * max(cos i, 0) / cos(SZA) * (1 - cast shadow) + f_b * sky view, with f_b the
    diffuse share of band b (bluer bands and hazier skies are more diffuse).
    """
    gy, gx = np.gradient(height, pixel_m)
    gy = -gy  # rows run south: d/d(north) = -d/d(row)
    sz, az = np.deg2rad(sza_deg), np.deg2rad(saa_deg)
    s_e, s_n, s_u = np.sin(sz) * np.sin(az), np.sin(sz) * np.cos(az), np.cos(sz)
    norm = np.sqrt(1 + gx * gx + gy * gy)
    cos_i = (-gx * s_e - gy * s_n + s_u) / norm
    direct = np.maximum(cos_i, 0) / np.float32(s_u)
    if float(height.max() - height.min()) > 3.0:
        direct *= 1 - cast_shadow(height, sza_deg, saa_deg, pixel_m)
    sky = 0.5 * (1 + 1 / norm)  # sky-view factor of a tilted plane
    f = np.clip(DIFFUSE_CLEAR + DIFFUSE_PER_AOD * np.float32(aod), 0, 0.9)[:, None, None]
    return ((1 - f) * direct[None] + f * sky[None]).astype(np.float32)
