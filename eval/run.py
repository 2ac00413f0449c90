"""One evaluation run of one model into one directory: lm-eval tasks, generation metrics, summary.

    OUT/lm_eval_results.json   lm-eval's results as it returns them (per-sample logs left out)
    OUT/samples/TASK.jsonl     lm-eval's per-sample logs (with --log-samples)
    OUT/generations.jsonl      each prompt's answer and its metrics (when a prompt set is given)
    OUT/chat/                  a chat suite's answers and judgments (iptkit.eval.chat_run)
    OUT/code/NAME.jsonl        each completion of a code problem set and how its program ended
    OUT/summary.json           the rows of both, flat (iptkit.eval.summary), written last

`summary.json` is written last, so a directory without it is an unfinished run.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
from dataclasses import dataclass, field
from pathlib import Path

from iptkit.errors import EvalError
from iptkit.eval.files import write_json, write_jsonl
from iptkit.eval.harness import HarnessOptions
from iptkit.eval.suites import Suite
from iptkit.eval.summary import SUMMARY_FILE, Row, Summary, lm_eval_rows


@dataclass(frozen=True)
class GenerationOptions:
    """The prompt set and decoding budget of the generation metrics."""

    prompts: Path
    max_new_tokens: int = 256
    batch_size: int = 8
    min_ratios: dict[str, float] | None = None  # None: Ma et al.'s {ja: 0.60}
    langid_model: str | None = None


@dataclass(frozen=True)
class EvalRequest:
    """What `iptkit eval MODEL ...` asks for."""

    model: str
    out: Path
    suite: Suite | None = None
    tasks: list[str] | None = None
    harness: HarnessOptions = field(default_factory=HarnessOptions)
    generation: GenerationOptions | None = None


def run_generation(
    model: str, options: GenerationOptions, device: str | None, out: Path
) -> list[Row]:
    """Answer the prompt set, measure the answers, write generations.jsonl; the summary rows."""
    from iptkit.eval.generate import generate, read_prompts
    from iptkit.eval.generation_metrics import answer_metrics, fasttext_predictor, language_rows
    from iptkit.transforms.text.language_checks import MIN_SCRIPT_RATIO, min_ratio

    prompts = read_prompts(options.prompts)
    generations = generate(
        model,
        prompts,
        max_new_tokens=options.max_new_tokens,
        batch_size=options.batch_size,
        device=device,
    )
    min_ratios = MIN_SCRIPT_RATIO if options.min_ratios is None else options.min_ratios
    predict = fasttext_predictor(options.langid_model)
    metrics = [answer_metrics(g, predict, min_ratio(min_ratios, g.lang)) for g in generations]
    write_jsonl(
        out / "generations.jsonl",
        [
            {**dataclasses.asdict(g), **dataclasses.asdict(m)}
            for g, m in zip(generations, metrics, strict=True)
        ],
    )
    return language_rows(metrics, generations, min_ratios)


def evaluate(request: EvalRequest) -> Summary:
    """Run what the request names and write the run directory; returns its summary."""
    from iptkit.eval.harness import model_location

    model = model_location(request.model)
    out = request.out
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY_FILE).unlink(missing_ok=True)  # the old summary would describe another run
    rows: list[Row] = []
    files: dict[str, str] = {}
    lm_eval_version = None
    suite = request.suite
    tasks = suite.select(request.tasks) if suite is not None else []
    if tasks:
        from lm_eval.utils import handle_non_serializable

        from iptkit.eval.harness import lm_eval_file, run_tasks, samples_by_task

        results = run_tasks(model, suite, tasks, request.harness)
        write_json(out / "lm_eval_results.json", lm_eval_file(results), handle_non_serializable)
        files["lm_eval"] = "lm_eval_results.json"
        for task, samples in samples_by_task(results).items():
            write_jsonl(out / "samples" / f"{task}.jsonl", samples, handle_non_serializable)
            files["samples"] = "samples/"
        rows += lm_eval_rows(results, tasks)
        lm_eval_version = results.get("lm_eval_version")
    if suite is not None and suite.chat is not None:
        from iptkit.eval.chat_run import CHAT_DIR, run_chat

        gc.collect()
        rows += run_chat(model, suite.name, suite.chat, request.harness.device, out)
        files["chat"] = f"{CHAT_DIR}/"
    if suite is not None and suite.execution:
        from iptkit.eval.code_exec import run_execution

        gc.collect()
        rows += run_execution(model, suite, request.harness.device, out)
        files["code"] = "code/"
    if request.generation is not None:
        gc.collect()  # lm-eval's copy of the model, before the generation loads its own
        rows += run_generation(model, request.generation, request.harness.device, out)
        files["generations"] = "generations.jsonl"
    if not rows:
        raise EvalError(
            "nothing to evaluate: name a suite with tasks or a chat section, or a prompt set"
        )
    summary = Summary(
        model=model,
        suite=suite.name if suite is not None else None,
        rows=rows,
        limit=request.harness.limit if tasks else None,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        lm_eval_version=lm_eval_version,
        files=files,
    )
    write_json(out / SUMMARY_FILE, summary.to_json())
    return summary
