# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-quick bench fashion-mnist format clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# Defends digits (embedded in scikit-learn) against BadNets; about a minute.
demo: $(STAMP)
	$(BIN)/python main.py --config configs/digits_badnets.py --workdir runs/digits_badnets

# The whole suite (slow end-to-end tests included); about 10 minutes on 2 idle cores. Workers
# steal queued tests from each other; the 15 slowest tests are listed at the end.
PYTEST := $(BIN)/python -m pytest tests -q -n 2 --dist worksteal --durations=15
test: $(STAMP)
	$(PYTEST)

# The quick subset: everything but the tests marked slow (about 2 minutes on 2 idle cores).
test-quick: $(STAMP)
	$(PYTEST) -m "not slow"

# Speed and memory against PyTorch transcriptions of the reference; prints the tables and
# writes benchmarks/RESULTS.md (about 40 minutes on a 2-core CPU).
bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Fashion-MNIST's four IDX files from Debian's package (offline; needs root), for
# configs/fashion_mnist_*.py: /usr/share/datasets/fashion-mnist/ (docs/fashion_mnist.md).
fashion-mnist:
	apt-get install -y dataset-fashion-mnist

# Reformats the code (settings in pyproject.toml).
format: $(STAMP)
	$(BIN)/pyink .

clean:
	rm -rf $(VENV) runs .pytest_cache
