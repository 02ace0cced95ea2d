"""`methane-seg export CHECKPOINT [--out model_repository]` (dispatched from client.cli)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def export_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="methane-seg export",
                                description="export a checkpoint to ONNX and the Triton model repository")
    p.add_argument("checkpoint", type=Path, help="best.pt / last.pt written by `methane-seg train`")
    p.add_argument("--out", type=Path, default=Path("model_repository"), help="model repository folder")
    a = p.parse_args(argv)
    if not a.checkpoint.is_file():
        print(f"error: no such checkpoint: {a.checkpoint}", file=sys.stderr)
        return 2
    from export.onnx_export import ExportError, export_checkpoint

    try:
        meta = export_checkpoint(a.checkpoint, a.out)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    onnx_path = a.out / "methane_seg" / "1" / "model.onnx"
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.2f} MB), threshold {meta['threshold']:.2f}, "
          f"val IoU {meta['val_metrics'].get('iou', float('nan')):.3f}, "
          f"ONNX/PyTorch max diff {meta['onnx_parity_max_abs_diff']:.2e}")
    return 0
