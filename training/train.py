"""Train the plume segmenter on simulated scenes.

    methane-seg train --data DIR --out DIR [--epochs E --batch-size B --lr LR --crop C
                      --seed S --device auto|cpu|cuda --resume]

DIR holds train/ and val/ folders written by `methane-seg simulate`. A single-pass network
(--features ratio, regress, ...) reads each scene's six target bands; a multi-pass one (--features
mp, mp_derived, mp_compact) the twelve of the target and its reference pass.
Loss: BCE + soft Dice. Augmentation: flips and 90-degree rotations, and for a multi-pass network
per-pass gains, extra noise and reference misregistration (--augment).
Crops: a share centred near plume pixels (--plume-frac) and, optionally, near the
plumes' heads, the labelled pixels next to each source (--head-frac), whose BCE
weight can be raised (--head-weight): segmentations tend to miss a plume's first pixels.
Checkpoints in --out: last.pt (every epoch) and best.pt (best validation IoU),
each with the model state, normalisation statistics, architecture, the mask
threshold chosen on validation (maximising IoU) and the validation metrics.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.data import HEAD_RADIUS_PX, CropSampler, PassAugment, head_masks, load_scenes, visible_labels
from training.metrics import SCENE_MIN_PIXELS, THRESHOLDS, choose_threshold, confusion
from training.model import (DEFAULT_FEATURES, FEATURE_SETS, MULTIPASS_FEATURES, PlumeNet, SourcePlumeNet, features,
                            input_bands, load_checkpoint)
from training.schedule import TimedOneCycle, end_epoch, run_steps

ARCH = {
    "arch": "Unet",
    "encoder_name": "resnet18",
    "encoder_depth": 3,
    "decoder_channels": [32, 16, 8],
}


def norm_stats(x: np.ndarray, n: int = 200, feature_set: str = DEFAULT_FEATURES) -> tuple[list, list]:
    """Per-channel mean / std of the model's input features over up to n scenes."""
    idx = np.linspace(0, len(x) - 1, min(n, len(x))).astype(int)
    with torch.no_grad():
        f = features(torch.from_numpy(x[idx, :, ::4, ::4].astype(np.float32)), feature_set)
    mean = f.mean(dim=(0, 2, 3))
    std = f.std(dim=(0, 2, 3)).clamp_min(1e-4)
    return mean.tolist(), std.tolist()


POS_WEIGHT = 3.0  # plume pixels are ~1 % of the crops; weight them up in the BCE term
DICE_WEIGHT = 0.5


def dice_bce(logits, target, pos_weight: float = POS_WEIGHT, dice_weight: float = DICE_WEIGHT, weight=None):
    """weight: per-pixel weights of the BCE term (plume heads weighted up), or None."""
    pw = torch.tensor(pos_weight, device=logits.device)
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight, pos_weight=pw)
    if not dice_weight:
        return bce
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    dice = 1 - (2 * inter + 1) / (p.sum() + target.sum() + 1)
    return bce + dice_weight * dice


def make_loss(name: str, pos_weight: float = POS_WEIGHT, dice_weight: float = DICE_WEIGHT):
    """The training loss by name (compared in docs/model_comparison.md):
    dice_bce  weighted BCE + soft Dice (default);
    focal     binary focal loss (gamma 2), which down-weights the easy background;
    lovasz    BCE + Lovász hinge, a convex surrogate of the IoU itself.
    Each takes (logits, target, weight=None); weight (per-pixel BCE weights) needs a BCE term."""
    if name == "dice_bce":
        return lambda logits, target, weight=None: dice_bce(logits, target, pos_weight, dice_weight, weight)
    from segmentation_models_pytorch.losses import FocalLoss, LovaszLoss

    if name == "focal":
        focal = FocalLoss(mode="binary", alpha=0.75, gamma=2.0)
        def focal_loss(logits, target, weight=None):
            if weight is not None:
                raise ValueError("the focal loss takes no per-pixel weights (--head-weight)")
            return focal(logits, target)
        return focal_loss
    if name == "lovasz":
        lovasz = LovaszLoss(mode="binary", per_image=False)
        return lambda logits, target, weight=None: (F.binary_cross_entropy_with_logits(logits, target, weight=weight)
                                                    + lovasz(logits, target))
    raise ValueError(f"unknown loss {name!r}")


LOSSES = ("dice_bce", "focal", "lovasz")


@torch.no_grad()
def evaluate(model, x, y, device, batch=8):
    model.eval()
    conf = np.zeros((len(THRESHOLDS), 3), np.int64)
    free_kth = []  # per plume-free scene: the SCENE_MIN_PIXELS-th largest probability
    for i in range(0, len(x), batch):
        xb = torch.from_numpy(x[i:i + batch].astype(np.float32)).to(device)
        prob = torch.sigmoid(model(xb)).cpu().numpy()[:, 0]
        yb = y[i:i + batch]
        conf += confusion(prob, yb)
        for p, m in zip(prob, yb):
            if not m.any():
                free_kth.append(float(np.partition(p.ravel(), -SCENE_MIN_PIXELS)[-SCENE_MIN_PIXELS]))
    thr, sc = choose_threshold(conf, np.array(free_kth))
    sc["threshold"] = thr
    sc["val_scenes"] = int(len(x))
    return sc


def save(path, model, opt, sched, epoch, step, best, metrics, args, n_train):
    torch.save({
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "epoch": epoch,
        "step": step,
        "best_iou": best,
        "arch": model.arch,
        "batchnorm_folded": getattr(model, "batchnorm_folded", False),  # a network continued from an ONNX import
        "features": model.feature_set,
        "norm_mean": model.mean.flatten().tolist(),
        "norm_std": model.std.flatten().tolist(),
        "threshold": metrics.get("threshold", 0.5),
        "val_metrics": metrics,
        "trained_scenes": n_train,
        "args": vars(args),
    }, path)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="methane-seg train", description="train the plume segmentation model")
    p.add_argument("--data", required=True, type=Path, help="folder with train/ and val/ scenes")
    p.add_argument("--out", required=True, type=Path, help="checkpoint folder")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--steps-per-epoch", type=int, default=0, help="0: one pass over the training scenes")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--max-train", type=int, default=0, help="use at most this many training scenes (0: all)")
    p.add_argument("--max-val", type=int, default=0, help="use at most this many validation scenes (0: all)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--init", type=Path,
                   help="start from this checkpoint's network (architecture, features and normalisation too) "
                        "with a fresh optimizer and schedule, e.g. to anneal a run cut short")
    p.add_argument("--arch", default=ARCH["arch"], help="segmentation-models-pytorch architecture (Unet, UnetPlusPlus, FPN)")
    p.add_argument("--encoder", default=ARCH["encoder_name"], help="encoder, e.g. resnet18, efficientnet-b0, mobilenet_v2")
    p.add_argument("--encoder-depth", type=int, default=ARCH["encoder_depth"])
    p.add_argument("--decoder-channels", default=",".join(map(str, ARCH["decoder_channels"])),
                   help="comma-separated, one per encoder stage (Unet)")
    p.add_argument("--pos-weight", type=float, default=POS_WEIGHT, help="BCE weight of plume pixels")
    p.add_argument("--dice-weight", type=float, default=DICE_WEIGHT, help="0: BCE only")
    p.add_argument("--features", default=DEFAULT_FEATURES, choices=sorted(FEATURE_SETS) + list(MULTIPASS_FEATURES),
                   help="input feature set: one pass (training/model.py) or target + reference "
                        "(mp, mp_derived, mp_compact: training/multipass.py, a multi-pass network)")
    p.add_argument("--augment", default="auto", choices=["auto", "none", "physics"],
                   help="physics: per-pass gains, extra sensor noise and (multi-pass) sub-pixel misregistration of "
                        "the reference on each crop (training/data.py PassAugment); auto: physics for a multi-pass "
                        "network, none otherwise; flips and rotations always")
    p.add_argument("--loss", default="dice_bce", choices=LOSSES, help="training loss")
    p.add_argument("--max-minutes", type=float, default=0,
                   help="stop after the epoch in which this many minutes have passed (0: no limit)")
    p.add_argument("--minutes", type=float, default=0,
                   help="train for this many minutes of wall-clock time: the one-cycle schedule runs over time "
                        "(training/schedule.py) and --epochs is only an upper bound (0: by epochs)")
    p.add_argument("--plume-frac", type=float, default=0.5, help="share of crops centred near plume pixels")
    p.add_argument("--head-frac", type=float, default=0.0,
                   help="share of crops centred near a plume's head (its labelled pixels within --head-radius "
                        "of the source), where segmentations miss the first pixels")
    p.add_argument("--head-weight", type=float, default=1.0, help="BCE weight of plume-head pixels (1: none)")
    p.add_argument("--head-radius", type=float, default=HEAD_RADIUS_PX, help="pixels from the source that are its head")
    p.add_argument("--visible-drop", type=float, default=0.0,
                   help="train on plume pixels whose B12/B11 drop is at least this (0: the product's labels); "
                        "validation always uses the product's labels")
    return p


def _check_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Refuse flags that contradict each other (argparse's error: usage and exit 2)."""
    if a.minutes < 0 or (a.minutes and a.resume):
        p.error("--minutes must be positive and cannot continue a run (--resume)")
    if a.init is not None and a.resume:
        p.error("--init starts a new run from a checkpoint; --resume continues OUT/last.pt: give one")
    if a.head_weight != 1.0 and a.loss == "focal":
        p.error("--head-weight needs a loss with a BCE term (dice_bce or lovasz)")
    if not (0 <= a.head_frac and 0 <= a.plume_frac and a.head_frac + a.plume_frac <= 1) or a.head_weight <= 0:
        p.error("--head-frac and --plume-frac must be shares that add up to at most 1, --head-weight positive")


def _init_network(p: argparse.ArgumentParser, path: Path) -> PlumeNet:
    """The network of a plume checkpoint to start from (--init); argparse's error if it is not one."""
    try:
        model, _ = load_checkpoint(path)
        if isinstance(model, SourcePlumeNet):
            raise ValueError("it has a source branch (a train-source checkpoint)")
    except (OSError, KeyError, TypeError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        p.error(f"cannot start from {path}: {exc}")
    print(f"starting from {path} (its architecture, features {model.feature_set} and normalisation)", flush=True)
    return model


def _load_data(a: argparse.Namespace, t0: float, bands: int):
    """Training scenes and their targets (labels, or the visible share of them; the plume heads when
    crops or weights need them, else None) and the validation scenes: xt, yt, heads, xv, yv.
    bands: 6 (the target only) or 12 (target and reference pass, a multi-pass network)."""
    xt, yt = load_scenes(a.data / "train", a.max_train or None, bands=bands)
    if a.visible_drop > 0:
        yt = visible_labels(a.data / "train", a.max_train or None, a.visible_drop)
        print(f"training targets: plume pixels with a B12/B11 drop >= {a.visible_drop:.3f} "
              f"({int(yt.sum())} pixels)", flush=True)
    heads = None
    if a.head_frac > 0 or a.head_weight != 1.0:
        heads = head_masks(a.data / "train", yt, a.max_train or None, a.head_radius)
        print(f"plume heads: {int(heads.sum())} pixels within {a.head_radius:g} px of a source in "
              f"{int((heads.reshape(len(heads), -1).max(1) > 0).sum())} scenes", flush=True)
    xv, yv = load_scenes(a.data / "val", a.max_val or None, bands=bands)
    print(f"loaded {len(xt)} train / {len(xv)} val scenes ({bands} bands) in {time.time() - t0:.0f} s", flush=True)
    return xt, yt, heads, xv, yv


def _new_network(a: argparse.Namespace, xt: np.ndarray) -> PlumeNet:
    """A fresh network of the flags' architecture, normalised on the training scenes."""
    mean, std = norm_stats(xt, feature_set=a.features)
    arch = {"arch": a.arch, "encoder_name": a.encoder, "encoder_depth": a.encoder_depth}
    if a.arch in ("Unet", "UnetPlusPlus"):
        arch["decoder_channels"] = [int(c) for c in a.decoder_channels.split(",")]
    return PlumeNet(arch, mean, std, a.features)


def _optimiser(model, a: argparse.Namespace, total: int):
    """AdamW and its one-cycle schedule over `total` steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=total, pct_start=0.1)
    return opt, sched


def _resume(last: Path, a: argparse.Namespace, total: int, device):
    """Network, optimiser and schedule of OUT/last.pt, and where it stopped: the first epoch to run,
    the step count and the best validation IoU."""
    ck = torch.load(last, map_location=device, weights_only=False)
    model = PlumeNet(ck["arch"], ck["norm_mean"], ck["norm_std"], ck.get("features", DEFAULT_FEATURES)).to(device)
    model.load_state_dict(ck["model"])
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    opt.load_state_dict(ck["optimizer"])
    # (the schedule is made after the optimiser's state is loaded, and sets its first rate)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=total, pct_start=0.1)
    sched.load_state_dict(ck["scheduler"])
    sched.total_steps = total  # --epochs may have grown since the checkpoint
    print(f"resumed from {last} at epoch {ck['epoch'] + 1}", flush=True)
    return model, opt, sched, (ck["epoch"] + 1, ck["step"], ck["best_iou"])


def _train_epoch(model, opt, sched, loss_fn, sampler, a: argparse.Namespace, device, epoch: int, steps: int,
                 step: int, total: int, timed) -> tuple[float, int]:
    """One epoch of `steps` steps (fewer when the timed cycle ends first); the schedule steps up to
    `total`. Returns the running loss and the step count after the epoch."""
    model.train()
    count = [step]

    def one_step() -> float:
        xb, yb, hb = sampler.batch(a.batch_size)
        xb, yb = torch.from_numpy(xb).to(device), torch.from_numpy(yb).to(device)
        weight = None if a.head_weight == 1.0 else 1.0 + (a.head_weight - 1.0) * torch.from_numpy(hb).to(device)
        loss = loss_fn(model(xb), yb, weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if timed is None and count[0] < total:
            sched.step()
        count[0] += 1
        return loss.item()

    run = run_steps(steps, f"epoch {epoch + 1}/{a.epochs}", one_step, timed, mininterval=5)
    return run, count[0]


def main(argv: list[str]) -> int:
    p = _parser()
    a = p.parse_args(argv)
    _check_args(p, a)
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    device = torch.device("cuda" if a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available()) else "cpu")
    a.out.mkdir(parents=True, exist_ok=True)
    # --init is checked before the scenes are loaded, which takes minutes
    model = _init_network(p, a.init) if a.init is not None else None
    t0 = time.time()
    feature_set = model.feature_set if model is not None else a.features
    xt, yt, heads, xv, yv = _load_data(a, t0, input_bands(feature_set))
    model = (model if model is not None else _new_network(a, xt)).to(device)
    loss_fn = make_loss(a.loss, a.pos_weight, a.dice_weight)
    spe = a.steps_per_epoch or max(1, len(xt) // a.batch_size)
    total = a.epochs * spe
    opt, sched = _optimiser(model, a, total)
    start_epoch, step, best = 0, 0, -1.0
    last = a.out / "last.pt"
    if a.resume and last.exists():
        model, opt, sched, (start_epoch, step, best) = _resume(last, a, total, device)

    physics = a.augment == "physics" or (a.augment == "auto" and feature_set in MULTIPASS_FEATURES)
    sampler = CropSampler(xt, yt, a.crop, seed=a.seed + 1000 * start_epoch, plume_frac=a.plume_frac,
                          heads=heads, head_frac=a.head_frac, augment=PassAugment() if physics else None)
    timed = TimedOneCycle(opt, a.lr, a.minutes) if a.minutes else None
    for epoch in range(start_epoch, a.epochs):
        run, step = _train_epoch(model, opt, sched, loss_fn, sampler, a, device, epoch, spe, step, total, timed)
        metrics = evaluate(model, xv, yv, device)
        metrics.update(epoch=epoch + 1, loss=run, minutes=(time.time() - t0) / 60)
        print(json.dumps(metrics), flush=True)
        save(last, model, opt, sched, epoch, step, best, metrics, a, len(xt))
        if metrics["iou"] > best:
            best = metrics["iou"]
            save(a.out / "best.pt", model, opt, sched, epoch, step, best, metrics, a, len(xt))
        if end_epoch(a.out, metrics, epoch, t0, a.max_minutes, timed):
            break
    print(f"done in {(time.time() - t0) / 60:.1f} min; best val IoU {best:.3f}", flush=True)
    return 0
