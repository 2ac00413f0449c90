"""Benchmarks the transformers handler inside a Beam pipeline against bare `model.generate`.

    .venv/bin/python benchmarks/bench_inference.py                  # 2 rounds, about 4 minutes
    .venv/bin/python benchmarks/bench_inference.py --device cuda --prompts 512 --batch-size 32

One model (a Llama built here with random weights, about 6M parameters, and a local
word-level tokenizer), one list of prompts (seeded, 8-48 words), greedy decoding, the same
`max_new_tokens` and batch size on both sides:

(a) iptkit: a DirectRunner pipeline `Create -> Generate` (RunInference with a KeyedModelHandler
    over `TransformersHandler`), counting the new tokens of every Generation. Timed from
    `pipeline.run()` to its end: pipeline start-up and model loading included.
(b) bare: load the same model and tokenizer, then for each batch of the same prompts in the
    same order: tokenize, left-pad, `model.generate`, decode the new tokens. Timed from loading
    to the last decode.

Both sides produce the same number of new tokens (checked), so tokens/s compare the same work.
Each measurement is a fresh subprocess; the sides alternate (P B, then B P) so machine noise
hits both; the median of the per-round ratios is reported. `--json` writes every number.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work" / "inference"
sys.path.insert(0, str(ROOT / "tests"))  # the tiny-model builders the tests use


def build(args: argparse.Namespace) -> tuple[Path, list[str]]:
    """The model folder and the prompts (built once, reused by every measurement)."""
    from synth_helpers import build_tokenizer, save, tiny_llama
    from transformers import LlamaConfig, LlamaForCausalLM

    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(2000)]
    prompts = [" ".join(rng.choices(vocab, k=rng.randint(8, 48))) for _ in range(args.prompts)]
    model_dir = WORK / "model"
    if not (model_dir / "config.json").exists():
        tokenizer = build_tokenizer([" ".join(vocab)], model_dir)
        small = tiny_llama(tokenizer, seed=0, max_len=256)
        config = LlamaConfig(**{**small.config.to_dict(), "hidden_size": 256,
                                "intermediate_size": 688, "num_hidden_layers": 4,
                                "num_attention_heads": 8, "num_key_value_heads": 8})  # fmt: skip
        model = LlamaForCausalLM(config)
        # No EOS id is ever produced, so every prompt gets exactly max_new_tokens on both sides.
        model.generation_config.eos_token_id = None
        save(model, tokenizer, model_dir)
    return model_dir, prompts


def run_iptkit(model_dir: Path, prompts: list[str], args: argparse.Namespace) -> dict:
    import apache_beam as beam

    from iptkit.transforms.inference.core import (
        Generate,
        GenerationRequest,
        ModelSpec,
        SamplingSpec,
    )

    spec = ModelSpec(
        "transformers", str(model_dir), device=args.device, max_model_len=256,
        add_special_tokens=False, batch_size=args.batch_size,
        sampling=SamplingSpec(max_new_tokens=args.new_tokens),
    )  # fmt: skip
    out = WORK / "iptkit_tokens.txt"
    start, cpu = time.perf_counter(), time.process_time()
    with beam.Pipeline() as p:
        (
            p
            | beam.Create([(i, GenerationRequest(q)) for i, q in enumerate(prompts)])
            | Generate(spec)
            | beam.Map(lambda kv: kv[1].new_tokens if kv[1].error is None else -(10**9))
            | beam.CombineGlobally(sum)
            | beam.Map(lambda n: out.write_text(str(n)))
        )
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "tokens": int(out.read_text())}


def run_bare(model_dir: Path, prompts: list[str], args: argparse.Namespace) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start, cpu = time.perf_counter(), time.process_time()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir).to(args.device).eval()
    tokens = 0
    with torch.inference_mode():
        for i in range(0, len(prompts), args.batch_size):
            enc = tokenizer(
                prompts[i : i + args.batch_size], add_special_tokens=False,
                padding=True, return_tensors="pt",
            ).to(args.device)  # fmt: skip
            out = model.generate(
                **enc, max_new_tokens=args.new_tokens, do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )  # fmt: skip
            new = out[:, enc["input_ids"].shape[1] :]
            tokenizer.batch_decode(new, skip_special_tokens=True)
            tokens += new.numel()
    return {
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
        "tokens": tokens,
    }


def measure(side: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--side", side, *sys.argv[1:]]
    # Thread counts by environment: Beam runs DoFns on its own threads, which a
    # torch.set_num_threads call in the main thread may not reach.
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    result = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--json", help="write every number here")
    parser.add_argument("--side", choices=["iptkit", "bare"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    model_dir, prompts = build(args)
    if args.side:
        import torch

        torch.set_num_threads(args.threads)
        run = run_iptkit if args.side == "iptkit" else run_bare
        print(json.dumps(run(model_dir, prompts, args)))
        return

    rounds = []
    for r in range(args.rounds):
        order = ["iptkit", "bare"] if r % 2 == 0 else ["bare", "iptkit"]
        got = {side: measure(side, args) for side in order}
        if got["iptkit"]["tokens"] != got["bare"]["tokens"]:
            raise SystemExit(f"sides produced different work: {got}")
        for side in order:
            got[side]["tok_s"] = got[side]["tokens"] / got[side]["seconds"]
            got[side]["tok_cpu_s"] = got[side]["tokens"] / got[side]["cpu_seconds"]
        got["ratio"] = got["iptkit"]["tok_s"] / got["bare"]["tok_s"]
        got["cpu_ratio"] = got["iptkit"]["tok_cpu_s"] / got["bare"]["tok_cpu_s"]
        rounds.append(got)
        print(f"round {r + 1}: " + ", ".join(
            f"{s} {got[s]['tok_s']:,.0f} tok/s ({got[s]['seconds']:.1f} s wall, "
            f"{got[s]['cpu_seconds']:.1f} s CPU)" for s in order
        ) + f"; iptkit/bare {got['ratio']:.3f} (wall), {got['cpu_ratio']:.3f} (CPU)", flush=True)  # fmt: skip
    ratio = statistics.median(g["ratio"] for g in rounds)
    cpu_ratio = statistics.median(g["cpu_ratio"] for g in rounds)
    print(f"\nmedian iptkit/bare tokens/s: {ratio:.3f} by wall time, {cpu_ratio:.3f} by CPU time "
          f"(overhead {1 / ratio - 1:+.1%} / {1 / cpu_ratio - 1:+.1%}; target < 10%)")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rounds": rounds,
                                               "median_ratio": ratio, "median_cpu_ratio": cpu_ratio}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
