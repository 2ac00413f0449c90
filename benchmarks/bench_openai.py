"""Benchmarks backend openai inside a Beam pipeline against a bare HTTP client, same server.

    .venv/bin/python benchmarks/bench_openai.py                 # 3 rounds, about 5 minutes
    .venv/bin/python benchmarks/bench_openai.py --prompts 2000 --concurrency 16 --rounds 5

One server (tests/openai_server.py: a real HTTP server over a tiny random Llama built here, one
generate call at a time), one list of prompts (seeded, 8-48 words), greedy decoding, the same
`max_tokens`, the same concurrency, on both sides:

(a) iptkit: a DirectRunner pipeline `Create -> Generate` with `backend: openai` (RunInference,
    the shared tokenizing and length fitting, token-id prompts, a thread pool of
    `--concurrency` per batch of `--batch-size`), summing the new tokens of every Generation.
    Timed from building the pipeline to its end: pipeline start-up, tokenizer loading and
    the client's start included; module imports (Beam's ml package imports torch) are not, as
    the bare side's are not.
(b) bare: load the same tokenizer, then a thread pool of `--concurrency` sends every prompt as
    token ids with the same JSON body over keep-alive `http.client` connections and reads
    `usage.completion_tokens`. Timed from loading the tokenizer to the last answer.

Both sides must get the same number of new tokens (checked). Each measurement is a fresh
subprocess; the sides alternate (P B, then B P); the median of the per-round ratios of
prompts/s is reported. `--json` writes every number.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work" / "openai"
sys.path.insert(0, str(ROOT / "tests"))  # the tiny-model builders and the test server


def build(args: argparse.Namespace) -> tuple[Path, list[str]]:
    """The model folder and the prompts (built once, reused by every measurement)."""
    from synth_helpers import build_tokenizer, save, tiny_llama

    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(2000)]
    prompts = [" ".join(rng.choices(vocab, k=rng.randint(8, 48))) for _ in range(args.prompts)]
    model_dir = WORK / "model"
    if not (model_dir / "config.json").exists():
        tokenizer = build_tokenizer([" ".join(vocab)], model_dir)
        model = tiny_llama(tokenizer, seed=0, max_len=256)
        model.generation_config.eos_token_id = None
        save(model, tokenizer, model_dir)
    return model_dir, prompts


def run_iptkit(model_dir: Path, prompts: list[str], args: argparse.Namespace) -> dict:
    import apache_beam as beam

    # Imported before the clock starts, as the bare side's modules are: Beam's ml package
    # imports torch (about 2 s), a cost of starting a process, not of throughput.
    import iptkit.transforms.inference.backend_openai  # noqa: F401
    from iptkit.transforms.inference.core import Generate, GenerationRequest, InferenceOptions

    opts = InferenceOptions(
        backend="openai", base_url=args.base_url, model="bench", tokenizer=str(model_dir),
        max_model_len=256, max_new_tokens=args.new_tokens, add_special_tokens=False,
        batch_size=args.batch_size, concurrency=args.concurrency,
    )  # fmt: skip
    out = WORK / "iptkit_tokens.txt"
    start, cpu = time.perf_counter(), time.process_time()
    with beam.Pipeline() as p:
        (
            p
            | beam.Create([(i, GenerationRequest(q)) for i, q in enumerate(prompts)])
            | Generate(opts.model_spec())
            | beam.Map(lambda kv: kv[1].new_tokens if kv[1].error is None else -(10**9))
            | beam.CombineGlobally(sum)
            | beam.Map(lambda n: out.write_text(str(n)))
        )
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "tokens": int(out.read_text())}


def run_bare(model_dir: Path, prompts: list[str], args: argparse.Namespace) -> dict:
    import http.client
    import urllib.parse
    from concurrent.futures import ThreadPoolExecutor

    from transformers import AutoTokenizer

    start, cpu = time.perf_counter(), time.process_time()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    url = urllib.parse.urlsplit(args.base_url)
    local = threading.local()

    def send(prompt: str) -> int:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        body = {
            "model": "bench", "prompt": ids, "max_tokens": args.new_tokens, "temperature": 0.0,
            "top_p": 1.0, "seed": 0,
        }  # fmt: skip
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
        local.conn.request(
            "POST", url.path + "/completions", json.dumps(body).encode(),
            {"Content-Type": "application/json"},
        )  # fmt: skip
        answer = json.loads(local.conn.getresponse().read())
        return answer["usage"]["completion_tokens"]

    with ThreadPoolExecutor(args.concurrency) as pool:
        tokens = sum(pool.map(send, prompts))
    return {
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
        "tokens": tokens,
    }


def measure(side: str, base_url: str) -> dict:
    cmd = [sys.executable, __file__, "--side", side, "--base-url", base_url, *sys.argv[1:]]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    parser.add_argument("--json", help="write every number here")
    parser.add_argument("--side", choices=["iptkit", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    model_dir, prompts = build(args)
    if args.side:
        run = run_iptkit if args.side == "iptkit" else run_bare
        print(json.dumps(run(model_dir, prompts, args)))
        return

    from openai_server import ServerProcess

    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    server = ServerProcess(model_dir, WORK / "server", name="bench", env=env)
    rounds = []
    try:
        for r in range(args.rounds):
            order = ["iptkit", "bare"] if r % 2 == 0 else ["bare", "iptkit"]
            got = {side: measure(side, server.base_url) for side in order}
            if got["iptkit"]["tokens"] != got["bare"]["tokens"]:
                raise SystemExit(f"sides produced different work: {got}")
            for side in order:
                got[side]["prompts_s"] = args.prompts / got[side]["seconds"]
            got["ratio"] = got["iptkit"]["prompts_s"] / got["bare"]["prompts_s"]
            rounds.append(got)
            print(f"round {r + 1}: " + ", ".join(
                f"{s} {got[s]['prompts_s']:,.1f} prompts/s ({got[s]['seconds']:.1f} s wall, "
                f"{got[s]['cpu_seconds']:.1f} s client CPU)" for s in order
            ) + f"; iptkit/bare {got['ratio']:.3f}", flush=True)  # fmt: skip
    finally:
        server.stop()
    ratio = statistics.median(g["ratio"] for g in rounds)
    print(f"\nmedian iptkit/bare prompts/s: {ratio:.3f} (target >= 0.9)")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "rounds": rounds, "median_ratio": ratio}, indent=2)
        )


if __name__ == "__main__":
    main()
