"""Sources: the spec's `sources` entries, and parsing of their files into records or rejects.

Pure functions over a binary stream, so every format and every kind of broken input is tested
without Beam; `iptkit.transforms.reading.read` runs them on workers, one file per element.

Formats: `jsonl` (plain, .gz, .zst), `parquet`, `text` (a file per document, or paragraphs),
`conversations` (JSONL or Parquet rows in the LMSYS-Chat-1M schema, `conversation` as a list of
`{role, content}`, or the ShareGPT form, `conversations` as a list of `{from, value}`).

Ids: a source's `id_field` value when it names one; otherwise `SOURCE:FILE:N`, where FILE is the
path relative to the glob's fixed prefix and N the 1-based line, row or paragraph, or
`SOURCE:FILE` for a file read whole. They are stable across runs, runners and checkouts.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import gzip
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from iptkit.transforms.record import KINDS, ORIGINS, Record, Reject
from iptkit.transforms.typology import DEFAULT_BY_KIND

FORMATS = ("jsonl", "parquet", "text", "conversations")
READ_STAGE = "read"
# A raw line kept in a read reject is cut here, so one huge broken line cannot bloat rejects.
MAX_REJECT_CHARS = 20_000

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
    format: Literal["jsonl", "parquet", "text", "conversations"] = Field(
        description="jsonl (.gz, .zst too), parquet, text files, or chat logs (JSONL or Parquet)"
    )
    path: str | list[str] = Field(
        description="glob or list of globs, relative to the spec's folder; gs:// and s3:// work"
    )
    text_field: str = Field("text", description="field holding the text (jsonl, parquet)")
    id_field: str | None = Field(
        None, description="field holding a unique id; else ids are SOURCE:FILE:LINE"
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
    dialect: Literal["auto", "lmsys", "sharegpt"] | None = Field(
        None, description="conversations format only: schema of the rows (default auto)"
    )
    meta_fields: Literal["all", "none"] | list[str] = Field(
        "all", description="fields copied into the record's meta: all other fields, none, or a list"
    )

    @model_validator(mode="after")
    def _format_options(self) -> SourceConfig:
        if self.split is not None and self.format != "text":
            raise ValueError(f"'split' applies only to format: text (this source is {self.format})")
        if self.dialect is not None and self.format != "conversations":
            raise ValueError(
                f"'dialect' applies only to format: conversations (this source is {self.format})"
            )
        if "text_field" in self.model_fields_set and self.format in ("text", "conversations"):
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
        return "instruction" if self.format == "conversations" else "raw"


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
        id=rid, source=cfg.name, stage=READ_STAGE, reason=reason, detail=detail, record=raw
    )


def jsonable(value: Any) -> Any:
    """Parquet cells as JSON values: dates as ISO strings, decimals as strings, bytes as base64."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (decimal.Decimal, dt.timedelta)):
        return str(value)
    return str(value)


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


def record_from_object(cfg: SourceConfig, obj: Any, default_id: str, where: str) -> Record | Reject:
    """Map one parsed row onto a `Record`, or say precisely why it cannot be one."""

    def bad(reason: str, detail: str) -> Reject:
        return _read_reject(cfg, default_id, reason, f"{where}: {detail}", obj)

    if not isinstance(obj, dict):
        return bad("not_an_object", f"expected a JSON object, got {_type_name(obj)}")
    consumed = {cfg.id_field, cfg.lang_field, cfg.category_field}
    meta: dict[str, Any] = {}
    if cfg.format == "conversations":
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
            return bad("wrong_type", f"id field '{cfg.id_field}' is {_type_name(value)}")
        rid = str(value)
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

    return Record(
        id=rid,
        source=cfg.name,
        text=text,
        kind=cfg.record_kind,
        lang=declared(cfg.lang, cfg.lang_field),
        category=declared(cfg.category, cfg.category_field),
        origin=cfg.origin or DEFAULT_BY_KIND[cfg.record_kind],
        meta=meta,
    )


def _parse_jsonl(
    cfg: SourceConfig, file: SourceFile, stream: BinaryIO
) -> Iterator[Record | Reject]:
    for lineno, raw in enumerate(stream, 1):
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
            yield _read_reject(
                cfg, default_id, "bad_json", f"{where}: {exc.msg} (column {exc.colno})", line
            )
            continue
        yield record_from_object(cfg, obj, default_id, where)


def _parse_parquet(
    cfg: SourceConfig, file: SourceFile, stream: BinaryIO
) -> Iterator[Record | Reject]:
    import pyarrow.parquet as pq

    row = 0
    for batch in pq.ParquetFile(stream).iter_batches(batch_size=1024):
        for obj in batch.to_pylist():
            row += 1
            default_id = f"{cfg.name}:{file.rel}:{row}"
            yield record_from_object(cfg, obj, default_id, f"{file.path} row {row}")


_BLANK_LINE = re.compile(r"\n[^\S\n]*(?:\n[^\S\n]*)*\n")


def _parse_text(cfg: SourceConfig, file: SourceFile, stream: BinaryIO) -> Iterator[Record | Reject]:
    data = stream.read().decode("utf-8", "surrogateescape")
    data = data.replace("\r\n", "\n").replace("\r", "\n")
    if (cfg.split or "paragraph") == "file":
        yield record_from_object(cfg, {"text": data}, f"{cfg.name}:{file.rel}", file.path)
        return
    number = 0
    for block in _BLANK_LINE.split(data):
        if not block.strip():
            continue
        number += 1
        where = f"{file.path} paragraph {number}"
        yield record_from_object(cfg, {"text": block}, f"{cfg.name}:{file.rel}:{number}", where)


def _is_parquet(path: str) -> bool:
    return path.endswith(".parquet") or path.endswith(".pq")


def parse_file(cfg: SourceConfig, file: SourceFile, raw: BinaryIO) -> Iterator[Record | Reject]:
    """Every item of one file, as a record or a read reject; a file that breaks off mid-way
    (corrupt archive) yields what it had, then one `unreadable_file` reject saying where."""
    if cfg.format == "parquet" or (cfg.format == "conversations" and _is_parquet(file.path)):
        parse = _parse_parquet
    elif cfg.format == "text":
        parse = _parse_text
    else:
        parse = _parse_jsonl
    stream = raw if parse is _parse_parquet else open_decompressed(raw, file.path)
    count = 0
    try:
        for item in parse(cfg, file, stream):
            count += 1
            yield item
    except (OSError, EOFError, ValueError) as exc:
        yield _read_reject(
            cfg,
            f"{cfg.name}:{file.rel}",
            "unreadable_file",
            f"{file.path}: {type(exc).__name__}: {exc} (after {count} items)",
            None,
        )
