"""The source branch (training/source.py): BatchNorm folding, rebuilding a network from its ONNX
file, and train-source -> export with a second output whose plume output is the base's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.model import PlumeNet, SourcePlumeNet, fuse_batchnorm

ARCH = {"arch": "Unet", "encoder_name": "resnet18", "encoder_depth": 3, "decoder_channels": [8, 8, 8]}


def _random_net(seed=0) -> PlumeNet:
    """A PlumeNet with random weights and random BatchNorm statistics (as after training)."""
    torch.manual_seed(seed)
    net = PlumeNet(ARCH, torch.rand(10) * 0.1, 0.5 + torch.rand(10), "ratio")
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


def _x(h=64, w=64, seed=1):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(500, 4000, (2, 6, h, w)).astype(np.float32))


def test_folding_batchnorm_keeps_the_function_in_train_and_eval_mode():
    net = _random_net()
    with torch.no_grad():
        ref = net(_x())
        import copy

        fused = copy.deepcopy(net)
        fuse_batchnorm(fused.net)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
        np.testing.assert_allclose(fused.eval()(_x()).numpy(), ref.numpy(), atol=1e-4)
        np.testing.assert_allclose(fused.train()(_x()).numpy(), ref.numpy(), atol=1e-4)


def test_source_net_starts_with_the_base_plume_output_and_a_low_heat_map():
    net = _random_net()
    source = SourcePlumeNet.from_plumenet(net).eval()
    with torch.no_grad():
        ref, out = net(_x()), source(_x())
    assert out.shape == (2, 2, 64, 64)
    np.testing.assert_allclose(out[:, :1].numpy(), ref.numpy(), atol=1e-4)
    assert float(torch.sigmoid(out[:, 1]).mean()) < 0.05
    # its state dict loads into a fresh one (load_checkpoint's path)
    again = SourcePlumeNet(net.arch, net.mean.flatten(), net.std.flatten(), net.feature_set)
    again.load_state_dict(source.state_dict())
    with torch.no_grad():
        np.testing.assert_array_equal(again.eval()(_x()).numpy(), out.numpy())


def test_a_network_is_rebuilt_from_its_onnx_file(tmp_path):
    from export.onnx_export import export_onnx
    from export.onnx_import import module_path, plumenet_from_onnx

    assert module_path("/model/net/encoder/layer1/layer1.0/conv1/Conv") == "encoder.layer1.0.conv1"
    assert module_path("/model/net/decoder/blocks.0/conv2/conv2.0/Conv") == "decoder.blocks.0.conv2.0"
    net = _random_net(3)
    path = export_onnx(net, tmp_path / "model.onnx")
    meta = {"architecture": "Unet(encoder_depth=3, decoder_channels=[8, 8, 8]) + log(B12/B11) channels",
            "encoder": "resnet18", "features": "ratio"}
    rebuilt, _ = plumenet_from_onnx(path, meta)
    with torch.no_grad():
        np.testing.assert_allclose(rebuilt(_x()).numpy(), net(_x()).numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="architecture"):
        plumenet_from_onnx(path, dict(meta, architecture="FPN of some kind"))


@pytest.mark.slow
def test_train_source_then_export_serves_two_outputs(tmp_path, capsys):
    """train -> export -> import-onnx -> train-source on the rebuilt network -> export: the new graph has `probability`
    (the base's, unchanged) and `source`, in the metadata and in all three Triton configurations."""
    import onnxruntime as ort
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from methane_seg.cli import main
    from core.contract import read_scene
    from export.onnx_export import export_checkpoint
    from training.cli import simulate_main, train_main

    data = tmp_path / "data"
    assert simulate_main(["--out", str(data / "train"), "--n", "6", "--size", "64", "--workers", "1"]) == 0
    assert simulate_main(["--out", str(data / "val"), "--n", "3", "--size", "64", "--split", "val", "--workers", "1"]) == 0
    assert train_main(["--data", str(data), "--out", str(tmp_path / "base"), "--epochs", "1", "--steps-per-epoch",
                       "2", "--batch-size", "2", "--crop", "64", "--device", "cpu", "--features", "regress"]) == 0
    scenes = [read_scene(p).data for p in sorted((data / "val").glob("s*[0-9].tif"))]
    base_repo = tmp_path / "base_repo"
    export_checkpoint(tmp_path / "base" / "best.pt", base_repo, scenes=scenes, fp16_scenes=2)
    base_onnx = base_repo / "methane_seg" / "1" / "model.onnx"
    # train-source takes checkpoints: the exported network is rebuilt as one (export/onnx_import.py)
    base_pt = tmp_path / "base_from_onnx.pt"
    assert main(["import-onnx", str(base_onnx), "--out", str(base_pt)]) == 0
    with pytest.raises(SystemExit) as stop:
        main(["train-source", "--base", str(base_onnx), "--data", str(data), "--out", str(tmp_path / "no")])
    assert stop.value.code == 2 and "import-onnx" in capsys.readouterr().err

    # the imported network trained on (train --init) keeps its folded BatchNorm: train-source loads it
    on = tmp_path / "continued"
    assert main(["train", "--data", str(data), "--out", str(on), "--init", str(base_pt), "--epochs", "1",
                 "--steps-per-epoch", "1", "--batch-size", "2", "--crop", "64"]) == 0
    assert main(["train-source", "--base", str(on / "best.pt"), "--data", str(data), "--out", str(tmp_path / "s0"),
                 "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2", "--crop", "64",
                 "--visible-drop", "0"]) == 0

    run = tmp_path / "source"
    assert main(["train-source", "--base", str(base_pt), "--data", str(data), "--out", str(run), "--epochs", "1",
                 "--steps-per-epoch", "2", "--batch-size", "2", "--crop", "64", "--visible-drop", "0"]) == 0
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert {"source_recall", "false_peaks_per_scene", "val_sources"} <= set(history[0])
    # continuing from that run's checkpoint (--init): same base, the branch's weights as the start
    again = tmp_path / "source2"
    assert main(["train-source", "--base", str(base_pt), "--data", str(data), "--out", str(again), "--epochs", "1",
                 "--steps-per-epoch", "1", "--batch-size", "2", "--crop", "64", "--visible-drop", "0",
                 "--init", str(run / "last.pt")]) == 0
    import torch

    continued = torch.load(again / "last.pt", map_location="cpu", weights_only=False)["source"]
    assert continued["epochs"] == 2 and [c["epochs"] for c in continued["schedule"]] == [1, 1]
    # a checkpoint whose plume network is not this base's is refused
    other = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    key = next(k for k in other["model"] if k.startswith("net.") and other["model"][k].is_floating_point())
    other["model"][key] = other["model"][key] + 1.0
    torch.save(other, tmp_path / "other.pt")
    with pytest.raises(SystemExit) as stop:
        main(["train-source", "--base", str(base_pt), "--data", str(data), "--out", str(again), "--epochs", "1",
              "--init", str(tmp_path / "other.pt")])
    assert stop.value.code == 2 and "another base network" in capsys.readouterr().err
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as stop:
        main(["train-source", "--base", str(base_pt), "--data", str(data), "--out", str(again), "--epochs", "1",
              "--init", str(tmp_path / "bad.pt")])
    assert stop.value.code == 2

    repo = tmp_path / "repo"
    meta = export_checkpoint(run / "best.pt", repo, scenes=scenes, fp16_scenes=2)
    assert [o["name"] for o in meta["outputs"]] == ["probability", "source"]
    assert meta["source"]["sigma"] == 1.5 and "source_max_abs_diff" in meta["fp16"]
    version = repo / "methane_seg" / "1"
    assert (version / "model_plume.onnx").is_file()  # the plume-only twin that CPU instances run
    x = scenes[0][None]
    base = ort.InferenceSession(str(base_onnx), providers=["CPUExecutionProvider"]).run(None, {"reflectance": x})
    for name in ("model.onnx", "model_fp16.onnx"):
        sess = ort.InferenceSession(str(version / name), providers=["CPUExecutionProvider"])
        assert [o.name for o in sess.get_outputs()] == ["probability", "source"]
        prob, heat = sess.run(None, {"reflectance": x})
        assert prob.shape == heat.shape == (1, 1, 64, 64) and 0 <= heat.min() and heat.max() <= 1
        if name == "model.onnx":  # the frozen base: the plume output is what it was
            np.testing.assert_allclose(prob, base[0], atol=1e-4)
    configs = [version.parent / "config.pbtxt", *sorted((version.parent / "configs").glob("*.pbtxt"))]
    assert len(configs) == 4
    for path in configs:
        config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        assert [o.name for o in config.output] == ["probability", "source"], path
        assert all(list(o.dims) == [1, 256, 256] for o in config.output)


def test_train_source_refuses_a_missing_or_wrong_base(tmp_path, capsys):
    from methane_seg.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train-source", "--base", str(tmp_path / "none.onnx"), "--data", str(tmp_path), "--out", str(tmp_path)])
    assert e.value.code == 2 and "cannot load the base network" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["train-source", "--base", str(tmp_path / "x.pt"), "--data", str(tmp_path), "--out", str(tmp_path),
              "--source-frac", "0.8", "--plume-frac", "0.5"])
    assert e.value.code == 2 and "add up to at most 1" in capsys.readouterr().err
