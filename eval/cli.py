"""`iptkit eval`: evaluate a model, compare runs, cache a suite's datasets, list the suites.

    iptkit eval MODEL --suite NAME [--tasks T ...] [--limit N] [--out DIR] [--prompts FILE]
                      [--set KEY=VALUE ...]   (e.g. --set chat.judge.base_url=http://HOST/v1)
    iptkit eval compare RUN_A RUN_B ... [--out DIR]
    iptkit eval cache --suite NAME [--tasks T ...]      (on a machine with internet)
    iptkit eval suites

MODEL is a Hugging Face model directory (the trainer's export) or a model in the local hub
cache; evaluation is offline. A model directory named like a subcommand needs a path prefix
(`./compare`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from iptkit.errors import EvalError


def _limit(text: str) -> int | float:
    """lm-eval's limit: a count of examples per task, or a fraction below 1."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("a positive count, or a fraction below 1")
    return value if value < 1 else int(value)


def _batch_size(text: str) -> int | str:
    if text == "auto" or text.startswith("auto:"):
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a positive integer or auto") from None
    if value < 1:
        raise argparse.ArgumentTypeError("a positive integer or auto")
    return value


def _ratio(text: str) -> tuple[str, float]:
    lang, _, value = text.partition("=")
    try:
        ratio = float(value)
    except ValueError:
        ratio = -1.0
    if not lang or not 0.0 <= ratio <= 1.0:
        raise argparse.ArgumentTypeError(f"expected LANG=RATIO with 0 <= RATIO <= 1, got {text!r}")
    return lang, ratio


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iptkit eval",
        description="Evaluate a model offline: lm-eval tasks of a suite, its chat benchmark "
        "graded by an LLM judge, and generation metrics on a prompt set. Other commands: "
        "iptkit eval compare|cache|suites --help.",
    )
    parser.add_argument(
        "model",
        help="Hugging Face model directory (e.g. the trainer's RUN/hf), or hub:ORG/NAME from the "
        "local Hugging Face cache",
    )
    parser.add_argument("--suite", help="suite name (iptkit eval suites) or suite YAML file")
    parser.add_argument("--tasks", nargs="+", metavar="TASK", help="only these tasks of the suite")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a suite key, e.g. --set chat.judge.base_url=http://HOST:8000/v1 "
        "--set chat.judge.model=NAME (a chat suite's judge)",
    )
    parser.add_argument("--limit", type=_limit, help="examples per task (testing only)")
    parser.add_argument("--out", type=Path, help="output directory (default runs/eval/MODEL-SUITE)")
    parser.add_argument(
        "--prompts",
        type=Path,
        help="prompt set (JSONL) for generation metrics; default: the suite's",
    )
    parser.add_argument("--no-generation", action="store_true", help="skip the generation metrics")
    parser.add_argument(
        "--batch-size", type=_batch_size, help="lm-eval batch size (default: auto on GPU, 8 on CPU)"
    )
    parser.add_argument("--device", help="cuda, cuda:1, cpu... (default: cuda when available)")
    parser.add_argument(
        "--model-args",
        default="",
        help="more lm-eval hf model arguments, e.g. dtype=bfloat16,max_length=4096",
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=256, help="answer budget of the generation metrics"
    )
    parser.add_argument(
        "--min-char-ratio",
        type=_ratio,
        action="append",
        default=[],
        metavar="LANG=RATIO",
        help="flag languages whose mean target-language character ratio is below RATIO "
        "(default ja=0.60, Ma et al.)",
    )
    parser.add_argument(
        "--log-samples", action="store_true", help="write lm-eval's per-sample logs"
    )
    return parser


def _compare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iptkit eval compare",
        description="Compare eval runs: a Markdown table (each run minus the first, with the "
        "difference's standard error) and a PNG chart.",
    )
    parser.add_argument(
        "runs", nargs="+", help="eval output directories; the first is the baseline"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/eval/compare"), help="where compare.{md,json,png} go"
    )
    return parser


def _cache_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iptkit eval cache",
        description="Download a suite's datasets into the Hugging Face cache (HF_HOME), on a "
        "machine with internet; copy that cache to the machine that evaluates offline.",
    )
    parser.add_argument("--suite", required=True, help="suite name or suite YAML file")
    parser.add_argument("--tasks", nargs="+", metavar="TASK", help="only these tasks of the suite")
    return parser


def _device(name: str | None) -> str:
    if name:
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_command(argv: Sequence[str]) -> int:
    from iptkit.eval.compare import compare, to_markdown
    from iptkit.eval.harness import HarnessOptions
    from iptkit.eval.run import EvalRequest, GenerationOptions, evaluate
    from iptkit.eval.suites import load_suite
    from iptkit.eval.summary import SUMMARY_FILE, load_summary

    args = _run_parser().parse_args(argv)
    if args.sets and not args.suite:
        raise EvalError("--set overrides keys of a --suite; name one")
    suite = load_suite(args.suite, args.sets) if args.suite else None
    prompts = args.prompts or (suite.prompts_path if suite is not None else None)
    if args.no_generation:
        prompts = None
    if suite is None and prompts is None:
        raise EvalError("name a --suite, a --prompts file, or both")
    if args.tasks and suite is None:
        raise EvalError("--tasks selects tasks of a --suite; name one")
    device = _device(args.device)
    batch_size = args.batch_size or ("auto" if device.startswith("cuda") else 8)
    model_args: dict[str, Any] = {}
    if args.model_args:
        from lm_eval.utils import simple_parse_args_string

        model_args = simple_parse_args_string(args.model_args)
    name = f"{Path(args.model).name}-{suite.name if suite else 'generation'}"
    out = args.out or Path("runs/eval") / name
    request = EvalRequest(
        model=args.model,
        out=out,
        suite=suite,
        tasks=args.tasks,
        harness=HarnessOptions(
            limit=args.limit,
            batch_size=batch_size,
            device=device,
            model_args=model_args,
            log_samples=args.log_samples,
        ),
        generation=None
        if prompts is None
        else GenerationOptions(
            prompts=prompts,
            max_new_tokens=args.max_new_tokens,
            batch_size=batch_size if isinstance(batch_size, int) else 16,
            min_ratios=dict(args.min_char_ratio) if args.min_char_ratio else None,
        ),
    )
    what = f"suite {suite.name}" if suite else "generation metrics"
    print(f"iptkit: evaluating {args.model} on {what} ({device}) into {out}", flush=True)
    summary = evaluate(request)
    print(to_markdown(compare([load_summary(out / SUMMARY_FILE)])), end="")
    for flag in summary.flags:
        print(f"warning: {flag}")
    print(f"summary: {out / SUMMARY_FILE}")
    return 0


def compare_command(argv: Sequence[str]) -> int:
    from iptkit.eval.compare import compare, to_markdown
    from iptkit.eval.compare_chart import plot
    from iptkit.eval.files import write_json, write_text
    from iptkit.eval.summary import load_summary

    args = _compare_parser().parse_args(argv)
    comparison = compare([load_summary(run) for run in args.runs])
    table = to_markdown(comparison)
    write_text(args.out / "compare.md", table)
    write_json(args.out / "compare.json", comparison.to_json())
    plot(comparison, args.out / "compare.png")
    print(table, end="")
    print(f"written: {args.out}/compare.md, compare.json, compare.png")
    return 0


def cache_command(argv: Sequence[str]) -> int:
    from iptkit.eval.harness import cache_datasets
    from iptkit.eval.suites import load_suite

    args = _cache_parser().parse_args(argv)
    suite = load_suite(args.suite)
    built = cache_datasets(suite, suite.select(args.tasks))
    print(f"cached the data of {len(built)} task(s) of suite {suite.name}: {', '.join(built)}")
    return 0


def suites_command(argv: Sequence[str]) -> int:
    from iptkit.eval.suites import load_suite, suite_names

    if argv:
        raise EvalError(f"iptkit eval suites takes no arguments, got {' '.join(argv)}")
    for name in suite_names():
        suite = load_suite(name)
        print(f"{name}: {suite.description}")
        for task in suite.tasks:
            print(f"  {task.task:<34} {task.num_fewshot}-shot  {task.metric:<12} {task.lang}")
        for item in suite.execution:
            ks = ", ".join(f"pass@{k}" for k in item.k)
            print(f"  {item.name:<34} {item.format} execution  {ks:<12} {item.lang}")
        if suite.prompts:
            print(f"  prompts: {suite.prompts_path}")
        if suite.chat is not None:
            judge = suite.chat.judge.base_url or suite.chat.judge.model
            print(f"  chat ({suite.chat.lang}): {suite.chat.questions}; judge {judge}")
    return 0


def main(argv: Sequence[str]) -> int:
    """Dispatch `iptkit eval ARGS`: a subcommand by its name, else an evaluation run."""
    argv = list(argv)
    commands = {
        "compare": compare_command,
        "cache": cache_command,
        "suites": suites_command,
    }
    if argv and argv[0] in commands:
        return commands[argv[0]](argv[1:])
    return run_command(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
