#!/usr/bin/env bash
# Build model.plan next to model.onnx with trtexec (run inside NVIDIA's TensorRT container of
# the same release as the Triton server, since plans are specific to TensorRT version and GPU).
# The optimisation profile covers batch 1..16 (the model's max_batch_size) at the 256 tile.
set -euo pipefail
dir=${1:?usage: build_trt_plan.sh VERSION_DIR}
tile=${TILE:-256}
max_batch=${MAX_BATCH:-16}
precision=${PRECISION:---fp16}
trtexec --onnx="$dir/model.onnx" --saveEngine="$dir/model.plan.tmp" $precision \
  --minShapes=reflectance:1x6x${tile}x${tile} \
  --optShapes=reflectance:$((max_batch / 2))x6x${tile}x${tile} \
  --maxShapes=reflectance:${max_batch}x6x${tile}x${tile}
mv "$dir/model.plan.tmp" "$dir/model.plan"
echo "wrote $dir/model.plan"
