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

# Reproduce the committed models (outside CI; hours on 2 cores, CUDA is used when present):
# simulate (every scene with its reference pass) -> the multi-pass network (mp_derived inputs; 1000
# steps as `training.compare` trains its variants, then a timed run from that checkpoint) -> the
# single-pass network continued from the one served before it (its ONNX, `import-onnx`; in git
# history) on the new data, then its source branch -> export both (FP32, FP16; INT8 for the
# single-pass CPU instances where the gate holds) -> both baselines, evaluation through Triton, the
# report and the ceiling. The timed runs make this reproduce the recipe, not the bits
# (docs/methods.md, "Training recipe").
MP_FLAGS ?= --crop 128 --batch-size 16 --max-val 150 --features mp_derived
SP_BASE  ?= runs/sp/base_imported.pt
model: $(VENV)/.test
	$(BIN)/methane-seg simulate --out data/train --n $${N_TRAIN:-4000} --size 256 --split train
	$(BIN)/methane-seg simulate --out data/val --n $${N_VAL:-200} --size 256 --split val
	$(BIN)/methane-seg simulate --out data/test --n $${N_TEST:-1000} --size 256 --split test
	$(BIN)/methane-seg train --data data --out runs/mp_first --epochs 1 --steps-per-epoch 1000 --max-train 2000 $(MP_FLAGS)
	$(BIN)/methane-seg train --data data --out runs/mp_long --init runs/mp_first/best.pt --minutes 68 --epochs 40 \
	  --steps-per-epoch 400 --crop 128 --batch-size 16 --max-val 150 --seed 11
	test -f $(SP_BASE) || $(BIN)/methane-seg import-onnx model_repository/methane_seg/1/model.onnx --out $(SP_BASE)
	$(BIN)/methane-seg train --data data --out runs/sp_long --init $(SP_BASE) --minutes 50 --epochs 40 \
	  --steps-per-epoch 400 --crop 128 --batch-size 16 --max-val 150 --seed 12
	$(BIN)/methane-seg train-source --base runs/sp_long/best.pt --data data --out runs/sp_source --minutes 20 \
	  --epochs 20 --steps-per-epoch 300 --max-val 150 --seed 13
	rm -rf model_repository/methane_seg/1 model_repository/methane_seg_multipass/1
	$(BIN)/methane-seg export runs/mp_long/best.pt --out model_repository
	$(BIN)/methane-seg export runs/sp_source/last.pt --out model_repository
	$(BIN)/python -m export.int8 --onnx model_repository/methane_seg/1/model.onnx --test data/test \
	  --n-test 200 --json runs/int8.json --serve
	$(BIN)/python -m training.examples --out examples
	$(BIN)/methane-seg baseline data/test/s*[0-9].tif --method mbmp --out runs/pred_mbmp
	$(BIN)/methane-seg baseline data/test/s*[0-9].tif --method ratio --out runs/pred_ratio
	$(BIN)/methane-seg serve & pid=$$!; trap "kill -TERM $$pid" EXIT; sleep 20; \
	  $(BIN)/methane-seg segment data/test/s*[0-9].tif --model methane_seg_multipass --out runs/pred_mp && \
	  $(BIN)/methane-seg segment data/test/s*[0-9].tif --model methane_seg --out runs/pred_sp
	$(BIN)/methane-seg evaluate --truth data/test --pred runs/pred_mp --json runs/eval_mp.json
	$(BIN)/methane-seg report --truth data/test --pred runs/pred_mp --baseline runs/pred_mbmp --out docs/report
	$(BIN)/python -m training.ceiling --truth data/test --n 300 --json runs/ceiling.json

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
