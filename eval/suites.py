"""Evaluation suites: named lists of lm-eval tasks with their shots and the metric we report.

A suite is a YAML file in `eval/suites/` (or any path): evaluation described as data, as
lm-eval's own task YAMLs are. Each entry names an lm-eval task or group, its number of
few-shot examples, the one metric the summary and comparisons report, and the language it
measures. `task_dir` adds a folder of lm-eval task YAMLs (the smoke suite's local tasks);
`builtin_tasks: false` skips indexing lm-eval's ~10,000 built-in task files (about 10 s) for
suites that use none of them. `prompts` names a prompt set for the generation metrics.
`chat` describes an MT-Bench-style benchmark graded by an LLM judge (`eval/chat_suite.py`); a
suite with one needs no lm-eval tasks. `execution` lists code problem sets (HumanEval or MBPP
schema) whose completions run in the sandbox (`eval/code_exec.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from iptkit.config_file import ConfigFile, package_dir
from iptkit.errors import EvalError, SpecError
from iptkit.eval.chat_suite import ChatSection
from iptkit.transforms.stage_config import BASE_DIR


class SuiteError(SpecError):
    """A suite file is wrong (a SpecError, as suites are specs of an evaluation; exit code 2)."""

    what = "suite"


SUITES_DIR = package_dir("iptkit.eval") / "suites"
"""The suites shipped with iptkit (in the installed package as in a source checkout)."""


class SuiteTask(BaseModel):
    """One lm-eval task (or group) of a suite, as it is run and reported."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str = Field(..., description="lm-eval task or group name")
    num_fewshot: int = Field(..., ge=0, description="few-shot examples in each prompt")
    metric: str = Field(..., description="the metric reported (acc, acc_norm, exact_match...)")
    lang: str = Field("en", description="language the task measures")
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="lm-eval task config keys replaced for this run (e.g. metric_list)",
    )
    note: str = Field("", description="why this setting (paper, table)")
    category: str | None = Field(
        None, description="the category the task reports under (coding, math, reasoning...)"
    )
    interval: Literal["wilson"] | None = Field(
        None,
        description="95% interval reported with the metric: wilson, for a share of examples "
        "each scored 0 or 1 (exact_match, acc)",
    )


class SandboxLimits(BaseModel):
    """The bounds of one sandboxed run (eval/sandbox.py `Limits`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    wall_s: float = Field(10.0, gt=0, description="wall-clock seconds")
    cpu_s: int = Field(5, ge=1, description="CPU seconds (RLIMIT_CPU)")
    memory_mb: int = Field(1024, ge=64, description="address space, MiB (RLIMIT_AS)")
    file_size_mb: int = Field(16, ge=1, description="largest file written, MiB (RLIMIT_FSIZE)")
    processes: int = Field(64, ge=1, description="RLIMIT_NPROC (not enforced for root)")
    output_bytes: int = Field(8192, ge=0, description="stdout and stderr kept, bytes each")


class ExecutionSet(BaseModel):
    """A code problem set: the model completes each prompt, the completion runs with the tests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., description="the task name its rows report under")
    problems: str = Field(..., description="JSONL problem file (relative to the suite file)")
    format: Literal["humaneval", "mbpp"] = Field(
        ...,
        description="humaneval: task_id, prompt, entry_point, test, canonical_solution; "
        "mbpp: task_id, text, code, test_list (test_setup_code optional)",
    )
    lang: str = Field("en", description="language of the problem statements")
    category: str = Field("coding", description="the category its rows report under")
    samples: int = Field(1, ge=1, description="completions per problem (n of pass@k)")
    k: list[int] = Field([1], min_length=1, description="the k of each pass@k reported")
    temperature: float = Field(0.0, ge=0, description="0: greedy; samples > 1 need > 0")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling")
    max_new_tokens: int = Field(512, ge=1, description="completion budget")
    seed: int = Field(0, description="sampling seed (each sample's: a hash of it and the ids)")
    chat: bool = Field(
        False,
        description="send the prompt as a chat turn (instruction-tuned models) and take the "
        "first fenced code block of the answer; false: continue the prompt (base models)",
    )
    batch_size: int = Field(8, ge=1, description="prompts per generate call")
    isolation: Literal["auto", "namespace", "audit"] = Field(
        "auto",
        description="namespace: new user, network, PID and mount namespaces (no network at "
        "all); audit: an audit hook refuses sockets; auto: namespace where allowed",
    )
    workers: int = Field(2, ge=1, description="sandboxed programs run at once")
    limits: SandboxLimits = Field(default_factory=SandboxLimits, description="per program")

    @model_validator(mode="after")
    def _sampling(self) -> ExecutionSet:
        if any(k < 1 or k > self.samples for k in self.k):
            raise ValueError(f"every k must be in 1..samples ({self.samples}), got {self.k}")
        if self.samples > 1 and self.temperature == 0:
            raise ValueError("samples > 1 with temperature 0 repeats one greedy answer")
        return self


class Suite(BaseModel):
    """A named list of tasks; paths are relative to the suite file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., description="the suite's name (also its file name)")
    description: str = Field("", description="what the suite measures and where it comes from")
    task_dir: str | None = Field(
        None, description="folder of lm-eval task YAMLs added to lm-eval's index"
    )
    builtin_tasks: bool = Field(True, description="index lm-eval's built-in tasks")
    prompts: str | None = Field(None, description="prompt set (JSONL) for generation metrics")
    tasks: list[SuiteTask] = Field(
        default_factory=list, description="the lm-eval tasks, in report order"
    )
    chat: ChatSection | None = Field(
        None, description="a chat benchmark graded by an LLM judge (eval/chat_suite.py)"
    )
    execution: list[ExecutionSet] = Field(
        default_factory=list, description="code problem sets run in the sandbox"
    )
    path: str = Field("", description="the file the suite was read from (filled in on load)")

    @model_validator(mode="after")
    def _measures_something(self) -> Suite:
        if not self.tasks and self.chat is None and not self.execution:
            raise ValueError(
                "a suite names lm-eval `tasks`, a `chat` section or `execution` sets (any of them)"
            )
        return self

    @property
    def base(self) -> Path:
        return Path(self.path).parent

    @property
    def task_dir_path(self) -> Path | None:
        return None if self.task_dir is None else (self.base / self.task_dir).resolve()

    @property
    def prompts_path(self) -> Path | None:
        return None if self.prompts is None else (self.base / self.prompts).resolve()

    def problems_path(self, item: ExecutionSet) -> Path:
        return (self.base / item.problems).resolve()

    def select(self, names: list[str] | None) -> list[SuiteTask]:
        """The suite's tasks named in `names` (all when None), in the suite's order."""
        if not names:
            return list(self.tasks)
        known = {t.task for t in self.tasks}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise EvalError(
                f"--tasks: not in suite {self.name}: {', '.join(unknown)} "
                f"(its tasks: {', '.join(t.task for t in self.tasks)})"
            )
        return [t for t in self.tasks if t.task in names]


def suite_names() -> list[str]:
    """The suites shipped with iptkit."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def suite_file(name_or_path: str) -> Path:
    """A shipped suite's file by name, or the YAML file the argument names."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path.resolve()
    shipped = SUITES_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    raise EvalError(
        f"--suite: no suite {name_or_path!r}; name one of {', '.join(suite_names())} "
        "or a suite YAML file"
    )


def load_suite(name_or_path: str, sets: Sequence[str] = ()) -> Suite:
    """Read and validate a suite, with `--set KEY=VALUE` overrides (e.g. the chat judge's
    endpoint); raise `SuiteError` listing every problem, each naming the file, line and key at
    fault. Paths in the suite (a judge's model folder too) are relative to its file."""
    source = ConfigFile.read(
        suite_file(name_or_path),
        what="suite",
        error=SuiteError,
        sets=sets,
        keys_hint="name, tasks, ...",
    )
    suite, problems = source.check(
        Suite,
        {**source.data, "path": source.origin},
        context={BASE_DIR: str(Path(source.origin).parent)},
    )
    for key in ("task_dir", "prompts"):  # as written, checked even when other keys are wrong
        value = source.data.get(key)
        target = (Path(source.origin).parent / value).resolve() if isinstance(value, str) else None
        if target is not None and not target.exists():
            problems.append(source.locate((key,), f"no such file or folder: {target}"))
    for i, item in enumerate(source.data.get("execution") or []):
        value = item.get("problems") if isinstance(item, dict) else None
        target = (Path(source.origin).parent / value).resolve() if isinstance(value, str) else None
        if target is not None and not target.is_file():
            problems.append(source.locate(("execution", i, "problems"), f"no such file: {target}"))
    source.fail(problems)
    return suite
