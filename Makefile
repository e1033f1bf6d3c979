# `make train`: set up and train the bundled default (Fashion-MNIST, CPU).
# `make test`:  set up and run the test suite.
# `make lock`:  pin the whole environment again after editing requirements*.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_VERSION := 26.3
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
UV_INSTALL := $(UV) pip install -q --compile-bytecode --python $(PY) --require-hashes -r
FASHION_MNIST := /usr/share/datasets/fashion-mnist
WORKDIR ?= runs/fashion_mnist
CONFIG ?= configs/fashion_mnist.py

.PHONY: setup setup-test data train test lock

# The environment comes from the lock files, every package pinned with its
# hashes; requirements*.txt hold only the direct requirements they are made from.
# uv installs them (and writes them, `make lock`): it downloads and unpacks in
# parallel: 29 s for the test extras' 3 GB (torch's CUDA wheels) where pip
# took 48, the same packages (experiments/results/install_times.md). Compiled
# to bytecode, as pip does, so that no process compiles the sources again.
$(VENV)/.installed: requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q pip==$(PIP_VERSION) uv==$(UV_VERSION)
	$(UV_INSTALL) requirements.lock
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.lock
	$(UV_INSTALL) requirements-test.lock
	touch $@

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test

# Both locks are resolved for CPython 3.11 on x86-64 Linux by uv from the test
# environment (their hashes cover every platform's files of each pinned
# version); requirements.lock takes requirements-test.lock's versions, so the
# test environment only adds to the training one. Versions already locked are
# kept unless a requirement changed them.
LOCK := $(UV) pip compile --quiet --generate-hashes --python-version 3.11
lock: setup-test
	$(LOCK) requirements-test.txt -o requirements-test.lock
	$(LOCK) requirements.txt -c requirements-test.lock -o requirements.lock

# Fashion-MNIST comes from Debian's package, so nothing is downloaded at run time.
data:
	@if [ ! -f $(FASHION_MNIST)/train-images-idx3-ubyte.gz ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	  else \
	    echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist' (Debian/Ubuntu) and retry."; exit 1; \
	  fi; \
	fi

train: setup data
	$(PY) -m inception_jax.main --config=$(CONFIG) --workdir=$(WORKDIR)

test: setup-test data
	$(PY) -m pytest -q --durations=15 -n 2 --dist loadgroup tests
