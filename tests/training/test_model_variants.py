"""The compared model variants: feature sets, losses, and the comparison script on a tiny setting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.model import FEATURE_SETS, PlumeNet, features  # noqa: E402
from training.train import LOSSES, make_loss  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ARCH = {"arch": "Unet", "encoder_name": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 8, 4]}


@pytest.mark.parametrize("feature_set", sorted(FEATURE_SETS))
def test_feature_sets_shape_and_ratio(feature_set):
    x = torch.full((2, 6, 64, 64), 2000.0)
    f = features(x, feature_set)
    assert f.shape == (2, FEATURE_SETS[feature_set], 64, 64) and torch.isfinite(f).all()
    assert torch.allclose(f[:, :6], x / 10000)
    if feature_set != "bands":
        assert torch.allclose(f[:, 6], torch.zeros(1))  # log(B12/B11) of equal bands
    if feature_set == "ratio_ndvi":
        assert torch.allclose(f[:, -1], torch.zeros(1), atol=1e-3)  # NDVI of equal B4/B8
    logits = PlumeNet(ARCH, feature_set=feature_set)(x)
    assert logits.shape == (2, 1, 64, 64)


def test_regression_drop_sees_methane_not_the_surface():
    """The in-graph multi-band regression: a pad whose B12/B11 differs from the land around leaves
    no drop, a 5 % B12 drop stays 5 %, and nodata pixels neither count nor get a drop."""
    from tests.conftest import mixed_surface
    from training.model import regression_drop

    data = mixed_surface(np.random.default_rng(3), 96, 128)
    data[5, 60:64, 60:100] *= 0.95  # methane
    data[:, :, 120:] = 0  # nodata
    drop = regression_drop(torch.from_numpy(data.astype(np.float32) / 10000)[None])[0, 0].numpy()
    assert abs(float(np.median(drop[40:47, 17:24]))) < 0.005
    assert float(np.median(drop[60:64, 60:100])) == pytest.approx(0.05, abs=0.005)
    assert float(np.std(drop[:58, 30:110])) < 0.006
    assert np.all(drop[:, 120:] == 0)


def test_regress_features_export_to_onnx_with_parity(tmp_path):
    """The regression's unrolled 6 x 6 solve exports to ONNX and matches PyTorch on a simulated scene."""
    from export.onnx_export import check_parity, export_onnx
    from training.simulate import simulate_scene

    torch.manual_seed(0)
    model = PlumeNet(ARCH, feature_set="regress").eval()
    path = export_onnx(model, tmp_path / "model.onnx", tile=128)
    scene = simulate_scene(seed=11, size=128, n_sources=1, q_kg_h=20_000.0).data
    assert check_parity(model, path, [scene]) <= 1e-4


def test_unknown_feature_set_is_refused():
    with pytest.raises(ValueError, match="unknown feature set"):
        features(torch.zeros(1, 6, 8, 8), "rgb")


@pytest.mark.parametrize("name", LOSSES)
def test_losses_prefer_the_right_answer(name):
    target = torch.zeros(2, 1, 32, 32)
    target[:, :, 10:14, 5:25] = 1
    loss = make_loss(name)
    good = loss(torch.where(target > 0, 6.0, -6.0), target)
    bad = loss(torch.where(target > 0, -6.0, 6.0), target)
    flat = torch.zeros_like(target, requires_grad=True)
    mid = loss(flat, target)
    mid.backward()
    assert torch.isfinite(mid) and flat.grad is not None and flat.grad.abs().sum() > 0
    assert good < mid < bad


@pytest.mark.slow
def test_compare_runs_on_a_tiny_setting(tmp_path):
    from training.cli import simulate_main

    data = tmp_path / "data"
    assert simulate_main(["--out", str(data / "train"), "--n", "4", "--size", "128", "--workers", "1"]) == 0
    assert simulate_main(["--out", str(data / "val"), "--n", "3", "--size", "128", "--split", "val",
                          "--workers", "1"]) == 0
    docs = tmp_path / "docs"
    docs.mkdir()
    done = subprocess.run([sys.executable, "-m", "training.compare", "--data", str(data), "--out",
                           str(tmp_path / "cmp"), "--steps", "2", "--batch-size", "2", "--max-train", "4",
                           "--max-val", "3", "--only", "unet-r18", "lovasz"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    done = subprocess.run([sys.executable, "perf/bench_variants.py", "--runs", str(tmp_path / "cmp"), "--rounds", "1",
                           "--docs", str(docs)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert results.pop("_settings")["steps"] == 2
    assert set(results) == {"unet-r18", "lovasz"}
    for r in results.values():
        assert r["ms_per_tile"] > 0 and 0 <= r["product"]["iou"] <= 1 and r["onnx_mb"] > 0
    assert "| lovasz |" in (docs / "model_comparison.md").read_text()
    assert (docs / "model_comparison.png").stat().st_size > 1000
