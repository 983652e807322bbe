# Two commands for a newcomer:  `make` (set-up + the main job) and `make test`.
# Everything runs from the virtual environment in .venv/ with the embedded SQLite stores.

VENV := .venv
PY := $(VENV)/bin/python
DEBIAN_DATA := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
# `mlflow run` starts `python` from PATH: put the venv first so it finds our packages.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db
export MLFLOW_EXPERIMENT_NAME ?= fashion-mnist
MLFLOW_RUN := $(VENV)/bin/mlflow run . --env-manager local --experiment-name $(MLFLOW_EXPERIMENT_NAME)

.PHONY: all setup data main test test-fast test-avx2 test-load lint bench mlproject

all: main

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@# Debian's copy of FashionMNIST, when apt is at hand (offline machines need it).
	@if [ ! -f $(DEBIAN_DATA) ] && command -v apt-get >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist \
	  || echo "note: could not install dataset-fashion-mnist; prepare will try torchvision's download"; \
	fi
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

data: setup
	$(MLFLOW_RUN) -e prepare

main: data
	$(MLFLOW_RUN) -e tune

# Two pytest workers (pytest-xdist): run serially, the suite kept 2 cores 56% busy (it waits on
# servers and subprocesses); tests sharing a server or a Ray cluster run on one worker (xdist_group).
XDIST := -n 2 --dist loadgroup

test: setup
	$(PY) -m pytest -q $(XDIST)

test-fast: setup
	$(PY) -m pytest -q $(XDIST) -m "not slow"

# The unit tests again with PyTorch's and MKL's AVX2 kernels forced, as on a machine without
# AVX-512: a tolerance must hold for the precision of the computation, not for one CPU's kernels.
test-avx2: setup
	ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 $(PY) -m pytest -q $(XDIST) -m "not slow"

# The concurrency tests (workers, servers, signals) 3 times with a CPU burner per core beside them.
test-load: setup
	$(PY) -m tests.under_load 3

# ruff (lint, import order, format), the import layers (pyproject.toml's contracts).
lint: setup
	$(VENV)/bin/ruff check pipeline bench tests
	$(VENV)/bin/ruff format --check pipeline bench tests
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy

bench: data
	$(PY) -m bench

# MLproject is generated from the options' definitions (pipeline/core/options.py); commit it.
mlproject: setup
	$(PY) -m pipeline.cli.mlproject
