"""Preference data in the common schemas, parsed into a conversation, a rejected response and
what is known about them (`format: preference`; transforms/preference.py is the record).

Dialects (`dialect: auto` tells them apart by their fields):
- `iptkit`: `{prompt, chosen, rejected}` with optional `chosen_score`, `rejected_score`,
  `reason`; or a preference record as a run writes it (RUN/output after the preference stage:
  `pairs` and `meta.preference`, its other meta kept), so one run's pairs are another's
  source. `chosen` and `rejected` may also be message lists
  (`[{role, content}, ...]`, the conversational form of TRL and of UltraFeedback binarized,
  whose `score_chosen` and `score_rejected` are read too): the last message is the response,
  the earlier ones the conversation before it, and `prompt` may then be left out.
- `ultrafeedback`: `{instruction, completions: [{response, overall_score, critique}, ...]}`
  (Cui et al. 2023): the best completion against the worst by `overall_score` (ties between
  completions go to the earlier one); all equal is a reject `tie`.
- `hh_rlhf`: `{chosen, rejected}`, each a whole dialogue as text in Anthropic's
  `\\n\\nHuman: ...\\n\\nAssistant: ...` form (Bai et al. 2022); both must share every turn but
  the last response (else `prompt_mismatch`).
A row that fits none, or whose fields have the wrong types, is a read reject with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

DIALECTS = ("auto", "iptkit", "ultrafeedback", "hh_rlhf")
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


@dataclass(frozen=True)
class ParsedPreference:
    """One preference row: the conversation ending with the chosen response, the rejected
    response, the known facts (scores, reason) and the fields it was read from."""

    pairs: list[dict[str, str]]
    rejected: str
    facts: dict[str, Any]
    consumed: set[str] = field(default_factory=set)
    meta: dict[str, Any] = field(default_factory=dict)
    """Meta a record written by iptkit had besides its preference, kept as it was."""


class PreferenceRowError(ValueError):
    """A row that is not a preference pair; becomes a read reject with `reason`."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def detect(obj: dict[str, Any]) -> str:
    if "completions" in obj:
        return "ultrafeedback"
    if "prompt" not in obj and isinstance(obj.get("chosen"), str):
        return "hh_rlhf"
    if ("chosen" in obj and "rejected" in obj) or "pairs" in obj:
        return "iptkit"
    raise PreferenceRowError(
        "not_a_pair",
        "no preference fields: expected prompt/chosen/rejected (iptkit), instruction/completions "
        "(UltraFeedback) or chosen/rejected dialogues (HH-RLHF)",
    )


def parse_preference(obj: dict[str, Any], dialect: str = "auto") -> ParsedPreference:
    """The preference pair of one row (raises PreferenceRowError)."""
    dialect = detect(obj) if dialect == "auto" else dialect
    parsed = {"iptkit": _iptkit, "ultrafeedback": _ultrafeedback, "hh_rlhf": _hh_rlhf}[dialect](obj)
    if parsed.pairs[-1]["response"] == parsed.rejected:
        raise PreferenceRowError("same_response", "chosen and rejected responses are the same")
    if not parsed.pairs[-1]["response"].strip() or not parsed.rejected.strip():
        raise PreferenceRowError("empty_response", "a chosen or rejected response is empty")
    return parsed


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise PreferenceRowError(
            "wrong_type", f"field {key!r} is {type(value).__name__}, expected a string"
        )
    return value


def _score(obj: dict[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = obj.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _messages_to_pairs(messages: Any, key: str) -> list[dict[str, str]]:
    """user/assistant alternation as pairs (system turns are left out); the last is the
    response."""
    if not isinstance(messages, list) or not messages:
        raise PreferenceRowError("wrong_type", f"field {key!r} is not a non-empty message list")
    pairs: list[dict[str, str]] = []
    pending: str | None = None
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise PreferenceRowError("bad_conversation", f"{key}[{i}] is not {{role, content}}")
        role = m.get("role")
        if role == "user":
            pending = m["content"]
        elif role == "assistant":
            if pending is None:
                raise PreferenceRowError("bad_conversation", f"{key}[{i}]: no user turn before")
            pairs.append({"instruction": pending, "response": m["content"]})
            pending = None
    if not pairs or messages[-1].get("role") != "assistant":
        raise PreferenceRowError("bad_conversation", f"{key} does not end with a response")
    return pairs


def _record_form(obj: dict[str, Any]) -> ParsedPreference:
    """A preference record as iptkit writes it: pairs ending with the chosen response."""
    meta = obj.get("meta")
    info = meta.get("preference") if isinstance(meta, dict) else None
    pairs = obj.get("pairs")
    if not isinstance(info, dict) or not isinstance(info.get("rejected"), str):
        raise PreferenceRowError("not_a_pair", "a record without meta.preference.rejected")
    if (
        not isinstance(pairs, list)
        or not pairs
        or not all(
            isinstance(p, dict)
            and isinstance(p.get("instruction"), str)
            and isinstance(p.get("response"), str)
            for p in pairs
        )
    ):
        raise PreferenceRowError("wrong_type", "pairs is not a list of {instruction, response}")
    facts = {k: v for k, v in info.items() if k != "rejected"}
    rest = {k: v for k, v in meta.items() if k != "preference"}
    # The Record's own fields; its lang and category are read with lang_field/category_field.
    consumed = {"pairs", "meta", "text", "kind", "origin", "source", "id", "lang", "lang_score",
                "category"}  # fmt: skip
    return ParsedPreference(
        [{"instruction": p["instruction"], "response": p["response"]} for p in pairs],
        info["rejected"], facts, consumed, rest,
    )  # fmt: skip


def _iptkit(obj: dict[str, Any]) -> ParsedPreference:
    if "pairs" in obj:
        return _record_form(obj)
    chosen, rejected = obj.get("chosen"), obj.get("rejected")
    facts = {
        "chosen_score": _score(obj, "chosen_score", "score_chosen"),
        "rejected_score": _score(obj, "rejected_score", "score_rejected"),
        "reason": obj.get("reason") if isinstance(obj.get("reason"), str) else None,
    }
    consumed = {"prompt", "chosen", "rejected", "chosen_score", "rejected_score",
                "score_chosen", "score_rejected", "reason"}  # fmt: skip
    if isinstance(chosen, list):
        pairs = _messages_to_pairs(chosen, "chosen")
        other = _messages_to_pairs(rejected, "rejected")
        if other[:-1] != pairs[:-1]:
            raise PreferenceRowError(
                "prompt_mismatch", "chosen and rejected differ before their last response"
            )
        if isinstance(obj.get("prompt"), str) and obj["prompt"] != pairs[-1]["instruction"]:
            raise PreferenceRowError(
                "prompt_mismatch", "prompt is not the last user turn of chosen"
            )
        return ParsedPreference(pairs, other[-1]["response"], facts, consumed)
    prompt = _text(obj, "prompt")
    pair = {"instruction": prompt, "response": _text(obj, "chosen")}
    return ParsedPreference([pair], _text(obj, "rejected"), facts, consumed)


def _ultrafeedback(obj: dict[str, Any]) -> ParsedPreference:
    instruction = _text(obj, "instruction")
    completions = obj.get("completions")
    if not isinstance(completions, list):
        raise PreferenceRowError("wrong_type", "field 'completions' is not a list")
    scored = []
    for i, c in enumerate(completions):
        score = _score(c, "overall_score", "score") if isinstance(c, dict) else None
        if score is not None and isinstance(c.get("response"), str):
            scored.append((score, i, c))
    if len(scored) < 2:
        raise PreferenceRowError(
            "no_pair", f"{len(scored)} completion(s) with a response and an overall_score"
        )
    best = max(scored, key=lambda s: (s[0], -s[1]))
    worst = min(scored, key=lambda s: (s[0], s[1]))
    if best[0] == worst[0]:
        raise PreferenceRowError("tie", f"every completion scores {best[0]:g}")
    critique = best[2].get("critique")
    facts = {
        "chosen_score": best[0],
        "rejected_score": worst[0],
        "reason": critique if isinstance(critique, str) else None,
    }
    pair = {"instruction": instruction, "response": best[2]["response"]}
    return ParsedPreference([pair], worst[2]["response"], facts, {"instruction", "completions"})


def _hh_turns(text: str, key: str) -> list[dict[str, str]]:
    parts = _HH_TURN.split(text)
    if parts[0].strip() or len(parts) < 5:
        raise PreferenceRowError(
            "bad_conversation", f"{key} is not '\\n\\nHuman: ...\\n\\nAssistant: ...' turns"
        )
    turns = list(zip(parts[1::2], parts[2::2], strict=True))
    pairs, pending = [], None
    for speaker, content in turns:
        if speaker == "Human":
            pending = content if pending is None else pending + "\n\n" + content
        elif pending is not None:
            pairs.append({"instruction": pending, "response": content})
            pending = None
    if not pairs or turns[-1][0] != "Assistant":
        raise PreferenceRowError("bad_conversation", f"{key} does not end with Assistant")
    return pairs


def _hh_rlhf(obj: dict[str, Any]) -> ParsedPreference:
    chosen = _hh_turns(_text(obj, "chosen"), "chosen")
    rejected = _hh_turns(_text(obj, "rejected"), "rejected")
    if (
        len(chosen) != len(rejected)
        or chosen[:-1] != rejected[:-1]
        or (chosen[-1]["instruction"] != rejected[-1]["instruction"])
    ):
        raise PreferenceRowError(
            "prompt_mismatch", "chosen and rejected differ before their last response"
        )
    return ParsedPreference(chosen, rejected[-1]["response"], {}, {"chosen", "rejected"})
