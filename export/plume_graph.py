"""The plume output alone: a graph that computes `probability` without the source branch.

A model with a source branch (training/source.py) computes both outputs in one graph, and
onnxruntime runs every node of a graph whatever outputs are fetched. Most tiles of a scene hold
no plume, and the heat map is only read near plumes (core.plumes.heat_sources), so the client
asks for the probability alone on every tile and for the heat map only near plume pixels
(client.segmenter); the CPU instances' Python backend runs this graph for the first kind of
request and the whole graph for the second.

The exporter joins the outputs as Slice(Sigmoid(Concat(plume logits, source logits))): the
plume-only graph is Sigmoid(plume logits) with everything that only the source needed dropped,
and `plume_only` checks on a batch of tiles that its probability is the whole graph's to the bit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from core.contract import PROBABILITY_OUTPUT


class NotSeparable(ValueError):
    """The graph's probability cannot be computed without its other outputs' nodes."""


def _constant_values(graph) -> dict:
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _plume_logits(graph, output: str) -> str | None:
    """The tensor whose sigmoid is `output` when `output` = Slice(Sigmoid(Concat(a, ...)), channel
    0 to 1) and a is one channel, else None."""
    producer = {o: n for n in graph.node for o in n.output}
    node = producer.get(output)
    if node is None or node.op_type != "Slice" or len(node.input) < 3:
        return None
    sigmoid = producer.get(node.input[0])
    if sigmoid is None or sigmoid.op_type != "Sigmoid":
        return None
    concat = producer.get(sigmoid.input[0])
    if concat is None or concat.op_type != "Concat":
        return None
    axis = next((a.i for a in concat.attribute if a.name == "axis"), None)
    consts = _constant_values(graph)
    try:
        starts, ends = (np.atleast_1d(consts[name]).tolist() for name in node.input[1:3])
        axes = np.atleast_1d(consts[node.input[3]]).tolist() if len(node.input) > 3 and node.input[3] else [0]
    except KeyError:
        return None
    if axis != 1 or axes != [1] or starts != [0] or ends != [1]:
        return None
    return concat.input[0]  # one channel: checked numerically by plume_only


def plume_only(model, output: str = PROBABILITY_OUTPUT, check_batch: int = 2):
    """A copy of `model` (onnx.ModelProto) that computes `output` alone. Raises NotSeparable when
    the graph gives no smaller one, or when the smaller one's `output` differs from the whole
    graph's on `check_batch` random tiles."""
    import onnx
    import onnx.utils
    from onnx import helper

    graph = model.graph
    outputs = {o.name: o for o in graph.output}
    if output not in outputs:
        raise NotSeparable(f"the graph has no output {output!r} (it has {sorted(outputs)})")
    if len(outputs) < 2:
        raise NotSeparable(f"the graph has one output ({output}): nothing to drop")
    inputs = [i.name for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    logits = _plume_logits(graph, output)
    if logits is None:
        sub = onnx.utils.Extractor(model).extract_model(inputs, [output])
    else:
        sub = onnx.utils.Extractor(model).extract_model(inputs, [logits])
        sub.graph.node.append(helper.make_node("Sigmoid", [logits], [output], name="/plume_only/Sigmoid"))
        del sub.graph.output[:]
        sub.graph.output.append(outputs[output])
    if len(sub.graph.node) >= len(graph.node) - 1:
        raise NotSeparable(f"{output} depends on (nearly) every node of the graph: nothing to drop")
    onnx.checker.check_model(sub)
    _check_same(model, sub, output, check_batch)
    return sub


def _check_same(model, sub, output: str, batch: int) -> None:
    import onnxruntime as ort

    def session(m):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        return ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])

    whole, part = session(model), session(sub)
    spec = whole.get_inputs()[0]
    shape = [batch if i == 0 else (d if isinstance(d, int) and d > 0 else 64) for i, d in enumerate(spec.shape)]
    rng = np.random.default_rng(0)
    dtype = np.uint16 if "uint16" in spec.type else np.float32
    x = rng.integers(200, 4000, size=shape).astype(dtype)  # reflectance x 10000: land-like values
    want = whole.run([output], {spec.name: x})[0]
    got = part.run([output], {spec.name: x})[0]
    if want.shape != got.shape or not np.array_equal(want, got):
        diff = float(np.max(np.abs(want - got))) if want.shape == got.shape else float("nan")
        raise NotSeparable(f"the plume-only graph's {output} differs from the whole graph's (max {diff:g})")


def plume_only_name(onnx_file: str) -> str:
    """model_int8.onnx -> model_int8_plume.onnx"""
    stem = onnx_file[:-5] if onnx_file.endswith(".onnx") else onnx_file
    return f"{stem}_plume.onnx"


def plume_only_beside(src: Path) -> Path | None:
    """Write the plume-only graph of the ONNX file `src` beside it (`plume_only_name`); None, with
    the reason on stderr, when there is none (every request then runs the whole graph)."""
    try:
        return write_plume_only(src, src.with_name(plume_only_name(src.name)))
    except Exception as exc:  # NotSeparable, or a file onnx cannot read
        reason = str(exc) if isinstance(exc, NotSeparable) else f"{type(exc).__name__}: {exc}"
        print(f"methane-seg: no plume-only graph for {src.name}, every request runs the whole graph ({reason})",
              file=sys.stderr)
        return None


def write_plume_only(src: Path, dst: Path) -> Path:
    """Write the plume-only graph of the ONNX file `src` to `dst` (NotSeparable: nothing written)."""
    import onnx

    sub = plume_only(onnx.load(str(src)))
    tmp = dst.with_suffix(dst.suffix + ".tmp")
    onnx.save(sub, str(tmp))
    tmp.replace(dst)
    return dst
