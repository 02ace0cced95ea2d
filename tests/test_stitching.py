"""Whole-scene tiling against the real server: a 2000 x 2000 scene with plumes across tile edges
matches one direct full-image onnxruntime pass (the stitching is right), and the source heat map
asked for near plumes only is the whole map's there."""

import numpy as np
import onnxruntime as ort
import pytest
import rasterio

from client.contract import write_scene
from client.segmenter import Segmenter
from export.repository import versions
from tests.conftest import MODEL_REPOSITORY, served_onnx

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def big_scene(tmp_path_factory):
    from training.simulate import simulate_scene

    sim = simulate_scene(seed=2_000_777, size=2000, n_sources=3, q_kg_h=8000.0, wind_ms=3.0, clouds=False,
                         surface="bright_soil")
    path = tmp_path_factory.mktemp("big") / "big.tif"
    write_scene(path, sim.data, sim.crs, sim.transform)
    return path, sim


def full_image_pass(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probability, source heat map) of one onnxruntime pass over the whole image."""
    model_dir = MODEL_REPOSITORY / "methane_seg"
    onnx_file = served_onnx(model_dir / str(versions(model_dir)[-1]))
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    h, w = data.shape[1:]
    ph, pw = -h % 32, -w % 32  # the U-Net needs multiples of 32
    padded = np.pad(data, ((0, 0), (0, ph), (0, pw)), mode="reflect")
    prob, heat = session.run(None, {"reflectance": padded[None]})
    return prob[0, 0, :h, :w], heat[0, 0, :h, :w]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_tiled_scene_matches_one_full_pass(triton, big_scene, protocol):
    path, sim = big_scene
    url = triton.http_url if protocol == "http" else triton.grpc_url
    result = Segmenter(url, protocol, batch_size=8, concurrency=2, source_margin=None).segment(path)
    assert result.timings["tiles"] >= 81  # 9 x 9 tiles of 256 with 32 px overlap
    direct, direct_heat = full_image_pass(sim.data)
    diff = np.abs(result.probability - direct)
    assert float(diff.mean()) < 0.01, diff.mean()
    threshold = result.threshold
    direct_mask = direct >= threshold
    inter = np.logical_and(direct_mask, result.mask == 1).sum()
    union = np.logical_or(direct_mask, result.mask == 1).sum()
    print(f"tiled vs full-pass mask IoU {inter}/{union}, mean |diff| {diff.mean():.2e}")
    assert union == 0 or inter / union > 0.9, (inter, union)
    # The source heat map is stitched with the same weights: its peaks are the full pass's.
    heat_diff = np.abs(result.source - direct_heat)
    assert float(heat_diff.mean()) < 0.01, heat_diff.mean()
    from client.plumes import heat_peaks

    # a tile sees less context than the full pass (its features are fitted on the tile), which moves
    # a peak's height by a few hundredths: the stitched peaks are taken from 0.2 up
    tiled_peaks = [(r, c) for r, c, h in heat_peaks(result.source) if h >= 0.2]
    full_peaks = [(r, c) for r, c, h in heat_peaks(direct_heat) if h >= 0.3]
    print(f"heat peaks: tiled (>= 0.2) {len(tiled_peaks)}, full pass (>= 0.3) {len(full_peaks)}; "
          f"mean |diff| {heat_diff.mean():.2e}")
    for r, c in full_peaks:  # every clear peak of the full pass is in the stitched map, within a pixel
        assert min(np.hypot(r - r2, c - c2) for r2, c2 in tiled_peaks) <= 1.0, (r, c)
    with rasterio.open(path) as src:
        assert result.probability.shape == (src.height, src.width)


def test_heat_map_near_plumes_only_is_the_whole_maps_there(triton, big_scene, scenes):
    """The default client asks every tile for the probability (the server's plume-only graph) and
    only the tiles near plume pixels for the heat map: the same probability to the bit, the same
    heat map wherever it was computed, which covers every pixel within the margin of a plume, and
    the same plumes and sources."""
    from scipy import ndimage

    from client.plumes import find_plumes
    from client.segmenter import SOURCE_MARGIN_PX, TWO_PASS_MIN_TILES

    path, _ = big_scene
    whole = Segmenter(triton.http_url, "http", source_margin=None).segment(path)
    near = Segmenter(triton.grpc_url, "grpc").segment(path)
    assert np.array_equal(near.probability, whole.probability, equal_nan=True)
    assert np.array_equal(near.mask, whole.mask)
    assert near.mask.sum() > 0, "the scene's plumes were not found"
    computed = ~np.isnan(near.source)
    assert near.timings["source_tiles"] < near.timings["tiles"] == whole.timings["tiles"]
    assert 0 < computed.mean() < 1
    # onnxruntime's kernels give a tile's outputs a little differently in a batch of one than in a
    # larger one (up to 0.003 on the heat map), and the second pass batches other tiles together
    np.testing.assert_allclose(near.source[computed], whole.source[computed], rtol=0, atol=0.01)
    within = ndimage.distance_transform_edt(near.mask == 0) <= SOURCE_MARGIN_PX
    assert computed[within].all(), "the heat map is missing near a plume"
    # a small scene (fewer than TWO_PASS_MIN_TILES tiles) asks every tile for both outputs at once
    small = Segmenter(triton.http_url, "http").segment(scenes["strong"])
    assert small.timings["source_tiles"] == small.timings["tiles"] < TWO_PASS_MIN_TILES <= near.timings["tiles"]
    assert not np.isnan(small.source[small.scene.valid]).any()
    got, want = find_plumes(near), find_plumes(whole)
    assert len(got) == len(want) and any(p.source_from == "heat_map" for p in got)
    for a, b in zip(got, want):
        assert a.source_from == b.source_from and a.pixels == b.pixels
        assert np.hypot(a.source_row - b.source_row, a.source_col - b.source_col) < 0.5, (a, b)


def test_a_server_without_the_plume_only_graph_gets_one_pass(big_scene, tmp_path):
    """Against a model whose configuration names no plume-only graph (as Triton's native backends,
    which run the whole graph for every request) the client asks every tile for both outputs."""
    import shutil

    from client.server import TritonServer

    repo = tmp_path / "repo"
    shutil.copytree(MODEL_REPOSITORY, repo, ignore=shutil.ignore_patterns("__pycache__", "*_plume.onnx"))
    config = repo / "methane_seg" / "config.pbtxt"
    config.write_text("".join(line for line in config.read_text().splitlines(keepends=True)
                              if "plume_onnx_file" not in line))
    server = TritonServer(repo)
    try:
        server.start(timeout=180)
        segmenter = Segmenter(server.grpc_url, "grpc")
        assert segmenter.model_info()["plume_only_graph"] is False
        result = segmenter.segment(big_scene[0])
    finally:
        server.cleanup()
    assert result.timings["source_tiles"] == result.timings["tiles"] >= 81
    assert not np.isnan(result.source).any() and result.mask.sum() > 0
