"""Facilities: compact man-made surfaces (well pads, tank batteries) that leaks come from.

Methane leaves B2, B3, B4 and B8 alone, so a pixel that stands out from its surroundings in those
bands (or whose B12 is brighter than the other bands predict, which gas never makes) is a surface,
not gas. A facility whose own B12 the regression does not predict hides the gas over it.
"""

from __future__ import annotations

import numpy as np

from core.plumes.signal import robust_sigma


FACILITY_SIGMAS = 6.0  # a pixel that departs this far from its surroundings in B2-B8 (or B12 excess) is man-made

FACILITY_BG_PX = 15  # size of the median filter that gives the surroundings' spectrum

FACILITY_MAX_PX = 12  # largest side of a facility's footprint (pads, tank batteries, compressor stations)

def facilities(block: np.ndarray, valid: np.ndarray, excess: np.ndarray | None = None
               ) -> list[tuple[float, float, np.ndarray]]:
    """Compact man-made surfaces (well pads, tanks) in a (6, h, w) block: (row, col) centre and pixels.

    Methane leaves B2, B3, B4 and B8 alone, so a pixel whose visible/NIR spectrum stands out from
    its surroundings (median over FACILITY_BG_PX) by FACILITY_SIGMAS robust sigmas is a surface
    feature, not gas; so is one whose B12 is brighter than the other bands predict by as many
    sigmas (excess: the regression signal's negative, in noise sigmas), since gas only darkens B12.
    Thin lines (roads, pipelines) are opened away; what is left with a footprint of at most
    FACILITY_MAX_PX a side is a facility.
    """
    from scipy import ndimage

    score = np.zeros(valid.shape, np.float32)
    for band in block[:4].astype(np.float32):  # B2, B3, B4, B8
        dev = band - _coarse_median(band, FACILITY_BG_PX)
        scale = robust_sigma(dev[valid]) if valid.sum() >= 20 else 0.0
        if scale > 0:
            score = np.maximum(score, np.abs(dev) / scale)
    if excess is not None:  # B12 brighter than the other bands predict: a surface, never methane
        score = np.maximum(score, excess)
    found = ndimage.binary_opening(valid & (score >= FACILITY_SIGMAS), np.ones((2, 2), bool))
    labels, _ = ndimage.label(found)
    out = []
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or max(box[0].stop - box[0].start, box[1].stop - box[1].start) > FACILITY_MAX_PX:
            continue
        rows, cols = np.nonzero(labels[box] == k)
        rows, cols = rows + box[0].start, cols + box[1].start
        out.append((float(rows.mean()), float(cols.mean()), np.stack([rows, cols], axis=1)))
    return out

def _coarse_median(band: np.ndarray, size: int, step: int = 3) -> np.ndarray:
    """About a size x size median filter, taken on every `step`-th pixel and spread back (cheap)."""
    from scipy import ndimage

    small = ndimage.median_filter(band[::step, ::step], size=max(1, size // step), mode="nearest")
    return np.repeat(np.repeat(small, step, axis=0), step, axis=1)[: band.shape[0], : band.shape[1]]
