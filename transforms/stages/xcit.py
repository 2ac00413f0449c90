"""xcit: X-CIT training data (Wu et al., ACL 2025) from parallel instruction records.

X-CIT first tunes a model on instructions in its "native" language (English), then continues
on the target language with two kinds of data built from translated, parallel instructions:

- translation tasks, both directions: "translate this {native} text into {target}" and back,
  each prompt written in the language of the text to translate (`prompts`, one template and
  the language names per prompt language; English and Japanese built in);
- chat records that "think in the native language, answer in the target language": the
  instruction in the target language, the response first restating the instruction and
  answering it in the native language, then answering in the target language
  (`think_template`; the paper gives no exact layout in its abstract, so this one is ours).

A record takes part when it carries the other side of its pair in `meta["parallel"]`:
`{"lang": "en", "text": "...", "pairs": [...], "id": "...", "origin": "...", "pairs_aligned":
true}` (lang and text required; the translate stage writes this link, and a bilingual JSONL
source can hold it as a field). One of the two languages must be `native`.

Only truly parallel text is paired: the texts always (one is the other's translation); the
pairs only when the link says they are aligned (`pairs_aligned`, true unless a stage replaced
one side's pairs: respond writes a fresh answer, which translates nothing) and both sides have
as many. Response translation tasks and think records come from aligned pairs alone, and each
built record names what it was built from in `meta["xcit"]["segment"]` ("text" or
"pairs[K]"), so it can be checked against the link. Built records are added next to the input
(`added` by reason `xcit` in the ledger; `keep_input: false` replaces the input), get ids
`ID#xcit-...`, and are converted data, or synthetic when either side is machine-written
(`typology.derived_origin`).

Every record leaving the stage carries `meta["difficulty"]` (`difficulty.length_structure`),
which the mix stage's curriculum orders by (X-CIT's self-paced learning: easy to hard).
Records without a parallel link pass through with their difficulty only.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from iptkit.transforms.record import Record
from iptkit.transforms.stage import Drop, Expand, RecordStage, StageContext
from iptkit.transforms.stage_config import StageConfig
from iptkit.transforms.text.difficulty import record_difficulty
from iptkit.transforms.text.scripts import base_lang
from iptkit.transforms.typology import derived_origin, resolve_origin

ADDED_REASON = "xcit"
TRANSLATION, THINK = "translation", "think"


class TranslationPrompt(BaseModel):
    """How to ask for a translation in one language: a template and the names of languages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    template: str = Field(description="the prompt, with {source}, {target} and {text}")
    names: dict[str, str] = Field(description="language code -> its name in this language")

    @model_validator(mode="after")
    def _fields(self) -> TranslationPrompt:
        for field in ("{source}", "{target}", "{text}"):
            if field not in self.template:
                raise ValueError(f"the template needs {field}")
        return self


DEFAULT_PROMPTS = {
    "en": TranslationPrompt(
        template="Translate the following {source} text into {target}.\n\n{text}",
        names={"en": "English", "ja": "Japanese", "zh": "Chinese", "ko": "Korean",
               "pl": "Polish", "de": "German", "fr": "French", "es": "Spanish"},
    ),
    "ja": TranslationPrompt(
        template="次の{source}の文章を{target}に翻訳してください。\n\n{text}",
        names={"en": "英語", "ja": "日本語", "zh": "中国語", "ko": "韓国語",
               "pl": "ポーランド語", "de": "ドイツ語", "fr": "フランス語", "es": "スペイン語"},
    ),
}  # fmt: skip
DEFAULT_THINK = "{native_instruction}\n\n{native_response}\n\n{target_response}"


class XcitConfig(StageConfig):
    """Options of the xcit stage."""

    native: str = Field(
        "en", description="the language the model thinks in (X-CIT: English, tuned first)"
    )
    tasks: list[Literal["translation", "think"]] = Field(
        ["translation", "think"],
        min_length=1,
        description="translation: translation tasks both ways; think: native-then-target chats",
    )
    directions: Literal["both", "to_target", "to_native"] = Field(
        "both", description="translation directions built"
    )
    translate_responses: bool = Field(
        True, description="also build translation tasks from parallel responses, not only texts"
    )
    keep_input: bool = Field(
        True, description="keep the input record next to what is built from it"
    )
    prompts: dict[str, TranslationPrompt] = Field(
        default_factory=dict,
        description="per prompt language, {template, names}, added to or replacing the "
        "built-in English and Japanese prompts (DEFAULT_PROMPTS)",
    )
    think_template: str | None = Field(
        None,
        description="response of a think record, with {native_instruction}, {native_response} "
        "and {target_response}; null: the three separated by blank lines",
    )
    difficulty: Literal["length_structure"] = Field(
        "length_structure",
        description='difficulty in meta["difficulty"] for the curriculum: length and structure '
        "proxy",
    )

    @model_validator(mode="after")
    def _think_fields(self) -> XcitConfig:
        for field in ("{native_instruction}", "{native_response}", "{target_response}"):
            if self.think_template is not None and field not in self.think_template:
                raise ValueError(f"think_template needs {field}")
        return self


@dataclasses.dataclass(frozen=True)
class Side:
    """One language's side of a parallel record."""

    lang: str
    text: str
    pairs: list[dict[str, str]]
    origin: str


def parallel_side(record: Record) -> Side | str:
    """The other side from `meta["parallel"]`, or what is wrong with it."""
    link = record.meta["parallel"]
    if not isinstance(link, dict):
        return f"meta.parallel is {type(link).__name__}, expected an object"
    lang, text, pairs = link.get("lang"), link.get("text"), link.get("pairs", [])
    if not isinstance(lang, str) or not isinstance(text, str) or not text.strip():
        return "meta.parallel needs a string lang and a non-empty text"
    if not isinstance(pairs, list) or not all(
        isinstance(p, dict)
        and isinstance(p.get("instruction"), str)
        and isinstance(p.get("response"), str)
        for p in pairs
    ):
        return "meta.parallel.pairs must be a list of {instruction, response} strings"
    origin = link.get("origin") or resolve_origin(record)
    if link.get("pairs_aligned") is False:
        pairs = []  # the other side's pairs are not translations of this record's
    return Side(lang, text, pairs, origin)


def aligned(native: Side, target: Side) -> bool:
    """Both sides have pairs, as many, so pair K of one translates pair K of the other."""
    return bool(native.pairs) and len(native.pairs) == len(target.pairs)


def segments(native: Side, target: Side, with_responses: bool) -> list[tuple[str, str, str]]:
    """The parallel (segment, native, target) texts to build translation tasks from."""
    out = [("text", native.text, target.text)]
    if with_responses and aligned(native, target):
        for k, (a, b) in enumerate(zip(native.pairs, target.pairs, strict=True)):
            if a["response"].strip() and b["response"].strip():
                out.append((f"pairs[{k}].response", a["response"], b["response"]))
    return out


def translation_prompt(text: str, source: str, target: str, cfg: XcitConfig) -> str | Drop:
    """The request, in the source text's language, to translate it into `target`."""
    prompts = {**DEFAULT_PROMPTS, **cfg.prompts}
    prompt = prompts.get(source) or prompts.get(base_lang(source) or "")
    if prompt is None:
        return Drop("no_prompt", f"no translation prompt in {source}; add one under prompts")
    names = [prompt.names.get(source), prompt.names.get(target)]
    if None in names:
        missing = source if names[0] is None else target
        return Drop("no_prompt", f"the {source} prompt has no name for {missing}")
    return prompt.template.format(source=names[0], target=names[1], text=text)


def build(record: Record, cfg: XcitConfig) -> list[Record] | Drop:
    """The X-CIT records built from one parallel record (the input not included)."""
    other = parallel_side(record)
    if isinstance(other, str):
        return Drop("bad_parallel", other)
    if not record.lang:
        return Drop("no_lang", "the record has no language (declare it or run langid first)")
    own = Side(record.lang, record.text, record.pairs, resolve_origin(record))
    native_lang = base_lang(cfg.native)
    if base_lang(own.lang) == base_lang(other.lang):
        return Drop("same_language", f"both sides are {own.lang}")
    if base_lang(own.lang) == native_lang:
        native, target = own, other
    elif base_lang(other.lang) == native_lang:
        native, target = other, own
    else:
        return Drop("no_native_side", f"{own.lang} and {other.lang}; native is {cfg.native}")
    origin = derived_origin([native.origin, target.origin])
    built: list[Record] = []

    def add(suffix: str, instruction: str, response: str, lang: str, meta: dict[str, Any]):
        # A translation task is no longer the input's task category; a think record still is.
        category = record.category if meta["task"] == THINK else None
        built.append(
            dataclasses.replace(
                record,
                id=f"{record.id}#xcit-{suffix}",
                text=instruction,
                kind="instruction",
                lang=lang,
                lang_score=None,
                category=category,
                pairs=[{"instruction": instruction, "response": response}],
                origin=origin,
                meta={"xcit": {**meta, "from": record.id}},
            )
        )

    if TRANSLATION in cfg.tasks:
        ways = {
            "both": [(native, target), (target, native)],
            "to_target": [(native, target)],
            "to_native": [(target, native)],
        }[cfg.directions]
        for k, (segment, a, b) in enumerate(segments(native, target, cfg.translate_responses)):
            texts = {native.lang: a, target.lang: b}
            for src, dst in ways:
                prompt = translation_prompt(texts[src.lang], src.lang, dst.lang, cfg)
                if isinstance(prompt, Drop):
                    return prompt
                meta = {
                    "task": TRANSLATION,
                    "source_lang": src.lang,
                    "target_lang": dst.lang,
                    "segment": segment,
                }
                add(f"tr{k}-{src.lang}-{dst.lang}", prompt, texts[dst.lang], dst.lang, meta)
    if THINK in cfg.tasks and aligned(native, target):
        response = (cfg.think_template or DEFAULT_THINK).format(
            native_instruction=native.pairs[0]["instruction"],
            native_response=native.pairs[0]["response"],
            target_response=target.pairs[0]["response"],
        )
        meta = {
            "task": THINK,
            "native_lang": native.lang,
            "target_lang": target.lang,
            "segment": "pairs[0]",
        }
        add("think", target.pairs[0]["instruction"], response, target.lang, meta)
    return built


def with_difficulty(record: Record) -> Record:
    return dataclasses.replace(
        record, meta={**record.meta, "difficulty": record_difficulty(record)}
    )


def xcit(record: Record, cfg: XcitConfig) -> Record | Drop | Expand:
    """The stage's decision: the input (with its difficulty) and what is built from it."""
    if "parallel" not in record.meta:
        return with_difficulty(record)
    built = build(record, cfg)
    if isinstance(built, Drop):
        return built
    out = ([record] if cfg.keep_input else []) + built
    if not out:
        return Drop("nothing_built", "no task could be built and keep_input is off")
    out = [with_difficulty(r) for r in out]
    return out[0] if len(out) == 1 else Expand(out, ADDED_REASON)


class Xcit(
    RecordStage,
    stage="xcit",
    config=XcitConfig,
    summary="X-CIT: translation tasks both ways and think-native/answer-target chats; difficulty",
):
    """Builds X-CIT translation and think records next to parallel records."""

    def __init__(self, config: XcitConfig | None = None, context: StageContext | None = None):
        super().__init__(config, context)

    def apply(self, record: Record) -> Record | Drop | Expand:
        return xcit(record, self.config)
