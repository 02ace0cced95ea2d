"""CPU cost of the configurations that training/compare.py trained, and the comparison table.

    python -m training.compare --data data --out runs/compare      # train and score each configuration
    python perf/bench_variants.py --runs runs/compare               # time them, write the table and plot

Each configuration's last checkpoint is exported to ONNX (export/onnx_export.py) and timed in
onnxruntime (FP32, 2 threads, batches of 256-pixel tiles). The models run interleaved, round after
round, and each keeps its fastest round, so a shared machine's slow minutes hit every model alike.
Writes RUNS/results.json (ms_per_tile, onnx_mb added), docs/model_comparison.md and its PNG.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python perf/bench_variants.py`
    sys.path.insert(0, str(ROOT))

TILE = 256


def speed(models: dict, rounds: int = 5, batch: int = 4) -> dict:
    """onnxruntime FP32 (2 threads) on batches of 256-pixel tiles: {name: (ms per tile, ONNX MB)}.

    The models run interleaved, round after round, and each keeps its fastest round: a shared
    machine's slow minutes then hit every model alike instead of whichever ran during them."""
    import onnxruntime as ort

    from export.onnx_export import export_onnx

    rng = np.random.default_rng(0)
    inputs = {name: rng.integers(500, 4000, (batch, getattr(m, "bands", 6), TILE, TILE)).astype(np.uint16)
              for name, m in models.items()}  # 6 bands, or 12 for a multi-pass network
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sessions, sizes = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            path = export_onnx(model, Path(tmp) / f"{name}.onnx")
            sizes[name] = path.stat().st_size / 1e6
            sessions[name] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            sessions[name].run(None, {"reflectance": inputs[name]})
    best = {name: float("inf") for name in models}
    for _ in range(rounds):
        for name, sess in sessions.items():
            t0 = time.perf_counter()
            sess.run(None, {"reflectance": inputs[name]})
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


def table(results: dict, settings: dict) -> str:
    multipass = settings.get("family") == "multipass"
    last = "IoU at the best threshold, whatever it flags" if multipass else "visible pixels: IoU / seed AP"
    rows = ["| config | what changes | ONNX MB | CPU ms/tile | train min | product labels: IoU / seed AP / "
            f"scene FPR | {last} |",
            "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        p, v = r["product"], r["visible"]
        tail = f"{p.get('iou_any', float('nan')):.3f}" if multipass else f"{v['iou']:.3f} / {v['seed_ap']:.3f}"
        rows.append(f"| {name} | {r['what']} | {r['onnx_mb']:.1f} | {r['ms_per_tile']:.1f} | "
                    f"{r['train_minutes']:.1f} | {p['iou']:.3f} / {p['seed_ap']:.3f} / {100 * p['scene_fpr']:.0f} % | "
                    f"{tail} |")
    targets = (f"plume pixels with a B12/B11 drop of at least {100 * settings['visible_drop']:.0f} %"
               if settings.get("visible_drop") else "the product's labels, target and reference pass in")
    head = (f"Each configuration: {settings['steps']} steps of {settings['batch_size']} crops of 128 pixels from {settings['max_train']} "
            f"training scenes (seed {settings['seed']}, targets: {targets}), "
            f"scored on {settings['max_val']} validation scenes. Thresholds are chosen per "
            "model by the product's rule (best pixel IoU with at most 5 % of plume-free scenes flagged). "
            "CPU time: onnxruntime FP32, 2 threads, batches of 4 tiles of 256 pixels, the models interleaved "
            "over 5 rounds on the same 2 cores, fastest round each.")
    return head + "\n\n" + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    from training.model import load_checkpoint

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, default=Path("runs/compare"), help="training/compare.py's --out")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--docs", default=str(ROOT / "docs"), help="where the table and plot go ('': nowhere)")
    a = p.parse_args(argv)
    results_path = a.runs / "results.json"
    if not results_path.is_file():
        p.error(f"no {results_path}: run `python -m training.compare --out {a.runs}` first")
    results = json.loads(results_path.read_text())
    settings = results.pop("_settings", {})
    models = {n: load_checkpoint(a.runs / n / "last.pt")[0] for n in results}
    for name, (ms, mb) in speed(models, rounds=a.rounds).items():
        results[name].update(ms_per_tile=ms, onnx_mb=mb)
    results_path.write_text(json.dumps({"_settings": settings, **results}, indent=1))
    if a.docs:
        stem = "model_comparison" + ("_multipass" if settings.get("family") == "multipass" else "")
        title = "Model comparison" + (": the multi-pass network" if settings.get("family") == "multipass" else "")
        (Path(a.docs) / f"{stem}.md").write_text(f"# {title}\n\n" + table(results, settings))
        plot(results, Path(a.docs) / f"{stem}.png")
    print(table(results, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
