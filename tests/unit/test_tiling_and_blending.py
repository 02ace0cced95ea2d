"""Tiling and blending: full coverage, exact reassembly, no seams."""

import numpy as np
import pytest

from core.tiling import Blender, Tile, blend_weights, extract_tile, tile_grid, tile_starts


@pytest.mark.parametrize("length,tile,overlap", [(64, 256, 32), (256, 256, 32), (257, 256, 32), (1000, 256, 32), (5490, 256, 32)])
def test_tiles_cover_axis(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s : s + tile] = True
    assert covered.all()
    assert starts[0] == 0 and all(s + min(tile, length) <= max(length, tile) for s in starts)
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("shape", [(64, 64), (100, 300), (256, 256), (700, 530)])
def test_blending_reassembles_an_image_exactly(shape):
    rng = np.random.default_rng(0)
    image = rng.random(shape).astype(np.float32)
    tile, overlap = 256, 32
    blender = Blender(*shape, tile, overlap)
    for t in tile_grid(*shape, tile, overlap):
        patch = extract_tile(image[None], t, tile)[0]
        assert patch.shape == (tile, tile)
        blender.add(t, patch)
    np.testing.assert_allclose(blender.result()[0], image, rtol=1e-5, atol=1e-6)


def test_blending_keeps_channels_apart():
    """Two outputs (probability and source heat map) blend with the same weights, each on its own."""
    rng = np.random.default_rng(1)
    image = rng.random((2, 300, 280)).astype(np.float32)
    blender = Blender(300, 280, 256, 32, channels=2)
    for t in tile_grid(300, 280, 256, 32):
        blender.add(t, extract_tile(image, t, 256))
    np.testing.assert_allclose(blender.result(), image, rtol=1e-5, atol=1e-6)


def test_weights_are_positive_and_symmetric():
    w = blend_weights(256, 32)
    assert (w > 0).all() and w.max() == 1.0
    np.testing.assert_array_equal(w, w[::-1, ::-1])


def _margin_pixels(mask, margin):
    from scipy import ndimage

    return ndimage.distance_transform_cdt(~mask, metric="chessboard") <= margin


@pytest.mark.parametrize("shape", [(5490, 5490), (700, 530), (200, 180)])
def test_tiles_around_plumes_cover_their_margin_with_context(shape):
    """Every pixel within the margin of a plume pixel lies in a tile of the list, at least `context`
    pixels from that tile's edges unless the scene's border is closer; far from plumes, no tiles."""
    from core.tiling import tiles_around

    rng = np.random.default_rng(1)
    mask = np.zeros(shape, bool)
    h, w = shape
    for _ in range(12):  # specks, plumes, a long plume and plumes at the borders
        r, c = int(rng.integers(0, h)), int(rng.integers(0, w))
        dr, dc = int(rng.integers(1, min(h, 400))), int(rng.integers(1, 40))
        mask[r : r + dr, c : c + dc] = True
    mask[h - 3 :, :5] = True
    tile, margin, context = 256, 32, 32
    tiles = tiles_around(mask, tile, margin, context)
    need = _margin_pixels(mask, margin)
    best = np.full(shape, -1, int)  # per pixel: its largest distance inside a covering tile
    rows, cols = np.mgrid[0:h, 0:w]
    for t in tiles:
        assert 0 <= t.row and 0 <= t.col and t.row + t.height <= h and t.col + t.width <= w
        assert t.height == min(tile, h) and t.width == min(tile, w)
        sl = np.s_[t.row : t.row + t.height, t.col : t.col + t.width]
        inside = np.minimum.reduce([rows[sl] - t.row, t.row + t.height - 1 - rows[sl],
                                    cols[sl] - t.col, t.col + t.width - 1 - cols[sl]])
        # the scene's own borders count as context
        best[sl] = np.maximum(best[sl], inside)
    assert (best[need] >= 0).all(), "a pixel near a plume is in no tile"
    border = np.minimum.reduce([rows, h - 1 - rows, cols, w - 1 - cols]) < context
    assert (best[need & ~border] >= context - 1).all(), "a pixel near a plume sees too little context"
    assert len(tiles) < len(tile_grid(h, w, tile, 32)) or h * w < 1e6


def test_tiles_around_nothing_is_no_tiles():
    from core.tiling import tiles_around

    assert tiles_around(np.zeros((300, 300), bool), 256, 32, 32) == []
    with pytest.raises(ValueError, match="context"):
        tiles_around(np.ones((300, 300), bool), 256, 32, 128)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_views_average_back_to_the_tile(n):
    """A view's prediction turned back (mean_of_views) lines up with the tile: a map that follows its
    input exactly comes back unchanged from any number of views."""
    from core.tiling import mean_of_views, views

    block = np.random.default_rng(2).random((6, 64, 64)).astype(np.float32)
    vs = views(block, n)
    assert len(vs) == n and all(v.shape == block.shape for v in vs)
    assert len({v.tobytes() for v in vs}) == n  # the views differ
    np.testing.assert_allclose(mean_of_views(np.stack([v[4] for v in vs])), block[4], rtol=0, atol=1e-6)
    np.testing.assert_allclose(mean_of_views(np.stack(vs)), block, rtol=0, atol=1e-6)  # all channels at once
    with pytest.raises(ValueError, match="views"):
        views(block, 3)


def test_blending_marks_where_no_tile_fell():
    """Tiles over part of a scene (the heat map near plumes): their pixels blend exactly as a full
    grid's, and the rest holds the value asked for (NaN: not computed), not a 0 that reads as data."""
    rng = np.random.default_rng(3)
    image = rng.random((600, 700)).astype(np.float32)
    blender = Blender(600, 700, 256, 64)
    tiles = [Tile(10, 20, 256, 256), Tile(200, 150, 256, 256)]
    for t in tiles:
        blender.add(t, extract_tile(image[None], t, 256)[0])
    out = blender.result(empty=np.nan)[0]
    covered = np.zeros(image.shape, bool)
    for t in tiles:
        covered[t.row : t.row + 256, t.col : t.col + 256] = True
    np.testing.assert_allclose(out[covered], image[covered], rtol=1e-5, atol=1e-6)
    assert np.isnan(out[~covered]).all()
