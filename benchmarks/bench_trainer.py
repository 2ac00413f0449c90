"""Benchmarks iptkit's trainer against a plain PyTorch loop, and its data loading, on the CPU.

    .venv/bin/python benchmarks/bench_trainer.py                       # 3 rounds of 40 steps, ~5 min
    .venv/bin/python benchmarks/bench_trainer.py --steps 60 --rounds 5 --json OUT.json

On one shard set (written here with iptkit.shards.ShardWriter and a local WordLevel tokenizer)
and one Llama-style model (about 5M parameters, seq_len 256, micro-batch 8, fp32):

(a) iptkit's trainer: `iptkit.trainer.loop.train` in process, one rank, DS_ACCELERATOR=cpu,
    the shipped ZeRO-1 DeepSpeed JSON (AdamW 0.9/0.95, eps 1e-8, weight decay 0.1 on matrices,
    clipping 1.0; `--zero-stage 0` for plain DeepSpeed), no export, no plot, no progress bar.
    Tokens/s over the steady-state steps (the first `--warmup` steps skipped) from its
    metrics.jsonl (train_step only) and from wall time (step to step, the whole loop body: the
    time of each MetricsLog.log call is recorded by a subclass; the trainer itself is unchanged).
(b) a plain PyTorch loop: the same config, init seed, batches (read from the shards with
    numpy.memmap, in the trainer's seeded order), loss, torch.optim.AdamW with the same
    parameter groups, betas, eps, weight decay and warmup-cosine lr, clip_grad_norm_(1.0);
    timed the same two ways. Its losses are compared with the trainer's as a check that both
    sides do the same work.
(c) the trainer's batch iterator (iptkit.trainer.data.StageBatches) alone: tokens/s produced,
    against the tokens/s the trainer consumes (target: at least 50 times).

Every measurement is a fresh subprocess with the same torch thread count (`--threads`), and
the trainer and the plain loop alternate (T P, then P T, ...) so that machine noise hits both;
the median of the per-round ratios is reported. Outputs go to benchmarks/.work/trainer/
(ignored by git); the Markdown section is printed, and every number is written to --json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work" / "trainer"

SEED = 0
SEQ_LEN = 256
MICRO_BATCH = 8
ROWS = 4096  # 1M tokens in 8 shards: more than any run reads in one epoch
SEQUENCES_PER_SHARD = 512
LR, WARMUP_STEPS, MIN_LR_RATIO = 3e-4, 5, 0.1
SPECIAL = {"pad": 0, "bos": 1, "eos": 2}
VOCAB = 4096
MODEL = {  # Llama-style, about 5M parameters (2.1M of them in the untied embeddings)
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 704,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "max_position_embeddings": SEQ_LEN,
    "rope_theta": 10000.0,
    "vocab_size": VOCAB,
    "attention_dropout": 0.0,
    "tie_word_embeddings": False,
}


# --- the data ---------------------------------------------------------------------------------


def write_data(root: Path) -> Path:
    """Tokenizer, model config and a pretrain shard set under `root` (kept if already there)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from iptkit.shards import ShardWriter, sha256_file

    root.mkdir(parents=True, exist_ok=True)
    (root / "model.json").write_text(json.dumps(MODEL, indent=1))
    shards = root / "shards"
    if (shards / "manifest.json").is_file():
        return shards
    # The same kind of WordLevel tokenizer as tests/trainer_helpers.py, with a larger vocabulary.
    words = VOCAB - len(SPECIAL)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2} | {f"w{i}": 3 + i for i in range(words)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok_path = root / "tokenizer.json"
    tokenizer.save(str(tok_path))
    # Documents of 16-400 tokens (BOS, then words counting up by a per-document stride), packed
    # 1-4 to a row, so the block-diagonal attention of packed documents is exercised.
    rng = np.random.default_rng(SEED)
    with ShardWriter(
        shards,
        seq_len=SEQ_LEN,
        vocab_size=VOCAB,
        tokenizer_path=str(tok_path),
        tokenizer_sha256=sha256_file(tok_path),
        special_tokens=SPECIAL,
        spec_hash="bench_trainer",
        seed=SEED,
        has_loss_mask=False,
        sequences_per_shard=SEQUENCES_PER_SHARD,
        overwrite=True,
    ) as writer:
        for _ in range(ROWS):
            n_docs = int(rng.integers(1, 5))
            cuts = np.sort(rng.choice(np.arange(16, SEQ_LEN - 16), size=n_docs - 1, replace=False))
            starts = [0, *cuts.tolist()]
            pieces = []
            for length in np.diff([*starts, SEQ_LEN]):
                start, stride = rng.integers(words), rng.integers(1, 8)
                pieces += [[1], 3 + (start + stride * np.arange(length - 1)) % words]
            writer.add(np.concatenate(pieces), None, starts)
    return shards


class MemmapBatches:
    """The plain loop's reader: numpy.memmap of the shard files, the trainer's seeded order."""

    def __init__(self, shards: Path, seed: int) -> None:
        manifest = json.loads((shards / "manifest.json").read_text())
        self.seq_len = manifest["seq_len"]
        self.seed = seed
        dtype = np.dtype(manifest["dtype"]).newbyteorder("<")
        self.tokens, self.docs, self.docidx = [], [], []
        for shard in manifest["shards"]:
            files = shard["files"]
            n = shard["sequences"]
            self.tokens.append(
                np.memmap(
                    shards / files["tokens"]["path"], dtype=dtype, mode="r", shape=(n, self.seq_len)
                )
            )
            self.docs.append(np.memmap(shards / files["docs"]["path"], dtype="<u4", mode="r"))
            self.docidx.append(np.memmap(shards / files["docidx"]["path"], dtype="<u8", mode="r"))
        self.ends = np.cumsum([len(t) for t in self.tokens])
        self.n = int(self.ends[-1])
        self.epoch: tuple[int, np.ndarray] | None = None
        self.arange = np.arange(self.seq_len, dtype=np.int64)

    def batch(self, step: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        tokens = np.empty((size, self.seq_len), dtype=np.int64)
        positions = np.empty((size, self.seq_len), dtype=np.int64)
        for j, p in enumerate(range(step * size, step * size + size)):
            epoch = p // self.n
            if self.epoch is None or self.epoch[0] != epoch:
                order = np.random.default_rng([self.seed, 0, epoch]).permutation(self.n)
                self.epoch = (epoch, order)
            index = int(self.epoch[1][p % self.n])
            shard = int(np.searchsorted(self.ends, index, side="right"))
            row = index - (int(self.ends[shard - 1]) if shard else 0)
            tokens[j] = self.tokens[shard][row]
            idx = self.docidx[shard]
            starts = self.docs[shard][int(idx[row]) : int(idx[row + 1])].astype(np.int64)
            segment = np.searchsorted(starts, self.arange, side="right") - 1
            positions[j] = self.arange - starts[segment]
        return tokens, positions


# --- the workers (each a fresh process) -------------------------------------------------------


def lr_at(step: int, steps: int) -> float:
    """The trainer's warmup-cosine schedule for a single stage, written out."""
    if step < WARMUP_STEPS:
        return LR * (step + 1) / WARMUP_STEPS
    progress = (step - WARMUP_STEPS) / max(1, steps - WARMUP_STEPS - 1)
    min_lr = LR * MIN_LR_RATIO
    return min_lr + (LR - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def worker_trainer(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    import yaml

    from iptkit.trainer import loop
    from iptkit.trainer.config import load_config

    out = Path(args.out_dir)
    ds = json.loads((ROOT / "configs" / "deepspeed" / "zero1.json").read_text())
    ds["zero_optimization"]["stage"] = args.zero_stage
    (out / "deepspeed.json").write_text(json.dumps(ds, indent=1))
    run_yaml = out / "run.yaml"
    run_yaml.write_text(
        yaml.safe_dump(
            {
                "run_dir": str(out / "run"),
                "seed": SEED,
                "model": {"config": str(WORK / "model.json")},
                "deepspeed": str(out / "deepspeed.json"),
                "precision": "fp32",
                "micro_batch_size": MICRO_BATCH,
                "gradient_accumulation_steps": 1,
                "stages": [
                    {
                        "name": "bench",
                        "data": str(WORK / "shards"),
                        "steps": args.steps,
                        "lr": LR,
                        "warmup_steps": WARMUP_STEPS,
                        "min_lr_ratio": MIN_LR_RATIO,
                    }
                ],
                "checkpoint": {"every_steps": 0, "keep_last": 1},
                "metrics": {"progress_bar": False, "tensorboard": False, "plot": False},
                "export": {"enabled": False},
            },
            sort_keys=False,
        )
    )

    stamps: list[float] = []

    class TimedMetricsLog(loop.MetricsLog):
        def log(self, **kwargs: Any) -> None:
            stamps.append(time.perf_counter())
            super().log(**kwargs)

    loop.MetricsLog = TimedMetricsLog  # instrumentation only: one timestamp per step
    started = time.perf_counter()
    loop.train(load_config(run_yaml))
    total = time.perf_counter() - started
    records = [json.loads(x) for x in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    return {
        "losses": [r["loss"] for r in records],
        "step_seconds": [MICRO_BATCH * SEQ_LEN / r["tokens_per_s"] for r in records],
        "stamps": stamps,
        "total_seconds": total,
        "threads": torch.get_num_threads(),
    }


def worker_plain(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    from transformers import AutoConfig, AutoModelForCausalLM

    data = MemmapBatches(WORK / "shards", SEED)
    spec = dict(MODEL)
    config = AutoConfig.for_model(spec.pop("model_type"), **spec)
    config.use_cache = False
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_config(
        config, dtype=torch.float32, attn_implementation="sdpa"
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in params if p.dim() >= 2]},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=LR,
        betas=(0.9, 0.95),
        eps=1e-8,
        weight_decay=0.1,
    )
    model.train()
    losses, step_seconds, stamps = [], [], []
    started = time.perf_counter()
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.steps)
        t0 = time.perf_counter()
        tokens, positions = data.batch(step, MICRO_BATCH)
        input_ids, position_ids = torch.from_numpy(tokens), torch.from_numpy(positions)
        logits = model(input_ids=input_ids, position_ids=position_ids).logits
        targets = input_ids[:, 1:]
        loss = (
            F.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                targets.reshape(-1),
                reduction="sum",
            )
            / targets.numel()
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        value = loss.item()
        step_seconds.append(time.perf_counter() - t0)
        losses.append(value)
        stamps.append(time.perf_counter())
    return {
        "losses": losses,
        "step_seconds": step_seconds,
        "stamps": stamps,
        "total_seconds": time.perf_counter() - started,
        "threads": torch.get_num_threads(),
    }


def worker_loader(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    from iptkit.shards import open_shards
    from iptkit.trainer.data import Layout, StageBatches

    shards = open_shards(WORK / "shards")
    out: dict[str, Any] = {"threads": torch.get_num_threads()}
    batches = StageBatches(shards, "pretrain", SEED, 0, Layout(MICRO_BATCH, 1, 1, 0))
    plain = MemmapBatches(WORK / "shards", SEED)
    for name, fetch in (
        ("trainer", lambda s: batches.micro_batch(s, 0)),
        ("memmap", lambda s: plain.batch(s, MICRO_BATCH)),
    ):
        for s in range(20):  # warm: maps opened, pages cached
            fetch(s)
        steps = args.loader_batches
        t0 = time.perf_counter()
        for s in range(steps):  # several epochs: the permutation is redrawn at each
            fetch(s)
        seconds = time.perf_counter() - t0
        out[name] = {
            "batches": steps,
            "seconds": seconds,
            "tokens_per_s": steps * MICRO_BATCH * SEQ_LEN / seconds,
        }
    return out


WORKERS = {"trainer": worker_trainer, "plain": worker_plain, "loader": worker_loader}


# --- the driver -------------------------------------------------------------------------------


def measure(kind: str, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    out = WORK / "runs" / tag
    if out.exists():
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        kind,
        "--out-dir",
        str(out),
        "--steps",
        str(args.steps),
        "--threads",
        str(args.threads),
        "--zero-stage",
        str(args.zero_stage),
        "--loader-batches",
        str(args.loader_batches),
    ]
    threads = str(args.threads)
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "RANK",
            "LOCAL_RANK",
            "WORLD_SIZE",
            "LOCAL_WORLD_SIZE",
            "MASTER_ADDR",
            "MASTER_PORT",
        )
    }
    env |= {
        "DS_ACCELERATOR": "cpu",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "TOKENIZERS_PARALLELISM": "false",
    }
    log = out / "log.txt"
    print(f"  {tag} ...", end="", flush=True, file=sys.stderr)
    with open(log, "wb") as fh:
        code = subprocess.run(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT, check=False
        ).returncode
    if code != 0:
        raise RuntimeError(f"{tag} failed (exit {code}); {log}:\n{log.read_text()[-3000:]}")
    result = json.loads((out / "result.json").read_text())
    print(" done", file=sys.stderr)
    return result


def steady(result: dict[str, Any], warmup: int) -> dict[str, float]:
    """Tokens/s over steps warmup+1..N: from the per-step times, and from wall time."""
    tokens = MICRO_BATCH * SEQ_LEN
    per_step = result["step_seconds"][warmup:]
    stamps = result["stamps"]
    n = len(stamps) - warmup
    wall = stamps[-1] - stamps[warmup - 1] if warmup else stamps[-1] - stamps[0]
    if not warmup:
        n -= 1
    return {
        "steps": len(per_step),
        "step_tokens_per_s": tokens * len(per_step) / sum(per_step),
        "median_step_s": statistics.median(per_step),
        "wall_tokens_per_s": tokens * n / wall,
        "wall_step_s": wall / n,
    }


def machine() -> dict[str, Any]:
    import deepspeed
    import torch
    import transformers

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "deepspeed": deepspeed.__version__,
        "transformers": transformers.__version__,
        "load_avg_at_start": os.getloadavg(),
    }


def parameter_count() -> int:
    h, i, L, v = (
        MODEL[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size")
    )
    kv = h * MODEL["num_key_value_heads"] // MODEL["num_attention_heads"]
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * i + 2 * h
    return L * per_layer + 2 * v * h + h


def markdown(res: dict[str, Any]) -> str:
    a = res["args"]
    m = res["machine"]
    s = res["summary"]
    ok = lambda b: "**met**" if b else "**not met**"  # noqa: E731
    lines = [
        "## Trainer: iptkit vs a plain PyTorch loop (CPU)",
        "",
        f"Run {res['date']} on {m['cpu']}, {m['cores']} cores (shared; load average "
        f"{m['load_avg_at_start'][0]:.2f} at the start), Python {m['python']}, torch {m['torch']}, "
        f"DeepSpeed {m['deepspeed']}, transformers {m['transformers']}. Command:",
        "",
        f"    {res['command']}",
        "",
        f"Model: Llama-style, {res['parameters'] / 1e6:.1f}M parameters (hidden "
        f"{MODEL['hidden_size']}, {MODEL['num_hidden_layers']} layers, {MODEL['num_attention_heads']}"
        f" heads / {MODEL['num_key_value_heads']} KV, MLP {MODEL['intermediate_size']}, vocab "
        f"{VOCAB}, untied), sdpa, fp32. Batch: micro-batch {MICRO_BATCH} x seq_len {SEQ_LEN} = "
        f"{MICRO_BATCH * SEQ_LEN} tokens per step, packed rows of 1-4 documents (position ids "
        f"restart per document). Optimizer on both sides: AdamW (0.9, 0.95), eps 1e-8, weight "
        f"decay 0.1 on matrices, clipping 1.0, warmup {WARMUP_STEPS} then cosine from {LR}. "
        f"iptkit: `train()` in process, one rank, DS_ACCELERATOR=cpu, ZeRO stage {a['zero_stage']}"
        f" (torch AdamW). Each run is a fresh process with {a['threads']} torch thread(s); "
        f"{a['steps']} steps, the first {a['warmup']} skipped; runs alternate between the two "
        f"sides ({a['rounds']} rounds, the first T P, then P T, ...).",
        "",
        "*step* = tokens / time inside the step (iptkit: metrics.jsonl `tokens_per_s`, which "
        "times `train_step`; plain: batch read to `loss.item()`); *wall* = tokens / time from "
        "the end of step W to the end of step N (the whole loop body: lr, metrics, grad norm). "
        "Both are totals, so one step slowed by another process on the shared cores weighs in "
        "full; the ratio of median step times is the figure least moved by such spikes.",
        "",
        "| round | side | step tok/s | wall tok/s | median step (s) | loss at step N |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in res["runs"]:
        st = r["steady"]
        lines.append(
            f"| {r['round']} | {r['side']} | {st['step_tokens_per_s']:,.0f} | "
            f"{st['wall_tokens_per_s']:,.0f} | {st['median_step_s']:.3f} | {r['losses'][-1]:.4f} |"
        )
    lines += [
        "",
        "| | iptkit / plain, tok/s (median of rounds) | overhead (time per step) | target |",
        "|---|---:|---:|---|",
        f"| step | {s['ratio_step']:.3f} ({', '.join(f'{x:.3f}' for x in s['ratios_step'])}) | "
        f"{s['overhead_step'] * 100:+.1f}% | < 10%: {ok(s['overhead_step'] < 0.10)} |",
        f"| wall | {s['ratio_wall']:.3f} ({', '.join(f'{x:.3f}' for x in s['ratios_wall'])}) | "
        f"{s['overhead_wall'] * 100:+.1f}% | < 10%: {ok(s['overhead_wall'] < 0.10)} |",
        f"| median step time | {s['ratio_median']:.3f} ("
        f"{', '.join(f'{x:.3f}' for x in s['ratios_median'])}) | "
        f"{s['overhead_median'] * 100:+.1f}% | < 10%: {ok(s['overhead_median'] < 0.10)} |",
        "",
        f"Same work on both sides: the step-1 losses are {s['loss_step1_iptkit']:.6f} (iptkit) "
        f"and {s['loss_step1_plain']:.6f} (plain); the largest loss difference over the "
        f"{a['steps']} steps is {s['max_loss_diff']:.2e}.",
        "",
        "Data loading, one process, the same thread count: the trainer's batch iterator "
        "(`StageBatches.micro_batch`, pages cached) alone, against what training consumes "
        "(iptkit's steady-state step tok/s, median over its runs). The iterator runs in the "
        "training loop's thread, without prefetch, so its time adds to each step: 1/ratio of it.",
        "",
        "| reader | batches | tok/s produced | / tok/s trained | target |",
        "|---|---:|---:|---:|---|",
    ]
    ld = res["loader"]
    for name, label in (
        ("trainer", "iptkit `StageBatches`"),
        ("memmap", "plain loop's memmap reader"),
    ):
        lines.append(
            f"| {label} | {ld[name]['batches']:,} | {ld[name]['tokens_per_s']:,.0f} | "
            f"{ld[name]['tokens_per_s'] / s['trained_tokens_per_s']:,.0f}x | "
            + (f">= 50x: {ok(s['loader_ratio'] >= 50)} |" if name == "trainer" else "|")
        )
    lines += [
        "",
        "MFU of the 500M preset on an H100 (the GPU part of the requirement) was not measured: "
        "no GPU was available to this run.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=40, help="optimizer steps per run (default 40)")
    p.add_argument("--warmup", type=int, default=5, help="steps skipped in the figures (default 5)")
    p.add_argument(
        "--rounds", type=int, default=3, help="trainer/plain pairs, alternating (default 3)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads in every run (default 1: steadier on a shared machine)",
    )
    p.add_argument(
        "--zero-stage",
        type=int,
        default=1,
        choices=(0, 1),
        help="ZeRO stage of the trainer's DeepSpeed JSON (default 1, as configs/deepspeed/zero1)",
    )
    p.add_argument(
        "--loader-batches",
        type=int,
        default=3000,
        help="micro-batches the loader benchmark reads (default 3000)",
    )
    p.add_argument("--json", type=Path, help="write every number here")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--out-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        result = WORKERS[args.worker](args)
        Path(args.out_dir, "result.json").write_text(json.dumps(result))
        return 0
    if not 0 <= args.warmup < args.steps - 1:
        p.error("--warmup must be below --steps - 1")

    command = ".venv/bin/python benchmarks/bench_trainer.py " + shlex.join(sys.argv[1:])
    info = machine()
    write_data(WORK)
    runs = []
    for rnd in range(1, args.rounds + 1):
        order = ("iptkit", "plain") if rnd % 2 else ("plain", "iptkit")
        for side in order:
            r = measure("trainer" if side == "iptkit" else "plain", args, f"r{rnd}-{side}")
            runs.append({"round": rnd, "side": side, "steady": steady(r, args.warmup), **r})
    loader = measure("loader", args, "loader")

    def by(side: str) -> list[dict[str, Any]]:
        return [r for r in runs if r["side"] == side]

    ratios_step, ratios_wall, ratios_median = [], [], []
    for rnd in range(1, args.rounds + 1):
        ip = next(r for r in by("iptkit") if r["round"] == rnd)["steady"]
        pl = next(r for r in by("plain") if r["round"] == rnd)["steady"]
        ratios_step.append(ip["step_tokens_per_s"] / pl["step_tokens_per_s"])
        ratios_wall.append(ip["wall_tokens_per_s"] / pl["wall_tokens_per_s"])
        ratios_median.append(pl["median_step_s"] / ip["median_step_s"])
    trained = statistics.median(r["steady"]["step_tokens_per_s"] for r in by("iptkit"))
    ip_losses, pl_losses = by("iptkit")[0]["losses"], by("plain")[0]["losses"]
    summary = {
        "ratios_step": ratios_step,
        "ratios_wall": ratios_wall,
        "ratio_step": statistics.median(ratios_step),
        "ratio_wall": statistics.median(ratios_wall),
        "ratios_median": ratios_median,
        "ratio_median": statistics.median(ratios_median),
        "overhead_median": 1 / statistics.median(ratios_median) - 1,
        "overhead_step": 1 / statistics.median(ratios_step) - 1,
        "overhead_wall": 1 / statistics.median(ratios_wall) - 1,
        "trained_tokens_per_s": trained,
        "loader_ratio": loader["trainer"]["tokens_per_s"] / trained,
        "loss_step1_iptkit": ip_losses[0],
        "loss_step1_plain": pl_losses[0],
        "max_loss_diff": max(abs(a - b) for a, b in zip(ip_losses, pl_losses, strict=True)),
    }
    summary["targets_met"] = {
        "overhead_lt_10pct": summary["overhead_wall"] < 0.10 and summary["overhead_step"] < 0.10,
        "loader_ge_50x": summary["loader_ratio"] >= 50,
    }
    res = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "command": command,
        "machine": info,
        "args": {k: v for k, v in vars(args).items() if k not in ("worker", "out_dir", "json")},
        "model": MODEL,
        "parameters": parameter_count(),
        "seq_len": SEQ_LEN,
        "micro_batch": MICRO_BATCH,
        "runs": runs,
        "loader": loader,
        "summary": summary,
    }
    text = markdown(res)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
