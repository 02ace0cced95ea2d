"""Compare architectures, encoders, input features and losses side by side.

    python -m training.compare --data data --out runs/compare [--steps 800] [--only NAME ...]

Each configuration is trained with the same data, crops, steps and seed (`methane-seg train` in a
subprocess), then scored on the same validation scenes against the product's labels (the 0.5 % B12
rule) and against the visible part of the plumes (B12/B11 drop >= 2 %, what the served model is
trained on). Writes OUT/results.json; `python perf/bench_variants.py --runs OUT` then measures each
configuration's CPU cost and writes docs/model_comparison.md and its PNG.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

# name -> (what it tests, extra `methane-seg train` flags). The first one is the reference: every
# other row changes one thing against it.
CONFIGS: dict[str, tuple[str, list[str]]] = {
    "unet-r18": ("U-Net, resnet18 (depth 3), ratio features, Dice+BCE", []),
    "unet-mnv2": ("U-Net, mobilenet_v2 encoder", ["--encoder", "mobilenet_v2"]),
    "unet-effb0": ("U-Net, efficientnet-b0 encoder", ["--encoder", "efficientnet-b0"]),
    "unetpp-r18": ("U-Net++, resnet18", ["--arch", "UnetPlusPlus"]),
    "fpn-r18": ("FPN, resnet18 (depth 3)", ["--arch", "FPN"]),
    "bands-only": ("reference, six bands only (no ratio channels)", ["--features", "bands"]),
    "ratio-ndvi": ("reference + NDVI channel", ["--features", "ratio_ndvi"]),
    "focal": ("reference, focal loss", ["--loss", "focal"]),
    "lovasz": ("reference, BCE + Lovasz loss", ["--loss", "lovasz"]),
}
# The multi-pass network (target + reference pass, 12 bands) against the product's labels: inputs,
# encoder and width, each row changing one thing against the first.
MULTIPASS_CONFIGS: dict[str, tuple[str, list[str]]] = {
    "mp-r18": ("multi-pass U-Net, resnet18 (depth 3), decoder 32-16-8, all inputs (mp)", ["--features", "mp"]),
    "mp-derived": ("inputs without the reference's own bands (mp_derived)", ["--features", "mp_derived"]),
    "mp-compact": ("inputs: target bands, MBMP and the multi-pass regression only (mp_compact)",
                   ["--features", "mp_compact"]),
    "mp-r18-wide": ("decoder 64-32-16", ["--features", "mp", "--decoder-channels", "64,32,16"]),
    "mp-mnv2": ("mobilenet_v2 encoder", ["--features", "mp", "--encoder", "mobilenet_v2"]),
}
FAMILIES = {"single": CONFIGS, "multipass": MULTIPASS_CONFIGS}
VISIBLE_DROP = 0.02
TILE = 256


def train(name: str, flags: list[str], a) -> float:
    out = a.out / name
    # the single-pass family trains on the visible part of each plume; the multi-pass one on the labels
    visible = VISIBLE_DROP if a.family == "single" else 0.0
    cmd = [sys.executable, "-c", "import sys; from training.train import main; sys.exit(main(sys.argv[1:]))",
           "--data", str(a.data), "--out", str(out), "--epochs", "1", "--steps-per-epoch", str(a.steps),
           "--batch-size", str(a.batch_size), "--crop", "128", "--lr", "2e-3", "--plume-frac", "0.6",
           "--visible-drop", str(visible), "--max-train", str(a.max_train), "--max-val", str(a.max_val),
           "--seed", str(a.seed), *flags]
    if (out / "last.pt").exists() and not a.retrain:
        return json.loads((out / "timing.json").read_text())["train_minutes"]
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(out / "train.log", "w") as log:
        done = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        raise RuntimeError(f"training {name} failed; see {out / 'train.log'}")
    minutes = (time.time() - t0) / 60
    (out / "timing.json").write_text(json.dumps({"train_minutes": minutes}))
    return minutes


def predict(model, x: np.ndarray, batch: int = 8) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(torch.sigmoid(model(torch.from_numpy(x[i:i + batch].astype(np.float32)))).numpy()[:, 0])
    return np.concatenate(out)


def score(prob: np.ndarray, truth: np.ndarray) -> dict:
    """Validation threshold by the product's rule, pooled IoU there, seed AP, scene false-positive rate,
    and the pooled IoU at the best threshold whatever it flags (iou_any): a short run can rank
    configurations by it before any reaches the rule's 5 % of plume-free scenes."""
    from training.metrics import SCENE_MIN_PIXELS, average_precision, best_threshold, choose_threshold, confusion

    conf = sum(confusion(p, t) for p, t in zip(prob, truth))
    free = np.array([np.partition(p.ravel(), -SCENE_MIN_PIXELS)[-SCENE_MIN_PIXELS]
                     for p, t in zip(prob, truth) if not t.any()])
    thr, sc = choose_threshold(conf, free)
    aps = [average_precision(t, p) for p, t in zip(prob, truth) if t.any()]
    _, any_rule = best_threshold(conf)
    return {"threshold": thr, "iou": sc["iou"], "precision": sc["precision"], "recall": sc["recall"],
            "scene_fpr": sc["free_scene_fp_rate"], "seed_ap": float(np.nanmean(aps)) if aps else float("nan"),
            "iou_any": any_rule["iou"]}








def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.compare", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("data"), help="folder with train/ and val/")
    p.add_argument("--out", type=Path, default=Path("runs/compare"))
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-train", type=int, default=1500)
    p.add_argument("--max-val", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--family", choices=sorted(FAMILIES), default="single",
                   help="single: single-pass configurations (6 bands); multipass: target + reference (12 bands)")
    p.add_argument("--only", nargs="*", default=None, help="configuration names (default: all of the family)")
    p.add_argument("--retrain", action="store_true", help="train again even where a checkpoint exists")
    a = p.parse_args(argv)
    configs = FAMILIES[a.family]
    names = a.only or list(configs)
    unknown = sorted(set(names) - set(configs))
    if unknown:
        p.error(f"unknown configurations {unknown}; known: {list(configs)}")

    import torch
    from tqdm import tqdm

    from training.data import load_scenes, visible_labels
    from training.model import load_checkpoint

    torch.set_num_threads(2)
    xv, yv = load_scenes(a.data / "val", a.max_val, bands=6 if a.family == "single" else 12)
    vis = visible_labels(a.data / "val", a.max_val, VISIBLE_DROP) if a.family == "single" else yv
    results_path = a.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results.pop("_settings", None)
    for name in tqdm(names, desc="configurations"):
        what, flags = configs[name]
        minutes = train(name, flags, a)
        model, _ = load_checkpoint(a.out / name / "last.pt")
        prob = predict(model, xv)
        results[name] = {"what": what, "flags": flags, "train_minutes": minutes,
                         "product": score(prob, yv), "visible": score(prob, vis)}
        print(json.dumps({name: results[name]}), flush=True)
        a.out.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=1))
    ordered = {n: results[n] for n in configs if n in results}
    settings = {"family": a.family, "steps": a.steps, "batch_size": a.batch_size, "max_train": a.max_train,
                "max_val": a.max_val, "seed": a.seed, "visible_drop": VISIBLE_DROP if a.family == "single" else 0.0}
    results_path.write_text(json.dumps({"_settings": settings, **ordered}, indent=1))
    print(f"scored {len(ordered)} configurations into {results_path}; their CPU cost and the table: "
          f"python perf/bench_variants.py --runs {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
