"""Tiling and blending: full coverage, exact reassembly, no seams."""

import numpy as np
import pytest

from client.tiling import Blender, blend_weights, extract_tile, tile_grid, tile_starts


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
