"""Code suites, HumanEval and MBPP style: the model completes each problem, the tests run it.

A problem file is JSONL in one of the two public schemas, so the real sets load unchanged:

- humaneval: `task_id`, `prompt` (a signature and docstring the model continues),
  `entry_point`, `test` (defines `check(candidate)`), `canonical_solution`;
- mbpp: `task_id`, `text` (the task), `code` (the reference), `test_list` (assert lines),
  optionally `test_setup_code`. The prompt is the MBPP paper's: the task, its tests, `[BEGIN]`,
  the answer ending at `[DONE]`.

Completions come from the inference layer (`transforms/inference`: the same handlers, sampling
and per-request seeds as the model stages); each program (the prompt or setup, the completion,
the tests) runs in `eval/sandbox.py`. pass@k is Chen et al.'s (2021) unbiased estimator over n
samples, averaged over problems, with Wilson's 95% interval over problems (`eval/intervals.py`).

    OUT/code/NAME.jsonl   one line per (problem, sample): completion, status, stderr tail
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from iptkit.errors import EvalError
from iptkit.eval.intervals import wilson_interval
from iptkit.eval.sandbox import Limits, Outcome, run_program
from iptkit.eval.suites import ExecutionSet, Suite
from iptkit.eval.summary import Row
from iptkit.jsonl import json_objects

MBPP_PROMPT = (
    "You are an expert Python programmer, and here is your task: {text} "
    "Your code should pass these tests:\n\n{tests}\n[BEGIN]\n"
)
# Where a continuation leaves the function: Codex's stop sequences (Chen et al. 2021).
STOPS = {
    "humaneval": ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#"),
    "mbpp": ("[DONE]",),
}
FIELDS = {
    "humaneval": ("task_id", "prompt", "entry_point", "test", "canonical_solution"),
    "mbpp": ("task_id", "text", "code", "test_list"),
}
FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_+-]*[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


@dataclass(frozen=True)
class CodeProblem:
    """One problem: what the model sees, what runs before and after its code, the reference."""

    id: str
    format: str
    prompt: str
    setup: str  # humaneval: the prompt itself (the code continues it); mbpp: test_setup_code
    tests: str
    canonical: str


def _problem(row: dict[str, Any], fmt: str) -> CodeProblem:
    if fmt == "humaneval":
        tests = f"{row['test']}\n\ncheck({row['entry_point']})\n"
        return CodeProblem(
            str(row["task_id"]), fmt, row["prompt"], row["prompt"], tests, row["canonical_solution"]
        )
    tests = "\n".join(row["test_list"])
    return CodeProblem(
        str(row["task_id"]),
        fmt,
        MBPP_PROMPT.format(text=row["text"], tests=tests),
        row.get("test_setup_code") or "",
        tests + "\n",
        row["code"],
    )


def read_problems(path: Path, fmt: str) -> list[CodeProblem]:
    """The problems of a JSONL file; a bad line is an error naming the file, line and field."""
    problems: list[CodeProblem] = []
    seen: set[str] = set()
    for where, row in json_objects(path, ", ".join(FIELDS[fmt]), EvalError):
        for key in FIELDS[fmt]:
            value = row.get(key)
            numbered = key == "task_id" and isinstance(value, int)  # MBPP numbers its tasks
            if key == "test_list":
                if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                    raise EvalError(f"{where}: `test_list` must be a list of strings ({fmt})")
            elif not numbered and (not isinstance(value, str) or not value):
                raise EvalError(f"{where}: `{key}` must be a non-empty string ({fmt} schema)")
        problem = _problem(row, fmt)
        if problem.id in seen:
            raise EvalError(f"{where}: duplicate task_id {problem.id!r}")
        seen.add(problem.id)
        problems.append(problem)
    if not problems:
        raise EvalError(f"{path}: no problems")
    return problems


def extract_code(text: str) -> str | None:
    """The first fenced code block of an answer (a chat model's habit), None without one."""
    match = FENCE.search(text)
    return None if match is None else match.group(1)


def program(problem: CodeProblem, completion: str) -> str:
    """The file that runs: setup, the model's code, the tests. A completion holding a fenced
    block is a whole solution (defined after the prompt's stub); otherwise it continues it."""
    code = extract_code(completion)
    body = problem.setup + completion if code is None else f"{problem.setup}\n{code}"
    return f"{body}\n\n{problem.tests}"


def pass_at_k(n: int, correct: int, k: int) -> float:
    """The chance that at least one of k samples drawn from n (correct of them right) passes:
    1 - C(n-c, k) / C(n, k), as a stable product (Chen et al. 2021)."""
    if n - correct < k:
        return 1.0
    value = 1.0
    for i in range(n - correct + 1, n + 1):
        value *= 1.0 - k / i
    return 1.0 - value


@dataclass(frozen=True)
class SampleResult:
    """One completion of one problem and how its program ended."""

    task_id: str
    sample: int
    completion: str
    status: str
    stderr: str
    wall_s: float
    isolation: str


def execute(
    problems: Sequence[CodeProblem],
    completions: dict[str, list[str]],
    limits: Limits | None = None,
    isolation: str = "auto",
    workers: int = 2,
) -> list[SampleResult]:
    """Run every (problem, completion) program in the sandbox, `workers` at once; results in
    problem then sample order."""
    jobs = [(p, i, c) for p in problems for i, c in enumerate(completions[p.id])]

    def run(job: tuple[CodeProblem, int, str]) -> Outcome:
        problem, _, completion = job
        return run_program(program(problem, completion), limits or Limits(), isolation)  # type: ignore[arg-type]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(run, jobs))
    return [
        SampleResult(p.id, i, c, o.status, o.stderr[-2000:], o.wall_s, o.isolation)
        for (p, i, c), o in zip(jobs, outcomes, strict=True)
    ]


def code_rows(item: ExecutionSet, results: Sequence[SampleResult]) -> list[Row]:
    """pass@k rows of a problem set (one per k), each with Wilson's interval over problems."""
    by_problem: dict[str, list[bool]] = {}
    for r in results:
        by_problem.setdefault(r.task_id, []).append(r.status == "passed")
    rows = []
    for k in item.k:
        scores = [pass_at_k(len(s), sum(s), k) for s in by_problem.values()]
        n = len(scores)
        value = sum(scores) / n
        stderr = (value * (1 - value) / n) ** 0.5 if n > 1 else None
        rows.append(
            Row(
                task=item.name,
                metric=f"pass@{k}",
                value=round(value, 6),
                stderr=None if stderr is None else round(stderr, 6),
                n=n,
                lang=item.lang,
                num_fewshot=0,
                source="execution",
                category=item.category,
                interval=wilson_interval(value, n),
            )
        )
    return rows


def complete(
    model: str, problems: Sequence[CodeProblem], item: ExecutionSet, device: str | None
) -> dict[str, list[str]]:
    """`item.samples` completions per problem from the inference layer's transformers handler
    (each sample seeded by a hash of the set's seed, the problem and the sample number)."""
    from transformers import AutoConfig

    from iptkit.hashing import seeded_int
    from iptkit.transforms.inference.chat_prompt import chat_request
    from iptkit.transforms.inference.core import GenerationRequest, ModelSpec, SamplingSpec
    from iptkit.transforms.inference.model_files import HUB_PREFIX
    from iptkit.transforms.inference.prompt_handler import make_handler

    local = Path(model).is_dir()
    config = AutoConfig.from_pretrained(model, local_files_only=True)
    context = getattr(config, "max_position_embeddings", None)
    spec = ModelSpec(
        backend="transformers",
        model=model if local else f"{HUB_PREFIX}{model}",
        device=device or "auto",
        batch_size=item.batch_size,
        max_model_len=context or 4096,
        prompt_too_long="reject",
        sampling=SamplingSpec(
            max_new_tokens=min(item.max_new_tokens, (context or 4096) // 2),
            temperature=item.temperature,
            top_p=item.top_p,
            stop=() if item.chat else STOPS[item.format],
        ),
    )
    handler = make_handler(spec)
    loaded = handler.load_model()
    tokenizer = handler.tokenizer_of(loaded)
    requests = []
    for p in problems:
        for i in range(item.samples):
            seed = seeded_int(item.seed, item.name, p.id, str(i))
            requests.append(
                chat_request(tokenizer, p.prompt, seed)
                if item.chat
                else GenerationRequest(p.prompt, seed)
            )
    generations = []
    for start in range(0, len(requests), item.batch_size):
        generations += handler.run_inference(requests[start : start + item.batch_size], loaded)
    texts = iter(g.text for g in generations)  # a failed generation is an empty completion
    return {p.id: [next(texts) for _ in range(item.samples)] for p in problems}


def run_execution(model: str, suite: Suite, device: str | None, out: Path) -> list[Row]:
    """Every execution set of the suite: complete, run, write OUT/code/NAME.jsonl; the rows."""
    from iptkit.eval.files import write_jsonl
    from iptkit.eval.offline import offline_mode

    rows: list[Row] = []
    for item in suite.execution:
        problems = read_problems(suite.problems_path(item), item.format)
        with offline_mode():  # the model from local files or the local hub cache only
            completions = complete(model, problems, item, device)
        limits = Limits(**item.limits.model_dump())
        results = execute(problems, completions, limits, item.isolation, item.workers)
        write_jsonl(out / "code" / f"{item.name}.jsonl", [asdict(r) for r in results])
        rows += code_rows(item, results)
    return rows
