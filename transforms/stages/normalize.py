"""normalize: Unicode normal form, control characters, whitespace, and invalid UTF-8.

Runs first, so every later stage (language ID, filters, dedup hashes) sees one spelling of the
same text. Invalid UTF-8 arrives as lone surrogates (the reader decodes with `surrogateescape`
so no byte is lost before this decision): `invalid_utf8: reject` drops the record with the
offset of the first bad byte, `replace` writes U+FFFD for each.

Whitespace is collapsed inside lines but leading indentation is kept, because code and
structured text carry meaning there.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from typing import Literal

from pydantic import Field

from iptkit.transforms.record import Record
from iptkit.transforms.stage import Drop, RecordStage, StageContext
from iptkit.transforms.stage_config import StageConfig

_SURROGATE = re.compile(r"[\ud800-\udfff]")
# C0 and C1 controls other than tab and newline, and invisible format characters that carry no
# meaning in running text (zero-width space, word joiner, BOM, soft hyphen). ZWJ and ZWNJ stay:
# emoji sequences and Persian or Indic spelling need them.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u2060\ufeff\u00ad]")
# Space separators other than the ideographic space, which Japanese typesetting uses on purpose
# (NFKC turns it into a plain space when that form is chosen).
_SPACES = re.compile(r"[\u00a0\u1680\u2000-\u200a\u202f\u205f]")
_INNER_RUNS = re.compile(r"(?<=\S)[ \t]{2,}(?=\S)|(?<=\S)\t(?=\S)")
_TRAILING = re.compile(r"[ \t\u3000]+$", re.MULTILINE)


class NormalizeConfig(StageConfig):
    """Options of the normalize stage."""

    form: Literal["NFC", "NFKC", "NFD", "NFKD", "none"] = Field(
        "NFC", description="Unicode normal form; NFKC folds full-width Latin and half-width kana"
    )
    invalid_utf8: Literal["reject", "replace"] = Field(
        "reject", description="a record with bytes that are not UTF-8: reject it, or write U+FFFD"
    )
    control_chars: Literal["remove", "keep"] = Field(
        "remove", description="remove C0/C1 controls (not tab or newline) and zero-width marks"
    )
    whitespace: Literal["collapse", "keep"] = Field(
        "collapse",
        description="collapse runs of spaces inside lines, strip line ends, limit blank lines",
    )
    max_blank_lines: int = Field(1, ge=0, description="consecutive blank lines kept (collapse)")


def normalize_text(text: str, cfg: NormalizeConfig) -> str | Drop:
    """The normalised text, or a `Drop` saying why the text cannot be kept."""
    bad = _SURROGATE.search(text)
    if bad:
        if cfg.invalid_utf8 == "reject":
            count = len(_SURROGATE.findall(text))
            return Drop(
                "invalid_utf8",
                f"{count} byte(s) that are not UTF-8, first at character {bad.start()} "
                "(set normalize.invalid_utf8: replace to keep such records)",
            )
        text = _SURROGATE.sub("\ufffd", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n")
    text = text.replace("\u2029", "\n\n")
    if cfg.form != "none":
        text = unicodedata.normalize(cfg.form, text)
    if cfg.control_chars == "remove":
        text = _CONTROL.sub("", text)
    if cfg.whitespace == "collapse":
        text = _SPACES.sub(" ", text)
        text = _INNER_RUNS.sub(" ", text)
        text = _TRAILING.sub("", text)
        too_many = "\n{" + str(cfg.max_blank_lines + 2) + ",}"
        text = re.sub(too_many, "\n" * (cfg.max_blank_lines + 1), text)
        text = text.strip("\n ")
    if not text.strip():
        return Drop("empty_after_normalize", "nothing but whitespace or control characters left")
    return text


class Normalize(
    RecordStage,
    stage="normalize",
    config=NormalizeConfig,
    summary="Unicode normal form, control characters, whitespace, invalid UTF-8",
):
    """Normalises a record's text, its instruction/response pairs and its conversation turns."""

    def __init__(self, config: NormalizeConfig | None = None, context: StageContext | None = None):
        super().__init__(config, context)

    def apply(self, record: Record) -> Record | Drop:
        text = normalize_text(record.text, self.config)
        if isinstance(text, Drop):
            return text
        pairs = []
        for i, pair in enumerate(record.pairs):
            new_pair = {}
            for key, value in pair.items():
                out = normalize_text(value, self.config)
                if isinstance(out, Drop):
                    return Drop(out.reason, f"pairs[{i}].{key}: {out.detail}")
                new_pair[key] = out
            pairs.append(new_pair)
        meta = record.meta
        if "conversation" in meta:
            turns = []
            for i, turn in enumerate(meta["conversation"]):
                out = normalize_text(turn["content"], self.config)
                # An empty assistant turn is data about the conversation, not a reason to drop it.
                if isinstance(out, Drop) and out.reason != "empty_after_normalize":
                    return Drop(out.reason, f"conversation[{i}]: {out.detail}")
                turns.append({**turn, "content": "" if isinstance(out, Drop) else out})
            meta = {**meta, "conversation": turns}
        return dataclasses.replace(record, text=text, pairs=pairs, meta=meta)
