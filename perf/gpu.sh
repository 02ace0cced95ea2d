#!/usr/bin/env bash
# GPU figures of issue #8, on a machine with an NVIDIA GPU (exits 0 with a message elsewhere):
#   PyTorch FP16 (autocast, channels_last, eager and CUDA graphs) at batch 1..64,
#   TensorRT FP16 via trtexec or polygraphy where installed,
#   Triton's gain from dynamic batching on the GPU (perf_analyzer, 1..64 in flight).
# Writes perf/GPU_RESULTS.md (with the card's name) and var/bench-gpu/gpu.json.
#
#   bash perf/gpu.sh                     # everything
#   PARTS=torch,tensorrt bash perf/gpu.sh
#   PYTHON=/path/to/python BATCHES=1,8,64 bash perf/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "perf/gpu.sh: no NVIDIA GPU here (nvidia-smi not found); nothing measured."
  exit 0
fi
if ! nvidia-smi -L >/dev/null 2>&1 || [ -z "$(nvidia-smi -L 2>/dev/null)" ]; then
  echo "perf/gpu.sh: no NVIDIA GPU here (nvidia-smi lists none); nothing measured."
  exit 0
fi

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if ! "$PYTHON" -c "import torch, onnx, onnxruntime, tritonclient" >/dev/null 2>&1; then
  echo "perf/gpu.sh: $PYTHON lacks torch/onnx/onnxruntime/tritonclient: run 'make test' (or pip install -e '.[train,test]') first" >&2
  exit 1
fi
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "perf/gpu.sh: note: this torch has no CUDA (the CPU wheel?); the PyTorch part will say so." >&2
fi

echo "perf/gpu.sh on: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
exec "$PYTHON" perf/gpu_bench.py \
  --parts "${PARTS:-torch,tensorrt,triton}" \
  --batches "${BATCHES:-1,2,4,8,16,32,64}" \
  --concurrency "${CONCURRENCY:-1,2,4,8,16,32,64}" \
  "$@"
