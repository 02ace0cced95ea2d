"""Which files of a model version are served: the one place that reads that from the metadata.

A version folder (`model_repository/methane_seg/<n>/`) holds the FP32 graph `model.onnx`, its FP16
and INT8 variants and `metadata.json`, which the exporter writes. CPU instances serve the file that
the metadata names (`cpu_onnx_file`: the INT8 graph where export/int8.py found that it holds its
gates, else the FP32 one); GPU instances serve the FP32 graph (TensorRT builds FP16 inside).
"""

from __future__ import annotations

import json
from pathlib import Path

FP32_ONNX = "model.onnx"
MODEL_NAME = "methane_seg"


def versions(model_dir: str | Path) -> list[int]:
    """The numbered version folders of a model folder, oldest first."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def latest_version(repository: str | Path, name: str = MODEL_NAME) -> Path:
    """The newest version folder of model `name` in a model repository (what Triton serves by default)."""
    model_dir = Path(repository) / name
    found = versions(model_dir)
    if not found:
        raise FileNotFoundError(f"{model_dir} holds no numbered version folder")
    return model_dir / str(found[-1])


def read_metadata(version_dir: str | Path) -> dict:
    path = Path(version_dir) / "metadata.json"
    if not path.is_file():
        raise FileNotFoundError(f"no metadata.json in {version_dir} (the exporter writes it beside the model)")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise FileNotFoundError(f"{path} is not the exporter's JSON ({exc})") from None


def served_onnx_name(metadata: dict, kind: str = "cpu") -> str:
    """The ONNX file name that instances of `kind` ("cpu" or "gpu") serve, from a version's metadata."""
    if kind not in ("cpu", "gpu"):
        raise ValueError(f"kind must be cpu or gpu, not {kind!r}")
    return metadata.get("cpu_onnx_file", FP32_ONNX) if kind == "cpu" else FP32_ONNX


def served_onnx(version_dir: str | Path, kind: str = "cpu") -> Path:
    """The ONNX file that instances of `kind` serve from this version folder."""
    return Path(version_dir) / served_onnx_name(read_metadata(version_dir), kind)
