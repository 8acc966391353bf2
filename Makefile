# Set-up and everyday commands. Two locked lanes, each in its own virtual environment:
#   light (default): .venv, CPU torch 2.13.0, no torchvision          -> make demo, make test   (lock: constraints.txt)
#   full:            .venv-full, torch 2.14.1 + torchvision 0.29.1,
#                    timm and the official sam2 package              -> make test-full          (lock: constraints-full.txt)
# `make test-latest` runs the suite against the newest releases pyproject's ranges allow (no lock).
# `make lock` / `make lock-full` re-resolve a lane from the ranges, run the suite there and, only if it passes, write
# its exact versions into the lane's lock. On a GPU box with your own torch: `make CONSTRAINTS= test`.
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= constraints.txt
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

FULL_VENV ?= .venv-full
FULL_CONSTRAINTS ?= constraints-full.txt
FULL_PY := $(FULL_VENV)/bin/python
FULL_STAMP := $(FULL_VENV)/.installed

# What each lane asks for on top of pyproject's ranges (the torch builds that lie on the build machines' disk).
LIGHT_PINS := torch==2.13.0
LIGHT_EXTRAS := dev
FULL_PINS := torch==2.14.1 torchvision==0.29.1
FULL_EXTRAS := dev,sam2,vision

PYTEST = HF_HUB_OFFLINE=1 $(1) -m pytest -q

.PHONY: install install-full demo test test-full test-slow test-latest lock lock-full bench
install: $(STAMP)
install-full: $(FULL_STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e ".[$(LIGHT_EXTRAS)]"
	touch $(STAMP)

$(FULL_STAMP): pyproject.toml $(FULL_CONSTRAINTS)
	$(PYTHON) -m venv $(FULL_VENV)
	$(FULL_PY) -m pip install -q --upgrade pip
	$(FULL_PY) -m pip install -q -c $(FULL_CONSTRAINTS) -e ".[$(FULL_EXTRAS)]"
	touch $(FULL_STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/emergence demo --out demo_out

test: $(STAMP)
	$(call PYTEST,$(PY))

test-full: $(FULL_STAMP)
	$(call PYTEST,$(FULL_PY))

test-slow: $(STAMP)
	$(call PYTEST,$(PY)) -m slow

# A fresh venv with the newest versions the ranges allow; prints what it resolved, then runs the whole suite.
# Record the outcome in docs/compatibility.md.
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install -q --upgrade pip
	.venv-latest/bin/python -m pip install -q $(LIGHT_PINS) -e ".[$(LIGHT_EXTRAS)]"
	.venv-latest/bin/python -m pip freeze | grep -iE '^(torch|torchvision|transformers|tokenizers|huggingface.hub|nnsight)=='
	$(call PYTEST,.venv-latest/bin/python)

lock:
	bash .ci/lock.sh .venv-lock $(CONSTRAINTS) "$(LIGHT_EXTRAS)" $(LIGHT_PINS)

lock-full:
	bash .ci/lock.sh .venv-lock-full $(FULL_CONSTRAINTS) "$(FULL_EXTRAS)" $(FULL_PINS)

bench: $(STAMP)
	$(PY) bench/capture_overhead.py
