"""Methane physics of the product, in one place: band transmittance, column retrieval, the label rule.

Band-averaged methane transmittance T_b(ω) = (1 + b·w)^(−a), w = ω · AMF / 2, fitted (least squares,
relative error) through the Orbio / Project Eucalyptus look-up table (ω = 0.1 / 1 / 10 mol/m²:
B12 −0.64 / −5.6 / −28 %, B11 −0.10 / −0.89 / −5.5 % at air-mass factor 2); it reproduces all six
points within 2 % relative. The simulator (training/) renders plumes with it and the serving side
inverts it.

Retrieval (multi-band single-pass, Varon et al. 2021): the surface changes B11 and B12 alike while
methane darkens B12 far more, so the B12/B11 ratio against its plume-free background is
T12(ω)/T11(ω); inverting that gives ω per pixel (`column_from_ratio_drop`). The plume records
(core/plumes/) predict B12 from all five other bands instead, and `column_from_b12_drop` inverts
B12's drop below that prediction, allowing for the share of it that the (methane-darkened) B11
carries.

The label rule (`label_rule`, `label_plumes`) is the product's definition of a plume pixel and of a
labelled plume. The IME constants
(U_eff = 0.33 · U10 + 0.45 m/s, Varon et al. 2021) are used by core/plumes/emission.py.
"""

from __future__ import annotations

import numpy as np

M_CH4 = 0.01604  # kg/mol
AMF_REF = 2.0
TRANSMITTANCE_FIT = {"B12": (0.2657765, 0.24354706), "B11": (0.05398205, 0.1839713)}  # (a, b)
U_EFF_SLOPE, U_EFF_OFFSET = 0.33, 0.45  # U_eff = slope * U10 + offset (m/s)
U_EFF_REL_ERROR = 0.30
DEFAULT_WIND_ERROR_MS = 1.5  # typical error of a reanalysis 10 m wind

# Published look-up table the transmittance fit goes through: dOmega (mol/m2) -> fractional change, AMF 2.
TABLE = {
    "B12": {0.1: -0.0064, 1.0: -0.056, 10.0: -0.28},
    "B11": {0.1: -0.0010, 1.0: -0.0089, 10.0: -0.055},
}

_OMEGA_GRID = np.concatenate([[0.0], np.geomspace(1e-4, 50.0, 2000)])


def transmittance(omega, band: str, amf: float = AMF_REF):
    """Band-averaged transmittance of methane column enhancement `omega` (mol/m²)."""
    a, b = TRANSMITTANCE_FIT[band]
    w = np.maximum(np.asarray(omega, dtype=np.float64) * (amf / AMF_REF), 0.0)
    return (1.0 + b * w) ** (-a)


def column_from_ratio_drop(drop, amf: float = AMF_REF) -> np.ndarray:
    """ω (mol/m²) whose T12/T11 equals 1 − drop.

    A negative drop (noise, or a surface brighter in B12 than its background)
    gives the mirrored negative ω, so that noise averages out over a plume
    instead of biasing its mass upwards.
    """
    ratio = transmittance(_OMEGA_GRID, "B12", amf) / transmittance(_OMEGA_GRID, "B11", amf)
    drop = np.asarray(drop, dtype=np.float64)
    # ratio falls monotonically with ω; np.interp needs increasing x.
    omega = np.interp(1.0 - np.abs(drop), ratio[::-1], _OMEGA_GRID[::-1], left=_OMEGA_GRID[-1], right=0.0)
    return np.sign(drop) * omega


def column_from_b12_drop(drop, b11_share, amf: float = AMF_REF) -> np.ndarray:
    """ω (mol/m²) from B12's drop below a prediction that leans on the observed B11.

    drop: 1 − B12 / B12_predicted; b11_share: the part of that prediction carried by the
    observed B11 (its coefficient × B11, over the prediction). Methane lowers B11 too, so the
    prediction is itself low by that share: B12 = T12(ω) · P · (1 − s + s / T11(ω)) with P the
    prediction, s the share. Solved per pixel by bisection; s = 1 is the B12/B11 ratio
    (`column_from_ratio_drop`), s = 0 B12 alone. A negative drop gives the mirrored negative ω.
    """
    drop = np.asarray(drop, dtype=np.float64)
    share = np.broadcast_to(np.asarray(b11_share, dtype=np.float64), drop.shape)
    target = 1.0 - np.minimum(np.abs(drop), 0.999)
    lo, hi = np.zeros_like(drop), np.full_like(drop, _OMEGA_GRID[-1])
    for _ in range(40):  # relative change of B12 falls monotonically with ω (for s < 1 / d11)
        mid = 0.5 * (lo + hi)
        t11 = transmittance(mid, "B11", amf)
        low = transmittance(mid, "B12", amf) * (1.0 - share + share / t11) < target
        hi, lo = np.where(low, mid, hi), np.where(low, lo, mid)
    return np.sign(drop) * 0.5 * (lo + hi)


# THE labelling rule (the product's definition of a plume pixel, and of a labelled plume).
LABEL_MIN_B12_DROP = 0.01  # methane lowers B12 reflectance by >= 1 % (0.16 mol/m² at AMF 2 by the fit)
LABEL_MAX_CLOUD_OPACITY = 0.5  # ... and no opaque cloud covers the pixel
LABEL_MIN_PLUME_PIXELS = 5  # a plume with fewer such pixels is not labelled


def label_rule(b12_drop, cloud_opacity=None) -> np.ndarray:
    """Plume pixel <=> methane lowers B12 by >= LABEL_MIN_B12_DROP and no opaque cloud covers it.

    b12_drop: fractional decrease of the pixel's B12 reflectance caused by methane
    (1 - B12_with / B12_without), noise-free. cloud_opacity: 0..1 or None.
    """
    lab = np.asarray(b12_drop) >= LABEL_MIN_B12_DROP
    if cloud_opacity is not None:
        lab &= np.asarray(cloud_opacity) < LABEL_MAX_CLOUD_OPACITY
    return lab.astype(np.uint8)


def label_plumes(b12_drop, owner=None, cloud_opacity=None) -> tuple[np.ndarray, np.ndarray]:
    """The label of a scene: `label_rule` per pixel, then each plume with fewer than
    LABEL_MIN_PLUME_PIXELS labelled pixels is left out.

    owner: (H, W) int, the plume (source) 1..K whose methane dominates each pixel, 0 where there
    is none; None: all the methane is one plume. Returns (mask uint8, labelled pixels of each
    plume 1..K after the rule, int array of length K).
    """
    lab = label_rule(b12_drop, cloud_opacity).astype(bool)
    owner = np.ones(lab.shape, np.int64) if owner is None else np.asarray(owner, np.int64)
    k = int(owner.max()) if owner.size else 0
    counts = np.bincount(owner[lab], minlength=k + 1)
    small = counts < LABEL_MIN_PLUME_PIXELS
    small[0] = False  # pixels without a plume carry no methane, so they are never labelled anyway
    lab &= ~small[owner]
    counts[small] = 0
    return lab.astype(np.uint8), counts[1:]
