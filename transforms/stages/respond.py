"""respond: a response for each instruction from an instruction-tuned LLM (Ma et al.).

Ma et al. keep the real users' instructions and throw away the logged responses (a mix of
models of uneven quality): an open-weight LLM answers each instruction afresh, with its own
chat template. Responses over `max_response_tokens` (2,000, counted with the generating model's
tokenizer: mostly degenerate repetitions) or empty are rejected with the reason
(`response_checks.check_response`); so that a runaway response is seen as one rather than cut
short and kept, `max_new_tokens` must exceed `max_response_tokens` (the default 2,048 does).

A kept record gets `pairs = [{instruction: text, response}]` (any logged pair replaced) and
`meta["respond"]`: the model, the sampling parameters, the seed and the token counts, so the
data says what wrote it. A record linked to a parallel one (`meta["parallel"]`, from
translate) gets `pairs_aligned: false` in the link: its new response is no translation of the
other side's, so xcit builds no response translation or think record from it. The record
becomes synthetic (`typology.mark_synthetic`): its
response is model-written; `meta["origin_before"]` keeps the instruction's own origin
(organic for a real user's turn), so the two can still be told apart.

Records of other kinds pass through unchanged; so do instruction records in other languages
than `langs`, when set.

**Target language.** Each response must be in its target language (`target_lang`, by default
the instruction's own `lang`): at least `checks.script_ratio` of its prose letters in that
language's script (Ma et al.'s Japanese character ratio, 0.60, on by default; code, URLs and
placeholders left out) or it is rejected `off_target_script`; with `checks.lang_id`, fastText
(the langid stage's model) must also say the target language (`off_target_lang`, or
`low_lang_score` under `checks.min_lang_score`). The ratio is `language_checks`' measurement,
the one eval's generation metrics report; a language reject keeps the response and its ratio
in its record. An instruction with no language and no `target_lang` skips these checks, and
`checks: {script_ratio: {}}` switches the ratio off.

**Many samples.** With `n` > 1 the model is asked `n` times per instruction, each sample with
its own seed: sample 0 keeps the seed a single response has (`sampling_seed(seed, id)`, so
`n: 1` asks and records exactly as a single response), sample k > 0 uses
`sampling_seed(seed, "ID#rK")`. Each
sample becomes its own record, id `ID#rK`, with `meta.respond.sample` = K, `meta.respond.of`
= ID and `meta.respond.n`; the n - 1 extra records are announced to the ledger (added:
`response_sample`), and a sample that fails a check is rejected alone, with its reason. The
samples are candidates: `judge` with `per: instruction` and `top_n: 1` keeps the best response
of each instruction (best-of-n), or scores them all for preference data. Sampling needs
`temperature` > 0 (greedy decoding would write the same response n times).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import apache_beam as beam
from pydantic import Field, model_validator

from iptkit.transforms.inference.chat_prompt import chat_request
from iptkit.transforms.inference.core import (
    Generation,
    GenerationRequest,
    InferenceOptions,
    ModelSpec,
    sampling_seed,
    spec_tokenizer,
)
from iptkit.transforms.record import Record
from iptkit.transforms.stage import (
    KEPT,
    Drop,
    Expand,
    ModelStage,
    ParseFn,
    StageFn,
    merge,
    outputs,
)
from iptkit.transforms.stage_config import ExistingPath
from iptkit.transforms.stages.langid import fasttext_predictor
from iptkit.transforms.text.language_checks import Predict, target_char_ratio
from iptkit.transforms.text.response_checks import (
    MAX_RESPONSE_TOKENS,
    ResponseChecks,
    check_response,
    check_response_language,
)
from iptkit.transforms.text.scripts import base_lang
from iptkit.transforms.typology import mark_synthetic


class RespondConfig(InferenceOptions):
    """Options of the respond stage (model options are shared with every model stage)."""

    prompt_too_long: Literal["truncate", "reject"] = Field(
        "reject",
        description="a prompt over max_model_len - max_new_tokens tokens: reject (the default "
        "here: a cut instruction is another instruction) or truncate",
    )
    max_new_tokens: int = Field(
        2048, ge=1, description="most tokens generated per response (above max_response_tokens)"
    )
    max_model_len: int = Field(
        4096, ge=16, description="context length in tokens: instruction + response"
    )
    max_response_tokens: int = Field(
        MAX_RESPONSE_TOKENS,
        ge=1,
        description="reject a response longer than this, in the model's tokens (Ma et al.: 2,000)",
    )
    system: str | None = Field(None, description="system turn before each instruction, if any")
    langs: list[str] | None = Field(
        None, description="answer only instructions in these languages; null: all"
    )
    n: int = Field(
        1,
        ge=1,
        le=64,
        description="responses per instruction, each with its own seed (temperature > 0); "
        "n > 1: each a record ID#rK (added: response_sample), candidates for judge's "
        "per: instruction",
    )
    target_lang: str | None = Field(
        None, description="language every response must be in; null: the instruction's lang"
    )
    checks: ResponseChecks = Field(
        default_factory=ResponseChecks,
        description="language checks of each response: script ratio (Ma et al.: Japanese >= "
        "0.60) and, with lang_id, fastText language ID",
    )
    langid_model: ExistingPath | None = Field(
        None, description="fastText model for checks.lang_id; default lid.176.ftz"
    )

    @model_validator(mode="after")
    def _samples_differ(self) -> RespondConfig:
        if self.n > 1 and self.temperature == 0:
            raise ValueError(
                f"n {self.n} needs temperature > 0: greedy decoding writes the same response "
                "every time"
            )
        return self

    @model_validator(mode="after")
    def _room_to_see_runaways(self) -> RespondConfig:
        if self.max_new_tokens <= self.max_response_tokens:
            # A cap at or under the limit would keep cut-off responses as if they were complete.
            raise ValueError(
                f"max_new_tokens {self.max_new_tokens} must exceed max_response_tokens "
                f"{self.max_response_tokens}, or over-long responses are cut and kept"
            )
        return self


def wants_response(record: Record, cfg: RespondConfig) -> bool:
    if record.kind != "instruction":
        return False
    return cfg.langs is None or base_lang(record.lang or "") in {base_lang(x) for x in cfg.langs}


SAMPLE_REASON = "response_sample"
SAMPLE_KEYS = ("sample", "of", "n")


@dataclasses.dataclass(frozen=True)
class Sample:
    """One response to ask for: the record it becomes (with n > 1, the instruction under the
    sample's id, `meta.respond` naming the sample), the instruction's id and the index."""

    record: Record
    of: str
    k: int = 0

    @property
    def seed_key(self) -> str:
        """What the sample's seed hashes with the spec seed: the instruction's id for sample 0
        (a single response's seed), `ID#rK` for the others."""
        return self.of if self.k == 0 else f"{self.of}#r{self.k}"


def samples(record: Record, n: int) -> Sample | Expand:
    """The instruction's samples: itself for n = 1, else n records `ID#rK` (an Expand)."""
    if n == 1:
        return Sample(record, record.id)
    return Expand(
        [
            Sample(
                dataclasses.replace(
                    record,
                    id=f"{record.id}#r{k}",
                    meta={**record.meta, "respond": {"sample": k, "of": record.id, "n": n}},
                ),
                record.id,
                k,
            )
            for k in range(n)
        ],
        SAMPLE_REASON,
    )


def responded(
    record: Record, response: str, cfg: RespondConfig, spec: ModelSpec, seed: int,
    generation: Generation,
) -> Record:  # fmt: skip
    """The record with its generated response and what generated it (with n > 1, which sample
    of which instruction it is, from the sample's record)."""
    info = {
        "model": cfg.model,
        "temperature": spec.sampling.temperature,
        "top_p": spec.sampling.top_p,
        "top_k": spec.sampling.top_k,
        "max_new_tokens": spec.sampling.max_new_tokens,
        "seed": seed,
        "prompt_tokens": generation.prompt_tokens,
        "new_tokens": generation.new_tokens,
    }
    if cfg.n > 1:
        info.update({key: record.meta["respond"][key] for key in SAMPLE_KEYS})
    pairs = [{"instruction": record.text, "response": response}]
    meta = {**record.meta, "respond": info}
    if isinstance(meta.get("parallel"), dict):
        # The new response translates nothing: the link's pairs no longer mirror this record's.
        meta["parallel"] = {**meta["parallel"], "pairs_aligned": False}
    return mark_synthetic(dataclasses.replace(record, pairs=pairs, meta=meta))


def decide(
    record: Record, generation: Generation, cfg: RespondConfig, spec: ModelSpec, seed: int,
    count_tokens: Any, predict: Predict | None = None,
) -> Record | Drop:  # fmt: skip
    """The answered record, or why its response was rejected (a language reject keeps the
    answered record as its evidence). `predict` is language ID, needed with checks.lang_id."""
    if generation.error:
        return Drop(generation.error, generation.detail)
    response = generation.text.strip()
    drop = check_response(response, count_tokens, cfg.max_response_tokens)
    if drop is not None:
        return drop
    answered = responded(record, response, cfg, spec, seed, generation)
    target = cfg.target_lang or record.lang
    drop = check_response_language(response, target, cfg.checks, predict) if target else None
    if drop is None:
        return answered
    # The evidence: the response, and its target-language character ratio as eval measures it.
    found = {"target_lang": target, "char_ratio": target_char_ratio(response, target)}
    info = {**answered.meta["respond"], "language": found}
    evidence = dataclasses.replace(answered, meta={**answered.meta, "respond": info})
    return dataclasses.replace(drop, record=evidence)


class Respond(
    ModelStage,
    stage="respond",
    config=RespondConfig,
    summary="LLM responses to instructions (chat template), n samples each; empty, over-long "
    "or off-target-language responses rejected",
):
    """An instruction-tuned model answers each instruction record (n times, with n > 1)."""

    def setup(self) -> None:
        tokenizer = spec_tokenizer(self.model_spec())
        self._count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if self.config.checks.lang_id and getattr(self, "_predict", None) is None:
            self._predict = fasttext_predictor(self.config.langid_model, max_chars=2000)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_predict": None}  # the language model is loaded per worker

    def wants(self, record: Record) -> bool:
        return wants_response(record, self.config)

    def request(self, sample: Sample, tokenizer: Any) -> GenerationRequest:
        cfg, record = self.config, sample.record
        return chat_request(
            tokenizer, record.text, sampling_seed(self.seed, sample.seed_key), cfg.system
        )

    def parse(self, sample: Sample, generation: Generation) -> Record | Drop:
        seed = sampling_seed(self.seed, sample.seed_key)
        predict = getattr(self, "_predict", None)
        return decide(
            sample.record, generation, self.config, self.model_spec(), seed, self._count, predict
        )

    def run(self, records):
        todo, others = records | "Wants" >> beam.Partition(
            lambda r, _: 0 if self.wants(r) else 1, 2
        )
        sampled = outputs(todo, _SampleFn(self), "Samples")
        generated, asked = self.generate(sampled.pop(KEPT), self.request, "")
        parsed = outputs(generated, ParseFn(self, self.parse), "Parse")
        return merge([sampled, asked, parsed], "Respond", passed=others)


class _SampleFn(StageFn):
    """An instruction's samples: the instruction itself, or n records (announced as added)."""

    def setup(self) -> None:  # sampling needs no model; the asking and parsing steps load it
        pass

    def process(self, record: Record):
        with self.timed():
            (result,) = self.decide(lambda rs: [samples(rs[0], self.stage.config.n)], [record])
        yield from self.emit([(record, result)])
