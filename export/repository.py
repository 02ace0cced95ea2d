"""Lay out a Triton model repository for an exported segmenter.

One folder per model, `config.pbtxt` beside the version folders, as in
Triton's tutorials:

    model_repository/
      methane_seg/
        config.pbtxt
        1/model.onnx      the exported graph (uint16 reflectance in, probability out)
        1/model.py        Python-backend model running onnxruntime (CPU target)
        1/metadata.json   bands, tile size, threshold, metrics

The `cpu` target serves the ONNX file through Triton's Python backend, the
only backend that the pip-installed server (nvidia-pytriton) carries.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

MODEL_NAME = "methane_seg"
TEMPLATES = Path(__file__).parent / "templates"

CPU_CONFIG = """\
# methane_seg: plume probability for fixed-size tiles of Sentinel-2 L1C reflectance.
# Written by export/repository.py from {metadata_name}; edit the exporter, not this file.
name: "{name}"
backend: "python"
max_batch_size: {max_batch_size}

input [
  {{
    name: "{input_name}"          # B2, B3, B4, B8, B11, B12 as uint16 = reflectance x 10000
    data_type: TYPE_UINT16
    dims: [ {bands}, {tile}, {tile} ]
  }}
]
output [
  {{
    name: "{output_name}"         # plume probability 0..1
    data_type: TYPE_FP32
    dims: [ 1, {tile}, {tile} ]
  }}
]

# Requests of the same tile shape are merged into one onnxruntime run.
# A short queue delay: on CPU a batch costs the same per tile, so waiting buys little.
dynamic_batching {{
  max_queue_delay_microseconds: {queue_delay_us}
}}

instance_group [
  {{
    count: {instances}
    kind: KIND_CPU
  }}
]

parameters: {{ key: "threshold" value: {{ string_value: "{threshold}" }} }}
parameters: {{ key: "tile_size" value: {{ string_value: "{tile}" }} }}
parameters: {{ key: "intra_op_threads" value: {{ string_value: "{threads}" }} }}
parameters: {{ key: "onnx_file" value: {{ string_value: "model.onnx" }} }}
"""


def render_cpu_config(
    metadata: dict,
    *,
    name: str = MODEL_NAME,
    max_batch_size: int = 16,
    queue_delay_us: int = 2000,
    instances: int = 1,
    threads: int = 2,
) -> str:
    return CPU_CONFIG.format(
        metadata_name="metadata.json",
        name=name,
        max_batch_size=max_batch_size,
        input_name=metadata["input"]["name"],
        output_name=metadata["output"]["name"],
        bands=len(metadata["bands"]),
        tile=int(metadata["tile_size"]),
        queue_delay_us=queue_delay_us,
        instances=instances,
        threads=threads,
        threshold=float(metadata["threshold"]),
    )


def write_model_repository(
    repo_dir: str | Path,
    onnx_path: str | Path,
    metadata: dict,
    *,
    name: str = MODEL_NAME,
    version: int = 1,
    **config_options,
) -> Path:
    """Write `repo_dir/name/` (config.pbtxt, version folder with ONNX, model.py, metadata).

    Returns the model folder.
    """
    model_dir = Path(repo_dir) / name
    version_dir = model_dir / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = Path(onnx_path)
    target = version_dir / "model.onnx"
    if onnx_path.resolve() != target.resolve():
        shutil.copyfile(onnx_path, target)
    shutil.copyfile(TEMPLATES / "model.py", version_dir / "model.py")
    (version_dir / "metadata.json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    (model_dir / "config.pbtxt").write_text(render_cpu_config(metadata, name=name, **config_options))
    return model_dir
