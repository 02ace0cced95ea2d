"""The committed model repository: configs parse against Triton's schema and match the ONNX graph."""

import json

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from core.contract import ALL_BANDS, BANDS
from core.model_files import versions
from export.repository import render_cpu_config, write_model_repository
from tests.conftest import MODEL_REPOSITORY

ORT_TYPES = {"tensor(uint16)": model_config_pb2.TYPE_UINT16, "tensor(float)": model_config_pb2.TYPE_FP32}


def parse_config(path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def model_dirs():
    return sorted(p.parent for p in MODEL_REPOSITORY.glob("*/config.pbtxt"))


# Each served model, its input bands and its outputs: the single-pass network with its source heat map,
# the multi-pass one (target + reference pass) with its probability.
SERVED = {"methane_seg": (BANDS, ["probability", "source"]), "methane_seg_multipass": (ALL_BANDS, ["probability"])}


def test_repository_has_both_segmenters():
    assert [d.name for d in model_dirs()] == sorted(SERVED)


@pytest.mark.parametrize("model_dir", model_dirs(), ids=lambda p: p.name)
def test_config_matches_onnx_graph(model_dir):
    config = parse_config(model_dir / "config.pbtxt")
    assert config.name == model_dir.name
    assert config.backend == "python"
    assert config.max_batch_size > 1
    # The CPU layout that `make bench` measured best: 2 single-thread instances, no batcher.
    assert not config.HasField("dynamic_batching")
    assert [g.count for g in config.instance_group] == [2] and config.parameters["intra_op_threads"].string_value == "1"
    assert all(g.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU for g in config.instance_group)
    threshold = float(config.parameters["threshold"].string_value)
    assert 0.0 < threshold < 1.0

    versions = sorted(p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    assert versions, "no version folder"
    latest = versions[-1]
    assert (latest / "model.py").is_file()
    metadata = json.loads((latest / "metadata.json").read_text())
    bands, outputs = SERVED[model_dir.name]
    assert metadata["bands"] == list(bands)
    assert float(metadata["threshold"]) == pytest.approx(threshold)

    session = ort.InferenceSession(str(latest / "model.onnx"), providers=["CPUExecutionProvider"])
    (inp,), outs = session.get_inputs(), session.get_outputs()
    (cin,) = config.input
    # probability first; the single-pass model also has its source heat map (training/source.py)
    assert [o.name for o in outs] == [o.name for o in config.output] == outputs
    assert inp.name == cin.name and ORT_TYPES[inp.type] == cin.data_type
    assert all(ORT_TYPES[o.type] == c.data_type for o, c in zip(outs, config.output))
    assert inp.shape[1] == len(bands) == cin.dims[0]
    assert not isinstance(inp.shape[0], int), "the batch axis must be dynamic"
    tile = int(metadata["tile_size"])
    assert list(cin.dims) == [len(bands), tile, tile]
    assert all(list(c.dims) == [1, tile, tile] for c in config.output)
    # One tile through onnxruntime gives maps of the configured shape.
    x = np.full((2, len(bands), tile, tile), 1500, np.uint16)
    for out in session.run(None, {inp.name: x}):
        assert out.shape == (2, 1, tile, tile) and out.dtype == np.float32
        assert np.all((out >= 0) & (out <= 1))


def test_writer_renders_a_parsable_config(tmp_path):
    meta = {"bands": list(BANDS), "input": {"name": "reflectance"}, "output": {"name": "probability"},
            "tile_size": 256, "threshold": 0.42}
    config = text_format.Parse(render_cpu_config(meta, max_batch_size=8, instances=2, threads=1),
                               model_config_pb2.ModelConfig())
    assert config.max_batch_size == 8 and config.instance_group[0].count == 2
    assert config.parameters["threshold"].string_value == "0.42"
    assert list(config.input[0].dims) == [6, 256, 256]

    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"not really onnx")
    model_dir = write_model_repository(tmp_path / "repo", onnx_file, meta)
    assert {p.name for p in (model_dir / "1").iterdir()} == {"model.onnx", "model.py", "metadata.json"}
    assert parse_config(model_dir / "config.pbtxt").name == "methane_seg"


META = {"bands": list(BANDS), "input": {"name": "reflectance"}, "output": {"name": "probability"},
        "tile_size": 256, "threshold": 0.42}


@pytest.mark.parametrize("target", ["cpu", "onnxruntime", "tensorrt"])
@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_every_target_renders_a_valid_config(target, kind):
    from export.repository import render_config

    config = text_format.Parse(render_config(META, target, kind=kind), model_config_pb2.ModelConfig())
    assert config.max_batch_size == 16
    # Dynamic batching where a batch is cheaper per tile (GPUs), not on CPU instances.
    assert config.HasField("dynamic_batching") == (kind == "gpu")
    if kind == "gpu":
        assert config.dynamic_batching.max_queue_delay_microseconds > 0
    assert config.instance_group[0].count == (2 if kind == "cpu" else 1)
    assert config.version_policy.latest.num_versions == 1
    assert config.model_warmup[0].inputs["reflectance"].zero_data
    assert list(config.input[0].dims) == [6, 256, 256] and config.input[0].data_type == model_config_pb2.TYPE_UINT16
    expected_kind = model_config_pb2.ModelInstanceGroup.KIND_CPU if kind == "cpu" else model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert config.instance_group[0].kind == expected_kind
    if target == "cpu":
        assert config.backend == "python"
    elif target == "onnxruntime":
        assert config.backend == "onnxruntime" and config.default_model_filename == "model.onnx"
        accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
        assert (len(accelerators) == 1 and accelerators[0].name == "tensorrt") if kind == "gpu" else not accelerators
    else:
        assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"


def test_layout_options_override_the_defaults():
    from export.repository import render_config

    config = text_format.Parse(render_config(META, "cpu", instances=1, threads=2, batching=True, queue_delay_us=500),
                               model_config_pb2.ModelConfig())
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.instance_group[0].count == 1 and config.parameters["intra_op_threads"].string_value == "2"


def test_repository_command_lays_out_targets_and_versions(tmp_path, capsys):
    from methane_seg.cli import main

    source = sorted((MODEL_REPOSITORY / "methane_seg").glob("[0-9]*"))[-1]
    out = tmp_path / "repo"
    assert main(["repository", "--target", "onnxruntime", "--from", str(source), "--out", str(out)]) == 0
    assert (out / "methane_seg" / "1" / "model.onnx").is_file()
    assert not (out / "methane_seg" / "1" / "model.py").exists()
    assert main(["repository", "--target", "cpu", "--from", str(source), "--out", str(out), "--new-version"]) == 0
    assert [str(v) for v in versions(out / "methane_seg")] == ["1", "2"]
    config = parse_config(out / "methane_seg" / "config.pbtxt")
    assert config.backend == "python"
    # the cpu target writes the served graph's plume-only twin and names it
    plume_file = config.parameters["plume_onnx_file"].string_value
    assert plume_file == "model_int8_plume.onnx" and (out / "methane_seg" / "2" / plume_file).is_file()
    assert json.loads((out / "methane_seg" / "2" / "metadata.json").read_text())["cpu_plume_onnx_file"] == plume_file
    assert main(["repository", "--target", "tensorrt", "--from", str(source), "--out", str(out)]) == 2
    assert "needs a plan" in capsys.readouterr().err


@pytest.mark.parametrize("model_dir", model_dirs(), ids=lambda p: p.name)
def test_container_configs_match_the_default(model_dir):
    """configs/NAME.pbtxt (for `tritonserver --model-config-name=NAME` in NVIDIA's container)."""
    default = parse_config(model_dir / "config.pbtxt")
    names = sorted(p.stem for p in (model_dir / "configs").glob("*.pbtxt"))
    assert names == ["onnxruntime_cpu", "onnxruntime_gpu", "tensorrt"]
    for name in names:
        config = parse_config(model_dir / "configs" / f"{name}.pbtxt")
        assert config.name == default.name and config.max_batch_size == default.max_batch_size
        assert config.input == default.input and config.output == default.output
        assert config.parameters["threshold"] == default.parameters["threshold"]
        kind = config.instance_group[0].kind
        assert kind == (model_config_pb2.ModelInstanceGroup.KIND_CPU if name.endswith("cpu")
                        else model_config_pb2.ModelInstanceGroup.KIND_GPU)


def test_plume_only_graph_gives_the_whole_graphs_probability_to_the_bit():
    """The committed plume-only graph (export/plume_graph.py), which CPU instances run for requests
    that ask for the probability alone, drops the source branch and computes the same probability."""
    import onnx

    from training.simulate import simulate_scene

    model_dir = MODEL_REPOSITORY / "methane_seg"
    latest = model_dir / str(versions(model_dir)[-1])
    config = parse_config(model_dir / "config.pbtxt")
    whole_file = latest / config.parameters["onnx_file"].string_value
    plume_file = latest / config.parameters["plume_onnx_file"].string_value
    whole, plume = (ort.InferenceSession(str(f), providers=["CPUExecutionProvider"]) for f in (whole_file, plume_file))
    assert [o.name for o in plume.get_outputs()] == ["probability"]
    assert len(onnx.load(str(plume_file)).graph.node) < len(onnx.load(str(whole_file)).graph.node) - 20
    x = np.stack([simulate_scene(seed=s, size=256, n_sources=1, q_kg_h=30000.0, clouds=False).data for s in (1, 2)])
    want = whole.run(["probability"], {"reflectance": x})[0]
    got = plume.run(None, {"reflectance": x})[0]
    assert np.array_equal(got, want) and (want >= float(config.parameters["threshold"].string_value)).any()


def test_plume_only_refuses_a_graph_with_nothing_to_drop():
    import onnx

    from export.plume_graph import NotSeparable, plume_only, plume_only_name

    assert plume_only_name("model_int8.onnx") == "model_int8_plume.onnx"
    latest = MODEL_REPOSITORY / "methane_seg" / str(versions(MODEL_REPOSITORY / "methane_seg")[-1])
    one_output = onnx.load(str(latest / "model_int8_plume.onnx"))
    with pytest.raises(NotSeparable, match="one output"):
        plume_only(one_output)
    with pytest.raises(NotSeparable, match="no output"):
        plume_only(onnx.load(str(latest / "model.onnx")), output="nonexistent")
