"""Pixels that cannot be compared between passes: opaque clouds and nodata, from the bands alone.

Sentinel-2 L1C carries no cloud mask in the six contract bands, so a simple spectral test stands in:
an opaque water cloud is bright and flat across the visible (B2 about as bright as B4, unlike red
soil), still bright in the SWIR (unlike snow) but darker in B11 than in B8 (droplets absorb; bright
sand and soil are brighter in B11). White surfaces (salt flats, hazy sand, roofs) pass that test on
every date, a cloud on one date only: with the other pass at hand, a pixel is cloud only where it is
also clearly brighter in the blue than on the other date (`cloud_mask(bands, other)`); the spectral
test alone flags white surfaces (most of a salt flat) too. How well each does: docs/methods.md,
"The multi-pass model".
"""

from __future__ import annotations

import numpy as np

from core.contract import BANDS, NODATA, SCALE

CLOUD_MIN_VISIBLE = 0.30  # reflectance of B2, B3 and B4 at least this
CLOUD_MIN_B11 = 0.20  # ... B11 at least this, and below B8
CLOUD_MIN_BLUE_RED = 0.7  # ... and B2 at least this share of B4 (flat or bluish, not a red or yellow soil)
CLOUD_MIN_BRIGHTENING = 0.08  # ... and B2 brighter than on the other date by this much (two passes)


def cloud_like(r: np.ndarray) -> np.ndarray:
    """(H, W) bool: the spectral test on (6, H, W) reflectances (0..1) in BANDS order."""
    b2, b3, b4, b8, b11 = (r[BANDS.index(b)] for b in ("B2", "B3", "B4", "B8", "B11"))
    return ((np.minimum(np.minimum(b2, b3), b4) >= CLOUD_MIN_VISIBLE) & (b11 >= CLOUD_MIN_B11)
            & (b11 < b8) & (b2 >= CLOUD_MIN_BLUE_RED * b4))


def cloud_mask(bands: np.ndarray, other: np.ndarray | None = None) -> np.ndarray:
    """(H, W) bool: opaque cloud in a (6, H, W) uint16 block in BANDS order (reflectance x 10000).
    other: the same place on the other date (same grid); a pixel is then cloud only where it is also
    brighter in B2 than there (nodata there counts as no evidence against a cloud)."""
    r = bands.astype(np.float32) / SCALE
    cloud = cloud_like(r)
    if other is not None:
        o = other.astype(np.float32) / SCALE
        i2 = BANDS.index("B2")
        cloud &= (r[i2] - o[i2] >= CLOUD_MIN_BRIGHTENING) | nodata_mask(other)
    return cloud


def nodata_mask(bands: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels where any band of a (6, H, W) block is nodata."""
    return np.any(bands == NODATA, axis=0)
