"""Trial record (not product code, not served): a source heat-map output channel.

docs/methods.md, "A source heat map from the network", reports what this gave. Run from the
repository root with the training extra installed:

    python -m training.trials.source_heat train DATA OUT [SIGMA SEED HEAD_FRAC PLUME_WEIGHT EPOCHS]
    python -m training.trials.source_heat score OUT/last.pt MASKS.npy SEED0 N

DATA holds train/ and val/ from `methane-seg simulate` (as `make model` writes them); MASKS.npy
holds the served model's masks (np.packbits of prob >= threshold, one row per scene) of the N
scenes from SEED0 (256 px, one source of 30 t/h, no clouds). When this becomes a feature it goes
into train.py (`--source-sigma`), the exporter and the client, with tests.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from tqdm import tqdm

import client.plumes as P
from training.data import HEAD_RADIUS_PX, CropSampler, head_masks, list_scenes, load_scenes, visible_labels
from training.model import FEATURE_SETS, PlumeNet, build_net
from training.simulate import simulate_scene
from training.sources import _result
from training.train import dice_bce, evaluate, norm_stats

ARCH = {"arch": "Unet", "encoder_name": "resnet18", "encoder_depth": 3, "decoder_channels": [32, 16, 8]}


def two_channel(arch, mean, std):
    """PlumeNet with a second output channel, the source heat map."""
    model = PlumeNet(arch, mean, std, "regress")
    model.net = build_net(arch, FEATURE_SETS["regress"], classes=2)
    return model


def heat_loss(logit, t):
    """CenterNet's penalty-reduced focal loss; t: Gaussian targets, 1 at each source pixel."""
    p = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    pos = (t >= 0.999).float()
    lp = -(1 - p) ** 2 * torch.log(p) * pos
    ln = -((1 - t) ** 4) * p ** 2 * torch.log(1 - p) * (1 - pos)
    return (lp.sum() + ln.sum()) / pos.sum().clamp_min(1.0)


def train(data: Path, out: Path, sigma=1.5, seed=0, head_frac=0.2, plume_weight=1.0, epochs=8, weight=0.5, spe=325,
          bs=16, lr=2e-3):
    """plume_weight: of the plume channel's loss (0: a network for the heat map alone)."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    xt, _ = load_scenes(data / "train")
    yt = visible_labels(data / "train", None, 0.02)
    heads = head_masks(data / "train", yt, None, HEAD_RADIUS_PX)
    n, h, w = yt.shape
    heat = np.zeros((n, h, w), np.float32)
    rr, cc = np.mgrid[:h, :w]
    for k, p in enumerate(list_scenes(data / "train")):
        for s in json.loads(p.with_suffix(".json").read_text()).get("sources", []):
            if not (heads[k][np.hypot(rr - s["row"], cc - s["col"]) <= HEAD_RADIUS_PX]).any():
                continue  # the plume's head is not labelled: nothing to see
            g = np.exp(-((rr - s["row"]) ** 2 + (cc - s["col"]) ** 2) / (2 * sigma ** 2))
            g[g < 0.01] = 0
            r, c = int(round(s["row"])), int(round(s["col"]))
            if 0 <= r < h and 0 <= c < w:
                g[r, c] = 1.0
            heat[k] = np.maximum(heat[k], g)
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


def heat_sources(heat, mask, tau=0.1, dmax=30.0, min_pixels=P.MIN_PIXELS):
    """(component of a point, {component: (row, col)}): the strongest heat peak >= tau within dmax
    px of each mask component, at the heat-weighted centre of its 3 x 3 pixels."""
    lab, n = ndimage.label(mask, np.ones((3, 3)))
    if n == 0:
        return lambda r, c: 0, {}
    dist, (ir, ic) = ndimage.distance_transform_edt(lab == 0, return_indices=True)
    peaks = (heat == ndimage.maximum_filter(heat, 3)) & (heat >= tau) & (dist <= dmax)
    sizes = np.bincount(lab.ravel())
    best = {}
    for r, c in zip(*np.nonzero(peaks)):
        k = lab[ir[r, c], ic[r, c]]
        if sizes[k] >= min_pixels and (k not in best or heat[r, c] > best[k][0]):
            best[k] = (heat[r, c], r, c)
    out = {}
    for k, (_, r, c) in best.items():
        r0, c0 = max(0, r - 1), max(0, c - 1)
        wt = heat[r0:r + 2, c0:c + 2].astype(np.float64)
        gr, gc = np.mgrid[r0:r0 + wt.shape[0], c0:c0 + wt.shape[1]]
        out[k] = ((wt * gr).sum() / wt.sum(), (wt * gc).sum() / wt.sum())

    def near(r, c):
        r = min(max(int(round(r)), 0), lab.shape[0] - 1)
        c = min(max(int(round(c)), 0), lab.shape[1] - 1)
        return lab[ir[r, c], ic[r, c]]
    return near, out


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
        near, hs = heat_sources(heat, mask)
        points = list(hs.values()) + [(r, c) for r, c in classic if near(r, c) not in hs]
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
        sys.exit("usage: python -m training.trials.source_heat train|score ...")
