"""Pixels that cannot be compared between passes: opaque clouds and nodata, from the bands alone.

Sentinel-2 L1C carries no cloud mask in the six contract bands, so a simple spectral test stands in:
an opaque water cloud is bright and flat across the visible (B2 about as bright as B4, unlike bright
sand or red soil) and still bright in the SWIR (unlike snow). Very bright white surfaces (salt flats)
can pass the test too; masking them only removes pixels from the comparison, it never adds a plume.
"""

from __future__ import annotations

import numpy as np

from core.contract import BANDS, NODATA, SCALE

CLOUD_MIN_VISIBLE = 0.25  # reflectance of B2, B3 and B4 at least this
CLOUD_MIN_B11 = 0.20  # ... B11 at least this
CLOUD_MIN_BLUE_RED = 0.7  # ... and B2 at least this share of B4 (flat or bluish, not a red or yellow soil)


def cloud_mask(bands: np.ndarray) -> np.ndarray:
    """(H, W) bool: opaque cloud in a (6, H, W) uint16 block in BANDS order (reflectance x 10000)."""
    r = bands.astype(np.float32) / SCALE
    b2, b3, b4, b11 = (r[BANDS.index(b)] for b in ("B2", "B3", "B4", "B11"))
    return ((b2 >= CLOUD_MIN_VISIBLE) & (b3 >= CLOUD_MIN_VISIBLE) & (b4 >= CLOUD_MIN_VISIBLE)
            & (b11 >= CLOUD_MIN_B11) & (b2 >= CLOUD_MIN_BLUE_RED * b4))


def nodata_mask(bands: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels where any band of a (6, H, W) block is nodata."""
    return np.any(bands == NODATA, axis=0)
