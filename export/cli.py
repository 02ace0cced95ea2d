"""`methane-seg export CHECKPOINT [--out model_repository] [--trt]` (dispatched from methane_seg.cli).

Writes ONNX FP32 and FP16 (simplified, checked, parity-tested against PyTorch on simulated
scenes: FP32 max abs diff <= 1e-4, FP16 plume IoU within 0.01), the metadata and the Triton
model repository. `--trt` also builds a TensorRT plan (needs TensorRT and a CUDA GPU).
Exit codes: 0 written, 1 a parity check failed, 2 bad arguments, 3 TensorRT unavailable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def export_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="methane-seg export", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="best.pt / last.pt written by `methane-seg train`")
    p.add_argument("--out", type=Path, default=Path("model_repository"), help="model repository folder")
    p.add_argument("--no-fp16", action="store_true", help="skip the FP16 variant")
    p.add_argument("--fp16-scenes", type=int, default=24, help="simulated scenes for the FP16 IoU check")
    p.add_argument("--trt", action="store_true", help="also build a TensorRT plan (CUDA GPU + tensorrt)")
    p.add_argument("--max-batch-size", type=int, default=16, help="TensorRT profile's largest batch")
    a = p.parse_args(argv)
    if not a.checkpoint.is_file():
        print(f"methane-seg: error: no such checkpoint: {a.checkpoint}", file=sys.stderr)
        return 2
    from export.onnx_export import ExportError, export_checkpoint

    if a.trt:
        from export.tensorrt_plan import tensorrt_available

        why = tensorrt_available()
        if why:
            print(f"methane-seg: error: cannot build a TensorRT plan here: {why}. Build it on the serving GPU "
                  "with `docker compose --profile build-plan run --rm build-plan`.", file=sys.stderr)
            return 3
    try:
        meta = export_checkpoint(a.checkpoint, a.out, fp16=not a.no_fp16, fp16_scenes=a.fp16_scenes)
    except ExportError as exc:
        print(f"methane-seg: error: {exc}", file=sys.stderr)
        return 1
    version_dir = a.out / meta["name"] / "1"
    onnx_path = version_dir / "model.onnx"
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.2f} MB), threshold {meta['threshold']:.2f}, "
          f"val IoU {meta['val_metrics'].get('iou', float('nan')):.3f}, "
          f"ONNX/PyTorch max diff {meta['onnx_parity_max_abs_diff']:.2e}")
    if "fp16" in meta:
        f = meta["fp16"]
        print(f"wrote {version_dir / f['file']}: plume IoU {f['iou_onnx_fp16']:.4f} (FP16) vs "
              f"{f['iou_pytorch_fp32']:.4f} (PyTorch) on {f['scenes']} scenes, max diff {f['max_abs_diff']:.2e}")
    if a.trt:
        from export.tensorrt_plan import build_plan

        fp16_ok = "fp16" in meta
        try:
            plan = build_plan(onnx_path, version_dir / "model.plan", meta["tile_size"], a.max_batch_size, fp16=fp16_ok)
        except ExportError as exc:
            print(f"methane-seg: error: {exc}", file=sys.stderr)
            return 3
        meta["tensorrt"] = {"file": plan.name, "fp16": fp16_ok, "max_batch_size": a.max_batch_size}
        (version_dir / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        print(f"wrote {plan}")
    return 0
