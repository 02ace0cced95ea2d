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
    """Accumulates weighted tile predictions (channels, T, T) into scene-sized maps (channels, H, W).

    A tile's weight is counted with its channel-0 prediction; later channels may come for only some
    of the tiles (`add(..., channel=k)`), and are then exact only where every tile covering a pixel
    gave them."""

    def __init__(self, height: int, width: int, tile: int, overlap: int, channels: int = 1):
        self.sum = np.zeros((channels, height, width), dtype=np.float32)
        self.weight = np.zeros((height, width), dtype=np.float32)
        self.window = blend_weights(tile, overlap)
        self._done: set[int] = set()

    def add(self, t: Tile, prediction: np.ndarray, channel: int = 0) -> None:
        """prediction: (k, T, T), or (T, T) with one channel, for channels channel .. channel + k - 1
        (default: from the first; k = all channels)."""
        w = self.window[: t.height, : t.width]
        rows = slice(t.row, t.row + t.height)
        cols = slice(t.col, t.col + t.width)
        k = prediction.shape[0] if prediction.ndim == 3 else 1
        prediction = prediction.reshape((k,) + prediction.shape[-2:])
        self.sum[channel : channel + k, rows, cols] += prediction[:, : t.height, : t.width] * w
        if channel == 0:
            self.weight[rows, cols] += w

    def channel(self, k: int) -> np.ndarray:
        """Channel k's weighted mean (0 where no tile fell), computed in place once: a view of the
        blender's own buffer. Call it after channel k's last tile; the other channels may go on."""
        if k not in self._done:
            np.divide(self.sum[k], self.weight, out=self.sum[k], where=self.weight > 0)
            self._done.add(k)
        return self.sum[k]

    def result(self) -> np.ndarray:
        """(channels, H, W) weighted means (0 where no tile fell), computed in place: the returned
        array is the blender's own buffer (no scene-sized copies: a 5490 x 5490 scene's two maps
        are 240 MB), so call it once, after the last tile."""
        for k in range(len(self.sum)):
            self.channel(k)
        self.weight = np.empty((0, 0), np.float32)  # released; add() after result() is an error
        return self.sum
