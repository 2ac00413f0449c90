"""Config files: YAML with line marks, `--set` overrides, validation into a pydantic model.

The pipeline spec (`iptkit.pipelines.spec`), the trainer's run config (`iptkit.trainer.config`)
and the eval suites (`iptkit.eval.suites`) are all read here, so all three report problems the
same way: every problem at once, in one error, each naming the file and line (or the `--set`
that introduced it), the dotted key, and what is expected; an unknown key suggests the nearest
valid one.

    source = ConfigFile.read(path, what="run config", error=TrainConfigError, sets=overrides)
    run = source.validate(RunConfig)          # raises error([...every problem...])

Also here: finding a config file named by a path or by the name of a preset shipped with iptkit
(`zero2`, `mistral-500m`, the `smoke` suite), through importlib.resources, so presets resolve
the same from a source checkout and from an installed wheel.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from iptkit.errors import ConfigError, SpecError, SpecProblem

Loc = tuple[Any, ...]
"""A position in a config's data: keys and list indices, e.g. ("stages", 0, "lr")."""

ErrorType = Callable[[list[SpecProblem]], ConfigError]


def dotted(loc: Loc) -> str:
    return ".".join(str(p) for p in loc)


# ---------------------------------------------------------------------------------------------
# YAML with positions


def _positions(
    node: yaml.Node, loc: Loc, out: dict[Loc, int], problems: list[SpecProblem], origin: str
) -> None:
    out[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                problems.append(
                    SpecProblem(
                        dotted(loc + (key,)),
                        key_node.start_mark.line + 1,
                        "duplicate key (YAML keeps only the last one)",
                        origin,
                    )
                )
            seen.add(key)
            _positions(value_node, loc + (key,), out, problems, origin)
            out[loc + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _positions(item, loc + (i,), out, problems, origin)


MAX_YAML_NODES = 100_000
"""The most nodes (mappings, lists, scalars) a config may have with every alias expanded: a
spec is a few hundred. An alias bomb ("billion laughs") is refused before anything expands it."""
MAX_YAML_DEPTH = 100
"""The deepest nesting of mappings and lists a config may have."""


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _graph_problem(root: yaml.Node) -> tuple[int, str] | None:
    """Why a composed document cannot be loaded safely, at which line: a recursive alias, more
    than `MAX_YAML_NODES` nodes with aliases expanded, or deeper than `MAX_YAML_DEPTH`. Walks the
    node graph once (aliases are shared nodes there), without recursion."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, list[yaml.Node]]] = [(root, _children(root))]
    open_nodes.add(id(root))
    while stack:
        node, pending = stack[-1]
        if len(stack) > MAX_YAML_DEPTH:
            return (
                node.start_mark.line + 1,
                f"nested more than {MAX_YAML_DEPTH} levels deep (with aliases expanded)",
            )
        if pending:
            child = pending.pop()
            if id(child) in open_nodes:
                return (
                    child.start_mark.line + 1,
                    "a recursive alias: an anchored node contains an alias to itself, "
                    "which would expand without end",
                )
            if id(child) not in sizes:
                open_nodes.add(id(child))
                stack.append((child, _children(child)))
            continue
        stack.pop()
        open_nodes.discard(id(node))
        size = 1 + sum(sizes[id(c)] for c in _children(node))
        if size > MAX_YAML_NODES:
            return (
                node.start_mark.line + 1,
                f"expands to more than {MAX_YAML_NODES:,} nodes through aliases (an alias "
                "bomb?); write the repeated parts out, or use fewer nested aliases",
            )
        sizes[id(node)] = size
    return None


class UnsafeYaml(Exception):
    """A YAML document refused before it is constructed (`_graph_problem`)."""

    def __init__(self, line: int | None, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


def _compose_and_construct(text: str) -> tuple[Any, yaml.Node | None]:
    """SafeLoader (no tags that run code), with the node graph checked before construction;
    raises `yaml.YAMLError` or `UnsafeYaml`."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise UnsafeYaml(None, "nested too deeply for the YAML parser") from None
        if node is None:
            return None, None
        problem = _graph_problem(node)
        if problem is not None:
            raise UnsafeYaml(*problem)
        return loader.construct_document(node), node
    finally:
        loader.dispose()


def parse_yaml(
    text: str, origin: str, error: ErrorType = SpecError
) -> tuple[Any, yaml.Node | None]:
    """Parse YAML safely, refusing a recursive alias, an alias bomb and nesting deeper than
    `MAX_YAML_DEPTH` with a located error; return the data and the composed node."""
    try:
        return _compose_and_construct(text)
    except UnsafeYaml as exc:
        raise error([SpecProblem("", exc.line, exc.message, origin)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise error([SpecProblem("", line, f"not valid YAML: {problem}", origin)]) from None


def load_yaml(text: str, origin: str, error: ErrorType = SpecError) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML (`parse_yaml`); return the data and the line of every key and list item."""
    data, node = parse_yaml(text, origin, error)
    positions: dict[Loc, int] = {}
    problems: list[SpecProblem] = []
    if node is not None:
        _positions(node, (), positions, problems, origin)
    if problems:
        raise error(problems)
    return data, positions


# ---------------------------------------------------------------------------------------------
# --set overrides


def _set_error(error: ErrorType, key: str, message: str) -> ConfigError:
    return error([SpecProblem(key, None, message, "--set")])


def _step(container: list[Any], token: str, loc: Loc, error: ErrorType) -> tuple[int, str | None]:
    """Resolve one --set path token inside a list: an index, or the name of an item (an item
    with `name: TOKEN`, or a spec stage `{TOKEN: options}`).

    Naming a `{TOKEN: options}` item also steps into its options: the second value is that key,
    or None.
    """
    if token.lstrip("-").isdigit():
        index = int(token)
        if not -len(container) <= index < len(container):
            raise _set_error(
                error,
                dotted(loc + (index,)),
                f"index out of range (the list has {len(container)} items)",
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
    raise _set_error(
        error,
        dotted(loc + (token,)),
        f"no item named '{token}' here; items are: {', '.join(names) or 'none'}",
    )


def apply_overrides(
    data: dict[str, Any], sets: Iterable[str], error: ErrorType = SpecError
) -> dict[Loc, str]:
    """Apply `--set a.b=c` overrides in place (values parsed as YAML); return the keys set,
    each with the `--set` that set it. In a list, a token is an index or an item's name."""
    origins: dict[Loc, str] = {}
    for item in sets:
        if "=" not in item:
            raise _set_error(error, "", f"'{item}' is not KEY=VALUE (e.g. seed=7)")
        key, _, raw = item.partition("=")
        tokens = [t for t in key.strip().split(".") if t]
        if not tokens:
            raise _set_error(error, "", f"'{item}' names no key")
        try:
            value, _ = _compose_and_construct(raw)
        except yaml.YAMLError:
            value = raw
        except UnsafeYaml as exc:
            raise _set_error(error, key.strip(), f"the value {raw!r}: {exc.message}") from None
        node: Any = data
        loc: Loc = ()
        for i, token in enumerate(tokens):
            last = i == len(tokens) - 1
            if isinstance(node, list):
                index, into = _step(node, token, loc, error)
                keys: Loc = (index,) if into is None else (index, into)
                parent, name = (node, index) if into is None else (node[index], into)
            elif isinstance(node, dict):
                keys, parent, name = (token,), node, token
            else:
                raise _set_error(
                    error, dotted(loc), f"is a {type(node).__name__}, it has no key '{token}'"
                )
            if last:
                parent[name] = value
            elif isinstance(parent, dict) and parent.get(name) is None:
                parent[name] = {}
            node = parent[name]
            loc += keys
        origins[loc] = f"--set {item}"
    return origins


# ---------------------------------------------------------------------------------------------
# Validation problems, located


def locate(
    loc: Loc, message: str, positions: dict[Loc, int], origins: dict[Loc, str], origin: str
) -> SpecProblem:
    """A problem at `loc`, placed at the `--set` that set it or its nearest line in the file."""
    for n in range(len(loc), -1, -1):
        prefix = loc[:n]
        if prefix in origins:
            return SpecProblem(dotted(loc), None, message, origins[prefix])
        if prefix in positions:
            return SpecProblem(dotted(loc), positions[prefix], message, origin)
    return SpecProblem(dotted(loc), None, message, origin)


def _fields(model: Any) -> dict[str, Any] | None:
    """The fields of a pydantic model or pydantic dataclass, by name; None for other types."""
    if not isinstance(model, type):
        return None
    if issubclass(model, BaseModel):
        return dict(model.model_fields)
    fields = getattr(model, "__pydantic_fields__", None)
    return fields if isinstance(fields, dict) else None


def field_names(model: Any) -> list[str] | None:
    """The field names of a pydantic model or pydantic dataclass; None for other types."""
    fields = _fields(model)
    return None if fields is None else list(fields)


def _unwrap(tp: Any) -> Any:
    """`X` from `X | None` and `Annotated[X, ...]`."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _unwrap(get_args(tp)[0])
    if origin is Union or type(tp).__name__ == "UnionType":
        args = [a for a in get_args(tp) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else tp
    return tp


def model_at(root: Any, loc: Sequence[Any]) -> Any | None:
    """The model (pydantic model or dataclass) whose fields are valid at `loc` under `root`:
    `model_at(RunConfig, ("stages", 0))` is StageConfig. None where no model is known."""
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(part, int):
            if get_origin(tp) not in (list, tuple) or not get_args(tp):
                return None
            tp = get_args(tp)[0]
            continue
        fields = _fields(tp)
        if fields is None or part not in fields:
            return None
        tp = fields[part].annotation
    tp = _unwrap(tp)
    return tp if field_names(tp) is not None else None


def validation_problems(
    exc: ValidationError,
    base: Loc,
    model_for: Callable[[Loc], Any | None],
    positions: dict[Loc, int],
    origins: dict[Loc, str],
    origin: str,
) -> list[SpecProblem]:
    """One located problem per pydantic error; `model_for(loc)` gives the model valid at a
    location (relative to `base`), to suggest a name for an unknown key."""
    problems = []
    for err in exc.errors():
        loc = base + tuple(err["loc"])
        kind = err["type"]
        if kind in ("extra_forbidden", "unexpected_keyword_argument"):
            valid = sorted(field_names(model_for(tuple(err["loc"])[:-1])) or [])
            near = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
            message = "unknown key"
            message += f"; did you mean '{near[0]}'?" if near else ""
            message += f" (valid: {', '.join(valid)})" if valid else ""
        elif kind in ("missing", "missing_argument"):
            message = "required key is missing"
        else:
            message = err["msg"].removeprefix("Value error, ")
            if (
                "input" in err
                and kind not in ("value_error",)
                and not isinstance(err["input"], (dict, list))
            ):
                message += f" (got {err['input']!r})"
        problems.append(locate(loc, message, positions, origins, origin))
    return problems


def by_line(problems: Iterable[SpecProblem]) -> list[SpecProblem]:
    """Problems in file order; those without a line (from --set) last."""
    return sorted(problems, key=lambda p: (p.line is None, p.line or 0))


# ---------------------------------------------------------------------------------------------
# One config file, end to end


@dataclass
class ConfigFile:
    """A config file's data with the line of every key and the `--set` that changed any."""

    origin: str
    """The file, as messages name it."""
    data: Any
    positions: dict[Loc, int]
    origins: dict[Loc, str] = field(default_factory=dict)
    error: ErrorType = SpecError
    """What to raise: called with the list of problems."""

    @classmethod
    def read(
        cls,
        path: str | Path,
        *,
        what: str,
        error: ErrorType,
        sets: Iterable[str] = (),
        keys_hint: str = "",
    ) -> ConfigFile:
        """Read the YAML mapping at `path` and apply `sets`; `what` names the file in messages
        ("run config"), `keys_hint` the keys it usually has ("run_dir, model, ...")."""
        origin = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise error(
                [SpecProblem("", None, f"cannot read the {what}: {exc.strerror}", origin)]
            ) from None
        except UnicodeDecodeError as exc:
            raise error(
                [SpecProblem("", None, f"the {what} is not UTF-8 text ({exc.reason})", origin)]
            ) from None
        data, positions = load_yaml(text, origin, error)
        if not isinstance(data, dict):
            hint = f" ({keys_hint})" if keys_hint else ""
            raise error([SpecProblem("", 1, f"a {what} is a YAML mapping{hint}", origin)])
        origins = apply_overrides(data, sets, error)
        return cls(origin, data, positions, origins, error)

    def locate(self, loc: Loc, message: str) -> SpecProblem:
        return locate(loc, message, self.positions, self.origins, self.origin)

    def problems(
        self,
        exc: ValidationError,
        model: Any,
        base: Loc = (),
        model_for: Callable[[Loc], Any | None] | None = None,
    ) -> list[SpecProblem]:
        """The located problems of a validation of the data at `base` into `model`."""
        return validation_problems(
            exc,
            base,
            model_for or (lambda loc: model_at(model, loc)),
            self.positions,
            self.origins,
            self.origin,
        )

    def check(
        self, model: Any, data: Any = None, context: Any = None
    ) -> tuple[Any | None, list[SpecProblem]]:
        """`self.data` (or `data`) validated into `model` (a pydantic model or dataclass), or
        None and the located problems, for a caller that adds problems of its own."""
        try:
            value = TypeAdapter(model).validate_python(
                self.data if data is None else data, context=context
            )
        except ValidationError as exc:
            return None, self.problems(exc, model)
        return value, []

    def validate(self, model: Any, data: Any = None, context: Any = None) -> Any:
        """`self.data` (or `data`) validated into `model`; raises `self.error` listing every
        problem."""
        value, problems = self.check(model, data, context)
        self.fail(problems)
        return value

    def fail(self, problems: Sequence[SpecProblem]) -> None:
        """Raise `self.error` when there are problems."""
        if problems:
            raise self.error(by_line(problems))


# ---------------------------------------------------------------------------------------------
# Files shipped with iptkit


def package_dir(package: str) -> Path:
    """The folder of an iptkit package on disk (source checkout or installed wheel), found
    through importlib.resources, for its data files (presets, examples, suites)."""
    root = files(package)
    if not isinstance(root, Path):
        raise ConfigError(
            f"iptkit's data files in {package} are not in a folder on disk ({root}); "
            "install iptkit as a wheel or from source, not zipped"
        )
    return root


def shipped_names(folder: Path, suffixes: Sequence[str]) -> list[str]:
    """The names (file names less suffix) of the presets in `folder`."""
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if p.suffix in suffixes and p.is_file())


def find_file(value: str, folder: Path, suffixes: Sequence[str]) -> Path | None:
    """`value` as a path when that file exists, else the preset `folder/value.SUFFIX`;
    None when neither exists."""
    if Path(value).is_file():
        return Path(value)
    if "/" in value or "\\" in value:
        return None
    for suffix in suffixes:
        candidate = folder / f"{value}{suffix}"
        if candidate.is_file():
            return candidate
    return None
