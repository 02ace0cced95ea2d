"""The multi-pass model through the real server: a 12-band document and the same target + reference
as two files give identical outputs, named after the model and the reference; a 2000 x 2000 pair with
plumes across tile edges matches one direct full-image onnxruntime pass (the two passes are tiled
and stitched on the same grid)."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import rasterio

from client.segmenter import Segmenter
from client.transport import MULTIPASS_MODEL
from core.contract import ALL_BANDS, write_scene
from core.model_files import served_onnx, versions
from methane_seg.cli import main
from tests.conftest import MODEL_REPOSITORY


def write_pair(folder, stem, sim):
    """The simulated scene as two six-band files: the target `<stem>.tif` and `<stem>_ref.tif`."""
    folder.mkdir(parents=True, exist_ok=True)
    target, ref = folder / f"{stem}.tif", folder / f"{stem}_ref.tif"
    write_scene(target, sim.data, sim.crs, sim.transform)
    write_scene(ref, sim.reference, sim.crs, sim.transform)
    return target, ref


def test_the_repository_serves_a_multipass_model():
    model_dir = MODEL_REPOSITORY / MULTIPASS_MODEL
    meta = json.loads((model_dir / str(versions(model_dir)[-1]) / "metadata.json").read_text())
    assert meta["bands"] == list(ALL_BANDS) and meta["input"]["shape"][1] == 12


def test_twelve_band_document_and_pair_give_identical_outputs(triton, tmp_path, capsys):
    from training.simulate import simulate_scene, write_sim_scene

    sim = simulate_scene(seed=2_000_303, size=320, n_sources=1, q_kg_h=8000.0, wind_ms=3.0, clouds=False,
                         surface="bright_soil")
    doc = write_sim_scene(tmp_path / "doc", "site", sim)
    target, ref = write_pair(tmp_path / "pair", "site", sim)
    assert main(["segment", str(doc), "--out", str(tmp_path / "a"), "--url", triton.http_url]) == 0
    assert main(["segment", str(target), "--reference", str(ref), "--out", str(tmp_path / "b"),
                 "--url", triton.grpc_url, "--protocol", "grpc"]) == 0
    assert capsys.readouterr().out.count("target + reference") == 2
    for suffix in ("_prob.tif", "_mask.tif"):
        with rasterio.open(tmp_path / "a" / f"site{suffix}") as a, rasterio.open(tmp_path / "b" / f"site{suffix}") as b:
            assert np.array_equal(a.read(1), b.read(1), equal_nan=True), suffix
            assert (a.crs, a.transform) == (b.crs, b.transform) == (sim.crs, sim.transform)
            assert a.tags()["model"] == MULTIPASS_MODEL and a.tags()["mode"] == "multi-pass"
            assert b.tags()["reference"] == "site_ref.tif"
    one, two = (json.loads((tmp_path / d / "site_plumes.geojson").read_text()) for d in ("a", "b"))
    assert one["features"] == two["features"]
    assert one["properties"]["model"] == two["properties"]["model"] == MULTIPASS_MODEL
    assert one["properties"]["reference"] == "site bands B2_ref..B12_ref"
    assert two["properties"]["reference"] == "site_ref.tif" and two["properties"]["mode"] == "multi-pass"


def test_single_pass_model_named_reads_the_target_alone(triton, tmp_path):
    from training.simulate import simulate_scene, write_sim_scene

    sim = simulate_scene(seed=2_000_304, size=256, n_sources=0, clouds=False)
    doc = write_sim_scene(tmp_path, "site", sim)
    assert main(["segment", str(doc), "--model", "methane_seg", "--out", str(tmp_path / "o"),
                 "--url", triton.http_url]) == 0
    props = json.loads((tmp_path / "o" / "site_plumes.geojson").read_text())["properties"]
    assert props["model"] == "methane_seg" and props["mode"] == "single-pass" and props["reference"] is None


@pytest.mark.slow
def test_tiled_pair_matches_one_full_pass(triton, tmp_path):
    from training.simulate import simulate_scene

    sim = simulate_scene(seed=2_000_778, size=2000, n_sources=3, q_kg_h=8000.0, wind_ms=3.0, clouds=False,
                         surface="bright_soil")
    target, ref = write_pair(tmp_path, "big", sim)
    result = Segmenter(triton.grpc_url, "grpc", batch_size=8, concurrency=2).segment(target, reference=ref)
    assert result.model_name == MULTIPASS_MODEL and result.timings["tiles"] >= 81  # 9 x 9 tiles of 256
    model_dir = MODEL_REPOSITORY / MULTIPASS_MODEL
    session = ort.InferenceSession(str(served_onnx(model_dir / str(versions(model_dir)[-1]))),
                                   providers=["CPUExecutionProvider"])
    both = np.concatenate([sim.data, sim.reference])
    h, w = both.shape[1:]
    padded = np.pad(both, ((0, 0), (0, -h % 32), (0, -w % 32)), mode="reflect")  # multiples of 32
    direct = session.run(None, {"reflectance": padded[None]})[0][0, 0, :h, :w]
    diff = np.abs(result.probability - direct)
    direct_mask = direct >= result.threshold
    inter = np.logical_and(direct_mask, result.mask == 1).sum()
    union = np.logical_or(direct_mask, result.mask == 1).sum()
    print(f"tiled vs full-pass mask IoU {inter}/{union}, mean |diff| {diff.mean():.2e}")
    assert float(diff.mean()) < 0.01, diff.mean()
    # The multi-pass regression and the MBMP background are fitted per tile, the full pass fits them
    # over the whole image: pixels near the threshold fall either side (measured: mask IoU 0.77,
    # mean |diff| 9e-4); hardly a pixel clear of the threshold does.
    far = (direct_mask != (result.mask == 1)) & (np.abs(direct - result.threshold) > 0.15)
    print(f"pixels either side, clear of the threshold: {int(far.sum())}")
    assert union > 0 and inter / union > 0.7, (inter, union)
    assert far.sum() <= 1e-4 * far.size, far.sum()
    # plumes that cross tile edges (every 224 px) are found whole
    truth_rows, truth_cols = np.nonzero(sim.mask)
    assert ((truth_rows % 224 < 16) | (truth_cols % 224 < 16)).any()
