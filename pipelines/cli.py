"""The `iptkit` command.

    iptkit run SPEC [--out RUN] [--set KEY=VALUE]... [--compile-only] [Beam pipeline options]
    iptkit validate SPEC [--out RUN] [--set KEY=VALUE]...
      (SPEC: a YAML file, or the name of an example shipped with iptkit: `iptkit validate demo`)
    iptkit reference [--stage NAME | --write PATH]
    iptkit report RUN [--train TRAIN_RUN_DIR]... [--eval EVAL_DIR]...
    iptkit inspect SHARDS [-n N] [--index I]... [--color auto|always|never]
    iptkit tokenizer train RUN_OR_FILES... --out DIR --vocab-size N [--model unigram|bpe] ...
    iptkit eval MODEL --suite NAME ...  |  iptkit eval compare RUN_A RUN_B ...  (iptkit.eval.cli)
    iptkit synth tuning-data FILE[=DATASET]... --out OUT --tokenizer TOK ...
    iptkit synth eval FILE[=DATASET]... --model SYNTH --out DIR [--unseen DATASET]... ...

Errors a user can fix print one clear message (no traceback) and exit with the error's code:
2 for a bad spec, 3 for a ledger that does not balance.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from iptkit import __version__
from iptkit.errors import IptkitError

if TYPE_CHECKING:
    from iptkit.pipelines.spec import Plan


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iptkit",
        description="Build instruction pre-training corpora with Apache Beam.",
    )
    parser.add_argument("--version", action="version", version=f"iptkit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Beam's own logs")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("run", "run a spec; unknown flags are Beam pipeline options (--runner=..., ...)"),
        ("validate", "check a spec and print the resolved plan; runs nothing"),
    ):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "spec", help="the YAML spec, or the name of an example shipped with iptkit (demo)"
        )
        sub.add_argument("--out", help="run directory (overrides the spec's output)")
        if name == "run":
            sub.add_argument(
                "--force",
                action="store_true",
                help="replace an earlier run of another spec in RUN (files iptkit did not "
                "write are kept)",
            )
            sub.add_argument(
                "--compile-only",
                action="store_true",
                help="build the job the runner would get (Dataflow: its dry run) and print a "
                "summary: stages, transforms, resource hints, images, machine type; runs "
                "nothing, RUN untouched",
            )
            sub.add_argument(
                "--job-out",
                metavar="DIR",
                help="with --compile-only: also write the compiled job to DIR (pipeline.pb, "
                "the portable pipeline; job.json, Dataflow's job request)",
            )
        sub.add_argument(
            "--set",
            dest="sets",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a spec key, e.g. --set stages.normalize.form=NFKC",
        )
    reference = commands.add_parser(
        "reference",
        help="print the spec reference (Markdown), or one stage's section",
        description="print the spec reference (Markdown), or one stage's section",
    )
    which = reference.add_mutually_exclusive_group()
    which.add_argument("--stage", metavar="NAME", help="print only this stage's section")
    which.add_argument(
        "--write",
        metavar="PATH",
        help="write the reference page (header + reference) to PATH, e.g. docs/spec-reference.md",
    )
    report_help = (
        "write a run's one-page report (RUN/report.html) and its contamination report again"
    )
    report = commands.add_parser("report", help=report_help, description=report_help)
    report.add_argument("run", help="the run directory")
    for flag, what in (
        ("--train", "a trainer run_dir (its metrics.jsonl); RUN/train/ is found without it"),
        ("--eval", "an `iptkit eval` output dir (its summary.json); RUN/eval/ is found too"),
    ):
        report.add_argument(flag, action="append", default=[], metavar="DIR", help=what)
    _add_inspect(commands)
    _add_tokenizer(commands)
    _add_categorize(commands)
    from iptkit.pipelines.export import add_arguments as export_arguments

    export_help = "a run's instruction records as chat data (messages, ShareGPT, Alpaca) + card"
    export_arguments(commands.add_parser("export", help=export_help, description=export_help))
    # Its arguments go, unparsed and in order, to iptkit.eval.cli (which has its own --help).
    commands.add_parser(
        "eval", add_help=False, help="evaluate a model (lm-eval, generation metrics); compare runs"
    )
    synth = commands.add_parser("synth", help="instruction synthesizer tools")
    from iptkit.eval.synth_quality import add_arguments as synth_eval_arguments
    from iptkit.transforms.synth.tuning_data import add_arguments as tuning_arguments

    synth_commands = synth.add_subparsers(dest="synth_command", required=True)
    tuning_arguments(
        synth_commands.add_parser(
            "tuning-data", help="context-based task JSONL -> synthesizer tuning sequences"
        )
    )
    synth_eval_arguments(
        synth_commands.add_parser(
            "eval", help="score a synthesizer on held-out tasks (Table 5: response F1, pair F1)"
        )
    )
    return parser


def _add_inspect(commands) -> None:
    sub = commands.add_parser(
        "inspect",
        help="decode sample packed sequences (targets in ⟦ ⟧), show the manifest and the mix",
    )
    sub.add_argument("shards", help="a split folder (with manifest.json) or RUN/shards")
    sub.add_argument("-n", type=int, default=3, help="sequences to show, spread over the set")
    sub.add_argument("--index", type=int, action="append", help="show this sequence (repeatable)")
    sub.add_argument("--color", choices=("auto", "always", "never"), default="auto")


def _add_tokenizer(commands) -> None:
    sub = commands.add_parser("tokenizer", help="tokenizer tools").add_subparsers(
        dest="tokenizer_command", required=True
    )
    train = sub.add_parser(
        "train",
        help="train a sentencepiece tokenizer on a language-balanced sample of a run's output",
    )
    train.add_argument("inputs", nargs="+", help="a run directory, or .jsonl[.gz] record files")
    train.add_argument("--out", required=True, help="output folder")
    train.add_argument("--vocab-size", type=int, required=True)
    train.add_argument("--model", choices=("unigram", "bpe"), default="unigram")
    train.add_argument("--byte-fallback", action="store_true", help="unknown characters as bytes")
    train.add_argument(
        "--special", nargs="+", default=[], metavar="TOKEN", help="user-defined special tokens"
    )
    train.add_argument("--lang-balance", help="share per language, e.g. en=0.5,ja=0.5")
    train.add_argument(
        "--sample-chars", type=int, default=20_000_000, help="characters of training text"
    )
    train.add_argument("--seed", type=int, default=0, help="seeds the sample and the held-out set")


def _add_categorize(commands) -> None:
    from iptkit.pipelines.categorize_train import add_arguments

    sub = commands.add_parser(
        "categorize", help="the categorize stage's classifier"
    ).add_subparsers(dest="categorize_command", required=True)
    add_arguments(
        sub.add_parser("train", help="train the classifier on labelled JSONL {text, category}")
    )


def _describe(value: object) -> str:
    return str(value) if not isinstance(value, list) else ", ".join(map(str, value))


def format_plan(plan: Plan) -> str:
    """What `iptkit validate` prints: sources, stages in order, outputs."""
    from iptkit.pipelines.flow import FORMAT_STAGE
    from iptkit.transforms.stage import stage_types

    types = stage_types()
    spec = plan.spec
    lines = [
        f"spec     {plan.spec_path}  ({plan.spec_hash[:19]}…)",
        f"seed     {spec.seed}",
        f"output   {spec.output}",
        "",
        f"sources ({len(spec.sources)}):",
    ]
    width = max(len(s.name) for s in spec.sources)
    for src in spec.sources:
        files = plan.files.get(src.name, [])
        extras = [f"kind={src.record_kind}"] + [
            f"{k}={getattr(src, k)}"
            for k in ("origin", "lang", "category", "id_field")
            if getattr(src, k) is not None
        ]
        lines.append(
            f"  {src.name.ljust(width)}  {src.format:<13} {len(files):>4} file(s)  "
            f"{' '.join(extras)}"
        )
        lines.append(
            f"  {''.ljust(width)}  {_describe(plan.resolved['sources'][spec.sources.index(src)]['path'])}"
        )
    steps = [(s.name, types[s.type].summary, s.config) for s in plan.flow.records]
    if plan.flow.tail:
        steps.append((FORMAT_STAGE, "records -> token ids and loss masks (pack's options)", None))
        steps += [(s.name, types[s.type].summary, s.config) for s in plan.flow.tail]
    lines += [
        "",
        f"stages ({len(steps)}):",
        "  0. read  parse sources; broken records -> rejects/read",
    ]
    for i, (name, summary, config) in enumerate(steps, 1):
        lines.append(f"  {i}. {name}  {summary}")
        if config is not None:
            options = " ".join(f"{k}={v}" for k, v in config.model_dump().items())
            lines.append(f"     {options}")
    lines += [
        "",
        "outputs:",
        f"  {spec.output}/spec.resolved.yaml",
        f"  {spec.output}/stats.json  (ledger: in, out, dropped by reason, per stage)",
        f"  {spec.output}/rejects/<stage>/part-*.jsonl",
    ]
    lines += [
        f"  {spec.output}/data/{s.name}/part-*.jsonl.gz" for s in plan.stages if s.config.save
    ]
    if spec.keep_records:
        lines.append(f"  {spec.output}/output/part-*.jsonl.gz")
    lines += [
        f"  {spec.output}/shards/[STAGE/]SPLIT/manifest.json  (packed shards, seq_len "
        f"{s.config.seq_len})"
        for s in plan.flow.tail
        if s.type == "pack"
    ]
    return "\n".join(lines)


def _run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from iptkit.pipelines.ledger import summary_table
    from iptkit.pipelines.runner import execute
    from iptkit.pipelines.spec import load_plan

    if args.job_out and not args.compile_only:
        raise IptkitError("--job-out writes a compiled job: give it with --compile-only")
    spec = spec_file(args.spec)
    plan = load_plan(spec, args.sets, args.out)
    if args.compile_only:
        from iptkit.pipelines.compile import format_summary, write_job
        from iptkit.pipelines.runner import compile_only

        compiled = compile_only(plan, beam_args)
        print(format_summary(compiled, ["read", *plan.flow.ledger_stages]))
        for path in write_job(compiled, args.job_out) if args.job_out else []:
            print(f"wrote {path}")
        return 0
    where = plan.output if "://" in plan.output else os.path.abspath(plan.output)
    print(f"iptkit: running {spec} into {where}", flush=True)
    result = execute(plan, beam_args, force=args.force)
    print(summary_table(result.stats, result.seconds))
    kept = result.stats["output_records"]
    print(
        f"\n{result.stats['read']} read, {kept if kept is not None else '-'} in output, "
        f"{result.wall_seconds:.1f} s; ledger balanced for every stage.\n"
        f"run directory: {plan.output}"
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from apache_beam.io.filesystems import FileSystems

    from iptkit.pipelines.reports import (
        run_report_inputs,
        stats_of,
        write_contamination_report,
        write_run_report,
    )
    from iptkit.rundir import RunDir

    run = RunDir(args.run)
    if not FileSystems.exists(run.spec_resolved):
        raise IptkitError(f"{args.run} is not a run directory (no spec.resolved.yaml)")
    written = write_contamination_report(run, stats_of(run))
    written.append(write_run_report(run, run_report_inputs(run, train=args.train, evals=args.eval)))
    print("\n".join(written))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from iptkit.pipelines.spec import load_plan

    print(format_plan(load_plan(spec_file(args.spec), args.sets, args.out)))
    return 0


def spec_file(spec: str) -> str:
    """SPEC as given when it is a file or a path, else the example spec of that name shipped
    with iptkit (pipelines/examples/NAME.yaml, found in the installed package)."""
    from iptkit.config_file import find_file, package_dir, shipped_names
    from iptkit.errors import SpecError, SpecProblem

    if os.path.exists(spec) or os.sep in spec or "/" in spec or spec.endswith((".yaml", ".yml")):
        return spec
    examples = package_dir("iptkit.pipelines") / "examples"
    found = find_file(spec, examples, (".yaml",))
    if found is None:
        names = ", ".join(shipped_names(examples, (".yaml",)))
        raise SpecError(
            [SpecProblem("", None, f"no such file, nor an example of that name ({names})", spec)]
        )
    return str(found)


def _inspect(args: argparse.Namespace) -> int:
    from iptkit.pipelines.inspect_shards import inspect_shards

    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    print(inspect_shards(args.shards, n=args.n, indices=args.index, color=color))
    return 0


def _tokenizer_train(args: argparse.Namespace) -> int:
    from iptkit.pipelines.tokenizer_train import TrainOptions, parse_balance, train_tokenizer

    report = train_tokenizer(
        args.inputs,
        TrainOptions(
            out=args.out,
            vocab_size=args.vocab_size,
            model=args.model,
            byte_fallback=args.byte_fallback,
            special=args.special,
            lang_balance=parse_balance(args.lang_balance),
            sample_chars=args.sample_chars,
            seed=args.seed,
        ),
    )
    print(report.text())
    return 0


def _reference(args: argparse.Namespace) -> int:
    from iptkit.pipelines import reference

    if args.write:
        print(f"wrote {reference.write_reference_page(args.write)}")
    elif args.stage:
        print(reference.stage_reference(args.stage), end="")
    else:
        print(reference.spec_reference(), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = _parser().parse_known_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR)
    if args.command not in ("run", "eval") and extra:
        _parser().error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "eval":
            from iptkit.eval.cli import main as eval_main

            return eval_main(extra)
        if args.command == "reference":
            return _reference(args)
        if args.command == "report":
            return _report(args)
        if args.command == "synth" and args.synth_command == "eval":
            from iptkit.eval.synth_quality import run_cli as synth_eval

            return synth_eval(args)
        if args.command == "synth":
            from iptkit.transforms.synth.tuning_data import run_cli

            return run_cli(args)
        if args.command == "inspect":
            return _inspect(args)
        if args.command == "export":
            from iptkit.pipelines.export import run_cli as export_cli

            return export_cli(args)
        if args.command == "tokenizer":
            return _tokenizer_train(args)
        if args.command == "categorize":
            from iptkit.pipelines.categorize_train import run_cli as categorize_train

            return categorize_train(args)
        return _run(args, extra) if args.command == "run" else _validate(args)
    except IptkitError as exc:
        print(f"iptkit: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(
            "iptkit: interrupted; the run directory is incomplete (it has no stats.json)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
