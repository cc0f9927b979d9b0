# `make demo`: set up and run the main job; `make test`: set up and run the tests. See README.md.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# MNIST goes where anomalyvae looks by default, ./data, so the README's commands work as typed after
# `make demo`: copied from DATA (the shared copy beside the checkout when there is one, or DATA=/path),
# else downloaded there by torchvision. MNIST names the folder that holds the four files afterwards.
DATA   ?= $(firstword $(wildcard ../shared/datasets/mnist))
IDX     = train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz
MNIST   = $(if $(DATA),data/mnist,data/MNIST/raw)
# The demo's figure depends on the thread count (float sums); one thread makes it the same on every machine
THREADS ?= 1

.PHONY: setup data browser demo test docs bench-speed bench-detection fashion-mnist clean

setup: $(VENV)/.installed $(VENV)/.editable-first

# FIRST_PTH: setuptools' editable install finds the checkout with a finder placed after Python's own path
# search, so a folder named anomalyvae on sys.path (this clone's, seen from the folder above it) would shadow it
# as an empty namespace package ("cannot import name 'AnomalyVAE' from 'anomalyvae' (unknown location)"); this
# .pth, read after setuptools' own, moves that finder first. tests/test_install.py checks it.
FIRST_PTH = import sys; sys.meta_path.sort(key=lambda f: not getattr(f, "__module__", "").startswith("__editable___anomalyvae_"))

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	# constraints.txt: the torch + torchvision pair that imports together (other versions download gigabytes)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

$(VENV)/.editable-first: $(VENV)/.installed
	echo '$(FIRST_PTH)' > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/anomalyvae-editable-first.pth"
	touch $@

data: $(addprefix $(MNIST)/,$(IDX))

ifneq ($(DATA),)
data/mnist/%.gz: $(DATA)/%.gz
	@mkdir -p $(@D)
	install -m 644 $< $@
else
$(addprefix $(MNIST)/,$(IDX)) &: | setup
	$(BIN)/python -c "from pathlib import Path; from anomalyvae.data.datasets import locate; [locate('mnist', Path('data'), s) for s in ('train', 'test')]"
endif

# the README's "Use" commands, as typed there; images/ gets MNIST test digits for its `score images/`; the last
# step writes benchmarks/results/demo.txt, the figures of the README's demo sentence (tests/test_docs.py)
demo: setup data
	OMP_NUM_THREADS=$(THREADS) $(BIN)/anomalyvae train --normal 0-8
	OMP_NUM_THREADS=$(THREADS) $(BIN)/anomalyvae evaluate --metrics-out m.json
	$(BIN)/python examples/mnist_pngs.py --out images
	OMP_NUM_THREADS=$(THREADS) $(BIN)/anomalyvae score images/ --out scores.csv
	$(BIN)/python examples/mnist_pngs.py --flagged scores.csv --metrics m.json --results benchmarks/results/demo.txt

# Debian's headless Chromium renders the MLflow pages in a test: an explicit step (CI's .ci/run calls it), never part
# of `make test`, which changes nothing outside the checkout; without it that one test skips and says `make browser`
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } || \
	  echo "note: chromium not installed (needs root and apt-get); the report's browser test will be skipped"

test: setup data
	ANOMALYVAE_TEST_MNIST=$(abspath $(MNIST)) $(BIN)/pytest -q

# the documentation site (mkdocs.yml, docs/) into site/; --strict: a broken link, anchor or reference fails it.
# Material's banner about MkDocs 2.0 is not a warning of this build: NO_MKDOCS_2_WARNING hides it
docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

$(VENV)/.docs-installed: $(VENV)/.installed
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,docs]'
	touch $@

bench-speed: setup data
	$(BIN)/python benchmarks/speed.py --data $(MNIST)

# Issue 3's protocols, 3 seeds each (hours on a 2-core CPU); SEEDS=1 for a shorter run
SEEDS ?= 3
bench-detection: setup data fashion-mnist
	$(BIN)/python benchmarks/detection.py --dataset mnist --protocol loo --seeds $(SEEDS) --reference --data-dir $(MNIST)
	$(BIN)/python benchmarks/detection.py --dataset mnist --protocol oneclass --seeds $(SEEDS) --reference --data-dir $(MNIST)
	$(BIN)/python benchmarks/detection.py --dataset fashion-mnist --protocol oneclass --seeds $(SEEDS) --reference
	$(BIN)/python benchmarks/detection.py --dataset fashion-mnist --protocol loo --seeds $(SEEDS) --reference

# Debian's Fashion-MNIST (IDX files in /usr/share/datasets/fashion-mnist), found there by anomalyvae
fashion-mnist:
	@[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist; } || \
	  { [ "$$(id -u)" != 0 ] && sudo apt-get install -y -q dataset-fashion-mnist; }

clean:
	rm -rf $(VENV) models mlflow.db mlflow.db.lock mlruns scores.csv m.json site
