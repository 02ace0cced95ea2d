"""The methane signal around a plume: B12's drop below the B12 that the other bands predict.

The surface's own spectrum (fields, soils, the pads that leaks come from) changes B12/B11, but a
multi-band regression fitted on the plume-free pixels nearby predicts it, so what is left is
methane's absorption and the sensor's noise (in the spirit of the multi-band methods of Varon et
al. 2021 and Ehret et al. 2022).
"""

from __future__ import annotations

import numpy as np


MIN_FIT_PX = 60  # fewest plume-free pixels that the B12 prediction is fitted on

def swir_ratio(block: np.ndarray) -> np.ndarray:
    """B12/B11 of a (2, h, w) block of B11, B12 (1 where B11 is nodata)."""
    b11, b12 = block[0].astype(np.float32), block[1].astype(np.float32)
    return np.divide(b12, b11, out=np.ones_like(b12), where=b11 > 0)

def _huber_fit(design: np.ndarray, y: np.ndarray, idx: np.ndarray, iterations: int) -> np.ndarray:
    """Coefficients of y ~ design on the rows idx, least squares reweighted (Huber) `iterations` times."""
    a, y = design[idx], y[idx]
    weight = np.ones_like(y)
    for _ in range(iterations):
        coef = np.linalg.lstsq(a * weight[:, None], y * weight, rcond=None)[0]
        resid = y - a @ coef
        scale = 1.4826 * np.median(np.abs(resid)) + 1e-9
        weight = 1.0 / np.maximum(1.0, np.abs(resid) / (2.0 * scale))
    return coef


def regression_signal(block: np.ndarray, fit: np.ndarray, iterations: int = 3,
                      reference: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Relative drop of B12 below B12 predicted from the other bands (positive where methane
    absorbs), and the share of that prediction that the observed B11 carries.

    block: (6, h, w) reflectance in BANDS order; fit: (h, w) bool, the pixels the prediction is
    fitted on (valid and plume-free). B12 = a . (B2, B3, B4, B8, B11, 1) is fitted by least squares,
    reweighted (Huber) so that leftover methane and odd pixels pull little: the surface's own
    spectrum is predicted, so fields, soils and pads that change B12/B11 drop out and what is left
    is methane's absorption (and noise). The B11 share lets the column be retrieved exactly
    (`core.physics.column_from_b12_drop`), since methane lowers B11 a little too. With fewer
    than MIN_FIT_PX fitting pixels: the drop of B12/B11 against its median over them (share 1).

    reference: the same place's (6, h, w) reference pass, if any. Where it is usable (not nodata, not
    cloudy) its B11 and B12 join the predictors: the multi-pass regression, which also predicts the
    SWIR texture that the target's visible bands cannot (minerals, moisture); elsewhere the
    single-pass prediction stands.
    """
    x = block.astype(np.float64)
    b12 = x[5]
    idx = np.flatnonzero(fit)
    if idx.size < MIN_FIT_PX:
        ratio = swir_ratio(block[4:6])
        background = float(np.median(ratio[fit])) if idx.size else 1.0
        return (1.0 - ratio / max(background, 1e-6)).astype(np.float32), np.ones_like(b12, dtype=np.float32)
    design = np.concatenate([x[:5], np.ones_like(b12)[None]]).reshape(6, -1).T
    coef = _huber_fit(design, b12.ravel(), idx, iterations)
    pred = (design @ coef).reshape(b12.shape)
    b11_coef = np.full(b12.shape, coef[4])
    if reference is not None:
        from core.masks import cloud_mask, nodata_mask

        usable = ~nodata_mask(reference) & ~cloud_mask(reference, block)
        mp_idx = np.flatnonzero(fit & usable)
        if mp_idx.size >= MIN_FIT_PX:
            r = reference.astype(np.float64)
            design_mp = np.concatenate([x[:5], r[4:6], np.ones_like(b12)[None]]).reshape(8, -1).T
            coef_mp = _huber_fit(design_mp, b12.ravel(), mp_idx, iterations)
            pred = np.where(usable, (design_mp @ coef_mp).reshape(b12.shape), pred)
            b11_coef = np.where(usable, coef_mp[4], b11_coef)
    ok = pred > 0
    signal = np.divide(pred - b12, pred, out=np.zeros_like(b12), where=ok)
    share = np.divide(b11_coef * x[4], pred, out=np.zeros_like(b12), where=ok)
    return signal.astype(np.float32), share.astype(np.float32)


def robust_sigma(values: np.ndarray) -> float:
    """Robust standard deviation (1.4826 x the median absolute deviation)."""
    return float(1.4826 * np.median(np.abs(values - np.median(values))))
