"""Training on plume heads: the labelled pixels near each source (training/data.head_masks), crops
centred on them and weighted up in the BCE term (`methane-seg train --head-frac/--head-weight`)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.data import CropSampler, head_masks, load_scenes  # noqa: E402
from training.train import dice_bce, main as train_main  # noqa: E402


def test_head_masks_are_the_labelled_pixels_near_each_source(tmp_path):
    from training.simulate import simulate_scene, write_sim_scene

    sim = simulate_scene(seed=3_100_000, size=128, n_sources=1, q_kg_h=30_000, clouds=False)
    write_sim_scene(tmp_path, "s0", sim)
    write_sim_scene(tmp_path, "s1", simulate_scene(seed=3_100_001, size=128, n_sources=0))
    _, labels = load_scenes(tmp_path)
    heads = head_masks(tmp_path, labels, radius=6)
    assert heads.shape == labels.shape and heads.dtype == np.uint8
    assert heads[0].sum() > 0 and heads[1].sum() == 0  # the plume-free scene has no head
    assert not (heads.astype(bool) & (labels == 0)).any()  # only labelled pixels
    src = sim.meta["sources"][0]
    rows, cols = np.nonzero(heads[0])
    assert np.hypot(rows - src["row"], cols - src["col"]).max() <= 6


def test_crops_keep_heads_on_their_plume_pixels_and_centre_on_them():
    rng = np.random.default_rng(0)
    n, h, w = 4, 96, 96
    x = rng.integers(500, 3000, (n, 6, h, w)).astype(np.uint16)
    y = np.zeros((n, h, w), np.uint8)
    y[:, 40:44, 10:80] = 1  # a plume along each scene
    heads = np.zeros_like(y)
    heads[:, 40:44, 10:16] = 1  # its first pixels
    sampler = CropSampler(x, y, crop=32, seed=1, plume_frac=0.0, heads=heads, head_frac=1.0)
    for _ in range(5):
        xb, yb, hb = sampler.batch(8)
        assert xb.shape == (8, 6, 32, 32) and yb.shape == hb.shape == (8, 1, 32, 32)
        assert ((hb > 0) <= (yb > 0)).all()  # rotations and flips keep the heads on the plume
        assert (hb.reshape(8, -1).max(1) > 0).all()  # every crop holds head pixels
    _, _, hb = CropSampler(x, y, crop=32, seed=1).batch(4)  # without heads: zeros
    assert not hb.any()


def test_head_weight_raises_the_loss_of_missed_head_pixels():
    logits = torch.full((1, 1, 4, 4), -3.0)  # predicts no plume anywhere
    target = torch.zeros_like(logits)
    target[0, 0, 0, :2] = 1.0
    plain = dice_bce(logits, target)
    assert torch.isclose(dice_bce(logits, target, weight=torch.ones_like(logits)), plain)
    weight = torch.ones_like(logits)
    weight[0, 0, 0, :2] = 5.0  # the missed pixels are a plume's head
    assert dice_bce(logits, target, weight=weight) > plain


@pytest.mark.parametrize("args, message", [
    (["--head-frac", "0.6", "--plume-frac", "0.5"], "add up to at most 1"),
    (["--head-weight", "0"], "--head-weight positive"),
    (["--head-weight", "3", "--loss", "focal"], "needs a loss with a BCE term"),
])
def test_bad_head_options_are_usage_errors(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as stop:
        train_main(["--data", str(tmp_path), "--out", str(tmp_path / "run"), *args])
    assert stop.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_training_with_head_crops_and_weights_runs(tmp_path):
    from training.simulate import simulate_scene, write_sim_scene

    for split, seeds in (("train", range(3_100_000, 3_100_004)), ("val", range(3_100_010, 3_100_012))):
        for s in seeds:
            write_sim_scene(tmp_path / "data" / split, f"s{s}",
                            simulate_scene(seed=s, size=64, n_sources=1, q_kg_h=30_000, clouds=False))
    assert train_main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--epochs", "1",
                       "--steps-per-epoch", "2", "--batch-size", "2", "--crop", "64", "--device", "cpu",
                       "--head-frac", "0.5", "--head-weight", "5"]) == 0
    assert (tmp_path / "run" / "best.pt").is_file()
