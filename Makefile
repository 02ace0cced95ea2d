# methane-seg: two commands on a fresh machine.
#   make run    installs the serving side and starts Triton + the upload page
#   make test   installs everything the tests need and runs them
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test test-fast model bench audit clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip wheel setuptools

$(VENV)/.serve: $(BIN)/python pyproject.toml
	$(PIP) install -e .
	touch $@

$(VENV)/.test: $(BIN)/python pyproject.toml
	$(PIP) install -e '.[train,test]'
	touch $@ $(VENV)/.serve

run: $(VENV)/.serve
	$(BIN)/methane-seg serve

test: $(VENV)/.test
	sh scripts/ci_services.sh
	$(BIN)/python -m pytest -ra

test-fast: $(VENV)/.test
	$(BIN)/python -m pytest -ra -m "not slow"

# Reproduce the committed model: simulate -> train the plume network (plume-head crops and weights:
# 2 x 1000 steps of 32 crops, the part scripts/train_gpu.sh runs on a GPU, then 6 epochs at 5e-4 from
# that checkpoint, --init) -> train the source branch onto it (24 epochs), then continue it on 2000
# further scenes (9 x 500 steps of 64 crops) -> export (FP32, FP16, INT8 if it holds its gates) ->
# evaluate -> report (outside CI; CUDA is used when present; hours on 2 cores). The served plume
# network's first part ran on a timed schedule that its lease cut short (docs/methods.md, "Training recipe"),
# so this reproduces the recipe, not the bits.
HEAD_FLAGS ?= --crop 128 --plume-frac 0.5 --head-frac 0.2 --head-weight 5 --visible-drop 0.02 --max-val 150 \
	--features regress
model: $(VENV)/.test
	$(BIN)/methane-seg simulate --out data/train --n $${N_TRAIN:-5000} --size 256 --split train
	$(BIN)/methane-seg simulate --out data/val --n $${N_VAL:-200} --size 256 --split val
	$(BIN)/methane-seg simulate --out data/test --n $${N_TEST:-1000} --size 256 --split test
	$(BIN)/methane-seg train --data data --out runs/model_first --epochs 2 --steps-per-epoch 1000 \
	  --batch-size 32 --lr 2e-3 $(HEAD_FLAGS)
	$(BIN)/methane-seg train --data data --out runs/model --init runs/model_first/best.pt --epochs 6 \
	  --steps-per-epoch 325 --batch-size 16 --lr 5e-4 --seed 3 --max-train 3000 $(HEAD_FLAGS)
	$(BIN)/methane-seg train-source --base runs/model/best.pt --data data --max-train 3000 --out runs/source
	$(BIN)/methane-seg simulate --out data/more/train --n 2000 --size 256 --split train --seed 3000
	$(BIN)/methane-seg simulate --out data/more/val --n 150 --size 256 --split val
	$(BIN)/methane-seg train-source --base runs/model/best.pt --init runs/source/last.pt --data data/more \
	  --out runs/source_more --epochs 9 --steps-per-epoch 500 --batch-size 64 --lr 1e-3 --seed 7
	$(BIN)/methane-seg export runs/source_more/last.pt --out model_repository
	$(BIN)/python -m export.int8 --onnx model_repository/methane_seg/1/model.onnx --test data/test \
	  --n-test $${N_TEST:-1000} --json runs/int8.json --serve
	$(BIN)/python -m training.examples --out examples
	$(BIN)/methane-seg baseline data/test/s*[0-9].tif --out runs/pred_baseline
	$(BIN)/methane-seg serve & pid=$$!; trap "kill -TERM $$pid" EXIT; sleep 15; \
	  $(BIN)/methane-seg segment data/test/s*[0-9].tif --out runs/pred_test && \
	  $(BIN)/methane-seg evaluate --truth data/test --pred runs/pred_test --json runs/eval_test.json
	$(BIN)/methane-seg report --truth data/test --pred runs/pred_test --baseline runs/pred_baseline --out docs/report
	$(BIN)/python -m training.ceiling --truth data/test --n 300

# Benchmarks of issue #8 (perf/README.md): in-process model, Triton under perf_analyzer, a plain web server,
# a 5490x5490 scene, Locust on the upload API -> perf/RESULTS.md, perf/results.png, perf/results.json.
# Tens of minutes on 2 cores; run it on a quiet machine. BENCH_QUICK=1: every part on a tiny setting
# (a few minutes) into var/bench-quick/, to check the pipeline.
bench: $(VENV)/.test
	$(BIN)/python perf/bench_all.py $(if $(filter-out 0,$(BENCH_QUICK)),--quick)

# Known vulnerabilities of the installed dependencies (PyPI's advisory database); a report, and a
# failure to reach the database (no network) is reported, not fatal.
audit: $(VENV)/.test
	mkdir -p var
	$(PIP) install pip-audit
	$(BIN)/python -m pip_audit --progress-spinner off --format markdown --output var/pip-audit.md \
	  && echo "pip-audit: no known vulnerabilities (var/pip-audit.md)" \
	  || echo "pip-audit: findings or no advisory database reachable; see var/pip-audit.md and the log above"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
