"""Rebuild a PyTorch plume network from an exported ONNX file (BatchNorm folded into the convs).

The exporter folds each BatchNorm into the conv before it and names every U-Net conv node after
its module (`/model/net/encoder/layer1/layer1.0/conv1/Conv`), so the weights map back one to one
onto `training.model.PlumeNet` with its BatchNorms replaced by conv biases (`add_conv_biases`).
This is how a source branch is trained onto the served plume network when only its ONNX file
(and metadata.json) is at hand: the plume output stays what is served, to the export's parity.

    methane-seg import-onnx model_repository/methane_seg/1/model.onnx --out runs/base.pt
    methane-seg train-source --base runs/base.pt ...
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

from training.model import DEFAULT_FEATURES, NET_PREFIX, PlumeNet, add_conv_biases


def arch_from_metadata(meta: dict) -> dict:
    """metadata.json's "architecture" line and "encoder" -> the arch dict of training.model."""
    m = re.match(r"(\w+)\(encoder_depth=(\d+), decoder_channels=\[([\d, ]*)\]\)", meta["architecture"])
    if not m:
        raise ValueError(f"cannot read the architecture {meta['architecture']!r}")
    return {"arch": m.group(1), "encoder_name": meta["encoder"], "encoder_depth": int(m.group(2)),
            "decoder_channels": [int(c) for c in m.group(3).split(",")]}


def module_path(node_name: str) -> str:
    """'/model/net/encoder/layer1/layer1.0/conv1/Conv' -> 'encoder.layer1.0.conv1'."""
    parts: list[str] = []
    for seg in node_name[len(NET_PREFIX):].split("/")[:-1]:
        if parts and seg.startswith(parts[-1] + "."):
            parts[-1] = seg
        else:
            parts.append(seg)
    return ".".join(parts)


def plumenet_from_onnx(onnx_path, metadata: dict | None = None) -> tuple[PlumeNet, dict]:
    """(network in eval mode with BatchNorms folded, metadata) from model.onnx and the
    metadata.json beside it (or `metadata`)."""
    import onnx
    from onnx import numpy_helper

    onnx_path = Path(onnx_path)
    meta = metadata or json.loads((onnx_path.parent / "metadata.json").read_text())
    m = onnx.load(str(onnx_path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    mean, std = inits["model.mean"].ravel(), inits["model.std"].ravel()
    net = PlumeNet(arch_from_metadata(meta), mean, std, meta.get("features", DEFAULT_FEATURES))
    add_conv_biases(net.net)
    loaded = set()
    for node in m.graph.node:
        if node.op_type != "Conv" or not node.name.startswith(NET_PREFIX):
            continue
        conv = net.net.get_submodule(module_path(node.name))
        w, b = (inits[i] for i in node.input[1:3])
        if tuple(conv.weight.shape) != w.shape:
            raise ValueError(f"{node.name}: ONNX weight {w.shape}, network {tuple(conv.weight.shape)}")
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(np.array(w)))
            conv.bias.copy_(torch.from_numpy(np.array(b)))
        loaded.add(module_path(node.name))
    convs = {n for n, mod in net.net.named_modules() if isinstance(mod, torch.nn.Conv2d)}
    used = {n for n in convs if not n.startswith(("encoder.layer3", "encoder.layer4"))}
    if missing := sorted(used - loaded):
        raise ValueError(f"the ONNX file has no weights for {missing}")
    return net.eval(), meta


def checkpoint_from_onnx(onnx_path, out_path, metadata: dict | None = None) -> dict:
    """Write the network of `onnx_path` as a checkpoint that training.model.load_checkpoint reads
    (BatchNorms folded: "batchnorm_folded"), with the threshold and metrics of its metadata."""
    net, meta = plumenet_from_onnx(onnx_path, metadata)
    ck = {"model": net.state_dict(), "arch": net.arch, "features": net.feature_set,
          "norm_mean": net.mean.flatten().tolist(), "norm_std": net.std.flatten().tolist(),
          "batchnorm_folded": True, "threshold": meta["threshold"], "val_metrics": meta.get("val_metrics", {}),
          "trained_scenes": meta.get("trained_scenes", 0), "epoch": int(meta.get("epochs", 1)) - 1,
          "imported_from": str(onnx_path)}
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(ck, out_path)
    return ck


def import_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="methane-seg import-onnx",
                                description="rebuild a PyTorch checkpoint from an exported plume network's ONNX file")
    p.add_argument("onnx", type=Path, help="model.onnx written by `methane-seg export`, metadata.json beside it")
    p.add_argument("--out", required=True, type=Path, help="checkpoint (.pt) to write")
    a = p.parse_args(argv)
    try:
        ck = checkpoint_from_onnx(a.onnx, a.out)
    except (OSError, ValueError, KeyError) as exc:
        print(f"methane-seg: error: cannot rebuild a network from {a.onnx}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {a.out} ({ck['arch']['arch']}, {ck['arch']['encoder_name']}, threshold {ck['threshold']:.2f})")
    return 0
