"""translate: instructions into another language with an LLM, every output validated, retried.

Ma et al. (Swallow, lmsys-chat-1m-synth) translate real English user turns into Japanese
before answering them; they used DeepL, this stage uses an open-weight LLM through the
inference layer, so every output is checked (`translation_checks.check_translation`: language
ID, the target script ratio, length ratio, echoed prompt or source, code blocks and
placeholders kept, truncation).

How a record goes through:

1. Records of `kinds` whose language is not the target are translated; the others (already in
   the target language, other kinds) pass through unchanged. A record without a language uses
   `source_lang`, or is rejected `no_lang` (run langid first).
2. The prompt is the language pair's template (`prompts`; built in: en, ja and pl, each pair
   both ways, each written in its source language) in the
   model's chat template, after the pair's few-shot `examples`; a plain layout when the
   tokenizer has none.
3. Attempt 1 samples as configured (greedy by default); a failed output is retried, up to
   `attempts` in all, each with its own seed from the spec seed, the record id and the attempt
   number (`retry_seed`), and at `retry_temperature` when the configured sampling is greedy
   (a greedy retry would repeat the same output). After the last attempt the record is a
   reject with the last check's reason (`wrong_language`, `script_ratio`, ...). A prompt too
   long or a failed inference is not retried: it is rejected with that reason at once.
4. With `pairs: translate` (the default) every pair of the record is translated too, each
   instruction and each response a segment of its own with its own prompt, checks, attempts
   and seeds (`ID#pairs[K].response` hashed in place of the id); an instruction equal to the
   record's text reuses the text's translation. A record is translated when every segment
   passes; when one fails after its attempts, the record is a reject with that check's reason
   and the segment named in the detail (a half-translated record is not parallel data).
   `pairs: drop` translates the text alone and empties `pairs` (Ma et al.'s recipe: the
   respond stage writes new responses in the target language).
5. The translation becomes a new record, id `ID#TARGET`, kind unchanged, `lang` the target,
   origin synthetic (`typology.mark_synthetic`), its `pairs` the translated pairs, index by
   index, and linked to its source in `meta["parallel"] = {lang, text, pairs, id, origin,
   pairs_aligned}` (what the xcit stage reads): `pairs` there are the source's, and
   `pairs_aligned` says whether the record's pairs translate them (true with `pairs:
   translate`; a stage that replaces the record's pairs, like respond, sets it false). The
   record also gets `meta["translate"]` (model, attempts, sampling, tokens).

`keep_source` (default false) decides what happens to the source: replaced by its translation
(the Swallow recipe: only Japanese goes on; the source survives in the link), or kept next to
it (`added` by reason `translation` in the ledger), for bilingual or X-CIT data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, Literal

import apache_beam as beam
from pydantic import BaseModel, ConfigDict, Field

from iptkit.transforms.inference.chat_prompt import Shots, chat_prompt, chat_request
from iptkit.transforms.inference.core import (
    Generation,
    GenerationRequest,
    InferenceOptions,
    ModelSpec,
    sampling_seed,
)
from iptkit.transforms.record import Record
from iptkit.transforms.stage import (
    KEPT,
    Drop,
    Expand,
    ModelStage,
    ParseFn,
    RequestFn,
    StageFn,
    merge,
    outputs,
)
from iptkit.transforms.stage_config import ExistingPath
from iptkit.transforms.stages.langid import fasttext_predictor
from iptkit.transforms.text.scripts import base_lang
from iptkit.transforms.text.translation_checks import TranslationChecks, check_translation
from iptkit.transforms.typology import mark_synthetic, resolve_origin

ADDED_REASON = "translation"
FAILED = "failed"
SETTLED = "settled"  # a segment translated, or failed for good: on to its record

DEFAULT_PROMPTS = {
    "en-ja": "Translate the following English text into natural Japanese. Keep code blocks, "
    "URLs, placeholders such as {name} or NAME_1, and formatting unchanged. Output only the "
    "translation.\n\n{text}",
    "ja-en": "次の日本語の文章を自然な英語に翻訳してください。コードブロック、URL、{name} や "
    "NAME_1 のようなプレースホルダー、書式はそのまま残し、翻訳だけを出力してください。\n\n{text}",
    # Polish (PLLuM, paper 004): each prompt is written in the source language, as above.
    "en-pl": "Translate the following English text into natural Polish. Keep code blocks, "
    "URLs, placeholders such as {name} or NAME_1, and formatting unchanged. Output only the "
    "translation.\n\n{text}",
    "pl-en": "Przetłumacz poniższy polski tekst na naturalny angielski. Bloki kodu, adresy URL, "
    "symbole zastępcze, takie jak {name} czy NAME_1, oraz formatowanie pozostaw bez zmian. "
    "Wypisz wyłącznie tłumaczenie.\n\n{text}",
    "ja-pl": "次の日本語の文章を自然なポーランド語に翻訳してください。コードブロック、URL、{name} や "
    "NAME_1 のようなプレースホルダー、書式はそのまま残し、翻訳だけを出力してください。\n\n{text}",
    "pl-ja": "Przetłumacz poniższy polski tekst na naturalny japoński. Bloki kodu, adresy URL, "
    "symbole zastępcze, takie jak {name} czy NAME_1, oraz formatowanie pozostaw bez zmian. "
    "Wypisz wyłącznie tłumaczenie.\n\n{text}",
}


class Shot(BaseModel):
    """A few-shot example: a source text and its translation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(description="text in the source language")
    target: str = Field(description="its translation")


class TranslateConfig(InferenceOptions):
    """Options of the translate stage (model options are shared with every model stage)."""

    prompt_too_long: Literal["truncate", "reject"] = Field(
        "reject",
        description="a prompt over max_model_len - max_new_tokens tokens: reject (the default "
        "here: a cut prompt loses the request or the start of the text, so the translation would be partial) or truncate",
    )
    target: str = Field("ja", description="language to translate into")
    source_lang: str | None = Field(
        None, description="language of records that have none; null: such records are rejected"
    )
    kinds: list[str] = Field(
        ["instruction"], min_length=1, description="record kinds translated; others pass"
    )
    prompts: dict[str, str] = Field(
        default_factory=dict,
        description='per pair ("en-ja"), a template with {text}; added to or replacing the '
        "built-in prompts (en-ja, ja-en, en-pl, pl-en, ja-pl, pl-ja)",
    )
    system: str | None = Field(None, description="system turn before the request, if any")
    examples: dict[str, list[Shot]] = Field(
        default_factory=dict,
        description='per pair ("en-ja"), few-shot [{source, target}] shown before the request',
    )
    attempts: int = Field(
        3, ge=1, le=10, description="tries per record; a failed output is retried with a new seed"
    )
    retry_temperature: float = Field(
        0.7,
        gt=0,
        description="temperature of retries when temperature is 0 (greedy would repeat itself)",
    )
    pairs: Literal["translate", "drop"] = Field(
        "translate",
        description="translate: each pair's instruction and response translated and checked "
        "like the text (parallel pairs, for X-CIT); drop: pairs emptied (Ma et al.: respond "
        "writes new ones)",
    )
    keep_source: bool = Field(
        False,
        description="keep the source record next to its translation (added: translation); "
        "false: the translation replaces it (the source stays in meta.parallel)",
    )
    checks: TranslationChecks = Field(
        default_factory=TranslationChecks, description="thresholds of the output checks"
    )
    langid_model: ExistingPath | None = Field(
        None, description="fastText model for the language check; default lid.176.ftz"
    )

    def template(self, source: str, target: str) -> str | None:
        prompts = {**DEFAULT_PROMPTS, **self.prompts}
        for key in (f"{source}-{target}", f"{base_lang(source)}-{base_lang(target)}"):
            if key in prompts:
                return prompts[key]
        return None

    def shots(self, source: str, target: str) -> list[tuple[str, str]]:
        for key in (f"{source}-{target}", f"{base_lang(source)}-{base_lang(target)}"):
            if key in self.examples:
                return [(s.source, s.target) for s in self.examples[key]]
        return []


def needs_translation(record: Record, cfg: TranslateConfig) -> bool:
    """A record of a translated kind that is not already in the target language."""
    return record.kind in cfg.kinds and base_lang(record.lang or "") != base_lang(cfg.target)


def request_text(record: Record, cfg: TranslateConfig, text: str | None = None) -> str | Drop:
    """The user turn asking for the translation of `text` (default: the record's), or why
    there is none."""
    source = record.lang or cfg.source_lang
    if not source:
        return Drop("no_lang", "the record has no language: run langid first or set source_lang")
    template = cfg.template(source, cfg.target)
    if template is None:
        return Drop("no_prompt", f"no prompt for {source}-{cfg.target}: add one under prompts")
    # str.replace, not format: the record's braces are text, the template's {text} the slot.
    return template.replace("{text}", record.text if text is None else text)


def translation_turns(
    record: Record, cfg: TranslateConfig, text: str | None = None
) -> tuple[str, Shots] | Drop:
    """The user turn asking for a text's translation (default: the record's) and the few-shot
    turns before it."""
    user = request_text(record, cfg, text)
    if isinstance(user, Drop):
        return user
    source = record.lang or cfg.source_lang or ""
    template = cfg.template(source, cfg.target) or "{text}"
    return user, [(template.replace("{text}", s), t) for s, t in cfg.shots(source, cfg.target)]


def build_prompt(record: Record, cfg: TranslateConfig, tokenizer: Any) -> str | Drop:
    """The full prompt (chat template, few-shot turns) for a record's translation."""
    turns = translation_turns(record, cfg)
    return (
        turns if isinstance(turns, Drop) else chat_prompt(tokenizer, turns[0], cfg.system, turns[1])
    )


def retry_seed(seed: int, record_id: str, attempt: int) -> int:
    """The sampling seed of a record's attempt (0-based): a new one per attempt, the same on
    every runner; attempt 0 uses the record's plain sampling seed, as other model stages do."""
    return sampling_seed(seed, record_id if attempt == 0 else f"{record_id}#retry{attempt}")


def attempt_spec(spec: ModelSpec, attempt: int, retry_temperature: float) -> ModelSpec:
    """The model spec of an attempt: retries sample when the configured decoding is greedy."""
    if attempt == 0 or not spec.sampling.greedy:
        return spec
    sampling = dataclasses.replace(spec.sampling, temperature=retry_temperature)
    return dataclasses.replace(spec, sampling=sampling)


TEXT = "text"


def segments(record: Record, cfg: TranslateConfig) -> list[tuple[str, str]]:
    """What is translated of a record, as (segment, source text), in order: its text, then
    with `pairs: translate` each pair's instruction (unless it is the text) and response (unless
    empty)."""
    out = [(TEXT, record.text)]
    if cfg.pairs == "translate":
        for k, pair in enumerate(record.pairs):
            if pair["instruction"].strip() and pair["instruction"] != record.text:
                out.append((f"pairs[{k}].instruction", pair["instruction"]))
            if pair["response"].strip():
                out.append((f"pairs[{k}].response", pair["response"]))
    return out


def seed_key(record_id: str, segment: str) -> str:
    """What a segment's seeds hash: the record id for its text (as before segments existed),
    `ID#SEGMENT` for a pair's part."""
    return record_id if segment == TEXT else f"{record_id}#{segment}"


def translated_pairs(record: Record, texts: dict[str, str]) -> list[dict[str, str]]:
    """The record's pairs with each part replaced by its translation (an instruction equal to
    the text by the text's; an empty part stays empty)."""
    out = []
    for k, pair in enumerate(record.pairs):
        instruction = texts.get(f"pairs[{k}].instruction")
        if instruction is None:
            instruction = texts[TEXT] if pair["instruction"] == record.text else ""
        out.append({"instruction": instruction, "response": texts.get(f"pairs[{k}].response", "")})
    return out


def translated(
    record: Record, outputs: dict[str, str], target: str, model: str, attempt: int,
    spec: ModelSpec, new_tokens: int, cfg: TranslateConfig,
) -> Record:  # fmt: skip
    """The translation as a record linked to its source, and marked synthetic. `outputs` maps
    each segment to its translation; `attempt` is the most any segment took (0-based)."""
    texts = {segment: text.strip() for segment, text in outputs.items()}
    pairs = translated_pairs(record, texts) if cfg.pairs == "translate" else []
    link = {
        "lang": record.lang,
        "text": record.text,
        "pairs": record.pairs,
        "id": record.id,
        "origin": resolve_origin(record),
        "pairs_aligned": cfg.pairs == "translate",
    }
    info = {
        "model": model,
        "attempts": attempt + 1,
        "temperature": spec.sampling.temperature,
        "top_p": spec.sampling.top_p,
        "top_k": spec.sampling.top_k,
        "max_new_tokens": spec.sampling.max_new_tokens,
        "new_tokens": new_tokens,
        "segments": len(texts),
    }
    return mark_synthetic(
        dataclasses.replace(
            record,
            id=f"{record.id}#{target}",
            text=texts[TEXT],
            lang=target,
            lang_score=None,
            pairs=pairs,
            meta={**_without_langid(record.meta), "parallel": link, "translate": info},
        )
    )


def _without_langid(meta: dict[str, Any]) -> dict[str, Any]:
    """The source's meta less its language-ID results, which describe the source's text."""
    return {k: v for k, v in meta.items() if k not in ("langid", "langid_failed")}


@dataclasses.dataclass(frozen=True)
class Pending:
    """A segment of a record still to translate: which one and its source text, the attempt to
    run next and why the last one failed."""

    record: Record
    attempt: int = 0
    last: Drop | None = None
    segment: str = TEXT
    source: str = ""


@dataclasses.dataclass(frozen=True)
class Settled:
    """A segment's outcome: its translation, or why it has none; and what it cost."""

    segment: str
    outcome: str | Drop
    attempt: int = 0
    new_tokens: int = 0


def checked(
    pending: Pending, generation: Generation, cfg: TranslateConfig,
    predict: Callable[[str], Any],
) -> Settled | Pending:  # fmt: skip
    """An attempt's outcome for a segment: its translation, the next attempt, or, when attempts
    are spent or the model failed, why it has none."""
    record = pending.record
    if generation.error:
        return Settled(pending.segment, Drop(generation.error, generation.detail), pending.attempt)
    user = request_text(record, cfg, pending.source)
    drop = check_translation(
        pending.source,
        generation.text,
        cfg.target,
        predict,
        cfg.checks,
        prompt=user if isinstance(user, str) else None,
    )
    if drop is not None:
        attempt = pending.attempt + 1
        if attempt < cfg.attempts:
            return dataclasses.replace(pending, attempt=attempt, last=drop)
        return Settled(
            pending.segment, Drop(drop.reason, f"after {attempt} attempt(s): {drop.detail}"),
            pending.attempt,
        )  # fmt: skip
    return Settled(pending.segment, generation.text, pending.attempt, generation.new_tokens)


def assembled(
    record: Record, settled: list[Settled], cfg: TranslateConfig, spec: ModelSpec
) -> Record | Expand | Drop:
    """A record's decision from its segments' outcomes: the translation (next to its source
    with `keep_source`) when every segment passed, else the first failure, its segment named."""
    order = [segment for segment, _ in segments(record, cfg)]
    by_segment = {s.segment: s for s in settled}
    if sorted(by_segment) != sorted(order):
        raise ValueError(f"segments {sorted(by_segment)} for {order}")
    for segment in order:
        outcome = by_segment[segment].outcome
        if isinstance(outcome, Drop):
            where = "" if segment == TEXT else f"{segment}: "
            return Drop(outcome.reason, where + outcome.detail)
    texts = {segment: by_segment[segment].outcome for segment in order}
    attempt = max(s.attempt for s in settled)
    tokens = sum(s.new_tokens for s in settled)
    out = translated(record, texts, cfg.target, cfg.model or "", attempt, spec, tokens, cfg)
    return Expand([out, record], ADDED_REASON) if cfg.keep_source else out


class Translate(
    ModelStage,
    stage="translate",
    config=TranslateConfig,
    summary="LLM translation of texts and pairs (chat template, few-shot), validated outputs, "
    "seeded retries; parallel link",
):
    """Translates records (their text and, by default, their pairs) into the target language;
    each output is checked and, when it fails, retried with a new seed (`attempts`) before the
    record is rejected."""

    def setup(self) -> None:
        if getattr(self, "_predict", None) is None:
            self._predict = fasttext_predictor(self.config.langid_model, max_chars=2000)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_predict": None}  # the language model is loaded per worker

    def wants(self, record: Record) -> bool:
        return needs_translation(record, self.config)

    def request(self, pending: Pending, tokenizer: Any) -> GenerationRequest | Drop:
        turns = translation_turns(pending.record, self.config, pending.source)
        if isinstance(turns, Drop):
            return turns
        key = seed_key(pending.record.id, pending.segment)
        seed = retry_seed(self.seed, key, pending.attempt)
        return chat_request(tokenizer, turns[0], seed, self.config.system, turns[1])

    def parse(self, pending: Pending, generation: Generation) -> Any:
        return checked(pending, generation, self.config, self._predict)

    def run(self, records):
        cfg = self.config
        todo, others = records | "Wants" >> beam.Partition(
            lambda r, _: 0 if self.wants(r) else 1, 2
        )
        started = outputs(todo, _SegmentsFn(self), "Segments")
        pending = started.pop(KEPT)
        settled = []
        for attempt in range(cfg.attempts):
            spec = attempt_spec(self.model_spec(), attempt, cfg.retry_temperature)
            generated, asked = self.generate(
                pending, self.request, f" {attempt + 1}", spec, _SegmentRequestFn, (SETTLED,)
            )
            checked_ = outputs(
                generated, _CheckFn(self, self.parse), f"Check {attempt + 1}",
                tags=(FAILED, SETTLED),
            )  # fmt: skip
            pending = checked_.pop(FAILED)
            settled += [asked.pop(SETTLED), checked_.pop(SETTLED)]
        grouped = tuple(settled) | "Settled" >> beam.Flatten() | "By record" >> beam.GroupByKey()
        done = outputs(grouped, _AssembleFn(self), "Assemble")
        return merge([started, done], "Translate", passed=others)


class _SegmentsFn(StageFn):
    """A record's segments to translate; a record that cannot be asked at all (no language, no
    prompt for its pair) is rejected here, once."""

    def setup(self) -> None:  # splitting needs no model
        pass

    def process(self, record: Record):
        cfg = self.stage.config
        with self.timed():
            (result,) = self.decide(lambda rs: [self._split(rs[0], cfg)], [record])
        if isinstance(result, Drop):
            yield from self.emit([(record, result)])
        else:
            yield from result

    @staticmethod
    def _split(record: Record, cfg: TranslateConfig) -> list[Pending] | Drop:
        turns = translation_turns(record, cfg)
        if isinstance(turns, Drop):
            return turns
        return [Pending(record, segment=seg, source=text) for seg, text in segments(record, cfg)]


class _SegmentRequestFn(RequestFn):
    """A segment that cannot be asked (its prompt failed to build) is settled as failed, so its
    record is decided once, with its other segments."""

    def process(self, pending: Pending) -> Iterator[Any]:
        result = self.asked(pending)
        if isinstance(result, Drop):
            settled = Settled(pending.segment, result, pending.attempt)
            yield beam.pvalue.TaggedOutput(SETTLED, (pending.record.id, (pending.record, settled)))
        else:
            yield pending, result


class _CheckFn(ParseFn):
    """Parses an attempt: a `Pending` goes to the next attempt, a settled segment to its
    record's assembly."""

    def process(self, item: tuple[Pending, Generation]) -> Iterator[Any]:
        result = self.parsed(item)
        pending = item[0]
        if isinstance(result, Pending):
            self.count(f"failed.{result.last.reason}")
            yield beam.pvalue.TaggedOutput(FAILED, result)
        else:
            if isinstance(result, Drop):  # the parse itself raised
                result = Settled(pending.segment, result, pending.attempt)
            yield beam.pvalue.TaggedOutput(SETTLED, (pending.record.id, (pending.record, result)))


class _AssembleFn(StageFn):
    """A record's decision once all its segments are settled."""

    def setup(self) -> None:  # assembling needs no model
        pass

    def process(self, item: tuple[str, Any]):
        _, group = item
        group = list(group)
        record = group[0][0]
        settled = [s for _, s in group]
        spec = attempt_spec(
            self.stage.model_spec(), max(s.attempt for s in settled),
            self.stage.config.retry_temperature,
        )  # fmt: skip
        with self.timed():
            (result,) = self.decide(
                lambda _: [assembled(record, settled, self.stage.config, spec)], [record]
            )
        yield from self.emit([(record, result)])
