"""Benchmarks iptkit's format + tokenize + pack against the bare tokenizer and DataTrove.

    .venv/bin/python benchmarks/bench_pack.py                      # 25k documents, both modes
    .venv/bin/python benchmarks/bench_pack.py --docs 5000 --repeats 1 --no-peer

On the Debian-text corpus of the cleaning benchmark (benchmarks/corpus.py), with one tokenizer
trained on it by `iptkit tokenizer train` (BPE, byte fallback, language-balanced; cached), in
fresh single-core processes (tokenizers' own thread pool off: the figures are per core):
- bare: tokenizers' `encode_batch` over the texts in memory (benchmarks/bare.py tokenize),
  and `encode_batch_fast` (the same ids without character offsets, which iptkit uses for text
  without loss-mask boundaries); reading the file is not timed, so these are the ceiling;
- iptkit: `iptkit run` of a spec whose stages end in pack, once per packing mode (concat,
  best_fit); the wall time of RUN/timings.json (reading, formatting, tokenizing, packing,
  writing shards and manifest, the ledger);
- DataTrove: its DocumentTokenizer (benchmarks/peer_datatrove.py tokenize, in .venv-peer),
  reading the same JSONL and writing its .ds token files, one task, one worker.
tokens/s counts document tokens (BOS/EOS included, padding not). On a shared machine wall
time also counts waiting for a core, so the table adds each process's CPU seconds (rusage;
for bare this includes loading the JSONL, which its timed `seconds` leave out). Packing efficiency comes from the
shards: padding share (pad tokens / all tokens) and cut share (documents split across rows /
documents). Targets (issue 6): iptkit >= 0.8 x bare (held here against both bare rows), and
faster than DataTrove.
Results: benchmarks/results/pack.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import corpus
import numpy as np
import yaml
from bench_cleaning import BEAM_FLAGS, IPTKIT, PEER_PYTHON, RESULTS, WORK, measured

from iptkit.shards import open_shards

HERE = Path(__file__).resolve().parent
# tokenizers parallelises encode_batch over all cores unless told not to; per-core figures.
NO_RAYON = {"TOKENIZERS_PARALLELISM": "false", "RAYON_NUM_THREADS": "1"}
MODES = ("concat", "best_fit")


def pack_stages(tokenizer: str, seq_len: int, mode: str, extra: dict[str, Any]) -> list[dict]:
    """The spec's stages for one run: pack (which formats and tokenizes) in `mode`.

    Kept in one place because the pack stage's options are the one thing here that depends on
    the pack stage's own spec; `--pack-options` adds or overrides options.
    """
    return [{"pack": {"tokenizer": tokenizer, "seq_len": seq_len, "packing": mode, **extra}}]


def ensure_tokenizer(docs: Path, vocab_size: int) -> Path:
    """A BPE tokenizer trained on the corpus itself, cached under .work."""
    out = WORK / f"tokenizer-bpe-{vocab_size}"
    if not (out / "tokenizer.json").is_file():
        cmd = [
            str(IPTKIT), "tokenizer", "train", str(docs), "--out", str(out),
            "--vocab-size", str(vocab_size), "--model", "bpe", "--byte-fallback",
            "--lang-balance", "en=0.4,ja=0.4,pl=0.2", "--sample-chars", "6000000",
        ]  # fmt: skip
        out.parent.mkdir(parents=True, exist_ok=True)
        measured(cmd, WORK / f"tokenizer-bpe-{vocab_size}.log")
    return out / "tokenizer.json"


def run_bare(docs: Path, tokenizer: Path, work: Path, method: str) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    params = {"tokenizer": str(tokenizer), "method": method}
    cmd = [
        sys.executable, str(HERE / "bare.py"), "tokenize", "--input", str(docs),
        "--result", str(work / "result.json"), "--params", json.dumps(params),
    ]  # fmt: skip
    result = measured(cmd, work / "log.txt", NO_RAYON)
    result |= json.loads((work / "result.json").read_text())
    result["tokens_per_s"] = result["tokens"] / result["seconds"]
    return result


def run_peer(docs: Path, tokenizer: Path, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    params = {"tokenizer": str(tokenizer), "eos_token": "</s>"}
    cmd = [
        str(PEER_PYTHON), str(HERE / "peer_datatrove.py"), "tokenize", "--input", str(docs),
        "--work", str(work / "dt"), "--result", str(work / "result.json"),
        "--params", json.dumps(params),
    ]  # fmt: skip
    result = measured(cmd, work / "log.txt", NO_RAYON)
    result |= json.loads((work / "result.json").read_text())
    result["tokens_per_s"] = result["tokens"] / result["wall_seconds"]
    return result


def packing_figures(shards_root: Path, documents: int) -> dict[str, Any]:
    """Document tokens, padding share and cut share, from the shards alone."""
    splits = [p.parent for p in sorted(shards_root.rglob("manifest.json"))]
    total = pad_tokens = pieces = 0
    for split in splits:
        shards = open_shards(split, verify=False)
        pad = shards.manifest.special_tokens.get("pad")
        eos = shards.manifest.special_tokens.get("eos")
        total += shards.manifest.totals.tokens
        pieces += shards.manifest.totals.documents
        if pad is not None and pad != eos:
            for i in range(len(shards)):
                pad_tokens += int(np.count_nonzero(np.asarray(shards[i].tokens) == pad))
    return {
        "splits": [str(s) for s in splits],
        "tokens": total - pad_tokens,
        "padding_share": pad_tokens / total if total else None,
        "cut_share": (pieces - documents) / documents if documents else None,
    }


def run_iptkit(
    docs: Path, tokenizer: Path, work: Path, mode: str, seq_len: int, extra: dict
) -> dict[str, Any]:
    run = work / "run"
    spec = {
        "seed": 1234,
        "output": str(run),
        "keep_records": False,
        "sources": [corpus.corpus_source(docs)],
        "stages": pack_stages(str(tokenizer), seq_len, mode, extra),
    }
    work.mkdir(parents=True, exist_ok=True)
    (work / "spec.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True))
    # --force: the work folder is reused by every size and repeat.
    cmd = [str(IPTKIT), "run", str(work / "spec.yaml"), "--out", str(run), "--force", *BEAM_FLAGS]
    result = measured(cmd, work / "log.txt", NO_RAYON)
    timings = json.loads((run / "timings.json").read_text())
    stats = json.loads((run / "stats.json").read_text())
    result["wall_seconds"] = timings["wall_seconds"]
    result["stage_seconds"] = timings.get("stage_seconds", {})
    result |= packing_figures(run / "shards", stats["read"])
    result["tokens_per_s"] = result["tokens"] / result["wall_seconds"]
    return result


def report(results: dict[str, Any]) -> str:
    bare = results["bare"]["tokens_per_s"]
    fast = results["bare_fast"]["tokens_per_s"]
    peer = results.get("datatrove", {}).get("tokens_per_s")
    lines = [
        f"corpus {results['documents']:,} documents, tokenizer {results['tokenizer']}, "
        f"seq_len {results['seq_len']}, median of {results['repeats']}",
        "",
        "| system | tokens | seconds | tokens/s | vs bare | vs bare fast | vs DataTrove "
        "| CPU s (process) | tokens/CPU s | padding | cut docs |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def row(name: str, r: dict, seconds_key: str) -> str:
        tps = r["tokens_per_s"]
        pad, cut = r.get("padding_share"), r.get("cut_share")
        return (
            f"| {name} | {r['tokens']:,} | {r[seconds_key]:.1f} | {tps:,.0f} | {tps / bare:.2f} | "
            f"{tps / fast:.2f} | "
            f"{f'{tps / peer:.2f}' if peer else '-'} | {r['cpu_seconds']:.1f} | "
            f"{r['tokens'] / r['cpu_seconds']:,.0f} | "
            f"{f'{pad:.2%}' if pad is not None else '-'} | {f'{cut:.2%}' if cut is not None else '-'} |"
        )

    lines.append(row("bare tokenizers encode_batch", results["bare"], "seconds"))
    lines.append(row("bare tokenizers encode_batch_fast", results["bare_fast"], "seconds"))
    if "datatrove" in results:
        lines.append(row("DataTrove DocumentTokenizer", results["datatrove"], "wall_seconds"))
    for mode in results["modes"]:
        lines.append(row(f"iptkit pack ({mode})", results["iptkit"][mode], "wall_seconds"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=25_000)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--vocab-size", type=int, default=32_000)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--no-peer", action="store_true", help="skip DataTrove")
    parser.add_argument("--pack-options", type=json.loads, default={}, help="extra pack options")
    args = parser.parse_args()

    docs = corpus.ensure(args.docs, args.seed, WORK / f"corpus-{args.docs}") / "docs.jsonl.gz"
    tokenizer = ensure_tokenizer(docs, args.vocab_size)
    runs: dict[str, list[dict]] = {"bare": [], "bare_fast": [], "datatrove": []}
    runs |= {mode: [] for mode in args.modes}
    base = WORK / "pack"
    for i in range(args.repeats):  # systems interleaved, so drift hits all of them alike
        runs["bare"].append(run_bare(docs, tokenizer, base / f"bare-{i}", "encode_batch"))
        runs["bare_fast"].append(
            run_bare(docs, tokenizer, base / f"bare-fast-{i}", "encode_batch_fast")
        )
        if not args.no_peer:
            runs["datatrove"].append(run_peer(docs, tokenizer, base / f"datatrove-{i}"))
        for mode in args.modes:
            runs[mode].append(
                run_iptkit(
                    docs, tokenizer, base / f"{mode}-{i}", mode, args.seq_len, args.pack_options
                )  # fmt: skip
            )

    def median_run(rs: list[dict]) -> dict:
        """The run with the median tokens/s, with the spread of all runs."""
        chosen = sorted(rs, key=lambda r: r["tokens_per_s"])[len(rs) // 2]
        return {**chosen, "tokens_per_s_all": [r["tokens_per_s"] for r in rs]}

    results: dict[str, Any] = {
        "documents": args.docs,
        "tokenizer": str(tokenizer),
        "seq_len": args.seq_len,
        "repeats": args.repeats,
        "modes": args.modes,
        "bare": median_run(runs["bare"]),
        "bare_fast": median_run(runs["bare_fast"]),
        "iptkit": {mode: median_run(runs[mode]) for mode in args.modes},
    }
    if runs["datatrove"]:
        results["datatrove"] = median_run(runs["datatrove"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pack.json").write_text(json.dumps(results, indent=2))
    table = report(results)
    (RESULTS / "pack.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
