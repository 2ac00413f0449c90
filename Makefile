# The README's two commands: `make demo` and `make test`. Both create .venv/ when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# This machine has a CPU build of torch 2.13.0 on disk; an unpinned torch pulls a CUDA build.
TORCH ?= torch==2.13.0

.PHONY: install demo demo-tokenizer test clean tiny-models

# [all]: every extra but vllm (models, train, eval, gcp); a worker needs only the core (docker/).
$(VENV)/.installed: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[all,dev]"
	touch $@

install: $(VENV)/.installed

# The whole loop on the bundled corpus: corpus -> shards, a tiny model trained and exported,
# evaluated on the smoke suite, and runs/demo/report.html with every section filled.
demo: install
	$(VENV)/bin/iptkit run pipelines/examples/demo.yaml --out runs/demo
	DS_ACCELERATOR=cpu $(PY) -m iptkit.trainer configs/train/demo.yaml
	$(VENV)/bin/iptkit eval runs/demo/train/hf --suite smoke --limit 8 --device cpu --out runs/demo/eval/smoke
	$(VENV)/bin/iptkit report runs/demo

# Rebuilds the demo's bundled tokenizer from the demo run's output (a run must exist).
demo-tokenizer: install
	$(VENV)/bin/iptkit tokenizer train runs/demo --out runs/demo-tokenizer --vocab-size 2000 \
		--model bpe --byte-fallback --lang-balance en=0.5,ja=0.5
	cp runs/demo-tokenizer/tokenizer.json runs/demo-tokenizer/tokenizer_config.json \
		runs/demo-tokenizer/tokenizer.model runs/demo-tokenizer/report.json pipelines/examples/tokenizer/

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

clean:
	rm -rf runs .pytest_cache

# The tiny local chat models the LLM example specs (swallow_ja.yaml, xcit.yaml) name.
tiny-models: install
	$(PY) scripts/make_tiny_models.py runs/tiny-models
