"""Endmember spectra for the six contract bands (B2, B3, B4, B8, B11, B12) and how to mix them.

Values are band-averaged surface reflectances of common materials, set by hand in the range of
USGS / ECOSTRESS library spectra (plausible, not measured). The SWIR features that matter for
methane are kept: water and wet soil absorb more in B12 than in B11, green vegetation has a low
B12/B11 (leaf water), clays (Al-OH near 2.2 um) and carbonates (2.33 um) lower B12, gypsum
lowers both SWIR bands, plastics (C-H near 2.3 um) lower B12. Such surfaces look like methane
to a single-pass B12/B11 retrieval and are drawn on purpose.
"""

from __future__ import annotations

import numpy as np

#                       B2     B3     B4     B8     B11    B12
ENDMEMBERS = {
    "sand":         (0.210, 0.270, 0.340, 0.420, 0.520, 0.460),
    "pale_sand":    (0.300, 0.350, 0.400, 0.450, 0.540, 0.490),
    "bright_soil":  (0.150, 0.190, 0.240, 0.300, 0.390, 0.340),
    "red_soil":     (0.090, 0.120, 0.190, 0.260, 0.360, 0.320),
    "dark_soil":    (0.070, 0.090, 0.110, 0.160, 0.230, 0.190),
    "ploughed":     (0.060, 0.075, 0.095, 0.140, 0.210, 0.170),
    "wet_soil":     (0.050, 0.065, 0.080, 0.110, 0.120, 0.085),
    "gravel":       (0.180, 0.210, 0.250, 0.300, 0.360, 0.320),
    "dry_grass":    (0.080, 0.100, 0.130, 0.230, 0.330, 0.260),
    "stubble":      (0.120, 0.150, 0.190, 0.270, 0.370, 0.290),
    "green_veg":    (0.035, 0.070, 0.045, 0.420, 0.220, 0.110),
    "shrub":        (0.060, 0.080, 0.090, 0.240, 0.260, 0.180),
    "forest":       (0.025, 0.045, 0.030, 0.300, 0.150, 0.070),
    "water":        (0.070, 0.060, 0.035, 0.020, 0.008, 0.005),
    "turbid_water": (0.090, 0.090, 0.070, 0.040, 0.012, 0.007),
    "shallow_water": (0.100, 0.110, 0.090, 0.060, 0.020, 0.012),
    "asphalt":      (0.080, 0.090, 0.100, 0.120, 0.150, 0.140),
    "concrete":     (0.200, 0.220, 0.240, 0.270, 0.300, 0.280),
    "roof_metal":   (0.250, 0.260, 0.270, 0.290, 0.270, 0.240),
    "roof_tile":    (0.100, 0.120, 0.200, 0.280, 0.350, 0.300),
    "plastic":      (0.300, 0.320, 0.330, 0.360, 0.340, 0.220),
    "pv_panel":     (0.060, 0.060, 0.050, 0.050, 0.050, 0.045),
    "caliche":      (0.260, 0.300, 0.330, 0.370, 0.430, 0.380),
    "carbonate":    (0.280, 0.310, 0.340, 0.380, 0.450, 0.350),
    "limestone":    (0.300, 0.330, 0.350, 0.380, 0.440, 0.360),
    "clay":         (0.200, 0.250, 0.300, 0.360, 0.450, 0.340),
    "gypsum":       (0.400, 0.440, 0.470, 0.500, 0.400, 0.300),
    "halite":       (0.500, 0.530, 0.550, 0.560, 0.520, 0.470),
    "basalt":       (0.060, 0.065, 0.070, 0.090, 0.110, 0.100),
    "char":         (0.035, 0.040, 0.045, 0.070, 0.140, 0.130),
    "ash":          (0.120, 0.130, 0.140, 0.160, 0.200, 0.180),
    "tar_black":    (0.040, 0.045, 0.050, 0.060, 0.070, 0.065),
}

# Darkening of a soil by moisture, R_wet = R_dry * exp(-WET_K * wetness), wetness 0..1 (the
# exponential form of Lobell & Asner 2002): the SWIR darkens most, B12 a little more than B11.
WET_K = np.array([0.55, 0.55, 0.55, 0.60, 0.85, 1.00], np.float32)


def spec(name: str) -> np.ndarray:
    return np.asarray(ENDMEMBERS[name], np.float32)


def jitter(rng, s: np.ndarray, amount: float = 0.08) -> np.ndarray:
    """One instance of an endmember: overall brightness and a small spectral tilt.

    The SWIR bands tilt together (B11 and B12 lie on the same smooth continuum of soils), so
    the B12/B11 ratio of an instance varies by about 1 %, not by two bands' independent spread.
    """
    s = np.asarray(s, np.float32)
    tilt = rng.normal(0, amount / 2, size=6).astype(np.float32)
    tilt[5] = tilt[4] + np.float32(rng.normal(0, amount / 8))
    return s * np.float32(rng.uniform(1 - amount, 1 + amount)) * (1 + tilt)


def pick(rng, names, amount: float = 0.08) -> np.ndarray:
    """A jittered instance of one of `names`."""
    return jitter(rng, spec(str(rng.choice(list(names)))), amount)


def mix(fracs, spectra) -> np.ndarray:
    """Linear mixture: sum_k f_k * spectrum_k -> (6, H, W); fractions are normalised."""
    f = np.stack(fracs).astype(np.float32)
    f /= np.maximum(f.sum(0, keepdims=True), 1e-6)
    return np.einsum("khw,kb->bhw", f, np.stack(spectra).astype(np.float32), optimize=True)


def paint(refl: np.ndarray, mask: np.ndarray, spectrum: np.ndarray) -> None:
    """In place: refl = refl * (1 - m) + m * spectrum for a soft mask m in [0, 1]; spectrum (6,) or (6, H, W)."""
    m = np.asarray(mask, np.float32)[None]
    s = np.asarray(spectrum, np.float32)
    refl *= 1 - m
    refl += m * (s[:, None, None] if s.ndim == 1 else s)


def paint_box(refl: np.ndarray, mask: np.ndarray, spectrum: np.ndarray, box) -> None:
    """`paint` restricted to box = (r0, r1, c0, c1) (mask has the box's shape): small features stay cheap."""
    r0, r1, c0, c1 = box
    if r1 > r0 and c1 > c0:
        paint(refl[:, r0:r1, c0:c1], mask, spectrum)
