"""Sources: the spec's `sources` entries, and parsing of their files into records or rejects.

Pure functions over a binary stream, so every format and every kind of broken input is tested
without Beam; `iptkit.transforms.reading.read` runs them on workers, one file or one span of a
large file (`spans.py`: a byte range of uncompressed JSON Lines, row groups of Parquet) per
element.

Formats: `jsonl` (plain, .gz, .zst), `parquet`, `text` (a file per document, or paragraphs),
`conversations` (JSONL or Parquet rows in the LMSYS-Chat-1M schema, `conversation` as a list of
`{role, content}`, or the ShareGPT form, `conversations` as a list of `{from, value}`),
`preference` (JSONL or Parquet rows of preference pairs: iptkit's own, UltraFeedback,
HH-RLHF; `transforms/reading/preference.py`), read as preference records
(`transforms/preference.py`).

Ids: a source's `id_field` value when it names one (a string as it is, an integer in decimal; any
other type, an empty string or a string with bytes that are not UTF-8 is a reject); otherwise
`SOURCE:FILE:N`, where FILE is the path relative to the glob's fixed prefix and N the 1-based
line, row or paragraph, or `SOURCE:FILE` for a file read whole. They are stable across runs,
runners and checkouts. Two records with one id are found by the read step
(`iptkit.transforms.reading.read`), which keeps the first and rejects the others.

A rejected row keeps the row as read, as JSON (`plain_json`: dates as ISO strings, decimals as
strings, bytes as `{"$base64": ...}`); a line that is not JSON keeps the line.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from iptkit.transforms.preference import preference_record
from iptkit.transforms.reading.preference import PreferenceRowError, parse_preference
from iptkit.transforms.reading.spans import WHOLE, Span, SpanUnit, range_lines, span_unit
from iptkit.transforms.record import KINDS, ORIGINS, Record, Reject, escaped_text, plain_json
from iptkit.transforms.typology import DEFAULT_BY_KIND

FORMATS = ("jsonl", "parquet", "text", "conversations", "preference")
_CHAT_FORMATS = ("conversations", "preference")
READ_STAGE = "read"
# A raw line kept in a read reject is cut here, so one huge broken line cannot bloat rejects.
MAX_REJECT_CHARS = 20_000
# Objects and lists nested deeper than this are a reject (`too_deep`): every later step (the
# coder between workers, the sinks) walks a record recursively.
MAX_DEPTH = 100

# ShareGPT speaker names seen in the wild, mapped onto the chat roles the rest of iptkit uses.
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
    "system": "system",
    "tool": "tool",
    "function": "tool",
}


class SourceConfig(BaseModel):
    """One entry of the spec's `sources` list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="unique source name")
    format: Literal["jsonl", "parquet", "text", "conversations", "preference"] = Field(
        description="jsonl (.gz, .zst too), parquet, text files, chat logs or preference pairs "
        "(JSONL or Parquet)"
    )
    path: str | list[str] = Field(
        description="glob or list of globs, relative to the spec's folder; gs:// and s3:// work; "
        "each must match a file (a folder or no match is a spec error)"
    )
    text_field: str = Field("text", description="field holding the text (jsonl, parquet)")
    id_field: str | None = Field(
        None,
        description="field holding a unique id (a string, or an integer written in decimal); "
        "a record whose id another already has is a duplicate_id reject (the first by source "
        "order, file path, line is kept); else ids are SOURCE:FILE:LINE",
    )
    lang_field: str | None = Field(None, description="field holding a declared language")
    category_field: str | None = Field(None, description="field holding a declared category")
    kind: Literal[KINDS] | None = Field(  # type: ignore[valid-type]
        None, description="record kind; default raw, or instruction for conversations"
    )
    origin: Literal[ORIGINS] | None = Field(  # type: ignore[valid-type]
        None,
        description="PLLuM typology of the records; default by kind: raw and instruction "
        "organic, tuning converted, augmented synthetic",
    )
    lang: str | None = Field(None, description="language declared for every record")
    category: str | None = Field(None, description="category declared for every record")
    split: Literal["file", "paragraph"] | None = Field(
        None, description="text format only: a document per file, or per paragraph (default)"
    )
    dialect: Literal["auto", "lmsys", "sharegpt", "iptkit", "ultrafeedback", "hh_rlhf"] | None = (
        Field(
            None,
            description="conversations (auto, lmsys, sharegpt) or preference (auto, iptkit, "
            "ultrafeedback, hh_rlhf) format only: schema of the rows (default auto)",
        )
    )
    meta_fields: Literal["all", "none"] | list[str] = Field(
        "all", description="fields copied into the record's meta: all other fields, none, or a list"
    )

    @model_validator(mode="after")
    def _format_options(self) -> SourceConfig:
        if self.split is not None and self.format != "text":
            raise ValueError(f"'split' applies only to format: text (this source is {self.format})")
        dialects = {
            "conversations": ("auto", "lmsys", "sharegpt"),
            "preference": ("auto", "iptkit", "ultrafeedback", "hh_rlhf"),
        }.get(self.format, ())
        if self.dialect is not None and not dialects:
            raise ValueError(
                "'dialect' applies only to format: conversations or preference (this source is "
                f"{self.format})"
            )
        if self.dialect is not None and self.dialect not in dialects:
            raise ValueError(
                f"dialect {self.dialect!r} does not apply to format: {self.format} (its "
                f"dialects: {', '.join(dialects)})"
            )
        if "text_field" in self.model_fields_set and self.format in ("text", *_CHAT_FORMATS):
            raise ValueError(
                f"'text_field' does not apply to format: {self.format} "
                "(text is the file or paragraph, or the first user turn)"
            )
        return self

    @property
    def paths(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)

    @property
    def record_kind(self) -> str:
        if self.kind is not None:
            return self.kind
        return "instruction" if self.format in _CHAT_FORMATS else "raw"


@dataclass(frozen=True)
class SourceFile:
    """A matched input file: its full path and the short name used in ids and messages."""

    source: str
    path: str
    rel: str


def open_decompressed(raw: BinaryIO, path: str) -> BinaryIO:
    """Wrap a raw stream in the decompressor its extension names (.gz, .zst), buffered."""
    if path.endswith(".gz"):
        return io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"))
    if path.endswith(".zst") or path.endswith(".zstd"):
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw))
    return raw


def _read_reject(cfg: SourceConfig, rid: str, reason: str, detail: str, raw: Any) -> Reject:
    if isinstance(raw, str) and len(raw) > MAX_REJECT_CHARS:
        raw = raw[:MAX_REJECT_CHARS] + "…[cut]"
    return Reject(
        id=rid,
        source=cfg.name,
        stage=READ_STAGE,
        reason=reason,
        detail=escaped_text(detail),
        record=plain_json(raw),
    )


jsonable = plain_json
"""Parquet cells as JSON values (`iptkit.transforms.record.plain_json`)."""


def nesting_depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply lists and objects nest in `value` (a scalar is 0), counted without recursion
    and only up to `limit + 1`."""
    depth = 0
    level = [value]
    while level and depth <= limit:
        children: list[Any] = []
        nested = False  # a container in this level, empty ones included, is one more level
        for item in level:
            if isinstance(item, dict):
                children.extend(item.values())
                nested = True
            elif isinstance(item, (list, tuple)):
                children.extend(item)
                nested = True
        if not nested:
            break
        depth += 1
        level = children
    return depth


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _conversation_turns(
    obj: dict[str, Any], dialect: str
) -> tuple[list[dict[str, str]], str, str] | str:
    """The turns as `{role, content}`, the dialect found and the conversation field's name;
    or, for a malformed conversation, the problem as a string."""
    if dialect == "auto":
        if "conversation" in obj:
            dialect = "lmsys"
        elif "conversations" in obj:
            dialect = "sharegpt"
        else:
            return "no 'conversation' (LMSYS) or 'conversations' (ShareGPT) field"
    field_name = "conversation" if dialect == "lmsys" else "conversations"
    role_key, content_key = ("role", "content") if dialect == "lmsys" else ("from", "value")
    raw_turns = obj.get(field_name)
    if not isinstance(raw_turns, list) or not raw_turns:
        return f"'{field_name}' is {_type_name(raw_turns)}, expected a non-empty list of turns"
    turns = []
    for i, turn in enumerate(raw_turns):
        if not isinstance(turn, dict):
            return f"turn {i} is {_type_name(turn)}, expected an object"
        role, content = turn.get(role_key), turn.get(content_key)
        if not isinstance(role, str) or not isinstance(content, str):
            return f"turn {i} needs string '{role_key}' and '{content_key}'"
        if dialect == "sharegpt":
            if role.lower() not in SHAREGPT_ROLES:
                return f"turn {i} has unknown speaker {role!r}"
            role = SHAREGPT_ROLES[role.lower()]
        turns.append({"role": role, "content": content})
    if not any(t["role"] == "user" for t in turns):
        return "no user turn"
    return turns, dialect, field_name


def _too_deep(cfg: SourceConfig, default_id: str, where: str, raw: Any) -> Reject:
    return _read_reject(
        cfg,
        default_id,
        "too_deep",
        f"{where}: lists and objects nest more than {MAX_DEPTH} levels deep",
        raw,
    )


def record_from_object(
    cfg: SourceConfig, obj: Any, default_id: str, where: str, line: str | None = None
) -> Record | Reject:
    """Map one parsed row onto a `Record`, or say precisely why it cannot be one. `line` is
    the JSONL line `obj` was parsed from: a `too_deep` reject keeps it, as the row itself is
    too deep to keep (one depth check per row, whichever reader calls)."""

    def bad(reason: str, detail: str) -> Reject:
        return _read_reject(cfg, default_id, reason, f"{where}: {detail}", obj)

    if nesting_depth(obj) > MAX_DEPTH:
        return _too_deep(cfg, default_id, where, line)
    if not isinstance(obj, dict):
        return bad("not_an_object", f"expected a JSON object, got {_type_name(obj)}")
    consumed = {cfg.id_field, cfg.lang_field, cfg.category_field}
    meta: dict[str, Any] = {}
    preference = None
    if cfg.format == "preference":
        try:
            preference = parse_preference(obj, cfg.dialect or "auto")
        except PreferenceRowError as exc:
            return bad(exc.reason, str(exc))
        text = preference.pairs[-1]["instruction"]
        consumed |= preference.consumed
        meta = dict(preference.meta)
    elif cfg.format == "conversations":
        parsed = _conversation_turns(obj, cfg.dialect or "auto")
        if isinstance(parsed, str):
            return bad("bad_conversation", parsed)
        turns, dialect, field_name = parsed
        text = next(t["content"] for t in turns if t["role"] == "user")
        meta = {"conversation": turns, "dialect": dialect}
        consumed.add(field_name)
    else:
        text = obj.get(cfg.text_field)
        if text is None:
            present = ", ".join(sorted(obj)) or "none"
            return bad(
                "missing_field",
                f"no text field '{cfg.text_field}' (set the source's text_field); "
                f"fields present: {present}",
            )
        if not isinstance(text, str):
            return bad(
                "wrong_type", f"field '{cfg.text_field}' is {_type_name(text)}, expected a string"
            )
        consumed.add(cfg.text_field)
    if not text.strip():
        return bad("empty_text", "the text is empty")
    rid = default_id
    if cfg.id_field:
        value = obj.get(cfg.id_field)
        if value is None:
            return bad("missing_field", f"no id field '{cfg.id_field}' (the source's id_field)")
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            return bad(
                "wrong_type",
                f"id field '{cfg.id_field}' is {_type_name(value)}, expected a string or an "
                "integer",
            )
        rid = str(value)
        if not rid.strip():
            return bad("bad_id", f"id field '{cfg.id_field}' is an empty string")
        if rid != escaped_text(rid):
            return bad(
                "bad_id",
                f"id field '{cfg.id_field}' holds bytes that are not UTF-8 "
                f"('{escaped_text(rid)[:200]}'); fix the file's encoding, or drop id_field to "
                "take ids from file positions",
            )
    if cfg.meta_fields == "all":
        extra = {k: v for k, v in obj.items() if k not in consumed}
    elif cfg.meta_fields == "none":
        extra = {}
    else:
        extra = {k: obj[k] for k in cfg.meta_fields if k in obj}
    meta.update({k: jsonable(v) for k, v in extra.items()})

    def declared(constant: str | None, field_name: str | None) -> str | None:
        if constant is not None:
            return constant
        value = obj.get(field_name) if field_name else None
        return str(value) if value is not None else None

    record = Record(
        id=rid,
        source=cfg.name,
        text=text,
        kind=cfg.record_kind,
        lang=declared(cfg.lang, cfg.lang_field),
        category=declared(cfg.category, cfg.category_field),
        origin=cfg.origin or DEFAULT_BY_KIND[cfg.record_kind],
        meta=meta,
    )
    if preference is None:
        return record
    return preference_record(record, preference.pairs, preference.rejected, **preference.facts)


Located = tuple[int, str, str, "Record | Reject"]
"""One item of a file with where it was: its number in the file (line, row, paragraph; the
order duplicates are decided by), its default id, and its place as messages name it."""


def _parse_jsonl(
    cfg: SourceConfig, file: SourceFile, lines: Iterable[tuple[int, bytes]]
) -> Iterator[Located]:
    """Records of `(line number, line)` pairs: a whole file's, or a byte range's."""
    for lineno, raw in lines:
        if not raw.strip():
            continue
        line = raw.decode("utf-8", "surrogateescape").rstrip("\r\n")
        if lineno == 1:
            line = line.removeprefix("\ufeff")  # a byte-order mark some editors write
        default_id = f"{cfg.name}:{file.rel}:{lineno}"
        where = f"{file.path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            detail = f"{where}: {exc.msg} (column {exc.colno})"
            yield lineno, default_id, where, _read_reject(cfg, default_id, "bad_json", detail, line)
            continue
        except RecursionError:
            yield lineno, default_id, where, _too_deep(cfg, default_id, where, line)
            continue
        except ValueError as exc:  # e.g. an integer of more digits than Python converts
            detail = f"{where}: {exc}"
            yield lineno, default_id, where, _read_reject(cfg, default_id, "bad_json", detail, line)
            continue
        yield lineno, default_id, where, record_from_object(cfg, obj, default_id, where, line)


def _arrow_errors() -> tuple[type[BaseException], ...]:
    import pyarrow as pa

    return (pa.ArrowException, OSError, ValueError, EOFError, OverflowError)


def _broken_file_errors() -> tuple[type[BaseException], ...]:
    """What a corrupt archive or Parquet file raises beyond OSError and ValueError."""
    import zstandard

    return (*_arrow_errors(), zstandard.ZstdError)


def _cell(column: Any, i: int) -> Any:
    """One cell that Python cannot hold as it is (a date past year 9999, a timestamp out of
    range): its Arrow text form, e.g. "10183-09-21", else a note naming its type."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return column[i].as_py()
    except (OverflowError, ValueError, pa.ArrowException):
        pass
    try:
        return pc.cast(column.slice(i, 1), pa.string())[0].as_py()
    except (OverflowError, ValueError, pa.ArrowException):
        return {"$unconvertible": str(column.type)}


def _batch_rows(batch: Any) -> list[dict[str, Any]]:
    """A record batch as Python rows; a column Python cannot hold as it is (a date or
    timestamp out of Python's range) is converted cell by cell (`_cell`)."""
    import pyarrow as pa

    try:
        return batch.to_pylist()
    except (OverflowError, ValueError, pa.ArrowException):
        pass
    columns = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        try:
            columns[name] = column.to_pylist()
        except (OverflowError, ValueError, pa.ArrowException):
            columns[name] = [_cell(column, i) for i in range(len(column))]
    return [{name: values[i] for name, values in columns.items()} for i in range(batch.num_rows)]


def _parse_parquet(
    cfg: SourceConfig, file: SourceFile, stream: BinaryIO, span: Span
) -> Iterator[Located]:
    """Rows of the span's row groups (all of them for a whole file), one group at a time: a row
    group that cannot be read (a corrupt page) is one `unreadable_row_group` reject naming the
    file, the group and its rows; the other groups are read. Rows keep their numbers in the file
    (from the footer's row counts; the span's `first` for its first group)."""
    import pyarrow.parquet as pq

    errors = _arrow_errors()
    parquet = pq.ParquetFile(stream)
    row = span.first - 1
    end = parquet.num_row_groups if span.end is None else span.end
    for group in range(span.begin, end):
        size = parquet.metadata.row_group(group).num_rows
        first, done = row + 1, 0
        try:
            for batch in parquet.iter_batches(batch_size=1024, row_groups=[group]):
                for obj in _batch_rows(batch):
                    row += 1
                    done += 1
                    default_id = f"{cfg.name}:{file.rel}:{row}"
                    where = f"{file.path} row {row}"
                    yield row, default_id, where, record_from_object(cfg, obj, default_id, where)
        except errors as exc:
            row = max(row, first - 1 + size)
            rid = f"{cfg.name}:{file.rel}:row-group-{group}"
            where = f"{file.path} row group {group}"
            rows = f"rows {first}-{row}" if size else "no rows"
            lost = f"{size - done} of its {size} rows" if done else f"its {size} rows"
            detail = (
                f"{where} ({rows}) cannot be read, {lost} lost: {type(exc).__name__}: "
                f"{' '.join(str(exc).split())}; "
                "the other row groups are read"
            )
            yield (
                first + done,
                rid,
                where,
                _read_reject(cfg, rid, "unreadable_row_group", detail, None),
            )


_BLANK_LINE = re.compile(r"\n[^\S\n]*(?:\n[^\S\n]*)*\n")


def _parse_text(cfg: SourceConfig, file: SourceFile, stream: BinaryIO) -> Iterator[Located]:
    data = stream.read().decode("utf-8", "surrogateescape")
    data = data.replace("\r\n", "\n").replace("\r", "\n")
    if (cfg.split or "paragraph") == "file":
        rid = f"{cfg.name}:{file.rel}"
        yield 1, rid, file.path, record_from_object(cfg, {"text": data}, rid, file.path)
        return
    number = 0
    for block in _BLANK_LINE.split(data):
        if not block.strip():
            continue
        number += 1
        where = f"{file.path} paragraph {number}"
        rid = f"{cfg.name}:{file.rel}:{number}"
        yield number, rid, where, record_from_object(cfg, {"text": block}, rid, where)


def _is_parquet(path: str) -> bool:
    return path.endswith(".parquet") or path.endswith(".pq")


def reads_parquet(cfg: SourceConfig, path: str) -> bool:
    """Whether a file of this source is read as Parquet (its format, or a chat format's file
    named .parquet or .pq)."""
    return cfg.format == "parquet" or (cfg.format in _CHAT_FORMATS and _is_parquet(path))


def file_span_unit(cfg: SourceConfig, path: str) -> SpanUnit | None:
    """How a file of this source can be cut into spans (`spans.span_unit`), or None."""
    return span_unit(reads_parquet(cfg, path), cfg.format == "text", path)


def _items(cfg: SourceConfig, file: SourceFile, raw: BinaryIO, span: Span) -> Iterator[Located]:
    if reads_parquet(cfg, file.path):
        return _parse_parquet(cfg, file, raw, span)
    if span.whole:
        stream = open_decompressed(raw, file.path)
        if cfg.format == "text":
            return _parse_text(cfg, file, stream)
        return _parse_jsonl(cfg, file, enumerate(stream, 1))
    return _parse_jsonl(cfg, file, range_lines(raw, span))


def parse_located(
    cfg: SourceConfig, file: SourceFile, raw: BinaryIO, span: Span = WHOLE
) -> Iterator[Located]:
    """Every item of one file, or of one span of it (`spans.py`: a byte range of an uncompressed
    JSON Lines file, row groups of a Parquet file), as a record or a read reject, with where it
    was; a file that breaks off mid-way (corrupt archive) yields what it had, then one
    `unreadable_file` reject saying where (for a span, its id names the span)."""
    count, number = 0, span.first - 1
    try:
        for located in _items(cfg, file, raw, span):
            count += 1
            number = located[0]
            yield located
    except (OSError, EOFError, ValueError, zlib.error, *_broken_file_errors()) as exc:
        rid, where = f"{cfg.name}:{file.rel}", file.path
        if not span.whole:
            unit = "bytes" if file_span_unit(cfg, file.path) == "bytes" else "row-groups"
            rid += f":{unit}-{span.begin}-{span.end}"
            where += f" ({unit} {span.begin}-{span.end})"
        detail = f"{where}: {type(exc).__name__}: {exc} (after {count} items)"
        yield number + 1, rid, where, _read_reject(cfg, rid, "unreadable_file", detail, None)


def parse_file(
    cfg: SourceConfig, file: SourceFile, raw: BinaryIO, span: Span = WHOLE
) -> Iterator[Record | Reject]:
    """Every item of one file or span, as a record or a read reject (`parse_located` without
    the places)."""
    for _, _, _, item in parse_located(cfg, file, raw, span):
        yield item
