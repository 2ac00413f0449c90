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
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from iptkit.errors import SpecError, SpecProblem
from iptkit.pipelines.flow import Flow, StagePlan, plan_flow
from iptkit.transforms.reading.read import resolve_pattern, source_files
from iptkit.transforms.reading.sources import SourceConfig, SourceFile
from iptkit.transforms.stage import stage_types
from iptkit.transforms.stage_config import BASE_DIR

Path = tuple[Any, ...]
# Keys that say where and how a run goes, not what it computes: outside the spec hash.
RUN_KEYS = ("output", "pipeline_options", "max_exception_share")


class Spec(BaseModel):
    """The top level of a spec file."""

    model_config = ConfigDict(extra="forbid")

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
        description="files per output, rejects and data folder (rows go by id hash)",
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
            f"# the hash covers everything below except {', '.join(RUN_KEYS)}\n"
        )
        return header + yaml.safe_dump(self.resolved, sort_keys=False, allow_unicode=True)


# ---------------------------------------------------------------------------------------------
# YAML with positions


def _positions(
    node: yaml.Node, path: Path, out: dict[Path, int], problems: list[SpecProblem], origin: str
) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                problems.append(
                    SpecProblem(
                        _dotted(path + (key,)),
                        key_node.start_mark.line + 1,
                        "duplicate key (YAML keeps only the last one)",
                        origin,
                    )
                )
            seen.add(key)
            out[path + (key,)] = key_node.start_mark.line + 1
            _positions(value_node, path + (key,), out, problems, origin)
            out[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _positions(item, path + (i,), out, problems, origin)


def load_yaml(text: str, origin: str) -> tuple[Any, dict[Path, int]]:
    """Parse YAML; return the data and the line of every key and list item."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([SpecProblem("", line, f"not valid YAML: {problem}", origin)]) from None
    positions: dict[Path, int] = {}
    problems: list[SpecProblem] = []
    if node is not None:
        _positions(node, (), positions, problems, origin)
    if problems:
        raise SpecError(problems)
    return data, positions


def _dotted(path: Path) -> str:
    return ".".join(str(p) for p in path)


# ---------------------------------------------------------------------------------------------
# --set overrides


def _step(container: list[Any], token: str, path: Path) -> tuple[int, str | None]:
    """Resolve one --set path token inside a list: an index, a source name, or a stage name.

    A stage item is `{name: options}`, so naming a stage also steps into its options: the second
    value is that key, or None.
    """
    if token.lstrip("-").isdigit():
        index = int(token)
        if not -len(container) <= index < len(container):
            raise SpecError(
                [
                    SpecProblem(
                        _dotted(path + (index,)),
                        None,
                        f"index out of range (the list has {len(container)} items)",
                        "--set",
                    )
                ]
            )
        return index, None
    for i, item in enumerate(container):
        if isinstance(item, dict) and item.get("name") == token:
            return i, None
        if isinstance(item, dict) and list(item) == [token]:
            return i, token
        if item == token:  # a stage written as a bare name
            container[i] = {token: {}}
            return i, token
    names = [
        str(item.get("name", next(iter(item), "?"))) if isinstance(item, dict) else str(item)
        for item in container
    ]
    raise SpecError(
        [
            SpecProblem(
                _dotted(path + (token,)),
                None,
                f"no item named '{token}' here; items are: {', '.join(names) or 'none'}",
                "--set",
            )
        ]
    )


def apply_overrides(data: dict[str, Any], sets: list[str]) -> dict[Path, str]:
    """Apply `--set a.b=c` overrides in place (values parsed as YAML); return the paths set."""
    origins: dict[Path, str] = {}
    for item in sets:
        if "=" not in item:
            raise SpecError(
                [SpecProblem("", None, f"'{item}' is not KEY=VALUE (e.g. seed=7)", "--set")]
            )
        dotted, _, raw = item.partition("=")
        tokens = [t for t in dotted.strip().split(".") if t]
        if not tokens:
            raise SpecError([SpecProblem("", None, f"'{item}' names no key", "--set")])
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node: Any = data
        path: Path = ()
        for i, token in enumerate(tokens):
            last = i == len(tokens) - 1
            if isinstance(node, list):
                index, into = _step(node, token, path)
                keys: tuple[Any, ...] = (index,) if into is None else (index, into)
                parent, key = (node, index) if into is None else (node[index], into)
            elif isinstance(node, dict):
                keys, parent, key = (token,), node, token
            else:
                raise SpecError(
                    [
                        SpecProblem(
                            _dotted(path),
                            None,
                            f"is a {type(node).__name__}, it has no key '{token}'",
                            "--set",
                        )
                    ]
                )
            if last:
                parent[key] = value
            elif isinstance(parent, dict) and parent.get(key) is None:
                parent[key] = {}
            node = parent[key]
            path += keys
        origins[path] = f"--set {item}"
    return origins


# ---------------------------------------------------------------------------------------------
# Validation


def _model_for(loc: Path) -> type[BaseModel] | None:
    """The model whose fields are valid at `loc` (used to suggest a name for an unknown key)."""
    if not loc:
        return Spec
    if loc[0] == "sources" and len(loc) == 2:
        return SourceConfig
    return None


def _problems(
    exc: ValidationError,
    base: Path,
    model_at: Any,
    positions: dict[Path, int],
    origins: dict[Path, str],
    origin: str,
) -> list[SpecProblem]:
    problems = []
    for err in exc.errors():
        loc = base + tuple(err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            model = model_at(tuple(err["loc"])[:-1])
            valid = sorted(model.model_fields) if model is not None else []
            near = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
            message = "unknown key"
            message += f"; did you mean '{near[0]}'?" if near else ""
            message += f" (valid: {', '.join(valid)})" if valid else ""
        elif kind == "missing":
            message = "required key is missing"
        else:
            message = err["msg"].removeprefix("Value error, ")
            if (
                "input" in err
                and kind not in ("value_error",)
                and not isinstance(err["input"], (dict, list))
            ):
                message += f" (got {err['input']!r})"
        problems.append(_locate(loc, message, positions, origins, origin))
    return problems


def _locate(
    loc: Path, message: str, positions: dict[Path, int], origins: dict[Path, str], origin: str
) -> SpecProblem:
    for n in range(len(loc), -1, -1):
        prefix = loc[:n]
        if prefix in origins:
            return SpecProblem(_dotted(loc), None, message, origins[prefix])
        if prefix in positions:
            return SpecProblem(_dotted(loc), positions[prefix], message, origin)
    return SpecProblem(_dotted(loc), None, message, origin)


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
    """sha256 of the canonical JSON of the resolved spec, less where and how it runs (and the
    exception ceiling, which decides whether a run passes, never what it writes)."""
    content = {k: v for k, v in resolved.items() if k not in RUN_KEYS}
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
            found = source_files(src, patterns)
            if not found:
                problems.append(
                    _locate(
                        ("sources", i, "path"),
                        f"no file matches {', '.join(patterns)} (paths are relative "
                        f"to the spec's folder, {base_dir})",
                        positions,
                        origins,
                        origin,
                    )
                )
            files[src.name] = found
        dumped = src.model_dump(mode="json")
        dumped.update(path=patterns if len(patterns) > 1 else patterns[0], kind=src.record_kind)
        sources_resolved.append(dumped)
    if problems:
        raise SpecError(problems)
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
