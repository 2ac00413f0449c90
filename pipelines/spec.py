"""The YAML spec: loading with line numbers, `--set` overrides, validation into typed objects,
and the resolved plan that the builder runs and `iptkit validate` prints.

Every problem is reported at once, each naming its dotted key, its line in the YAML file (or
the `--set` that introduced it) and what is expected; an unknown key suggests the nearest valid
one. All of this happens before a pipeline exists, so a bad spec never starts a run.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from iptkit.config_file import apply_overrides, load_yaml
from iptkit.config_file import locate as _locate
from iptkit.config_file import validation_problems as _problems
from iptkit.errors import SpecError, SpecProblem
from iptkit.pipelines.flow import Flow, StagePlan, plan_flow
from iptkit.pipelines.sinks import DEFAULT_SHARD_BYTES
from iptkit.transforms.reading.read import match_source, resolve_pattern
from iptkit.transforms.reading.sources import SourceConfig, SourceFile
from iptkit.transforms.stage import stage_types
from iptkit.transforms.stage_config import BASE_DIR, PLACEMENT_KEYS

Path = tuple[Any, ...]
# Keys that say where and how a run goes, not what it computes: outside the spec hash.
RUN_KEYS = ("output", "pipeline_options", "max_exception_share")


class Spec(BaseModel):
    """The top level of a spec file."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    seed: int = Field(0, description="seeds every random choice, with the record id")
    output: str = Field(description="run directory, relative to where iptkit runs; --out overrides")
    description: str = Field("", description="free text, kept in the resolved spec")
    sources: list[SourceConfig] = Field(min_length=1, description="where records come from")
    stages: list[Any] = Field(default_factory=list, description="a list of {stage_name: options}")
    keep_records: bool = Field(True, description="write the final records to RUN/output/")
    output_shards: int = Field(
        1,
        ge=1,
        le=100_000,
        description="fewest files per output, rejects and data folder (rows go by id hash); "
        "more when the rows pass output_shard_bytes per file",
    )
    output_shard_bytes: int = Field(
        DEFAULT_SHARD_BYTES,
        ge=1,
        description="uncompressed JSONL bytes per file of output, rejects and data folders: the "
        "files are max(output_shards, ceil(bytes / this)), so one worker's shard stays bounded "
        "as the corpus grows",
    )
    max_exception_share: float = Field(
        0.01,
        ge=0,
        le=1,
        description="a stage whose `exception` rejects pass this share of its input fails the "
        "run (after writing the ledger), showing the first tracebacks",
    )
    pipeline_options: dict[str, Any] = Field(
        default_factory=dict, description="Beam pipeline options; command-line flags win"
    )

    @field_validator("pipeline_options")
    @classmethod
    def _known_beam_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_pipeline_options(value)


def check_pipeline_options(options: dict[str, Any]) -> dict[str, Any]:
    """Each key is an option Beam knows (nearest name suggested) with a scalar value, and the
    runner, if named, is one Beam can create: a typo fails `validate`, not a run hours later."""
    from apache_beam.options.pipeline_options import PipelineOptions

    known = PipelineOptions([]).get_all_options()
    problems = []
    for key, value in options.items():
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            problems.append(f"{key}: not a Beam pipeline option" + (f"; did you mean {near[0]!r}?" if near else ""))  # fmt: skip
        elif isinstance(value, (dict, list)):
            problems.append(f"{key}: expected a single value, got {type(value).__name__}")
    runner = options.get("runner")
    if isinstance(runner, str):
        from apache_beam.runners.runner import create_runner

        try:
            create_runner(runner)
        except ValueError as exc:
            problems.append(f"runner: {str(exc).split(' Valid values')[0]}")
        except ImportError as exc:  # a runner whose extra is not installed (gcp, ...)
            problems.append(f"runner: {runner} needs a package that is not installed ({exc})")
    if problems:
        raise ValueError("; ".join(problems))
    return options


@dataclass
class Plan:
    """A validated spec with everything resolved: files matched, stage names made unique."""

    spec: Spec
    spec_path: str
    stages: list[StagePlan]
    files: dict[str, list[SourceFile]]
    spec_hash: str
    resolved: dict[str, Any] = field(repr=False)
    flow: Flow = field(repr=False, default_factory=lambda: Flow((), ()))

    @property
    def output(self) -> str:
        return self.spec.output

    def resolved_yaml(self) -> str:
        """RUN/spec.resolved.yaml: the spec as run, defaults filled in, hash in the header."""
        header = (
            f"# iptkit resolved spec of {self.spec_path}\n"
            f"# spec_hash: {self.spec_hash}\n"
            f"# the hash covers everything below except {', '.join(RUN_KEYS)} and each stage's "
            f"{', '.join(PLACEMENT_KEYS)}\n"
        )
        return header + yaml.safe_dump(self.resolved, sort_keys=False, allow_unicode=True)


# ---------------------------------------------------------------------------------------------
# Validation


def _model_for(loc: Path) -> type[BaseModel] | None:
    """The model whose fields are valid at `loc` (used to suggest a name for an unknown key)."""
    if not loc:
        return Spec
    if loc[0] == "sources" and len(loc) == 2:
        return SourceConfig
    return None


def _stage_plans(
    base_dir: str,
    raw_stages: list[Any],
    positions: dict[Path, int],
    origins: dict[Path, str],
    origin: str,
) -> tuple[list[StagePlan], list[SpecProblem]]:
    plans: list[StagePlan] = []
    problems: list[SpecProblem] = []
    used: dict[str, int] = {}
    types = stage_types()
    for i, item in enumerate(raw_stages):
        loc: Path = ("stages", i)
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, dict) or len(item) != 1:
            problems.append(
                _locate(
                    loc,
                    "each stage is a one-key mapping, {stage_name: {options}}",
                    positions,
                    origins,
                    origin,
                )
            )
            continue
        ((type_name, options),) = item.items()
        if type_name not in types:
            near = difflib.get_close_matches(str(type_name), types, n=1, cutoff=0.5)
            hint = f"did you mean '{near[0]}'? " if near else ""
            problems.append(
                _locate(
                    loc + (type_name,),
                    f"unknown stage; {hint}(available: {', '.join(types)})",
                    positions,
                    origins,
                    origin,
                )
            )
            continue
        config_class = types[type_name].config_class
        try:
            config = config_class.model_validate(options or {}, context={BASE_DIR: base_dir})
        except ValidationError as exc:
            problems += _problems(
                exc,
                loc + (type_name,),
                lambda _loc, model=config_class: model,
                positions,
                origins,
                origin,
            )
            continue
        used[type_name] = used.get(type_name, 0) + 1
        name = type_name if used[type_name] == 1 else f"{type_name}_{used[type_name]}"
        plans.append(StagePlan(name, type_name, config, i))
    return plans, problems


def spec_hash(resolved: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the resolved spec, less where and how it runs (the
    pipeline options, and each stage's resource hints: the same records on any worker) and the
    exception ceiling, which decides whether a run passes, never what it writes."""
    content = {k: v for k, v in resolved.items() if k not in RUN_KEYS}
    content["stages"] = [
        {name: {k: v for k, v in options.items() if k not in PLACEMENT_KEYS}}
        for stage in content.get("stages", [])
        for name, options in stage.items()
    ]
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode())
    return "sha256:" + digest.hexdigest()


def load_plan(
    spec_path: str, sets: list[str] | None = None, out: str | None = None, match: bool = True
) -> Plan:
    """Load, override, validate and resolve a spec; raise `SpecError` listing every problem."""
    origin = spec_path
    try:
        with open(spec_path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise SpecError(
            [SpecProblem("", None, f"cannot read the spec: {exc.strerror}", origin)]
        ) from None
    data, positions = load_yaml(text, origin)
    if not isinstance(data, dict):
        raise SpecError(
            [SpecProblem("", 1, "a spec is a YAML mapping (seed, output, sources, stages)", origin)]
        )
    origins = apply_overrides(data, list(sets or []))
    if out is not None:
        data["output"] = out
        origins[("output",)] = "--out"
    problems: list[SpecProblem] = []
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        problems += _problems(exc, (), _model_for, positions, origins, origin)
        spec = None
    base_dir = os.path.dirname(os.path.abspath(spec_path))
    raw_stages = data.get("stages") if isinstance(data.get("stages"), list) else []
    stages, stage_problems = _stage_plans(base_dir, raw_stages, positions, origins, origin)
    problems += stage_problems
    flow, flow_problems = plan_flow(stages)
    problems += [_locate(loc, m, positions, origins, origin) for loc, m in flow_problems]
    if spec is not None:
        names = [s.name for s in spec.sources]
        for stage in stages:
            for j, name in enumerate(stage.config.sources or []):
                if name not in names:
                    problems.append(
                        _locate(
                            ("stages", stage.index, stage.type, "sources", j),
                            f"no source named '{name}' (sources: {', '.join(names)})",
                            positions,
                            origins,
                            origin,
                        )
                    )
        for i, name in enumerate(names):
            if names.index(name) != i:
                problems.append(
                    _locate(
                        ("sources", i, "name"),
                        f"duplicate source name '{name}'",
                        positions,
                        origins,
                        origin,
                    )
                )
    if problems:
        raise SpecError(sorted(problems, key=lambda p: (p.line is None, p.line or 0)))
    assert spec is not None
    files: dict[str, list[SourceFile]] = {}
    sources_resolved = []
    for i, src in enumerate(spec.sources):
        patterns = [resolve_pattern(p, base_dir) for p in src.paths]
        if match:
            found, unmatched = match_source(src, patterns)
            for j, message in unmatched:
                loc: Path = ("sources", i, "path")
                if j >= 0 and isinstance(src.path, list):
                    loc += (j,)
                where = f"source '{src.name}'" + (f", path '{src.paths[j]}'" if j >= 0 else "")
                if message.startswith("no file matches"):
                    where += f"; paths are relative to the spec's folder, {base_dir}"
                problems.append(_locate(loc, f"{message} ({where})", positions, origins, origin))
            files[src.name] = found
        dumped = src.model_dump(mode="json")
        dumped.update(path=patterns if len(patterns) > 1 else patterns[0], kind=src.record_kind)
        sources_resolved.append(dumped)
    if problems:
        raise SpecError(sorted(problems, key=lambda p: (p.line is None, p.line or 0)))
    resolved = spec.model_dump(mode="json")
    resolved["sources"] = sources_resolved
    resolved["stages"] = [{s.type: s.config.model_dump(mode="json")} for s in stages]
    return Plan(
        spec=spec,
        spec_path=spec_path,
        stages=stages,
        files=files,
        spec_hash=spec_hash(resolved),
        resolved=resolved,
        flow=flow,
    )
