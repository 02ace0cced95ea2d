"""Trial record (not product code, not served): a source heat-map output channel.

docs/methods.md, "A source heat map from the network", reports what this gave. Run from the
repository root with the training extra installed:

    python -m experiments.source_heat train DATA OUT [SIGMA SEED HEAD_FRAC PLUME_WEIGHT EPOCHS]
    python -m experiments.source_heat score OUT/last.pt MASKS.npy SEED0 N

DATA holds train/ and val/ from `methane-seg simulate` (as `make model` writes them); MASKS.npy
holds the served model's masks (np.packbits of prob >= threshold, one row per scene) of the N
scenes from SEED0 (256 px, one source of 30 t/h, no clouds). The product's version is a source branch trained
onto the frozen served network (training/source.py, `methane-seg train-source`); the decoding here
is the product's (core.plumes.heat_sources, through find_plumes), which groups mask pieces within
GAP_PX into one plume where this trial first took 8-connected components.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import core.plumes as P
from training.data import CropSampler, load_scenes, visible_labels
from training.model import FEATURE_SETS, PlumeNet, build_net
from training.simulate import simulate_scene
from training.sources import _result
from training.source import heat_loss, heat_targets
from training.train import dice_bce, evaluate, norm_stats

ARCH = {"arch": "Unet", "encoder_name": "resnet18", "encoder_depth": 3, "decoder_channels": [32, 16, 8]}


def two_channel(arch, mean, std):
    """PlumeNet with a second output channel, the source heat map."""
    model = PlumeNet(arch, mean, std, "regress")
    model.net = build_net(arch, FEATURE_SETS["regress"], classes=2)
    return model


def train(data: Path, out: Path, sigma=1.5, seed=0, head_frac=0.2, plume_weight=1.0, epochs=8, weight=0.5, spe=325,
          bs=16, lr=2e-3):
    """plume_weight: of the plume channel's loss (0: a network for the heat map alone)."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    xt, _ = load_scenes(data / "train")
    yt = visible_labels(data / "train", None, 0.02)
    heat = heat_targets(data / "train", yt, sigma)
    xv, yv = load_scenes(data / "val", 150)
    mean, std = norm_stats(xt, feature_set="regress")
    model = two_channel(ARCH, mean, std)
    with torch.no_grad():  # start the heat map at p = 0.01, or its loss swamps the plume channel's
        model.net.segmentation_head[0].bias[1] = -4.6
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * spe, pct_start=0.1)
    sampler = CropSampler(xt, yt, 128, seed=seed + 1, plume_frac=0.7 - head_frac, heads=heat, head_frac=head_frac)
    for epoch in range(epochs):
        model.train()
        for _ in tqdm(range(spe), desc=f"epoch {epoch + 1}", mininterval=30):
            xb, yb, hb = map(torch.from_numpy, sampler.batch(bs))
            o = model(xb)
            loss = plume_weight * dice_bce(o[:, :1], yb) + weight * heat_loss(o[:, 1:], hb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        m = evaluate(model, xv, yv, torch.device("cpu"))
        m["epoch"] = epoch + 1
        print(json.dumps(m), flush=True)
        torch.save({"model": model.state_dict(), "arch": ARCH, "norm_mean": mean, "norm_std": std,
                    "metrics": m, "threshold": m["threshold"]}, out / "last.pt")


def score(ckpt: Path, masks_file: Path, seed0: int, n: int):
    torch.set_num_threads(2)
    ck = torch.load(ckpt, map_location="cpu", weights_only=False)
    model = two_channel(ck["arch"], ck["norm_mean"], ck["norm_std"])
    model.load_state_dict(ck["model"])
    model.eval()
    masks = np.load(masks_file)
    found = classic_ok = heat_ok = 0
    for i, s in enumerate(range(seed0, seed0 + n)):
        sim = simulate_scene(seed=s, size=256, n_sources=1, q_kg_h=30000.0, clouds=False)
        mask = np.unpackbits(masks[i])[: 256 * 256].reshape(256, 256).astype(bool)
        plumes = P.find_plumes(_result(sim, mask.astype(np.float32), mask, 0.5))
        if not plumes:
            continue
        with torch.no_grad():
            heat = torch.sigmoid(model(torch.from_numpy(sim.data[None].astype(np.float32))))[0, 1].numpy()
        src = sim.meta["sources"][0]
        classic = [(p.source_row, p.source_col) for p in plumes]
        with_heat = P.find_plumes(_result(sim, mask.astype(np.float32), mask, 0.5, source=heat))
        points = [(p.source_row, p.source_col) for p in with_heat]
        err = lambda pts: min(np.hypot(r - src["row"], c - src["col"]) for r, c in pts)  # noqa: E731
        found += 1
        classic_ok += err(classic) <= 2
        heat_ok += err(points) <= 2
    print(f"{seed0}: found {found}/{n}; within 2 px: find_plumes {classic_ok / max(found, 1):.1%}, "
          f"with the heat map {heat_ok / max(found, 1):.1%}")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "train":
        extra = [float(a) for a in args[2:]]
        kw = dict(zip(("sigma", "seed", "head_frac", "plume_weight", "epochs"), extra))
        for key in ("seed", "epochs"):
            if key in kw:
                kw[key] = int(kw[key])
        t0 = time.time()
        train(Path(args[0]), Path(args[1]), **kw)
        print(f"done in {(time.time() - t0) / 60:.1f} min")
    elif cmd == "score":
        score(Path(args[0]), Path(args[1]), int(args[2]), int(args[3]))
    else:
        sys.exit("usage: python -m experiments.source_heat train|score ...")
