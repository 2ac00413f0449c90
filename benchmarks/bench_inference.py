"""Benchmarks the transformers handler inside a Beam pipeline against bare `model.generate`.

    .venv/bin/python benchmarks/bench_inference.py                  # 2 rounds, about 4 minutes
    .venv/bin/python benchmarks/bench_inference.py --device cuda --prompts 512 --batch-size 32
    # on a GPU, about 0.3B parameters in bf16 (what benchmarks/gpu_check.sh runs):
    python benchmarks/bench_inference.py --device cuda --dtype bfloat16 --hidden-size 1024 \
        --intermediate-size 2816 --layers 24 --heads 16 --prompts 1024 --batch-size 128

One model (a Llama built here with random weights, by default about 6M parameters, and a local
word-level tokenizer without an EOS token, so that neither side stops early), one list of
prompts (seeded, 8-48 words), greedy decoding, the same `max_new_tokens`, dtype and batch size
on both sides:

(a) iptkit: a DirectRunner pipeline `Create -> Generate` (RunInference with a KeyedModelHandler
    over `TransformersHandler`), counting the new tokens of every Generation. Timed from
    `pipeline.run()` to its end: pipeline start-up and model loading included.
    Also from the pipeline's RunInference metrics: the summed batch latency (the handler's
    tokenize + generate + decode, `generate_seconds`) and the model's load time.
(b) bare: load the same model and tokenizer, then for each batch of the same prompts in the
    same order: tokenize, left-pad, `model.generate`, decode the new tokens. Timed from loading
    to the last decode; the batches alone (`generate_seconds`, each in `batch_seconds`) too.

Both sides produce the same number of new tokens (checked), so tokens/s compare the same work.
Each measurement is a fresh subprocess; the sides alternate (P B, then B P) so machine noise
hits both; the median of the per-round ratios is reported: of whole-run tokens/s, and of
tokens per `generate_seconds` (the handler against the bare loop without start-up and loading).
`--json` writes every number.
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
    import torch
    from synth_helpers import build_tokenizer, save, tiny_llama
    from transformers import LlamaConfig, LlamaForCausalLM

    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(2000)]
    prompts = [" ".join(rng.choices(vocab, k=rng.randint(8, 48))) for _ in range(args.prompts)]
    shape = (args.hidden_size, args.intermediate_size, args.layers, args.heads)
    model_dir = WORK / ("model-h{}-i{}-l{}-a{}-".format(*shape) + args.dtype)
    if not (model_dir / "config.json").exists():
        tokenizer = build_tokenizer([" ".join(vocab)], model_dir)
        # No EOS token at all: neither the handler (which falls back to the tokenizer's EOS)
        # nor bare generate can stop early, so every prompt gets exactly max_new_tokens.
        tokenizer.eos_token = None
        small = tiny_llama(tokenizer, seed=0, max_len=256)
        config = LlamaConfig(**{**small.config.to_dict(), "hidden_size": args.hidden_size,
                                "intermediate_size": args.intermediate_size,
                                "num_hidden_layers": args.layers,
                                "num_attention_heads": args.heads,
                                "num_key_value_heads": args.heads})  # fmt: skip
        model = LlamaForCausalLM(config).to(getattr(torch, args.dtype))
        model.generation_config.eos_token_id = None
        save(model, tokenizer, model_dir)
    return model_dir, prompts


DTYPES = ("float32", "bfloat16", "float16")


def parameters(model_dir: Path) -> int:
    """Parameter count of the saved model (from its config, without loading the weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    return sum(p.numel() for p in model.parameters())


def _distribution_sum(result, suffix: str) -> float:
    """Sum of every RunInference distribution whose name ends with `suffix` (any namespace)."""
    found = result.metrics().query()["distributions"]
    return float(sum(m.committed.sum for m in found if m.key.metric.name.endswith(suffix)))


def run_iptkit(model_dir: Path, prompts: list[str], args: argparse.Namespace) -> dict:
    import apache_beam as beam

    from iptkit.transforms.inference.core import (
        Generate,
        GenerationRequest,
        ModelSpec,
        SamplingSpec,
    )

    spec = ModelSpec(
        "transformers", str(model_dir), dtype=args.dtype, device=args.device, max_model_len=256,
        add_special_tokens=False, batch_size=args.batch_size,
        sampling=SamplingSpec(max_new_tokens=args.new_tokens),
    )  # fmt: skip
    out = WORK / "iptkit_tokens.txt"
    start, cpu = time.perf_counter(), time.process_time()
    with beam.Pipeline() as pipeline:
        (
            pipeline
            | beam.Create([(i, GenerationRequest(q)) for i, q in enumerate(prompts)])
            | Generate(spec)
            | beam.Map(lambda kv: kv[1].new_tokens if kv[1].error is None else -(10**9))
            | beam.CombineGlobally(sum)
            | beam.Map(lambda n: out.write_text(str(n)))
        )
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "tokens": int(out.read_text()),
        "generate_seconds": _distribution_sum(pipeline.result, "inference_batch_latency_micro_secs")
        / 1e6,
        "load_seconds": _distribution_sum(pipeline.result, "load_model_latency_milli_secs") / 1e3,
    }


def run_bare(model_dir: Path, prompts: list[str], args: argparse.Namespace) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start, cpu = time.perf_counter(), time.process_time()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, args.dtype))
    model = model.to(args.device).eval()
    load_seconds = time.perf_counter() - start
    tokens, batch_seconds = 0, []
    with torch.inference_mode():
        for i in range(0, len(prompts), args.batch_size):
            t0 = time.perf_counter()
            enc = tokenizer(
                prompts[i : i + args.batch_size], add_special_tokens=False,
                padding=True, return_tensors="pt",
            ).to(args.device)  # fmt: skip
            out = model.generate(
                **enc, max_new_tokens=args.new_tokens, do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )  # fmt: skip
            new = out[:, enc["input_ids"].shape[1] :]
            tokenizer.batch_decode(new, skip_special_tokens=True)  # copies to the CPU: synced
            tokens += new.numel()
            batch_seconds.append(time.perf_counter() - t0)
    return {
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
        "tokens": tokens,
        "generate_seconds": sum(batch_seconds),
        "load_seconds": load_seconds,
        "batch_seconds": batch_seconds,
    }


def measure(side: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--side", side, *sys.argv[1:]]
    # Thread counts by environment: Beam runs DoFns on its own threads, which a
    # torch.set_num_threads call in the main thread may not reach.
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT, env=env)
    if result.returncode != 0:
        raise SystemExit(
            f"the {side} side failed (exit {result.returncode}):\n{result.stderr[-4000:]}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="weights")
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--intermediate-size", type=int, default=688)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8, help="attention heads (as many KV heads)")
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
            got[side]["generate_tok_s"] = got[side]["tokens"] / got[side]["generate_seconds"]
        got["ratio"] = got["iptkit"]["tok_s"] / got["bare"]["tok_s"]
        got["cpu_ratio"] = got["iptkit"]["tok_cpu_s"] / got["bare"]["tok_cpu_s"]
        got["generate_ratio"] = got["iptkit"]["generate_tok_s"] / got["bare"]["generate_tok_s"]
        rounds.append(got)
        print(f"round {r + 1}: " + ", ".join(
            f"{s} {got[s]['tok_s']:,.0f} tok/s ({got[s]['seconds']:.1f} s wall, "
            f"{got[s]['cpu_seconds']:.1f} s CPU)" for s in order
        ) + f"; iptkit/bare {got['ratio']:.3f} (wall), {got['cpu_ratio']:.3f} (CPU), "
          f"{got['generate_ratio']:.3f} (batches only: " + ", ".join(
            f"{s} {got[s]['generate_tok_s']:,.0f} tok/s" for s in order) + ")", flush=True)  # fmt: skip
    ratio = statistics.median(g["ratio"] for g in rounds)
    cpu_ratio = statistics.median(g["cpu_ratio"] for g in rounds)
    generate_ratio = statistics.median(g["generate_ratio"] for g in rounds)
    print(f"\nmedian iptkit/bare tokens/s: {ratio:.3f} by wall time, {cpu_ratio:.3f} by CPU time "
          f"(overhead {1 / ratio - 1:+.1%} / {1 / cpu_ratio - 1:+.1%}; target < 10%), "
          f"{generate_ratio:.3f} over the batches alone")  # fmt: skip
    if args.json:
        model = {"dir": str(model_dir), "parameters": parameters(model_dir), "dtype": args.dtype}
        Path(args.json).write_text(json.dumps({"args": vars(args), "model": model, "rounds": rounds,
                                               "median_ratio": ratio, "median_cpu_ratio": cpu_ratio,
                                               "median_generate_ratio": generate_ratio}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
