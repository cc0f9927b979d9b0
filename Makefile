# `make demo`: set up and run the main job; `make test`: set up and run the tests. See README.md.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# MNIST: the shared copy beside the checkout when there is one, else ./data (downloaded by torchvision).
DATA   ?= $(firstword $(wildcard ../shared/datasets/mnist) data)

.PHONY: setup browser demo test bench-speed bench-detection fashion-mnist clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	# constraints.txt: the torch + torchvision pair that imports together (other versions download gigabytes)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/anomalyvae train --normal 0-8 --data-dir $(DATA)
	$(BIN)/anomalyvae evaluate --metrics-out m.json

# Debian's headless Chromium renders the HTML evaluation report in a test; apt needs root, elsewhere that test skips
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } || \
	  echo "note: chromium not installed (needs root and apt-get); the report's browser test will be skipped"

test: setup browser
	ANOMALYVAE_TEST_MNIST=$(abspath $(DATA)) $(BIN)/pytest -q

bench-speed: setup
	$(BIN)/python benchmarks/speed.py --data $(DATA)

# Issue 3's protocols, 3 seeds each (hours on a 2-core CPU); SEEDS=1 for a shorter run
SEEDS ?= 3
bench-detection: setup fashion-mnist
	$(BIN)/python benchmarks/detection.py --dataset mnist --protocol loo --seeds $(SEEDS) --reference --data-dir $(DATA)
	$(BIN)/python benchmarks/detection.py --dataset mnist --protocol oneclass --seeds $(SEEDS) --reference --data-dir $(DATA)
	$(BIN)/python benchmarks/detection.py --dataset fashion-mnist --protocol oneclass --seeds $(SEEDS) --reference
	$(BIN)/python benchmarks/detection.py --dataset fashion-mnist --protocol loo --seeds $(SEEDS) --reference

# Debian's Fashion-MNIST (IDX files in /usr/share/datasets/fashion-mnist), found there by anomalyvae
fashion-mnist:
	@[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist; } || \
	  { [ "$$(id -u)" != 0 ] && sudo apt-get install -y -q dataset-fashion-mnist; }

clean:
	rm -rf $(VENV) models mlflow.db mlflow.db.lock mlruns scores.csv m.json
