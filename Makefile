# `make demo`: set up and run the main job; `make test`: set up and run the tests. See README.md.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# MNIST: the shared copy beside the checkout when there is one, else ./data (downloaded by torchvision).
DATA   ?= $(firstword $(wildcard ../shared/datasets/mnist) data)

.PHONY: setup demo test bench-speed bench-detection clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: these two builds import together (other versions download gigabytes)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/anomalyvae train --normal 0-8 --data-dir $(DATA)
	$(BIN)/anomalyvae evaluate --metrics-out m.json

test: setup
	ANOMALYVAE_TEST_MNIST=$(abspath $(DATA)) $(BIN)/pytest -q

bench-speed: setup
	$(BIN)/python benchmarks/speed.py --data $(DATA)

clean:
	rm -rf $(VENV) models mlflow.db mlruns scores.csv m.json
