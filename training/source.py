"""Train a source heat-map branch onto a trained plume network.

    methane-seg train-source --base runs/model/best.pt --data DIR --out DIR
                             [--sigma 1.5 --epochs 24 --steps-per-epoch 325 --batch-size 16 --lr 2e-3]

--base is a `methane-seg train` checkpoint (.pt), or one that `methane-seg import-onnx` rebuilt from
an exported model.onnx and its metadata.json (export/onnx_import.py). The plume network is frozen (BatchNorm folded), so the plume output
stays exactly what it was; a second U-Net decoder on its encoder features, started as a copy of
the plume decoder, and a small head on that decoder's output and the plume logit learn a heat map
whose peaks are the plumes' sources (CenterNet's recipe: Gaussian targets of --sigma px around
each source, penalty-reduced focal loss). A source gets a target only when its plume's head (the
visible plume pixels within HEAD_RADIUS_PX) is there to see. Crops: a share near the sources
(--source-frac), a share near plume pixels, the rest anywhere. After each epoch the validation
scenes are scored by the client's own decoding (`core.plumes.heat_peaks`): the share of true
sources with a peak within 2 px (recall) and the peaks per scene that are not near one.
Checkpoints: OUT/last.pt, OUT/best.pt (best recall), loadable by `training.model.load_checkpoint`
and `methane-seg export`. `--init OUT/last.pt` continues a run (on the same base) with a fresh
learning-rate cycle.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path

import numpy as np
import torch

from training.data import HEAD_RADIUS_PX, CropSampler, PassAugment, list_scenes, load_scenes, visible_labels
from training.model import PlumeNet, SourcePlumeNet, load_checkpoint
from training.schedule import TimedOneCycle, end_epoch, run_steps

SIGMA_PX = 1.5
MATCH_PX = 2.0  # a peak this close to a true source found it


def heat_targets(folder, labels: np.ndarray, sigma: float = SIGMA_PX, limit: int | None = None,
                 radius: float = HEAD_RADIUS_PX) -> np.ndarray:
    """(N, H, W) float32: a Gaussian of `sigma` px around each source of each scene (its JSON
    sidecar), exactly 1 at the source's pixel, cut below 0.01; only for sources with labelled
    plume pixels within `radius` px."""
    n, h, w = labels.shape
    heat = np.zeros((n, h, w), np.float32)
    rr, cc = np.mgrid[:h, :w]
    for k, p in enumerate(list_scenes(folder)[:limit]):
        for s in json.loads(p.with_suffix(".json").read_text()).get("sources", []):
            d2 = (rr - s["row"]) ** 2 + (cc - s["col"]) ** 2
            if not labels[k][d2 <= radius ** 2].any():
                continue
            g = np.exp(-d2 / (2 * sigma ** 2))
            g[g < 0.01] = 0
            r, c = int(round(s["row"])), int(round(s["col"]))
            if 0 <= r < h and 0 <= c < w:
                g[r, c] = 1.0
            heat[k] = np.maximum(heat[k], g)
    return heat


def heat_loss(logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), per source pixel."""
    p = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    pos = (target >= 0.999).float()
    lp = -((1 - p) ** 2) * torch.log(p) * pos
    ln = -((1 - target) ** 4) * p ** 2 * torch.log(1 - p) * (1 - pos)
    return (lp.sum() + ln.sum()) / pos.sum().clamp_min(1.0)


def load_base(path: Path) -> tuple[PlumeNet, dict]:
    """The plume network and what the exporter needs of its checkpoint (threshold, metrics...)."""
    if path.suffix == ".onnx":
        raise ValueError("an ONNX file is not a checkpoint: rebuild one from it first with "
                         f"`methane-seg import-onnx {path} --out BASE.pt`")
    net, ck = load_checkpoint(path)
    if isinstance(net, SourcePlumeNet):
        raise ValueError(f"{path} already has a source branch")
    return net, ck


def validate(model: SourcePlumeNet, x: np.ndarray, heat: np.ndarray, tau: float, device=None, batch: int = 8) -> dict:
    """Recall of the target sources (a heat peak within MATCH_PX) and peaks per scene not near one."""
    from core.plumes import heat_peaks

    model.eval()
    found = total = false = 0
    for i in range(0, len(x), batch):
        with torch.no_grad():
            xb = torch.from_numpy(x[i:i + batch].astype(np.float32)).to(device or "cpu")
            out = torch.sigmoid(model(xb))[:, 1].cpu().numpy()
        for hm, t in zip(out, heat[i:i + batch]):
            truth = np.argwhere(t >= 0.999)
            peaks = np.array([(r, c) for r, c, _ in heat_peaks(hm, tau)]).reshape(-1, 2)
            d = np.hypot(*(truth[:, None, :] - peaks[None, :, :]).transpose(2, 0, 1)) if len(peaks) else None
            total += len(truth)
            if d is not None and len(truth):
                found += int((d.min(1) <= MATCH_PX).sum())
                false += int((d.min(0) > MATCH_PX).sum())
            elif d is not None:
                false += len(peaks)
    return {"source_recall": found / max(total, 1), "false_peaks_per_scene": false / max(len(x), 1),
            "val_sources": total, "val_scenes": int(len(x)), "tau": tau}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="methane-seg train-source",
                                description="train a source heat-map branch onto a trained plume network")
    p.add_argument("--base", required=True, type=Path, help="plume network: a checkpoint (.pt) of `train` or of `import-onnx`")
    p.add_argument("--data", required=True, type=Path, help="folder with train/ and val/ scenes")
    p.add_argument("--out", required=True, type=Path, help="checkpoint folder")
    p.add_argument("--sigma", type=float, default=SIGMA_PX, help="px: the Gaussian target around each source")
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--steps-per-epoch", type=int, default=325)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--source-frac", type=float, default=0.2, help="share of crops centred near a source")
    p.add_argument("--plume-frac", type=float, default=0.5, help="share of crops centred near plume pixels")
    p.add_argument("--visible-drop", type=float, default=0.02,
                   help="plume pixels that count as seen: B12/B11 drop at least this (0: the product's labels)")
    p.add_argument("--max-train", type=int, default=0, help="use at most this many training scenes (0: all)")
    p.add_argument("--max-val", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", type=Path, help="continue from an earlier train-source checkpoint on the same base "
                                            "(its branch's weights; a fresh learning-rate schedule)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--max-minutes", type=float, default=0,
                   help="stop after the epoch in which this many minutes have passed (0: no limit)")
    p.add_argument("--minutes", type=float, default=0,
                   help="train for this many minutes of wall-clock time: the one-cycle schedule runs over time "
                        "(training/schedule.py) and --epochs is only an upper bound (0: by epochs)")
    return p


def _check_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Refuse shares and counts out of range (argparse's error: usage and exit 2)."""
    if not (0 <= a.source_frac and 0 <= a.plume_frac and a.source_frac + a.plume_frac <= 1):
        p.error("--source-frac and --plume-frac must be shares that add up to at most 1")
    if a.sigma <= 0 or a.epochs < 1 or a.steps_per_epoch < 1 or a.minutes < 0:
        p.error("--sigma, --epochs, --steps-per-epoch and --minutes must be positive")


def _load_data(a: argparse.Namespace, t0: float, bands: int = 6):
    """Training scenes, their (visible) labels and heat targets, and the validation scenes and their
    heat targets: xt, yt, ht, xv, hv. bands: the base network's input (12 for a multi-pass one)."""
    limit = a.max_train or None
    xt, yt = load_scenes(a.data / "train", limit, bands=bands)
    if a.visible_drop > 0:
        yt = visible_labels(a.data / "train", limit, a.visible_drop)
    ht = heat_targets(a.data / "train", yt, a.sigma, limit)
    xv, yv = load_scenes(a.data / "val", a.max_val or None, bands=bands)
    if a.visible_drop > 0:
        yv = visible_labels(a.data / "val", a.max_val or None, a.visible_drop)
    hv = heat_targets(a.data / "val", yv, a.sigma, a.max_val or None)
    print(f"loaded {len(xt)} train / {len(xv)} val scenes, {int((ht >= 0.999).sum())} / "
          f"{int((hv >= 0.999).sum())} sources with a visible head, in {time.time() - t0:.0f} s", flush=True)
    return xt, yt, ht, xv, hv


def _continue_from(p: argparse.ArgumentParser, path: Path, model: SourcePlumeNet, xv: np.ndarray) -> tuple[int, list]:
    """Load an earlier train-source checkpoint's weights into model (--init), refused (argparse's
    error) unless it was trained on the same base; the epochs and learning-rate cycles it ran."""
    # The same base gives the same plume output (the encoder's deeper layers, which a shallow
    # U-Net never runs, are not compared: they are whatever the rebuilt network started with).
    probe = torch.from_numpy(np.ascontiguousarray(xv[:2, :, :64, :64], dtype=np.float32))
    model.eval()
    with torch.no_grad():
        before = model.encode(probe)[1]
    try:
        init = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(init["model"])
    except (OSError, KeyError, TypeError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        p.error(f"cannot continue from {path}: {exc}")
    with torch.no_grad():
        after = model.encode(probe)[1]
    if not torch.allclose(before, after, rtol=0, atol=1e-5):
        p.error(f"{path} was trained on another base network (its plume logits differ by up to "
                f"{float((before - after).abs().max()):.3g})")
    earlier = init.get("source", {})
    prior_epochs = int(earlier.get("epochs", 0))
    schedule = list(earlier.get("schedule") or
                    [{"epochs": prior_epochs, "lr": float(earlier.get("args", {}).get("lr", "nan"))}])
    print(f"continuing from {path} ({prior_epochs} epochs)", flush=True)
    return prior_epochs, schedule


def _train_epoch(model: SourcePlumeNet, opt, sched, sampler, a: argparse.Namespace, device, epoch: int,
                 timed) -> float:
    """One epoch of the branch (the base frozen); the running loss."""
    model.train()

    def one_step() -> float:
        xb, _, hb = (torch.from_numpy(t).to(device) for t in sampler.batch(a.batch_size))
        with torch.no_grad():
            f, plume = model.encode(xb)
        loss = heat_loss(model.source_logits(f, plume), hb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if timed is None:
            sched.step()
        return loss.item()

    return run_steps(a.steps_per_epoch, f"epoch {epoch + 1}/{a.epochs}", one_step, timed, mininterval=10)


def _checkpoint(model: SourcePlumeNet, base_ck: dict, a: argparse.Namespace, metrics: dict, epoch: int,
                prior_epochs: int, schedule: list) -> dict:
    """What OUT/last.pt and OUT/best.pt hold: the base's threshold and metrics, the whole network's
    weights and normalisation, and the branch's training (epochs, cycles, validation)."""
    return {**{k: base_ck[k] for k in ("threshold", "val_metrics", "trained_scenes", "epoch") if k in base_ck},
            "model": {k: v.cpu() for k, v in model.state_dict().items()}, "arch": model.arch, "features": model.feature_set,
            "norm_mean": model.mean.flatten().tolist(), "norm_std": model.std.flatten().tolist(),
            "source": {"sigma": a.sigma, "epochs": prior_epochs + epoch + 1, "base": str(a.base),
                       "val_metrics": metrics, "args": {k: str(v) for k, v in vars(a).items()},
                       "schedule": schedule + [{"epochs": epoch + 1, "lr": a.lr,
                                                   **({"minutes": a.minutes} if a.minutes else {})}]}}


def main(argv: list[str]) -> int:
    from core.plumes import HEAT_TAU

    p = _parser()
    a = p.parse_args(argv)
    _check_args(p, a)
    try:
        base, base_ck = load_base(a.base)
    except (OSError, ValueError, KeyError) as exc:
        p.error(f"cannot load the base network {a.base}: {exc}")
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    device = torch.device("cuda" if a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available()) else "cpu")
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    xt, yt, ht, xv, hv = _load_data(a, t0, base.bands)

    model = SourcePlumeNet.from_plumenet(base)
    # epochs and learning-rate cycles of the run continued (--init)
    prior_epochs, schedule = _continue_from(p, a.init, model, xv) if a.init is not None else (0, [])
    model = model.to(device)
    for q in model.base_parameters():
        q.requires_grad_(False)
    opt = torch.optim.AdamW(model.source_parameters(), lr=a.lr, weight_decay=1e-4)
    total = a.epochs * a.steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=total, pct_start=0.1)
    sampler = CropSampler(xt, yt, a.crop, seed=a.seed + 1, plume_frac=a.plume_frac, heads=ht, head_frac=a.source_frac,
                          augment=PassAugment() if base.bands > 6 else None)
    best = -1.0
    timed = TimedOneCycle(opt, a.lr, a.minutes) if a.minutes else None
    for epoch in range(a.epochs):
        run = _train_epoch(model, opt, sched, sampler, a, device, epoch, timed)
        metrics = validate(model, xv, hv, HEAT_TAU, device)
        metrics.update(epoch=epoch + 1, loss=run, minutes=(time.time() - t0) / 60)
        print(json.dumps(metrics), flush=True)
        ck = _checkpoint(model, base_ck, a, metrics, epoch, prior_epochs, schedule)
        torch.save(ck, a.out / "last.pt")
        if metrics["source_recall"] > best:
            best = metrics["source_recall"]
            torch.save(ck, a.out / "best.pt")
        if end_epoch(a.out, metrics, epoch, t0, a.max_minutes, timed):
            break
    print(f"done in {(time.time() - t0) / 60:.1f} min; best source recall {best:.3f}", flush=True)
    return 0
