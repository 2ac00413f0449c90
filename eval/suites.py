"""Evaluation suites: named lists of lm-eval tasks with their shots and the metric we report.

A suite is a YAML file in `eval/suites/` (or any path): evaluation described as data, as
lm-eval's own task YAMLs are. Each entry names an lm-eval task or group, its number of
few-shot examples, the one metric the summary and comparisons report, and the language it
measures. `task_dir` adds a folder of lm-eval task YAMLs (the smoke suite's local tasks);
`builtin_tasks: false` skips indexing lm-eval's ~10,000 built-in task files (about 10 s) for
suites that use none of them. `prompts` names a prompt set for the generation metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from iptkit.config_file import ConfigFile, package_dir
from iptkit.errors import EvalError, SpecError


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
        None, description="the group its row is reported in (e.g. a domain: biomedicine)"
    )


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
    tasks: list[SuiteTask] = Field(..., min_length=1, description="the tasks, in report order")
    path: str = Field("", description="the file the suite was read from (filled in on load)")

    @property
    def base(self) -> Path:
        return Path(self.path).parent

    @property
    def task_dir_path(self) -> Path | None:
        return None if self.task_dir is None else (self.base / self.task_dir).resolve()

    @property
    def prompts_path(self) -> Path | None:
        return None if self.prompts is None else (self.base / self.prompts).resolve()

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


def load_suite(name_or_path: str) -> Suite:
    """Read and validate a suite; raise `SuiteError` listing every problem, each naming the
    file, line and key at fault."""
    source = ConfigFile.read(
        suite_file(name_or_path), what="suite", error=SuiteError, keys_hint="name, tasks, ..."
    )
    suite, problems = source.check(Suite, {**source.data, "path": source.origin})
    for key in ("task_dir", "prompts"):  # as written, checked even when other keys are wrong
        value = source.data.get(key)
        target = (Path(source.origin).parent / value).resolve() if isinstance(value, str) else None
        if target is not None and not target.exists():
            problems.append(source.locate((key,), f"no such file or folder: {target}"))
    source.fail(problems)
    return suite
