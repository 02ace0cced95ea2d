"""How training runs: the one-cycle schedule over wall-clock time (--minutes), starting from a
checkpoint (--init), the model's ops on a device other than the CPU, and parallel label building."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.schedule import TimedOneCycle, one_cycle


def test_one_cycle_follows_pytorchs_onecyclelr():
    # (PyTorch ends the warm-up at step pct_start * total - 1: within 1 % of the continuous form here)
    total, max_lr = 2001, 2e-3
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=max_lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total, pct_start=0.1)
    for step in range(total):
        assert opt.param_groups[0]["lr"] == pytest.approx(one_cycle(step / (total - 1), max_lr), rel=1e-2, abs=1e-9)
        opt.step()
        sched.step()
    assert one_cycle(-1, max_lr) == pytest.approx(max_lr / 25) and one_cycle(2, max_lr) == pytest.approx(max_lr / 25e4)


def test_timed_one_cycle_sets_the_rate_by_time_and_stops_when_it_is_up():
    now = [100.0]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    timed = TimedOneCycle(opt, max_lr=1e-2, minutes=1.0, clock=lambda: now[0])
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-2 / 25)
    now[0] += 6.0  # the end of the warm-up: the peak
    assert timed.step() and opt.param_groups[0]["lr"] == pytest.approx(1e-2)
    now[0] += 27.0  # half-way down the cosine
    assert timed.step() and opt.param_groups[0]["lr"] == pytest.approx((1e-2 + 1e-2 / 25e4) / 2)
    now[0] += 27.0
    assert not timed.step() and timed.frac == pytest.approx(1.0)
    with pytest.raises(ValueError):
        TimedOneCycle(opt, 1e-2, 0)


def test_a_training_step_makes_no_tensor_on_the_cpu():
    """The features (the regression's solve, the Gaussian blurs) and both heads run on whatever device
    the model is on: here the meta device, which refuses a CPU tensor as a GPU would."""
    from training.model import PlumeNet, SourcePlumeNet
    from training.source import heat_loss
    from training.train import ARCH, make_loss

    dev = torch.device("meta")
    x = torch.empty(2, 6, 64, 64, device=dev)
    y = torch.empty(2, 1, 64, 64, device=dev)
    plume = PlumeNet(ARCH, feature_set="regress").to(dev)
    make_loss("dice_bce")(plume(x), y, 1 + 4 * y).backward()
    both = SourcePlumeNet.from_plumenet(PlumeNet(ARCH, feature_set="regress")).to(dev)
    f, logit = both.encode(x)
    heat_loss(both.source_logits(f, logit), y).backward()
    assert both(x).shape == (2, 2, 64, 64)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from training.cli import simulate_main

    data = tmp_path_factory.mktemp("data")
    assert simulate_main(["--out", str(data / "train"), "--n", "6", "--size", "64", "--workers", "1"]) == 0
    assert simulate_main(["--out", str(data / "val"), "--n", "3", "--size", "64", "--split", "val", "--workers", "1"]) == 0
    return data


def test_visible_labels_do_not_depend_on_the_workers(tiny_data):
    from training.data import visible_labels

    one = visible_labels(tiny_data / "train", workers=1)
    assert one.shape == (6, 64, 64) and one.any()
    np.testing.assert_array_equal(one, visible_labels(tiny_data / "train", workers=2))


@pytest.mark.slow
def test_train_by_minutes_then_start_from_its_checkpoint(tiny_data, tmp_path, capsys):
    from training.cli import train_main, train_source_main
    from training.model import load_checkpoint

    run = tmp_path / "timed"
    small = ["--data", str(tiny_data), "--steps-per-epoch", "2", "--batch-size", "2", "--crop", "64", "--device", "cpu",
             "--features", "regress"]
    assert train_main([*small, "--out", str(run), "--epochs", "100000", "--minutes", "0.05"]) == 0
    epochs = len((run / "history.jsonl").read_text().splitlines())
    assert 1 <= epochs < 100000 and "min of training done" in capsys.readouterr().out
    # --init: the checkpoint's network (its normalisation too), then a fresh schedule
    base, _ = load_checkpoint(run / "last.pt")
    again = tmp_path / "again"
    assert train_main([*small, "--out", str(again), "--epochs", "1", "--steps-per-epoch", "1", "--lr", "1e-9",
                       "--init", str(run / "last.pt"), "--features", "ratio"]) == 0
    after, ck = load_checkpoint(again / "last.pt")
    assert after.feature_set == "regress" and ck["norm_mean"] == base.mean.flatten().tolist()
    trained = dict(after.named_parameters())  # (BatchNorm's running statistics move in one step; weights don't)
    for key, value in base.named_parameters():
        torch.testing.assert_close(trained[key], value, atol=1e-6, rtol=0)
    with pytest.raises(SystemExit) as stop:
        train_main([*small, "--out", str(again), "--init", str(run / "last.pt"), "--resume"])
    assert stop.value.code == 2
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as stop:
        train_main([*small, "--out", str(again), "--init", str(tmp_path / "bad.pt")])
    assert stop.value.code == 2 and "cannot start from" in capsys.readouterr().err
    # the source branch by minutes too; its schedule records them
    src = tmp_path / "source"
    assert train_source_main(["--base", str(run / "last.pt"), "--data", str(tiny_data), "--out", str(src),
                              "--epochs", "100000", "--steps-per-epoch", "2", "--batch-size", "2", "--crop", "64",
                              "--visible-drop", "0", "--minutes", "0.05", "--device", "cpu"]) == 0
    schedule = torch.load(src / "last.pt", map_location="cpu", weights_only=False)["source"]["schedule"]
    assert schedule[-1]["minutes"] == 0.05 and 1 <= schedule[-1]["epochs"] < 100000
    assert json.loads((src / "history.jsonl").read_text().splitlines()[-1])["epoch"] == schedule[-1]["epochs"]
