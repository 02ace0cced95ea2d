#!/usr/bin/env bash
# The served model's recipe at GPU scale, in a fixed number of minutes: simulate -> train the plume
# network (plume-head crops and weights) -> train the source branch onto it. Each training runs a
# one-cycle schedule over wall-clock time (--minutes), so the run fits a lease of known length on a
# machine of unknown speed. Checkpoints and logs land in OUT; export and gates run where the model
# is served (`methane-seg export OUT/source_last.pt --out model_repository`, then python -m export.int8).
#
#   bash scripts/train_gpu.sh                          # defaults below; CUDA when present
#   OUT=runs/gpu N_TRAIN=6000 PLUME_MIN=3 SOURCE_MIN=2.5 bash scripts/train_gpu.sh
#
# Phases are each bounded by `timeout`; a phase that fails leaves the earlier ones' files in OUT.
set -uo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
OUT="${OUT:-runs/gpu}"
DATA="${DATA:-data/gpu}"
N_TRAIN="${N_TRAIN:-6000}"
N_VAL="${N_VAL:-200}"
WORKERS="${WORKERS:-$(nproc)}"
PLUME_MIN="${PLUME_MIN:-3}"
SOURCE_MIN="${SOURCE_MIN:-2.5}"
BATCH="${BATCH:-32}"
STEPS="${STEPS:-1000}"        # steps between validations
SEED="${SEED:-0}"
PLUME_FLAGS="${PLUME_FLAGS:---crop 128 --lr 2e-3 --plume-frac 0.5 --head-frac 0.2 --head-weight 5 --visible-drop 0.02 --max-val 150 --features regress}"
SOURCE_FLAGS="${SOURCE_FLAGS:---lr 2e-3}"

mkdir -p "$OUT"
LOG="$OUT/train_gpu.log"
say() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }
run() { # run SECONDS cmd...: bounded, output into the log
  local limit=$1; shift
  timeout --signal=TERM --kill-after=10 "$limit" "$@" 2>&1 | tr '\r' '\n' | grep -v '^\s*$' >> "$LOG"
  return "${PIPESTATUS[0]}"
}

say "train_gpu: $($PY -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA")')"
say "simulate $N_TRAIN train + $N_VAL val scenes with $WORKERS workers"
run 300 $PY -m methane_seg simulate --out "$DATA/train" --n "$N_TRAIN" --split train --workers "$WORKERS" || { say "simulate failed"; exit 1; }
run 60 $PY -m methane_seg simulate --out "$DATA/val" --n "$N_VAL" --split val --workers "$WORKERS" || { say "simulate failed"; exit 1; }
tail -n 1 "$LOG"

plume_budget=$(awk "BEGIN{print int(60*$PLUME_MIN + 240)}")
say "train the plume network: $PLUME_MIN min (batch $BATCH, $STEPS steps per validation)"
run "$plume_budget" $PY -m methane_seg train --data "$DATA" --out "$OUT/plume" --minutes "$PLUME_MIN" --epochs 1000 \
    --steps-per-epoch "$STEPS" --batch-size "$BATCH" --seed "$SEED" --threads 4 $PLUME_FLAGS
rc=$?
grep -E '^\{|done in|min of training' "$LOG" | tail -n 4
[ -f "$OUT/plume/best.pt" ] || { say "plume training left no checkpoint (rc $rc)"; exit 1; }

source_budget=$(awk "BEGIN{print int(60*$SOURCE_MIN + 240)}")
say "train the source branch onto plume/best.pt: $SOURCE_MIN min"
run "$source_budget" $PY -m methane_seg train-source --base "$OUT/plume/best.pt" --data "$DATA" --out "$OUT/source" \
    --minutes "$SOURCE_MIN" --epochs 1000 --steps-per-epoch "$STEPS" --batch-size "$BATCH" --seed "$SEED" --threads 4 $SOURCE_FLAGS
rc=$?
grep -E '^\{|done in|min of training' "$LOG" | tail -n 3
[ -f "$OUT/source/last.pt" ] || { say "source training left no checkpoint (rc $rc)"; exit 1; }
say "done: $OUT/plume/best.pt, $OUT/source/last.pt, $OUT/source/best.pt"
