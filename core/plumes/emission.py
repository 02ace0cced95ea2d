"""Emission rate of a plume by the integrated mass enhancement (IME) method.

    Q = U_eff · IME / L,  IME = Σ ω · A_pixel · M_CH4 over the plume,  L = √(plume area),

with U_eff = 0.33 · U10 + 0.45 m/s (Varon et al. 2021, calibrated for Sentinel-2 on large-eddy
simulations; UNEP IMEO's MARS-S2L uses the same). The stated 1-σ uncertainty combines the U_eff
calibration (about 30 %), the wind speed's own error and the retrieval noise of the IME (the
spread of ω over the plume-free ring around the plume). The constants live in core.physics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.physics import DEFAULT_WIND_ERROR_MS, M_CH4, U_EFF_OFFSET, U_EFF_REL_ERROR, U_EFF_SLOPE
from core.physics import column_from_b12_drop
from core.plumes.signal import robust_sigma


@dataclass
class EmissionEstimate:
    q_kg_h: float
    q_sigma_kg_h: float
    ime_kg: float
    length_m: float
    u_eff_ms: float

    def as_dict(self) -> dict:
        return {"q_kg_h": self.q_kg_h, "q_sigma_kg_h": self.q_sigma_kg_h, "ime_kg": self.ime_kg,
                "ime_length_m": self.length_m, "u_eff_ms": self.u_eff_ms}

def emission_rate(omega: np.ndarray, pixel_area_m2: float, wind_ms: float,
                  omega_noise: float = 0.0, wind_error_ms: float = DEFAULT_WIND_ERROR_MS) -> EmissionEstimate:
    """IME emission rate of one plume from the columns of its pixels (mol/m²)."""
    omega = np.asarray(omega, dtype=np.float64)
    n = omega.size
    ime = float(np.sum(omega) * pixel_area_m2 * M_CH4)
    length = math.sqrt(n * pixel_area_m2)
    u_eff = U_EFF_SLOPE * max(wind_ms, 0.0) + U_EFF_OFFSET
    q = u_eff * ime / length * 3600.0 if n else 0.0
    rel_wind = U_EFF_SLOPE * wind_error_ms / u_eff
    rel_ime = (omega_noise * math.sqrt(n) * pixel_area_m2 * M_CH4 / ime) if ime > 0 else 0.0
    rel = math.sqrt(U_EFF_REL_ERROR ** 2 + rel_wind ** 2 + rel_ime ** 2)
    return EmissionEstimate(q_kg_h=q, q_sigma_kg_h=q * rel, ime_kg=ime, length_m=length, u_eff_ms=u_eff)

RING_PX = 8  # width of the plume-free ring around a plume that gives its local background

def plume_emission(signal, b11_share, plume, outside, pixel_size, wind_ms, surface=None) -> dict | None:
    """IME emission rate of one plume from its methane signal (the multi-band regression's).

    signal, b11_share: `regression_signal`'s over a block; plume, outside: the plume's pixels and
    the plume-free valid pixels there. The background level and its noise come from a ring of
    plume-free pixels around the plume (RING_PX wide), so that the surface around the source is what
    the plume is compared with. surface: pixels of facilities, whose own spectrum the regression
    does not predict; the plume's pixels there get the median column of its other pixels.
    """
    from scipy import ndimage


    ring = ndimage.binary_dilation(plume, np.ones((3, 3), bool), iterations=RING_PX) & outside
    if ring.sum() < 10:
        return None
    background = float(np.median(signal[ring]))
    noise = float(column_from_b12_drop(robust_sigma(signal[ring]), float(np.median(b11_share[ring]))))
    omega = column_from_b12_drop(signal[plume] - background, b11_share[plume])
    if surface is not None:
        hidden = surface[plume]
        if hidden.any() and not hidden.all():
            omega = np.where(hidden, np.median(omega[~hidden]), omega)
    return emission_rate(omega, pixel_size ** 2, wind_ms, omega_noise=noise).as_dict()
