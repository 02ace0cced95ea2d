"""Compare architectures, encoders, input features and losses side by side.

    python -m training.compare --data data --out runs/compare [--steps 800] [--only NAME ...]

Each configuration is trained with the same data, crops, steps and seed (`methane-seg train` in a
subprocess), then scored on the same validation scenes against the product's labels (the 0.5 % B12
rule) and against the visible part of the plumes (B12/B11 drop >= 2 %, what the served model is
trained on), and timed in onnxruntime (FP32, 2 threads, batches of 256-pixel tiles). Writes
OUT/results.json, docs/model_comparison.md and docs/model_comparison.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
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
VISIBLE_DROP = 0.02
TILE = 256


def train(name: str, flags: list[str], a) -> float:
    out = a.out / name
    cmd = [sys.executable, "-c", "import sys; from training.train import main; sys.exit(main(sys.argv[1:]))",
           "--data", str(a.data), "--out", str(out), "--epochs", "1", "--steps-per-epoch", str(a.steps),
           "--batch-size", str(a.batch_size), "--crop", "128", "--lr", "2e-3", "--plume-frac", "0.6",
           "--visible-drop", str(VISIBLE_DROP), "--max-train", str(a.max_train), "--max-val", str(a.max_val),
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
    """Validation threshold by the product's rule, pooled IoU there, seed AP, scene false-positive rate."""
    from training.metrics import SCENE_MIN_PIXELS, average_precision, choose_threshold, confusion

    conf = sum(confusion(p, t) for p, t in zip(prob, truth))
    free = np.array([np.partition(p.ravel(), -SCENE_MIN_PIXELS)[-SCENE_MIN_PIXELS]
                     for p, t in zip(prob, truth) if not t.any()])
    thr, sc = choose_threshold(conf, free)
    aps = [average_precision(t, p) for p, t in zip(prob, truth) if t.any()]
    return {"threshold": thr, "iou": sc["iou"], "precision": sc["precision"], "recall": sc["recall"],
            "scene_fpr": sc["free_scene_fp_rate"], "seed_ap": float(np.nanmean(aps)) if aps else float("nan")}


def speed(models: dict, rounds: int = 5, batch: int = 4) -> dict:
    """onnxruntime FP32 (2 threads) on batches of 256-pixel tiles: {name: (ms per tile, ONNX MB)}.

    The models run interleaved, round after round, and each keeps its fastest round: a shared
    machine's slow minutes then hit every model alike instead of whichever ran during them."""
    import onnxruntime as ort

    from export.onnx_export import export_onnx

    x = np.random.default_rng(0).integers(500, 4000, (batch, 6, TILE, TILE)).astype(np.uint16)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sessions, sizes = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            path = export_onnx(model, Path(tmp) / f"{name}.onnx")
            sizes[name] = path.stat().st_size / 1e6
            sessions[name] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            sessions[name].run(None, {"reflectance": x})
    best = {name: float("inf") for name in models}
    for _ in range(rounds):
        for name, sess in sessions.items():
            t0 = time.perf_counter()
            sess.run(None, {"reflectance": x})
            best[name] = min(best[name], (time.perf_counter() - t0) * 1000 / batch)
    return {name: (best[name], sizes[name]) for name in models}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, r in results.items():
        ax.scatter(r["ms_per_tile"], r["visible"]["seed_ap"], s=40)
        ax.annotate(name, (r["ms_per_tile"], r["visible"]["seed_ap"]), fontsize=8,
                    xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("onnxruntime CPU ms per 256² tile (2 threads)")
    ax.set_ylabel("validation seed AP, visible plume pixels")
    ax.set_title("Model comparison: quality against CPU cost")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(results: dict, a) -> str:
    rows = ["| config | what changes | ONNX MB | CPU ms/tile | train min | product labels: IoU / seed AP / "
            "scene FPR | visible pixels: IoU / seed AP |",
            "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        p, v = r["product"], r["visible"]
        rows.append(f"| {name} | {r['what']} | {r['onnx_mb']:.1f} | {r['ms_per_tile']:.1f} | "
                    f"{r['train_minutes']:.1f} | {p['iou']:.3f} / {p['seed_ap']:.3f} / {100 * p['scene_fpr']:.0f} % | "
                    f"{v['iou']:.3f} / {v['seed_ap']:.3f} |")
    head = (f"Each configuration: {a.steps} steps of {a.batch_size} crops of 128 pixels from {a.max_train} "
            f"training scenes (seed {a.seed}, targets: plume pixels with a B12/B11 drop of at least "
            f"{100 * VISIBLE_DROP:.0f} %), scored on {a.max_val} validation scenes. Thresholds are chosen per "
            "model by the product's rule (best pixel IoU with at most 5 % of plume-free scenes flagged). "
            "CPU time: onnxruntime FP32, 2 threads, batches of 4 tiles of 256 pixels, the models interleaved "
            "over 5 rounds on the same 2 cores, fastest round each.")
    return head + "\n\n" + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.compare", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("data"), help="folder with train/ and val/")
    p.add_argument("--out", type=Path, default=Path("runs/compare"))
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-train", type=int, default=1500)
    p.add_argument("--max-val", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="*", default=None, help="configuration names (default: all)")
    p.add_argument("--retrain", action="store_true", help="train again even where a checkpoint exists")
    p.add_argument("--docs", default=str(ROOT / "docs"), help="where the table and plot go ('': nowhere)")
    a = p.parse_args(argv)
    names = a.only or list(CONFIGS)
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        p.error(f"unknown configurations {unknown}; known: {list(CONFIGS)}")

    import torch
    from tqdm import tqdm

    from training.data import load_scenes, visible_labels
    from training.model import load_checkpoint

    torch.set_num_threads(2)
    xv, yv = load_scenes(a.data / "val", a.max_val)
    vis = visible_labels(a.data / "val", a.max_val, VISIBLE_DROP)
    results_path = a.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name in tqdm(names, desc="configurations"):
        what, flags = CONFIGS[name]
        minutes = train(name, flags, a)
        model, _ = load_checkpoint(a.out / name / "last.pt")
        prob = predict(model, xv)
        results[name] = {"what": what, "flags": flags, "train_minutes": minutes,
                         "product": score(prob, yv), "visible": score(prob, vis)}
        print(json.dumps({name: results[name]}), flush=True)
        a.out.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=1))
    ordered = {n: results[n] for n in CONFIGS if n in results}
    models = {n: load_checkpoint(a.out / n / "last.pt")[0] for n in ordered}
    for name, (ms, mb) in speed(models).items():
        ordered[name].update(ms_per_tile=ms, onnx_mb=mb)
    results_path.write_text(json.dumps({**results, **ordered}, indent=1))
    if a.docs:
        (Path(a.docs) / "model_comparison.md").write_text("# Model comparison\n\n" + table(ordered, a))
        plot(ordered, Path(a.docs) / "model_comparison.png")
    print(table(ordered, a))
    return 0


if __name__ == "__main__":
    sys.exit(main())
