"""Cut a scene into fixed-size overlapping tiles and blend predictions back.

Plain functions on arrays. Tiles are square (the model's tile size); a scene
smaller than a tile is padded by reflection; overlaps are blended with a
linear ramp so that no seams show where tiles meet.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets along one axis so that tiles of `tile` cover [0, length)."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    if stride <= 0:
        raise ValueError(f"overlap {overlap} must be smaller than the tile {tile}")
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


@dataclass(frozen=True)
class Tile:
    row: int  # top-left in scene pixels
    col: int
    height: int  # the part of the tile that lies inside the scene
    width: int


def tile_grid(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    return [
        Tile(r, c, min(tile, height - r), min(tile, width - c))
        for r in tile_starts(height, tile, overlap)
        for c in tile_starts(width, tile, overlap)
    ]


def pad_tile(patch: np.ndarray, tile: int) -> np.ndarray:
    """Pad a (C, h, w) block to (C, tile, tile) by reflection (a scene smaller than a tile)."""
    pad_h, pad_w = tile - patch.shape[1], tile - patch.shape[2]
    if pad_h or pad_w:
        mode = "reflect" if (patch.shape[1] > pad_h and patch.shape[2] > pad_w) else "symmetric"
        patch = np.pad(patch, ((0, 0), (0, pad_h), (0, pad_w)), mode=mode)
    return patch


def extract_tile(data: np.ndarray, t: Tile, tile: int) -> np.ndarray:
    """(C, tile, tile) tile of `data` at `t`, padded by reflection where the scene is smaller."""
    return pad_tile(data[:, t.row : t.row + t.height, t.col : t.col + t.width], tile)


EDGE_WEIGHT = 1e-3


def blend_weights(tile: int, overlap: int) -> np.ndarray:
    """(tile, tile) float32 weights: 1 in the middle; over the `overlap` at each border, a near-zero
    outer half (a tile's predictions there see a truncated context: the model's 31-pixel local
    background and its receptive field) and then a linear ramp up to 1. Where only one tile covers
    a pixel (the scene's own borders) the small weight is normalised away."""
    ramp = np.ones(tile, dtype=np.float32)
    if overlap > 0:
        margin = overlap // 2
        rise = overlap - margin
        edge = np.full(overlap, EDGE_WEIGHT, dtype=np.float32)
        edge[margin:] = (np.arange(rise, dtype=np.float32) + 1.0) / (rise + 1.0)
        ramp[:overlap] = edge
        ramp[tile - overlap :] = edge[::-1]
    return np.outer(ramp, ramp)


class Blender:
    """Accumulates weighted tile predictions (channels, T, T) into scene-sized maps (channels, H, W)."""

    def __init__(self, height: int, width: int, tile: int, overlap: int, channels: int = 1):
        self.sum = np.zeros((channels, height, width), dtype=np.float32)
        self.weight = np.zeros((height, width), dtype=np.float32)
        self.window = blend_weights(tile, overlap)

    def add(self, t: Tile, prediction: np.ndarray) -> None:
        """prediction: (channels, T, T), or (T, T) with one channel."""
        w = self.window[: t.height, : t.width]
        rows = slice(t.row, t.row + t.height)
        cols = slice(t.col, t.col + t.width)
        prediction = prediction.reshape((len(self.sum),) + prediction.shape[-2:])
        self.sum[:, rows, cols] += prediction[:, : t.height, : t.width] * w
        self.weight[rows, cols] += w

    def result(self, empty: float = 0.0) -> np.ndarray:
        """(channels, H, W) weighted means (`empty` where no tile fell), computed in place: the
        returned array is the blender's own buffer (no scene-sized copies: a 5490 x 5490 scene's two
        maps are 240 MB), so call it once, after the last tile."""
        covered = self.weight > 0
        np.divide(self.sum, self.weight, out=self.sum, where=covered)
        if empty != 0.0:
            self.sum[:, ~covered] = empty
        self.weight = np.empty((0, 0), np.float32)  # released; add() after result() is an error
        return self.sum


def _cover(lo: int, hi: int, length: int, tile: int, context: int) -> list[int]:
    """Start offsets along one axis of tiles that cover [lo, hi) with every pixel at least `context`
    pixels inside some tile (or at the scene's border), within [0, length)."""
    inner = tile - 2 * context
    if hi - lo <= inner:  # one tile, centred on the span
        return [min(max(0, (lo + hi - tile) // 2), max(0, length - tile))]
    a, b = max(0, lo - context), min(length, hi + context)
    return [min(a + s, max(0, length - tile)) for s in tile_starts(b - a, tile, 2 * context)]


GROUP_CELL = 8  # pixels a side of the cells that plume groups are found on (tiles_around)


def tiles_around(mask: np.ndarray, tile: int, margin: int, context: int) -> list[Tile]:
    """Tiles that cover every pixel within `margin` of a mask pixel, each such pixel at least `context`
    pixels from the edges of a tile that covers it (unless it lies that close to the scene's border):
    one tile centred on each group of plume pixels where the group and its margin fit, a small grid
    over it where they do not. Groups whose margins touch are one group."""
    from scipy import ndimage

    if not 0 <= 2 * context < tile:
        raise ValueError(f"context {context} must be under half the tile {tile}")
    height, width = mask.shape
    # The margin around the plume pixels, on a grid of GROUP_CELL-pixel cells (coarse, so that a whole
    # Sentinel-2 tile is cheap to group): a cell holds plume pixels if any of its pixels does, and the margin
    # is rounded up to whole cells, so the groups' boxes cover at least what they must.
    cell = GROUP_CELL
    ph, pw = -height % cell, -width % cell
    coarse = np.pad(np.asarray(mask, dtype=bool), ((0, ph), (0, pw)))
    coarse = coarse.reshape(coarse.shape[0] // cell, cell, coarse.shape[1] // cell, cell).any(axis=(1, 3))
    reach = -(-margin // cell)
    near = ndimage.maximum_filter(coarse.view(np.uint8), size=2 * reach + 1).view(bool)
    labels, _ = ndimage.label(near, structure=np.ones((3, 3), dtype=int))
    tiles: list[Tile] = []
    for box in ndimage.find_objects(labels):
        if box is None:
            continue
        r0, r1 = box[0].start * cell, min(height, box[0].stop * cell)
        c0, c1 = box[1].start * cell, min(width, box[1].stop * cell)
        for r in _cover(r0, r1, height, tile, context):
            for c in _cover(c0, c1, width, tile, context):
                t = Tile(r, c, min(tile, height - r), min(tile, width - c))
                tiles.append(t)
    return list(dict.fromkeys(tiles))  # groups whose boxes overlap may share a tile


# The flips that a view of a tile is made with (test-time augmentation): each is its own inverse.
# Axes of a (..., T, T) array: none, both (180 deg), rows, columns.
VIEW_FLIPS = ((), (-2, -1), (-2,), (-1,))
VIEW_COUNTS = (1, 2, 4)


# Views of each heat-map tile whose maps are averaged (1; 2: and the tile turned 180 degrees; 4: and
# flipped by rows and by columns). Two put more sources within 2 px than one at a small cost; four
# add little more at twice the cost (docs/methods.md, perf/RESULTS.md).
SOURCE_VIEWS = 2


def views(block: np.ndarray, n: int) -> list[np.ndarray]:
    """The first n views of a (C, T, T) block (VIEW_FLIPS)."""
    if n not in VIEW_COUNTS:
        raise ValueError(f"views must be one of {VIEW_COUNTS}, not {n!r}")
    return [np.flip(block, axes) if axes else block for axes in VIEW_FLIPS[:n]]


def mean_of_views(predictions: np.ndarray) -> np.ndarray:
    """(n, ..., T, T) predictions of a tile's first n views (each (T, T) or (C, T, T)) -> their
    mean in the tile's own orientation."""
    out = np.zeros(predictions.shape[1:], dtype=np.float32)
    for p, axes in zip(predictions, VIEW_FLIPS):
        out += np.flip(p, axes) if axes else p
    return out / len(predictions)
