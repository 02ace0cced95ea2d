"""Lay out a Triton model repository for an exported segmenter, for one serving target.

One folder per model, `config.pbtxt` beside numbered version folders, as in
Triton's tutorials:

    model_repository/
      methane_seg/
        config.pbtxt
        1/model.onnx      the exported graph (uint16 reflectance in, probability out)
        1/model.py        Python-backend model running onnxruntime (`cpu` target only)
        1/*_plume.onnx    the served graph without its source branch (`cpu` target, models with
                          a source heat map): runs requests that ask for the probability alone
        1/metadata.json   bands, tile size, threshold, metrics
        2/...             a newer version; version_policy says which are served
        configs/          the same model for NVIDIA's container, chosen with
                          `tritonserver --model-config-name=NAME`: onnxruntime_gpu,
                          onnxruntime_cpu, tensorrt (needs 1/model.plan)

Targets:
- `cpu`: the Python backend running the onnxruntime package. The only backend
  that the pip-installed server (nvidia-pytriton) carries; `make run` uses it.
- `onnxruntime`: Triton's native onnxruntime backend in NVIDIA's container, on
  GPU (KIND_GPU) with the TensorRT execution accelerator (FP16, engine cache),
  or on CPU with `--kind cpu`.
- `tensorrt`: a TensorRT plan (`model.plan`, built by `methane-seg export --trt`
  with the server's own TensorRT version) on the native tensorrt_plan backend.

    methane-seg repository --target onnxruntime --out model_repository_gpu \
        [--from model_repository/methane_seg/1] [--new-version]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from core.contract import PROBABILITY_OUTPUT, SOURCE_OUTPUT
from core.model_files import served_onnx_name, versions  # noqa: F401 (versions: this module's API too)

MODEL_NAME = "methane_seg"
TEMPLATES = Path(__file__).parent / "templates"
TARGETS = ("cpu", "onnxruntime", "tensorrt")

# Dynamic batching: on a GPU a batch is cheaper per tile, so a wait that fills preferred batch
# sizes pays for itself. On CPU a batch costs the same per tile, so the batcher can only add its
# queue delay: `make bench` compares the layouts (perf/RESULTS.md), and 2 instances x 1 thread
# without batching gives the higher throughput and the lower latency alike, so CPU instances ship
# without the batcher; the delay below applies where batching is on.
QUEUE_DELAY_US = {"cpu": 2000, "onnxruntime": 5000, "tensorrt": 5000}
LAYOUT = {  # kind -> (instances, onnxruntime threads per instance, dynamic batching)
    "cpu": (2, 1, False),
    "gpu": (1, 1, True),
}

HEADER = """\
# {name}: plume probability for fixed-size tiles of Sentinel-2 L1C reflectance ({target} target).
# Written by export/repository.py from metadata.json; change the exporter, not this file.
name: "{name}"
{backend_line}
max_batch_size: {max_batch_size}

input [
  {{
    name: "{input_name}"          # B2, B3, B4, B8, B11, B12 as uint16 = reflectance x 10000
    data_type: TYPE_UINT16
    dims: [ {bands}, {tile}, {tile} ]
  }}
]
output [
{outputs}
]

# Serve the newest version only; adding version N+1 and reloading swaps it in.
version_policy: {{ latest: {{ num_versions: 1 }} }}

{batching}instance_group [
  {{
    count: {instances}
    kind: {kind}
  }}
]

# One warm-up run before the model reports ready.
model_warmup [
  {{
    name: "zeros_batch_1"
    batch_size: 1
    inputs {{
      key: "{input_name}"
      value: {{ data_type: TYPE_UINT16 dims: [ {bands}, {tile}, {tile} ] zero_data: true }}
    }}
  }}
]
"""

TRT_ACCELERATOR = """
# TensorRT execution accelerator inside onnxruntime: FP16 engines, cached across restarts.
optimization {{
  execution_accelerators {{
    gpu_execution_accelerator : [ {{
      name : "tensorrt"
      parameters {{ key: "precision_mode" value: "{precision}" }}
      parameters {{ key: "max_workspace_size_bytes" value: "2147483648" }}
      parameters {{ key: "trt_engine_cache_enable" value: "1" }}
      parameters {{ key: "trt_engine_cache_path" value: "/tmp/trt_cache" }}
    }} ]
  }}
}}
"""

BATCHING = """# Requests of the same tile shape are merged into one run (max_queue_delay_microseconds:
# how long the first request may wait for others).
dynamic_batching {{
{preferred}  max_queue_delay_microseconds: {queue_delay_us}
}}

"""
NO_BATCHING = """# No dynamic batching on CPU instances: a batch costs the same per tile there, and two
# single-thread instances each running one request beat one batching instance (perf/RESULTS.md).
# A client still sends several tiles per request (max_batch_size).

"""

OUTPUT = """\
  {{
    name: "{name}"{pad}# {meaning}
    data_type: TYPE_FP32
    dims: [ 1, {tile}, {tile} ]
  }}"""
MEANINGS = {PROBABILITY_OUTPUT: "plume probability 0..1",
            SOURCE_OUTPUT: "plume-source heat map 0..1 (peaks at the sources)"}


def model_outputs(metadata: dict) -> list[dict]:
    """The model's output tensors, probability first: metadata "outputs" (models with a source
    branch), else the one "output"."""
    return list(metadata.get("outputs") or [metadata["output"]])


PARAMETER = 'parameters: {{ key: "{key}" value: {{ string_value: "{value}" }} }}\n'


def render_config(
    metadata: dict,
    target: str = "cpu",
    *,
    name: str = MODEL_NAME,
    max_batch_size: int = 16,
    queue_delay_us: int | None = None,
    instances: int | None = None,
    threads: int | None = None,
    batching: bool | None = None,
    kind: str | None = None,
    trt_precision: str = "FP16",
) -> str:
    """config.pbtxt text; instances, threads and batching default to LAYOUT[kind]."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
    kind = kind or ("cpu" if target == "cpu" else "gpu")
    default_instances, default_threads, default_batching = LAYOUT[kind]
    instances = default_instances if instances is None else instances
    threads = default_threads if threads is None else threads
    batching = default_batching if batching is None else batching
    # On CPU instances the INT8 variant is served where export/int8.py found that it holds its gates
    # (metadata "cpu_onnx_file"); GPU instances run the FP32 graph (TensorRT FP16 inside).
    onnx_file = served_onnx_name(metadata, kind)
    backend_line = {
        "cpu": 'backend: "python"',
        "onnxruntime": f'backend: "onnxruntime"\ndefault_model_filename: "{onnx_file}"',
        "tensorrt": 'platform: "tensorrt_plan"\ndefault_model_filename: "model.plan"',
    }[target]
    preferred = "" if target == "cpu" else f"  preferred_batch_size: [ {max_batch_size // 2}, {max_batch_size} ]\n"
    text = HEADER.format(
        name=name,
        target=target,
        backend_line=backend_line,
        max_batch_size=max_batch_size,
        input_name=metadata["input"]["name"],
        outputs=",\n".join(OUTPUT.format(name=o["name"], pad=" " * max(1, 20 - len(o["name"])),
                                          meaning=o.get("meaning") or MEANINGS.get(o["name"], o["name"]),
                                          tile=int(metadata["tile_size"])) for o in model_outputs(metadata)),
        bands=len(metadata["bands"]),
        tile=int(metadata["tile_size"]),
        batching=BATCHING.format(
            preferred=preferred,
            queue_delay_us=QUEUE_DELAY_US[target] if queue_delay_us is None else queue_delay_us,
        ) if batching else NO_BATCHING,
        instances=instances,
        kind="KIND_CPU" if kind == "cpu" else "KIND_GPU",
    )
    if target == "onnxruntime" and kind == "gpu":
        text += TRT_ACCELERATOR.format(precision=trt_precision)
    text += "\n" + PARAMETER.format(key="threshold", value=float(metadata["threshold"]))
    text += PARAMETER.format(key="tile_size", value=int(metadata["tile_size"]))
    if target == "cpu":
        text += PARAMETER.format(key="intra_op_threads", value=threads)
        text += PARAMETER.format(key="onnx_file", value=onnx_file)
        if metadata.get("cpu_plume_onnx_file"):  # requests for the probability alone run this graph
            text += PARAMETER.format(key="plume_onnx_file", value=metadata["cpu_plume_onnx_file"])
    return text


def render_cpu_config(metadata: dict, **options) -> str:
    return render_config(metadata, "cpu", **options)


# Alternative configurations beside the default one, for NVIDIA's container:
# `tritonserver --model-config-name=NAME` loads `<model>/configs/NAME.pbtxt`.
CONTAINER_CONFIGS = {
    "onnxruntime_gpu": {"target": "onnxruntime", "kind": "gpu"},
    "onnxruntime_cpu": {"target": "onnxruntime", "kind": "cpu"},
    "tensorrt": {"target": "tensorrt", "kind": "gpu"},
}


def write_model_repository(
    repo_dir: str | Path,
    onnx_path: str | Path | None,
    metadata: dict,
    *,
    name: str = MODEL_NAME,
    version: int | None = 1,
    target: str = "cpu",
    plan_path: str | Path | None = None,
    **config_options,
) -> Path:
    """Write `repo_dir/name/`: config.pbtxt and a version folder with the model files.

    version=None adds a new version after the highest one present. Returns the
    version folder's parent (the model folder).
    """
    model_dir = Path(repo_dir) / name
    if version is None:
        version = (versions(model_dir) or [0])[-1] + 1
    version_dir = model_dir / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    if target == "tensorrt":
        if plan_path is None or not Path(plan_path).is_file():
            raise FileNotFoundError("the tensorrt target needs a plan: build it with `methane-seg export --trt`")
        shutil.copyfile(plan_path, version_dir / "model.plan")
    else:
        _copy(Path(onnx_path), version_dir / "model.onnx")
        for variant in ("model_fp16.onnx", "model_int8.onnx"):
            path = Path(onnx_path).with_name(variant)
            if path.is_file():
                _copy(path, version_dir / variant)
    if target == "cpu":
        shutil.copyfile(TEMPLATES / "model.py", version_dir / "model.py")
        metadata = _with_plume_only_graph(metadata, version_dir)
    meta = dict(metadata, version=version, target=target)
    (version_dir / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    _write_text(model_dir / "config.pbtxt", render_config(metadata, target, name=name, **config_options))
    if target == "cpu":
        batch = {k: v for k, v in config_options.items() if k == "max_batch_size"}
        for config_name, options in CONTAINER_CONFIGS.items():
            _write_text(model_dir / "configs" / f"{config_name}.pbtxt",
                        render_config(metadata, name=name, **options, **batch))
    return model_dir


def _with_plume_only_graph(metadata: dict, version_dir: Path) -> dict:
    """For a model with more outputs than the probability, write the plume-only graph of the file
    that CPU instances serve (export/plume_graph.py) and name it in the metadata
    ("cpu_plume_onnx_file"), so that requests for the probability alone skip the source branch."""
    metadata = {k: v for k, v in metadata.items() if k != "cpu_plume_onnx_file"}
    if len(model_outputs(metadata)) < 2:
        return metadata
    from export.plume_graph import plume_only_beside

    dst = plume_only_beside(version_dir / served_onnx_name(metadata))
    return metadata if dst is None else dict(metadata, cpu_plume_onnx_file=dst.name)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _copy(src: Path, dst: Path) -> None:
    if src.resolve() == dst.resolve():
        return
    tmp = dst.with_suffix(dst.suffix + ".tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)  # a server polling the repository never sees half a file


def repository_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="methane-seg repository",
                                description="lay out a Triton model repository for a serving target")
    p.add_argument("--target", choices=TARGETS, default="cpu")
    p.add_argument("--from", dest="source", type=Path, default=Path("model_repository") / MODEL_NAME / "1",
                   help="a version folder with model.onnx and metadata.json (default: the committed model)")
    p.add_argument("--out", type=Path, required=True, help="repository folder to write")
    p.add_argument("--plan", type=Path, help="TensorRT plan for --target tensorrt")
    p.add_argument("--kind", choices=["cpu", "gpu"], help="instance kind (default: cpu for cpu, gpu otherwise)")
    p.add_argument("--instances", type=int, help="model instances (default: 2 on CPU, 1 on GPU)")
    p.add_argument("--threads", type=int, help="onnxruntime threads per instance, cpu target (default 1)")
    p.add_argument("--batching", action=argparse.BooleanOptionalAction, default=None,
                   help="dynamic batching (default: off on CPU, on on GPU)")
    p.add_argument("--max-batch-size", type=int, default=16)
    p.add_argument("--queue-delay-us", type=int, help="dynamic batching max_queue_delay_microseconds")
    p.add_argument("--new-version", action="store_true", help="add a version after the highest present")
    a = p.parse_args(argv)
    onnx_path, meta_path = a.source / "model.onnx", a.source / "metadata.json"
    for path in (onnx_path, meta_path):
        if not path.is_file():
            print(f"methane-seg: error: missing {path}", file=sys.stderr)
            return 2
    metadata = json.loads(meta_path.read_text())
    for key in ("version", "target"):
        metadata.pop(key, None)
    try:
        model_dir = write_model_repository(
            a.out, onnx_path, metadata, version=None if a.new_version else 1, target=a.target,
            plan_path=a.plan, kind=a.kind, instances=a.instances, threads=a.threads, batching=a.batching,
            max_batch_size=a.max_batch_size, queue_delay_us=a.queue_delay_us)
    except (FileNotFoundError, ValueError) as exc:
        print(f"methane-seg: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {model_dir} ({a.target}, versions {versions(model_dir)})")
    return 0
