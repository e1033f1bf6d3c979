# `make train`: set up and train the bundled default (Fashion-MNIST, CPU).
# `make test`:  set up and run the test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FASHION_MNIST := /usr/share/datasets/fashion-mnist
WORKDIR ?= runs/fashion_mnist
CONFIG ?= configs/fashion_mnist.py

.PHONY: setup setup-test data train test

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(VENV)/bin/pip install -q -r requirements-test.txt
	touch $@

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test

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
	$(PY) -m pytest -q --durations=15 tests
