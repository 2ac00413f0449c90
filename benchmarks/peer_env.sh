#!/usr/bin/env bash
# Creates benchmarks/.venv-peer: DataTrove from PyPI, apart from iptkit's own .venv.
#
# Why a separate environment: DataTrove's LanguageFilter imports `fasttext` from the
# `fasttext-numpy2-wheel` distribution, while iptkit uses `fasttext-predict`; both install a
# module named `fasttext`, so they cannot share one environment.
# Extras: `processing` (fastText binding, nltk, regex, xxhash for the filters and MinHash),
# `orjson` for its JSONL reader and writer, and spaCy with SudachiPy for its Japanese word
# tokenizer (DataTrove assigns spaCy's blank tokenizers to en, pl and ja; Japanese needs SudachiPy,
# the part of its `multilingual` extra we use: the whole extra pulls TensorFlow and a dozen
# tokenizers the benchmark never touches).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-peer"
python="${PYTHON:-python3}"
datatrove="${DATATROVE:-datatrove[processing]==0.10.1}"

test -x "$venv/bin/python" || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "$datatrove" orjson zstandard "spacy[ja]>=3.8" psutil
"$venv/bin/python" -c "import importlib.metadata as m, fasttext, spacy, sudachipy; print('datatrove', m.version('datatrove'), 'spacy', m.version('spacy'))"
