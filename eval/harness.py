"""Running a suite's tasks through lm-eval's `simple_evaluate`, offline, in one call.

Per-task shots and config overrides ride on an inline lm-eval group whose members reference
the registered tasks (`{group: ..., task: [{task: arc_easy, num_fewshot: 5}, ...]}`): lm-eval
merges each member's keys over the task's own YAML, so one call evaluates 0-shot and 5-shot
tasks together, with one model load and lm-eval's own results layout.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iptkit.errors import EvalError
from iptkit.eval.offline import offline_mode, unavailable, unavailable_error
from iptkit.eval.suites import Suite, SuiteTask
from iptkit.transforms.inference.model_files import HUB_PREFIX

# The inline group's name in lm-eval's results; the summary reports its members only.
GROUP_PREFIX = "iptkit_suite_"


class _QuietCustomDatasetHint(logging.Filter):
    """lm-eval logs, for every task with its own dataset loader (the smoke tasks), a hint about
    passing loader arguments through --metadata; it says nothing about the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Custom kwargs can be passed" not in record.getMessage()


@dataclass(frozen=True)
class HarnessOptions:
    """How lm-eval runs the model (its `hf` backend: transformers, one process)."""

    limit: int | float | None = None
    batch_size: int | str = 8
    device: str | None = None
    model_args: dict[str, Any] | None = None
    log_samples: bool = False


def task_specs(tasks: list[SuiteTask]) -> list[dict[str, Any]]:
    """lm-eval group members: the registered task with its shots and overrides merged over it."""
    return [{**t.overrides, "task": t.task, "num_fewshot": t.num_fewshot} for t in tasks]


def task_manager(suite: Suite) -> Any:
    """lm-eval's task index: the suite's own task folder, and lm-eval's tasks if it uses them."""
    from lm_eval.tasks import TaskManager

    task_dir = suite.task_dir_path
    return TaskManager(
        include_path=str(task_dir) if task_dir is not None else None,
        include_defaults=suite.builtin_tasks,
    )


def check_known(manager: Any, tasks: list[SuiteTask], suite: Suite) -> None:
    """Every task name is one lm-eval knows, before a model is loaded."""
    import lm_eval

    unknown = [t.task for t in tasks if t.task not in manager.all_tasks]
    if unknown:
        where = f"{suite.task_dir_path} and " if suite.task_dir_path else ""
        raise EvalError(
            f"{suite.path}: task(s) {', '.join(unknown)} not found in {where}the tasks of "
            f"lm-eval {lm_eval.__version__}"
            + ("" if suite.builtin_tasks else " (the suite sets builtin_tasks: false)")
        )


def run_tasks(model: str, suite: Suite, tasks: list[SuiteTask], options: HarnessOptions) -> dict:
    """lm-eval's results for `tasks` of `suite` on the model at `model` (an HF directory)."""
    import lm_eval

    manager = task_manager(suite)
    check_known(manager, tasks, suite)
    specs = task_specs(tasks)
    group = {"group": f"{GROUP_PREFIX}{suite.name}", "task": specs}
    model_args = {"pretrained": str(model), **(options.model_args or {})}
    # lm-eval logs every request batch at INFO; its warnings and errors still show.
    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    task_logger = logging.getLogger("lm_eval.api.task")
    if not any(isinstance(f, _QuietCustomDatasetHint) for f in task_logger.filters):
        task_logger.addFilter(_QuietCustomDatasetHint())
    try:
        with offline_mode():
            results = lm_eval.simple_evaluate(
                model="hf",
                model_args=model_args,
                tasks=[group],
                task_manager=manager,
                limit=options.limit,
                batch_size=options.batch_size,
                device=options.device,
                log_samples=options.log_samples,
            )
    except Exception as exc:
        if isinstance(exc, EvalError):
            raise
        missing = unavailable(manager, specs)
        if missing:
            raise unavailable_error(missing, suite.name) from exc
        raise
    if results is None:  # not rank 0 of a multi-process run: nothing to write
        raise EvalError("lm-eval returned no results (not the main process?)")
    return results


def cache_datasets(suite: Suite, tasks: list[SuiteTask]) -> list[str]:
    """Download the tasks' datasets into the Hugging Face cache (online: building a task loads
    its data); returns the leaf tasks built. For a machine with internet, before an offline run.
    """
    manager = task_manager(suite)
    check_known(manager, tasks, suite)
    loaded = manager.load([{"group": f"{GROUP_PREFIX}{suite.name}", "task": task_specs(tasks)}])
    return sorted(loaded["tasks"])


def lm_eval_file(results: dict) -> dict:
    """What `lm_eval_results.json` holds: lm-eval's results without the per-sample logs."""
    return {key: value for key, value in results.items() if key != "samples"}


def samples_by_task(results: dict) -> dict[str, list[dict]]:
    """lm-eval's per-sample logs (present with `log_samples`), by task."""
    return dict(results.get("samples") or {})


def model_location(model: str) -> str:
    """The model as lm-eval and transformers load it: a local HF directory, or `hub:ORG/NAME`
    already in the local Hugging Face cache (the run is offline). A name without `hub:` is a
    path, never a Hub lookup."""
    if model.startswith(HUB_PREFIX):
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.errors import HFValidationError

        hub_id = model[len(HUB_PREFIX) :]
        try:
            if isinstance(try_to_load_from_cache(hub_id, "config.json"), str):
                return hub_id
        except HFValidationError:  # not a hub id
            pass
        raise EvalError(
            f"{model}: not a model in the local Hugging Face cache (evaluation runs offline: "
            f"download it first, e.g. `hf download {hub_id}`)"
        )
    path = Path(model)
    if not path.exists():
        raise EvalError(
            f"{model}: no such directory ({path.resolve()}); a model in the local Hugging Face "
            f"cache is written {HUB_PREFIX}ORG/NAME"
        )
    if not (path / "config.json").is_file():
        raise EvalError(
            f"{model}: no config.json; name a Hugging Face model directory (the trainer's "
            "export, RUN/hf)"
        )
    return str(path.resolve())
