"""Export a training checkpoint to ONNX (uint16 reflectance in, probability out) and check it.

The graph holds everything: uint16 -> float, /10000, the B12/B11 log-ratio
channel, per-channel normalisation, the U-Net and the sigmoid. torch traces
a float32 input; an ONNX Cast(uint16 -> float) is then put in front, so the
final graph input `reflectance` is uint16 [N, 6, H, W] (N, H, W dynamic;
H and W multiples of 32) and the output `probability` float32 [N, 1, H, W].
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from client.contract import BANDS

INPUT_NAME = "reflectance"
OUTPUT_NAME = "probability"
OPSET = 17
TILE_SIZE = 256
PARITY_TOL = 1e-4


class ExportError(RuntimeError):
    pass


def _to_uint16_input(model: onnx.ModelProto) -> onnx.ModelProto:
    """Make the graph input uint16: new input + Cast(to=FLOAT) feeding the old consumers."""
    g = model.graph
    old = next(i for i in g.input if i.name == INPUT_NAME)
    cast_out = INPUT_NAME + "_float"
    for node in g.node:
        node.input[:] = [cast_out if n == INPUT_NAME else n for n in node.input]
    old.type.tensor_type.elem_type = TensorProto.UINT16
    g.node.insert(0, helper.make_node("Cast", [INPUT_NAME], [cast_out], to=TensorProto.FLOAT, name="uint16_to_float"))
    return model


def export_onnx(model: torch.nn.Module, onnx_path: str | Path, tile: int = TILE_SIZE) -> Path:
    """Trace `model` (raw reflectance -> logits) with the sigmoid folded in; write a uint16-input ONNX."""
    from training.model import ProbabilityModel

    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    wrapped = ProbabilityModel(model.cpu().eval()).eval()
    dummy = torch.full((1, len(BANDS), tile, tile), 2000.0)
    tmp = onnx_path.with_suffix(".f32.onnx")
    torch.onnx.export(
        wrapped, (dummy,), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        opset_version=OPSET, dynamo=False, do_constant_folding=True,
        dynamic_axes={INPUT_NAME: {0: "N", 2: "H", 3: "W"}, OUTPUT_NAME: {0: "N", 2: "H", 3: "W"}},
    )
    m = _to_uint16_input(onnx.load(str(tmp)))
    m.doc_string = "methane plume probability; input B2,B3,B4,B8,B11,B12 uint16 reflectance x 10000, NCHW"
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(onnx_path))
    tmp.unlink()
    return onnx_path


def check_parity(model: torch.nn.Module, onnx_path, scenes: list[np.ndarray], tol: float = PARITY_TOL) -> float:
    """Max |onnxruntime - PyTorch| over `scenes` ((6, H, W) uint16 each); raises ExportError above tol."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    inp, out = sess.get_inputs()[0], sess.get_outputs()[0]
    if inp.name != INPUT_NAME or inp.type != "tensor(uint16)" or out.name != OUTPUT_NAME:
        raise ExportError(f"ONNX signature is {inp.name}:{inp.type} -> {out.name}:{out.type}")
    worst = 0.0
    model = model.cpu().eval()
    for x in scenes:
        x = np.ascontiguousarray(x[None].astype(np.uint16))
        got = sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        with torch.no_grad():
            ref = torch.sigmoid(model(torch.from_numpy(x.astype(np.float32)))).numpy()
        if got.shape != ref.shape or got.dtype != np.float32:
            raise ExportError(f"ONNX output {got.shape} {got.dtype}, PyTorch {ref.shape}")
        worst = max(worst, float(np.abs(got - ref).max()))
    if not worst <= tol:
        raise ExportError(f"ONNX/PyTorch parity failed: max abs diff {worst:.3g} > {tol:g}")
    return worst


def parity_scenes() -> list[np.ndarray]:
    """Real simulated scenes (test seeds) in a few sizes, one with a strong plume, one with clouds."""
    from training.simulate import simulate_scene

    return [
        simulate_scene(2_900_001, size=256, n_sources=1, q_kg_h=8000.0, wind_ms=3.0, clouds=False).data,
        simulate_scene(2_900_002, size=256, n_sources=0, clouds=True).data,
        simulate_scene(2_900_003, size=320, n_sources=2).data[:, :320, :192],
    ]


def build_metadata(ck: dict, parity: float) -> dict:
    from training.simulate import SIMULATOR_VERSION

    arch = ck["arch"]
    vm = {k: v for k, v in ck.get("val_metrics", {}).items()}
    return {
        "name": "methane_seg",
        "bands": list(BANDS),
        "input": {"name": INPUT_NAME, "dtype": "uint16", "layout": "NCHW", "shape": [-1, len(BANDS), -1, -1],
                  "scale": 10000, "nodata": 0, "multiple_of": 32},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "layout": "NCHW", "shape": [-1, 1, -1, -1],
                   "meaning": "plume probability 0..1"},
        "tile_size": TILE_SIZE,
        "threshold": float(ck.get("threshold", 0.5)),
        "architecture": f"{arch['arch']}(encoder_depth={arch.get('encoder_depth')}, "
                        f"decoder_channels={list(arch.get('decoder_channels', []))}) + log(B12/B11) channel",
        "encoder": arch["encoder_name"],
        "simulator_version": SIMULATOR_VERSION,
        "trained_scenes": int(ck.get("trained_scenes", 0)),
        "epochs": int(ck.get("epoch", 0)) + 1,
        "val_metrics": vm,
        "onnx_opset": OPSET,
        "onnx_parity_max_abs_diff": parity,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }


def export_checkpoint(checkpoint, repo_dir="model_repository", scenes=None, write_repository=True) -> dict:
    """Checkpoint -> ONNX (checked, parity-tested) -> model repository. Returns the metadata."""
    from training.model import load_checkpoint

    model, ck = load_checkpoint(checkpoint)
    repo_dir = Path(repo_dir)
    onnx_path = repo_dir / "methane_seg" / "1" / "model.onnx"
    export_onnx(model, onnx_path)
    parity = check_parity(model, onnx_path, parity_scenes() if scenes is None else scenes)
    meta = build_metadata(ck, parity)
    if write_repository:
        try:
            from export.repository import write_model_repository
        except ImportError:
            write_model_repository = None
        if write_model_repository is not None:
            write_model_repository(repo_dir, onnx_path, meta)
        else:
            (onnx_path.parent / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    else:
        (onnx_path.parent / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta
