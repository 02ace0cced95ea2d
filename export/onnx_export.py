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
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from core.contract import ALL_BANDS, BANDS, PROBABILITY_OUTPUT, SOURCE_OUTPUT

INPUT_NAME = "reflectance"
OUTPUT_NAME = PROBABILITY_OUTPUT
OPSET = 17
TILE_SIZE = 256
PARITY_TOL = 1e-4
# The "regress" and multi-pass features fit a least-squares B12 prediction over each tile's 65 536 pixels in
# float32: summation order alone moves the probabilities by more than PARITY_TOL (onnxruntime lies
# closer to the same feature in float64 than PyTorch does), so they are held to a wider tolerance.
PARITY_TOL_BY_FEATURES = {"regress": 2e-3, "mp": 2e-3, "mp_derived": 2e-3, "mp_compact": 2e-3}


def parity_tolerance(feature_set: str) -> float:
    return PARITY_TOL_BY_FEATURES.get(feature_set, PARITY_TOL)


FEATURE_NAMES = {  # metadata's words for training.model.FEATURE_SETS
    "bands": "the six bands",
    "ratio": "log(B12/B11) channels",
    "ratio_ndvi": "log(B12/B11) and NDVI channels",
    "regress": "log(B12/B11) and multi-band regression channels",
    "mp": "target and reference bands, MBMP, multi-pass regression and band-change channels",
    "mp_derived": "target bands, MBMP, multi-pass regression and band-change channels",
    "mp_compact": "target bands, MBMP and multi-pass regression channels",
}
SINGLE_PASS_NAME, MULTIPASS_NAME = "methane_seg", "methane_seg_multipass"  # the models' names on Triton


def model_name(model: torch.nn.Module) -> str:
    """The Triton model a network is served as: the multi-pass one when it takes 12 bands."""
    return MULTIPASS_NAME if getattr(model, "bands", len(BANDS)) == len(ALL_BANDS) else SINGLE_PASS_NAME


def sim_input(sim, bands: int) -> np.ndarray:
    """A simulated scene as a network's input: the target's 6 bands, or with its reference's (12)."""
    return sim.data if bands == len(BANDS) else np.concatenate([sim.data, sim.reference])


class ExportError(RuntimeError):
    pass


def _to_uint16_input(model: onnx.ModelProto) -> onnx.ModelProto:
    """Make the graph input uint16: new input + Cast(to=FLOAT) feeding the old consumers."""
    g = model.graph
    old = next(i for i in g.input if i.name == INPUT_NAME)
    cast_out = INPUT_NAME + "__from_uint16"
    for node in g.node:
        node.input[:] = [cast_out if n == INPUT_NAME else n for n in node.input]
    old.type.tensor_type.elem_type = TensorProto.UINT16
    g.node.insert(0, helper.make_node("Cast", [INPUT_NAME], [cast_out], to=TensorProto.FLOAT, name="uint16_to_float"))
    return model


DOC = "methane plume probability; input B2,B3,B4,B8,B11,B12 uint16 reflectance x 10000, NCHW"
FLOAT_ONLY_INPUTS = {"Resize": (1, 2)}  # inputs that ONNX requires in float32 (roi, scales)


def unet_to_fp16(m: onnx.ModelProto) -> onnx.ModelProto:
    """The U-Net in float16, everything else in float32, on a copy of a simplified FP32 graph.

    The U-Net's float initializers and constants become float16; a Cast to float16 is put on each
    float tensor that enters the U-Net from the feature extraction and a Cast back to float32 on
    each one that leaves it. (onnxconverter-common's converter, used before, broke the regression
    features: even with every node on its block list, the feature path came out typed float16.)
    """
    inferred = onnx.shape_inference.infer_shapes(m)
    floats = {v.name for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
              if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    floats |= {i.name for i in m.graph.initializer if i.data_type == TensorProto.FLOAT}
    half = onnx.ModelProto()
    half.CopyFrom(m)
    g = half.graph
    from training.model import NET_PREFIX

    net = {n.name for n in g.node if n.name.startswith(NET_PREFIX)}
    producer = {o: n.name for n in g.node for o in n.output}
    users: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for n in g.node:
        for k, i in enumerate(n.input):
            users.setdefault(i, []).append((n, k))

    def only_net_math(name):  # consumed by U-Net nodes only, never as a float32-only input
        uses = users.get(name, [])
        return bool(uses) and all(u.name in net and k not in FLOAT_ONLY_INPUTS.get(u.op_type, ()) for u, k in uses)

    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT and only_net_math(init.name):
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    for n in g.node:
        if n.name in net and n.op_type == "Constant" and only_net_math(n.output[0]):
            for attr in n.attribute:
                if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                    attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16)))
    nodes, cast = [], set()  # cast: the tensors already given a Cast (one per tensor and direction)
    for n in g.node:
        inside = n.name in net
        for k, i in enumerate(n.input):
            crosses = (producer.get(i) in net) != inside if i in producer else False
            if crosses and i in floats and k not in FLOAT_ONLY_INPUTS.get(n.op_type, ()):
                suffix, to = ("_fp16", TensorProto.FLOAT16) if inside else ("_fp32", TensorProto.FLOAT)
                if i + suffix not in cast:
                    cast.add(i + suffix)
                    nodes.append(helper.make_node("Cast", [i], [i + suffix], to=to, name=i + suffix + "_cast"))
                n.input[k] = i + suffix
        nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    return half


def output_names(model: torch.nn.Module) -> list[str]:
    """The exported outputs: the probability, and the source heat map for a SourcePlumeNet."""
    from training.model import SourcePlumeNet

    return [OUTPUT_NAME, SOURCE_OUTPUT] if isinstance(model, SourcePlumeNet) else [OUTPUT_NAME]


def trace_float_onnx(model: torch.nn.Module, tile: int = TILE_SIZE) -> onnx.ModelProto:
    """Trace `model` (raw reflectance -> logits) with the sigmoid folded in; float32 input."""
    from training.model import ProbabilityModel

    wrapped = ProbabilityModel(model.cpu().eval()).eval()
    dummy = torch.full((1, getattr(model, "bands", len(BANDS)), tile, tile), 2000.0)
    names = output_names(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f32.onnx"
        torch.onnx.export(
            wrapped, (dummy,), str(path), input_names=[INPUT_NAME], output_names=names,
            opset_version=OPSET, dynamo=False, do_constant_folding=True,
            dynamic_axes={name: {0: "N", 2: "H", 3: "W"} for name in [INPUT_NAME, *names]},
        )
        return onnx.load(str(path))


def simplify(m: onnx.ModelProto) -> onnx.ModelProto:
    """onnxslim: constant folding and dead-node removal; the graph's interface is unchanged."""
    import onnxslim

    return onnxslim.slim(m)


def finish(m: onnx.ModelProto, path: Path) -> Path:
    """uint16 input in front (on a copy), checker, save."""
    copy = onnx.ModelProto()
    copy.CopyFrom(m)
    m = _to_uint16_input(copy)
    m.doc_string = DOC
    onnx.checker.check_model(m, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    onnx.save(m, str(tmp))
    tmp.replace(path)
    return path


def export_onnx(model: torch.nn.Module, onnx_path: str | Path, tile: int = TILE_SIZE,
                fp16_path: str | Path | None = None) -> Path:
    """Write the FP32 ONNX (simplified, uint16 input); with fp16_path also the FP16 variant.

    The FP16 variant converts the U-Net to float16 and keeps the feature extraction
    (log-ratio, its anomaly, the blurs, the normalisation) in float32: a 0.5 % change of
    B12/B11 is below FP16's resolution once logarithms are taken.
    """
    simplified = simplify(trace_float_onnx(model, tile))
    finish(simplified, Path(onnx_path))
    if fp16_path is not None:
        finish(unet_to_fp16(simplified), Path(fp16_path))
    return Path(onnx_path)


def check_parity(model: torch.nn.Module, onnx_path, scenes: list[np.ndarray], tol: float = PARITY_TOL) -> float:
    """Max |onnxruntime - PyTorch| over `scenes` ((6, H, W) uint16 each) and every output; raises
    ExportError above tol."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    inp, outs = sess.get_inputs()[0], [o.name for o in sess.get_outputs()]
    names = output_names(model)
    if inp.name != INPUT_NAME or inp.type != "tensor(uint16)" or outs != names:
        raise ExportError(f"ONNX signature is {inp.name}:{inp.type} -> {outs}, expected {names}")
    worst = 0.0
    model = model.cpu().eval()
    for x in scenes:
        x = np.ascontiguousarray(x[None].astype(np.uint16))
        got = np.concatenate(sess.run(names, {INPUT_NAME: x}), axis=1)
        with torch.no_grad():
            ref = torch.sigmoid(model(torch.from_numpy(x.astype(np.float32)))).numpy()
        if got.shape != ref.shape or got.dtype != np.float32:
            raise ExportError(f"ONNX output {got.shape} {got.dtype}, PyTorch {ref.shape}")
        worst = max(worst, float(np.abs(got - ref).max()))
    if not worst <= tol:
        raise ExportError(f"ONNX/PyTorch parity failed: max abs diff {worst:.3g} > {tol:g}")
    return worst


def parity_scenes(bands: int = len(BANDS)) -> list[np.ndarray]:
    """Real simulated scenes (test seeds) in a few sizes, one with a strong plume, one with clouds;
    `bands` 12 gives each with its reference pass."""
    from training.simulate import simulate_scene

    return [
        sim_input(simulate_scene(2_900_001, size=256, n_sources=1, q_kg_h=8000.0, wind_ms=3.0, clouds=False), bands),
        sim_input(simulate_scene(2_900_002, size=256, n_sources=0, clouds=True), bands),
        sim_input(simulate_scene(2_900_003, size=320, n_sources=2), bands)[:, :320, :192],
    ]


FP16_IOU_TOL = 0.01
FP16_SCENES = 24


def fp16_parity(model: torch.nn.Module, fp16_path, threshold: float, n: int = FP16_SCENES) -> dict:
    """Plume IoU against the truth of `n` simulated test scenes with plumes: PyTorch FP32 vs ONNX FP16.

    Raises ExportError when they differ by more than FP16_IOU_TOL.
    """
    import onnxruntime as ort

    from training.simulate import simulate_scene

    sess = ort.InferenceSession(str(fp16_path), providers=["CPUExecutionProvider"])
    model = model.cpu().eval()
    counts = {"fp32": [0, 0], "fp16": [0, 0]}  # intersection, union
    max_diff = source_diff = 0.0
    names = output_names(model)
    for k in range(n):
        sim = simulate_scene(2_950_000 + k, size=256, n_sources=1, q_kg_h=float(np.geomspace(1000, 20000, n)[k]))
        x = sim_input(sim, getattr(model, "bands", len(BANDS)))[None]
        truth = sim.mask.astype(bool)
        with torch.no_grad():
            both = torch.sigmoid(model(torch.from_numpy(x.astype(np.float32)))).numpy()[0]
        got = sess.run(names, {INPUT_NAME: x})
        ref, half = both[0], got[0][0, 0]
        max_diff = max(max_diff, float(np.abs(half - ref).max()))
        if len(got) > 1:
            source_diff = max(source_diff, float(np.abs(got[1][0, 0] - both[1]).max()))
        for key, prob in (("fp32", ref), ("fp16", half)):
            pred = prob >= threshold
            counts[key][0] += int((pred & truth).sum())
            counts[key][1] += int((pred | truth).sum())
    iou = {k: (i / u if u else 1.0) for k, (i, u) in counts.items()}
    report = {"scenes": n, "iou_pytorch_fp32": iou["fp32"], "iou_onnx_fp16": iou["fp16"],
              "iou_delta": abs(iou["fp16"] - iou["fp32"]), "max_abs_diff": max_diff, "tolerance": FP16_IOU_TOL}
    if len(names) > 1:
        report["source_max_abs_diff"] = source_diff
    if report["iou_delta"] > FP16_IOU_TOL:
        raise ExportError(f"FP16 parity failed: plume IoU {iou['fp16']:.4f} vs {iou['fp32']:.4f} in PyTorch "
                          f"(|delta| {report['iou_delta']:.4f} > {FP16_IOU_TOL})")
    return report


def build_metadata(ck: dict, parity: float) -> dict:
    from training.model import DEFAULT_FEATURES, input_bands
    from training.simulate import SIMULATOR_VERSION

    arch = ck["arch"]
    features = ck.get("features", DEFAULT_FEATURES)
    bands = ALL_BANDS if input_bands(features) == len(ALL_BANDS) else BANDS
    vm = {k: v for k, v in ck.get("val_metrics", {}).items()}
    meta = {
        "name": MULTIPASS_NAME if bands == ALL_BANDS else SINGLE_PASS_NAME,
        "bands": list(bands),
        "input": {"name": INPUT_NAME, "dtype": "uint16", "layout": "NCHW", "shape": [-1, len(bands), -1, -1],
                  "scale": 10000, "nodata": 0, "multiple_of": 32},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "layout": "NCHW", "shape": [-1, 1, -1, -1],
                   "meaning": "plume probability 0..1"},
        "tile_size": TILE_SIZE,
        "threshold": float(ck.get("threshold", 0.5)),
        "architecture": f"{arch['arch']}(encoder_depth={arch.get('encoder_depth')}, "
                        f"decoder_channels={list(arch.get('decoder_channels', []))}) + "
                        f"{FEATURE_NAMES.get(features, features)}",
        "features": features,
        "encoder": arch["encoder_name"],
        "simulator_version": SIMULATOR_VERSION,
        "trained_scenes": int(ck.get("trained_scenes", 0)),
        "epochs": int(ck.get("epoch", 0)) + 1,
        "val_metrics": vm,
        "onnx_opset": OPSET,
        "onnx_parity_max_abs_diff": parity,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
    if "source" in ck:  # a source branch (training/source.py): a second output
        from export.repository import MEANINGS

        meta["outputs"] = [meta["output"], {
            "name": SOURCE_OUTPUT, "dtype": "float32", "layout": "NCHW", "shape": [-1, 1, -1, -1],
            "meaning": MEANINGS[SOURCE_OUTPUT]}]
        meta["source"] = {k: ck["source"][k] for k in ("sigma", "epochs", "schedule", "val_metrics") if k in ck["source"]}
        meta["architecture"] += " + source branch (second decoder)"
    return meta


def export_checkpoint(checkpoint, repo_dir="model_repository", scenes=None, write_repository=True,
                      fp16: bool = True, fp16_scenes: int = FP16_SCENES) -> dict:
    """Checkpoint -> ONNX FP32 and FP16 (checked, simplified, parity-tested) -> model repository.

    Returns the metadata (which carries both parity reports).
    """
    from training.model import load_checkpoint

    model, ck = load_checkpoint(checkpoint)
    repo_dir = Path(repo_dir)
    name = model_name(model)
    onnx_path = repo_dir / name / "1" / "model.onnx"
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    # Written and checked in a scratch folder beside, moved into place only when the checks hold:
    # a failed export leaves the repository as it was.
    with tempfile.TemporaryDirectory(dir=onnx_path.parent, prefix=".export-") as tmp:
        tmp_onnx = Path(tmp) / onnx_path.name
        tmp_fp16 = Path(tmp) / "model_fp16.onnx" if fp16 else None
        export_onnx(model, tmp_onnx, fp16_path=tmp_fp16)
        parity = check_parity(model, tmp_onnx, parity_scenes(model.bands) if scenes is None else scenes,
                              tol=parity_tolerance(model.feature_set))
        meta = build_metadata(ck, parity)
        if tmp_fp16 is not None:
            meta["fp16"] = {"file": tmp_fp16.name, **fp16_parity(model, tmp_fp16, meta["threshold"], fp16_scenes)}
        for f in (tmp_onnx, tmp_fp16):
            if f is not None:
                shutil.move(str(f), onnx_path.parent / f.name)
    if write_repository:
        try:
            from export.repository import write_model_repository
        except ImportError:
            write_model_repository = None
        if write_model_repository is not None:
            write_model_repository(repo_dir, onnx_path, meta, name=name)
        else:
            (onnx_path.parent / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    else:
        (onnx_path.parent / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta
