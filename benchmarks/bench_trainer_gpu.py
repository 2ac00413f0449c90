"""The trainer's tokens/s and MFU on one accelerator for a model preset, against a plain loop.

    python benchmarks/bench_trainer_gpu.py --json OUT.json        # one H100: about 2 minutes
    python benchmarks/bench_trainer_gpu.py --device cpu --precision bf16 --seq-len 128 \\
        --micro-batch 2 --accumulation 1 --steps 4 --warmup 1 \\
        --override hidden_size=64 --override intermediate_size=128 \\
        --override num_hidden_layers=2 --override num_attention_heads=4 \\
        --override num_key_value_heads=4 --override vocab_size=512     # the CPU dry run

benchmarks/gpu_check.sh runs it on the GPU machine. Defaults: the 500M preset
(configs/models/mistral-500m.yaml: Mistral, 16 layers, hidden 1536, MLP 4320, 24 heads, vocab
32000, untied, attention dropout 0.1), seq_len 2048, micro-batch 16 x 2 accumulation (the
per-GPU batch of configs/train/instruct-pt-500m.yaml: 65,536 tokens per optimizer step), bf16,
ZeRO-1 (configs/deepspeed/zero1.json, torch AdamW), sdpa attention. The data are random token
ids in packed rows of 1-4 documents (position ids restart at each document, so attention is
confined to it, as in real packed shards), written with iptkit.shards.ShardWriter.

(a) trainer: `iptkit.trainer.loop.train` in a fresh process, one rank, DS_ACCELERATOR set to the
    device, no export; the end-of-run checkpoint is skipped (save_checkpoint patched to a no-op;
    `--checkpoint` keeps it and reports its seconds). Per-step seconds come from metrics.jsonl:
    the loop times `train_step` (every micro-batch's forward, backward and DeepSpeed step, then
    the loss all-reduce and `.item()`, which waits for the GPU); per-step wall stamps too.
(b) plain: the same model (same init seed), batches (numpy.memmap in the trainer's order),
    loss and parameter groups, in a fresh process: fp32 weights under torch.autocast(bf16),
    torch.optim.AdamW with its default (foreach) kernels as DeepSpeed's `torch_adam`,
    clip_grad_norm_(1.0), the same warmup-cosine lr; each step ends at the loss's `.item()`.
    Not bit-identical work: DeepSpeed's bf16 keeps bf16 weights with fp32 master copies, autocast
    casts fp32 weights at each use; the matrix products, the bulk of the time, are the same.

MFU = flops_per_token x tokens/s / peak, over the steps after `--warmup`:
    flops_per_token = 6 N + 12 L h s
N is every parameter (as the trainer counts them: embeddings and lm_head included), 6 N the
weight products forward and backward; L layers, h hidden size, s seq_len: 12 L h s is the
attention scores and the weighted sum of values, forward and backward (PaLM, appendix B; the
trainer's iptkit.trainer.models.flops_per_token, checked equal here). It counts full s x s
attention, as is conventional: causal masking and packed documents need less.
peak: dense bf16 TFLOP/s by device name (gpu_check_util.PEAK_BF16_TFLOPS: H100 SXM 989,
H100 PCIe 756, H200 989), or PEAK_TFLOPS from the environment; printed with the figures.

A run that runs out of GPU memory is retried with half the micro-batch and twice the
accumulation (the same tokens per step); the JSON says so.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work" / "trainer-gpu"
sys.path.insert(0, str(HERE))  # bench_trainer's memmap reader, gpu_check_util's peak table

SEED = 0
SPECIAL = {"pad": 0, "bos": 1, "eos": 2}
OOM_EXIT = 3


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    import yaml

    out = {}
    for item in args.override:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--override takes KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def model_facts(args: argparse.Namespace) -> dict[str, Any]:
    """The preset's shape and exact parameter count (built on the meta device: no memory)."""
    import torch
    from transformers import AutoModelForCausalLM

    from iptkit.trainer.config import ModelConfig
    from iptkit.trainer.models import architecture, flops_per_token

    config = architecture(ModelConfig(config=args.model, overrides=overrides(args)))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    n = sum(p.numel() for p in model.parameters())
    L, h, s = config.num_hidden_layers, config.hidden_size, args.seq_len
    weights, attention = 6 * n, 12 * L * h * s
    assert weights + attention == flops_per_token(config, n, s), "formula differs from trainer's"
    return {
        "preset": args.model,
        "overrides": overrides(args),
        "model_type": config.model_type,
        "parameters": n,
        "embedding_parameters": config.vocab_size * h,
        "layers": L,
        "hidden_size": h,
        "intermediate_size": getattr(config, "intermediate_size", None),
        "heads": config.num_attention_heads,
        "kv_heads": getattr(config, "num_key_value_heads", None),
        "vocab_size": config.vocab_size,
        "attention_dropout": getattr(config, "attention_dropout", None),
        "flops_per_token": {
            "formula": "6*N + 12*L*h*s",
            "N": n,
            "L": L,
            "h": h,
            "s": s,
            "weights_6N": weights,
            "attention_12Lhs": attention,
            "total": weights + attention,
        },
    }


# --- the data ---------------------------------------------------------------------------------


def write_data(root: Path, seq_len: int, vocab: int, rows: int, max_docs: int) -> Path:
    """A WordLevel tokenizer of `vocab` ids and `rows` packed rows of random ids (kept if there)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from iptkit.shards import ShardWriter, sha256_file

    shards = root / "shards"
    if (shards / "manifest.json").is_file():
        return shards
    root.mkdir(parents=True, exist_ok=True)
    words = {f"w{i}": len(SPECIAL) + i for i in range(vocab - len(SPECIAL))}
    tokenizer = Tokenizer(models.WordLevel(vocab={"<pad>": 0, "<s>": 1, "</s>": 2} | words,
                                           unk_token="<pad>"))  # fmt: skip
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok_path = root / "tokenizer.json"
    tokenizer.save(str(tok_path))
    rng = np.random.default_rng(SEED)
    low = min(16, seq_len // 8)
    with ShardWriter(
        shards,
        seq_len=seq_len,
        vocab_size=vocab,
        tokenizer_path=str(tok_path),
        tokenizer_sha256=sha256_file(tok_path),
        special_tokens=SPECIAL,
        spec_hash="bench_trainer_gpu",
        seed=SEED,
        has_loss_mask=False,
        sequences_per_shard=256,
        overwrite=True,
    ) as writer:
        for _ in range(rows):
            n_docs = int(rng.integers(1, max_docs + 1))
            inner = np.arange(low, seq_len - low)
            cuts = np.sort(rng.choice(inner, size=n_docs - 1, replace=False))
            starts = [0, *cuts.tolist()]
            tokens = rng.integers(len(SPECIAL), vocab, size=seq_len)
            tokens[starts] = SPECIAL["bos"]
            writer.add(tokens, None, starts)
    return shards


# --- the workers (each a fresh process) -------------------------------------------------------


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """The trainer's warmup-cosine schedule for one stage (min_lr_ratio 0.1), written out."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup - 1)
    return lr * 0.1 + lr * 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def device_info(device: str) -> dict[str, Any]:
    import torch
    from gpu_check_util import peak_tflops

    if device != "cuda":
        peak, why = peak_tflops("cpu")
        return {"device_name": "cpu", "peak_tflops": peak, "peak_source": why}
    name = torch.cuda.get_device_name(0)
    peak, why = peak_tflops(name)
    return {"device_name": name, "peak_tflops": peak, "peak_source": why}


def memory(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def worker_trainer(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import yaml

    torch.set_num_threads(args.threads)
    from iptkit.trainer import loop
    from iptkit.trainer.config import load_config

    out = Path(args.out_dir)
    info = device_info(args.device)
    ds = json.loads((ROOT / "configs" / "deepspeed" / "zero1.json").read_text())
    ds["zero_optimization"]["stage"] = args.zero_stage
    (out / "deepspeed.json").write_text(json.dumps(ds, indent=1))
    metrics: dict[str, Any] = {"progress_bar": False, "tensorboard": False, "plot": False}
    if info["peak_tflops"]:
        metrics["peak_tflops"] = info["peak_tflops"]  # the trainer's own per-step mfu
    run = {
        "run_dir": str(out / "run"),
        "seed": SEED,
        "model": {"config": args.model, "overrides": overrides(args)},
        "deepspeed": str(out / "deepspeed.json"),
        "precision": args.precision,
        "micro_batch_size": args.micro_batch,
        "gradient_accumulation_steps": args.accumulation,
        "stages": [
            {
                "name": "bench",
                "data": args.data,
                "steps": args.steps,
                "lr": args.lr,
                "warmup_steps": args.lr_warmup,
                "min_lr_ratio": 0.1,
            }
        ],  # fmt: skip
        "checkpoint": {"every_steps": 0, "keep_last": 1},
        "metrics": metrics,
        "export": {"enabled": False},
    }
    (out / "run.yaml").write_text(yaml.safe_dump(run, sort_keys=False))

    stamps: list[float] = []
    checkpoint_seconds: list[float] = []

    class TimedMetricsLog(loop.MetricsLog):
        def log(self, **kwargs: Any) -> None:
            stamps.append(time.perf_counter())
            super().log(**kwargs)

    real_save = loop.save_checkpoint

    def save_checkpoint(*a: Any, **k: Any) -> None:
        if args.checkpoint:
            t0 = time.perf_counter()
            real_save(*a, **k)
            checkpoint_seconds.append(time.perf_counter() - t0)

    loop.MetricsLog = TimedMetricsLog  # instrumentation only: one timestamp per step
    loop.save_checkpoint = save_checkpoint
    started = time.perf_counter()
    try:
        result = loop.train(load_config(out / "run.yaml"))
    except torch.OutOfMemoryError as exc:
        return {"oom": True, "error": str(exc)[:2000], **info}
    total = time.perf_counter() - started
    records = [json.loads(x) for x in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    tokens = args.micro_batch * args.accumulation * args.seq_len
    return {
        **info,
        "losses": [r["loss"] for r in records],
        "step_seconds": [tokens / r["tokens_per_s"] for r in records],
        "trainer_mfu": [r["mfu"] for r in records],
        "stamps": stamps,
        "setup_seconds": stamps[0] - started - tokens / records[0]["tokens_per_s"],
        "total_seconds": total,
        "checkpoint_seconds": checkpoint_seconds,
        "parameters": sum(p.numel() for p in result.engine.module.parameters()),
        "weights_dtype": str(next(result.engine.module.parameters()).dtype),
        "max_memory_gib": memory(args.device),
    }


def worker_plain(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    from bench_trainer import MemmapBatches

    from iptkit.trainer.config import ModelConfig
    from iptkit.trainer.models import architecture, build_model
    from iptkit.trainer.optim import parameter_groups

    info = device_info(args.device)
    started = time.perf_counter()
    cfg = ModelConfig(config=args.model, overrides=overrides(args))
    model = build_model(cfg, architecture(cfg), SEED).to(args.device)
    torch.manual_seed(SEED)  # dropout, as the trainer seeds it after building
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        parameter_groups(model), lr=args.lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1
    )
    data = MemmapBatches(Path(args.data), SEED)
    model.train()
    autocast = torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    losses, step_seconds, stamps = [], [], []
    setup = time.perf_counter() - started
    try:
        for step in range(args.steps):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, args.steps, args.lr, args.lr_warmup)
            t0 = time.perf_counter()
            total = torch.zeros((), device=args.device)
            for micro in range(args.accumulation):
                tokens, positions = data.batch(step * args.accumulation + micro, args.micro_batch)
                input_ids = torch.from_numpy(tokens).to(args.device)
                position_ids = torch.from_numpy(positions).to(args.device)
                with autocast:
                    logits = model(input_ids=input_ids, position_ids=position_ids).logits
                targets = input_ids[:, 1:]
                loss = F.cross_entropy(
                    logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                    targets.reshape(-1),
                    reduction="sum",
                ) / targets.numel()  # fmt: skip
                (loss / args.accumulation).backward()
                total += loss.detach()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            value = total.item() / args.accumulation
            step_seconds.append(time.perf_counter() - t0)
            losses.append(value)
            stamps.append(time.perf_counter())
    except torch.OutOfMemoryError as exc:
        return {"oom": True, "error": str(exc)[:2000], **info}
    return {
        **info,
        "losses": losses,
        "step_seconds": step_seconds,
        "stamps": stamps,
        "setup_seconds": setup,
        "total_seconds": time.perf_counter() - started,
        "max_memory_gib": memory(args.device),
    }


WORKERS = {"trainer": worker_trainer, "plain": worker_plain}


# --- the driver -------------------------------------------------------------------------------


def measure(kind: str, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    """One worker in a fresh process; an out-of-memory result comes back as {"oom": True}."""
    out = WORK / "runs" / tag
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    passed = ["--model", args.model, "--seq-len", args.seq_len, "--micro-batch", args.micro_batch,
              "--accumulation", args.accumulation, "--steps", args.steps, "--device", args.device,
              "--precision", args.precision, "--zero-stage", args.zero_stage, "--lr", args.lr,
              "--lr-warmup", args.lr_warmup, "--threads", args.threads, "--data", args.data,
              *(x for o in args.override for x in ("--override", o)),
              *(["--checkpoint"] if args.checkpoint else [])]  # fmt: skip
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--out-dir", str(out)]
    cmd += [str(x) for x in passed]
    launcher = (
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "LOCAL_WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
    )
    env = {k: v for k, v in os.environ.items() if k not in launcher}
    threads = str(args.threads)
    env |= {
        "DS_ACCELERATOR": args.device,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "TOKENIZERS_PARALLELISM": "false",
        "PYTORCH_CUDA_ALLOC_CONF": env.get("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True"),
    }
    log = out / "log.txt"
    print(f"  {tag}: micro-batch {args.micro_batch} x {args.accumulation} ...", flush=True)
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        code = subprocess.run(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT, check=False
        ).returncode
    result_file = out / "result.json"
    if code == OOM_EXIT and result_file.is_file():
        return json.loads(result_file.read_text())
    if code != 0:
        raise SystemExit(f"{tag} failed (exit {code}); {log}:\n{log.read_text()[-4000:]}")
    result = json.loads(result_file.read_text())
    result["process_seconds"] = time.perf_counter() - t0
    print(f"  {tag}: done in {result['process_seconds']:.1f} s", flush=True)
    return result


def steady(result: dict[str, Any], warmup: int, tokens: int) -> dict[str, float]:
    """Tokens/s over steps warmup+1..N: from the per-step times, and from the wall stamps."""
    per_step = result["step_seconds"][warmup:]
    stamps = result["stamps"]
    first = warmup - 1 if warmup else 0
    n = len(stamps) - 1 - first
    wall = stamps[-1] - stamps[first]
    return {
        "steps": len(per_step),
        "step_tokens_per_s": tokens * len(per_step) / sum(per_step),
        "median_step_s": statistics.median(per_step),
        "min_step_s": min(per_step),
        "wall_tokens_per_s": tokens * n / wall if n > 0 else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="mistral-500m", help="preset in configs/models, or a path")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="model config attribute (repeatable), e.g. num_hidden_layers=2")  # fmt: skip
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--micro-batch", type=int, default=16)
    p.add_argument("--accumulation", type=int, default=2)
    p.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    p.add_argument("--warmup", type=int, default=5, help="steps left out of the figures")
    p.add_argument("--rounds", type=int, default=1, help="trainer/plain pairs, alternating")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    p.add_argument("--zero-stage", type=int, choices=(0, 1, 2), default=1)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--lr-warmup", type=int, default=5, help="lr warmup steps, both sides")
    p.add_argument("--max-docs", type=int, default=4, help="documents per packed row, at most")
    p.add_argument("--threads", type=int, default=8, help="torch CPU threads per process")
    p.add_argument("--no-plain", action="store_true", help="the trainer only")
    p.add_argument("--checkpoint", action="store_true", help="keep and time the final checkpoint")
    p.add_argument("--json", type=Path, help="write every number here")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--out-dir", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        result = WORKERS[args.worker](args)
        Path(args.out_dir, "result.json").write_text(json.dumps(result))
        return OOM_EXIT if result.get("oom") else 0
    if not 0 <= args.warmup < args.steps - 1:
        p.error("--warmup must be below --steps - 1")

    started = time.perf_counter()
    facts = model_facts(args)
    rows = args.steps * args.micro_batch * args.accumulation
    data_dir = WORK / f"data-s{args.seq_len}-v{facts['vocab_size']}-r{rows}-d{args.max_docs}"
    t0 = time.perf_counter()
    args.data = str(write_data(data_dir, args.seq_len, facts["vocab_size"], rows, args.max_docs))
    data_seconds = time.perf_counter() - t0
    print(f"{facts['preset']}: {facts['parameters'] / 1e6:.1f}M parameters, seq_len "
          f"{args.seq_len}, {rows} rows of data ({data_seconds:.1f} s)", flush=True)  # fmt: skip

    runs: list[dict[str, Any]] = []
    retries: list[str] = []
    sides = ["trainer"] if args.no_plain else ["trainer", "plain"]
    for rnd in range(1, args.rounds + 1):
        for side in sides if rnd % 2 else sides[::-1]:
            while True:
                r = measure(side, args, f"r{rnd}-{side}")
                if not r.get("oom"):
                    break
                if args.micro_batch == 1:
                    raise SystemExit(f"{side}: out of memory at micro-batch 1: {r['error']}")
                note = (f"{side}: out of memory at micro-batch {args.micro_batch} x "
                        f"{args.accumulation}; retrying at {args.micro_batch // 2} x "
                        f"{args.accumulation * 2} (same tokens per step)")  # fmt: skip
                print("  " + note, flush=True)
                retries.append(note)
                args.micro_batch //= 2
                args.accumulation *= 2
            tokens = args.micro_batch * args.accumulation * args.seq_len
            runs.append({"round": rnd, "side": side, "micro_batch": args.micro_batch,
                         "accumulation": args.accumulation,
                         "steady": steady(r, args.warmup, tokens), **r})  # fmt: skip

    tokens_per_step = args.micro_batch * args.accumulation * args.seq_len
    fpt = facts["flops_per_token"]["total"]
    peak = runs[0]["peak_tflops"]
    per_side: dict[str, Any] = {}
    for side in sides:
        mine = [r for r in runs if r["side"] == side]
        tok_s = statistics.median(r["steady"]["step_tokens_per_s"] for r in mine)
        entry = {
            "step_tokens_per_s": tok_s,
            "wall_tokens_per_s": statistics.median(r["steady"]["wall_tokens_per_s"] for r in mine),
            "median_step_s": statistics.median(r["steady"]["median_step_s"] for r in mine),
            "achieved_tflops": fpt * tok_s / 1e12,
            "mfu": fpt * tok_s / (peak * 1e12) if peak else None,
            "max_memory_gib": max((r["max_memory_gib"] or 0) for r in mine) or None,
            "setup_seconds": statistics.median(r["setup_seconds"] for r in mine),
        }
        if side == "trainer":
            own = [m for r in mine for m in r["trainer_mfu"][args.warmup :] if m is not None]
            entry["trainer_metrics_mfu_median"] = statistics.median(own) if own else None
            entry["parameters_in_engine"] = mine[0]["parameters"]
            entry["weights_dtype"] = mine[0]["weights_dtype"]
        per_side[side] = entry
    summary: dict[str, Any] = {
        "device_name": runs[0]["device_name"],
        "peak_bf16_tflops": peak,
        "peak_source": runs[0]["peak_source"],
        "model": facts["preset"],
        "parameters": facts["parameters"],
        "flops_per_token": facts["flops_per_token"],
        "precision": args.precision,
        "zero_stage": args.zero_stage,
        "seq_len": args.seq_len,
        "micro_batch": args.micro_batch,
        "accumulation": args.accumulation,
        "tokens_per_step": tokens_per_step,
        "steps": args.steps,
        "warmup_steps_excluded": args.warmup,
        "retries": retries,
        **per_side,
    }
    if "plain" in per_side:
        ratio = per_side["trainer"]["step_tokens_per_s"] / per_side["plain"]["step_tokens_per_s"]
        t1 = next(r for r in runs if r["side"] == "trainer")["losses"]
        p1 = next(r for r in runs if r["side"] == "plain")["losses"]
        summary |= {
            "trainer_over_plain_tokens_per_s": ratio,
            "trainer_overhead": 1 / ratio - 1,
            "loss_step1": {"trainer": t1[0], "plain": p1[0]},
            "max_loss_diff": max(abs(a - b) for a, b in zip(t1, p1, strict=True)),
        }

    f = facts["flops_per_token"]
    print(f"\nFLOPs per token = 6*N + 12*L*h*s = 6*{f['N']:,} + 12*{f['L']}*{f['h']}*{f['s']} "
          f"= {f['weights_6N']:,} + {f['attention_12Lhs']:,} = {f['total']:,}")  # fmt: skip
    print(f"peak: {summary['peak_source']}")
    for side in sides:
        e = per_side[side]
        mfu = f"MFU {e['mfu']:.1%}" if e["mfu"] is not None else "MFU n/a (no peak)"
        mem = f", peak memory {e['max_memory_gib']:.1f} GiB" if e["max_memory_gib"] else ""
        print(f"{side}: {e['step_tokens_per_s']:,.0f} tok/s (median step {e['median_step_s']:.3f}"
              f" s, {e['achieved_tflops']:.1f} TFLOP/s), {mfu}{mem}")  # fmt: skip
    if "plain" in per_side:
        print(f"trainer / plain: {summary['trainer_over_plain_tokens_per_s']:.3f} "
              f"(overhead {summary['trainer_overhead']:+.1%}); step-1 loss "
              f"{summary['loss_step1']['trainer']:.4f} vs {summary['loss_step1']['plain']:.4f}")  # fmt: skip
    if args.json:
        res = {
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "args": {k: v for k, v in vars(args).items() if k not in ("worker", "out_dir")},
            "model": facts,
            "data_seconds": data_seconds,
            "seconds": time.perf_counter() - started,
            "summary": summary,
            "runs": runs,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
