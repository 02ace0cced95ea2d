"""Anti-aliased raster shapes (segments, boxes, discs) computed inside their bounding box only.

Each function returns (mask, box): mask in [0, 1] over box = (r0, r1, c0, c1), clipped to an
(n, n) grid, so painting a small feature costs its own size, not the scene's.
"""

from __future__ import annotations

import numpy as np


def _box(n: int, r0, r1, c0, c1) -> tuple[int, int, int, int]:
    """Integer box clipped to the grid; empty (r1 == r0 or c1 == c0) when the shape lies outside."""
    a, c = min(max(0, int(np.floor(r0))), n), min(max(0, int(np.floor(c0))), n)
    return a, max(a, min(n, int(np.ceil(r1)) + 1)), c, max(c, min(n, int(np.ceil(c1)) + 1))


def _grid(box):
    r0, r1, c0, c1 = box
    return np.mgrid[r0:r1, c0:c1].astype(np.float32)


def segment(n: int, p0, p1, width: float):
    """Segment p0 -> p1 ((row, col)) of `width` px."""
    (y0, x0), (y1, x1) = p0, p1
    pad = width / 2 + 1
    box = _box(n, min(y0, y1) - pad, max(y0, y1) + pad, min(x0, x1) - pad, max(x0, x1) + pad)
    yy, xx = _grid(box)
    dy, dx = y1 - y0, x1 - x0
    t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / (dx * dx + dy * dy + 1e-9), 0, 1)
    d = np.hypot(yy - (y0 + t * dy), xx - (x0 + t * dx))
    return np.clip(width / 2 + 0.5 - d, 0, 1), box


def rect(n: int, centre, half_h: float, half_w: float, angle: float = 0.0):
    """Rectangle of half-sizes (half_h, half_w) px rotated by `angle` (radians)."""
    cy, cx = centre
    ext = np.hypot(half_h, half_w) + 1
    box = _box(n, cy - ext, cy + ext, cx - ext, cx + ext)
    yy, xx = _grid(box)
    ca, sa = np.cos(angle), np.sin(angle)
    u = (yy - cy) * ca + (xx - cx) * sa
    v = -(yy - cy) * sa + (xx - cx) * ca
    m = np.clip(half_h + 0.5 - np.abs(u), 0, 1) * np.clip(half_w + 0.5 - np.abs(v), 0, 1)
    return m.astype(np.float32), box


def disc(n: int, centre, radius: float):
    cy, cx = centre
    box = _box(n, cy - radius - 1, cy + radius + 1, cx - radius - 1, cx + radius + 1)
    yy, xx = _grid(box)
    return np.clip(radius + 0.5 - np.hypot(yy - cy, xx - cx), 0, 1).astype(np.float32), box


def full(n: int, mask_box) -> np.ndarray:
    """An (n, n) array holding a (mask, box) shape."""
    mask, (r0, r1, c0, c1) = mask_box
    out = np.zeros((n, n), np.float32)
    out[r0:r1, c0:c1] = mask
    return out


def add_max(target: np.ndarray, mask_box) -> None:
    """In place: target = max(target, shape) inside the shape's box."""
    mask, (r0, r1, c0, c1) = mask_box
    if r1 > r0 and c1 > c0:
        np.maximum(target[r0:r1, c0:c1], mask, out=target[r0:r1, c0:c1])
