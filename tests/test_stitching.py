"""Whole-scene tiling against the real server: a 2000 x 2000 scene with plumes across tile edges
matches one direct full-image onnxruntime pass (the stitching is right)."""

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
    result = Segmenter(url, protocol, batch_size=8, concurrency=2).segment(path)
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

    tiled_peaks = [(r, c) for r, c, h in heat_peaks(result.source) if h >= 0.3]
    full_peaks = [(r, c) for r, c, h in heat_peaks(direct_heat) if h >= 0.3]
    print(f"heat peaks >= 0.3: tiled {len(tiled_peaks)}, full pass {len(full_peaks)}; mean |diff| {heat_diff.mean():.2e}")
    for r, c in full_peaks:  # every clear peak of the full pass is in the stitched map, within a pixel
        assert min(np.hypot(r - r2, c - c2) for r2, c2 in tiled_peaks) <= 1.0, (r, c)
    with rasterio.open(path) as src:
        assert result.probability.shape == (src.height, src.width)
