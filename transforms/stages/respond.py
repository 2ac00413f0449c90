"""respond: a response for each instruction from an instruction-tuned LLM (Ma et al.).

Ma et al. keep the real users' instructions and throw away the logged responses (a mix of
models of uneven quality): an open-weight LLM answers each instruction afresh, with its own
chat template. Responses over `max_response_tokens` (2,000, counted with the generating model's
tokenizer: mostly degenerate repetitions) or empty are rejected with the reason
(`response_checks.check_response`); so that a runaway response is seen as one rather than cut
short and kept, `max_new_tokens` must exceed `max_response_tokens` (the default 2,048 does).

A kept record gets `pairs = [{instruction: text, response}]` (any logged pair replaced) and
`meta["respond"]`: the model, the sampling parameters, the seed and the token counts, so the
data says what wrote it. The record becomes synthetic (`typology.mark_synthetic`): its
response is model-written; `meta["origin_before"]` keeps the instruction's own origin
(organic for a real user's turn), so the two can still be told apart.

Records of other kinds pass through unchanged; so do instruction records in other languages
than `langs`, when set.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

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
from iptkit.transforms.stage import Drop, ModelStage
from iptkit.transforms.text.response_checks import MAX_RESPONSE_TOKENS, check_response
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


def responded(
    record: Record, response: str, cfg: RespondConfig, spec: ModelSpec, seed: int,
    generation: Generation,
) -> Record:  # fmt: skip
    """The record with its generated response and what generated it."""
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
    pairs = [{"instruction": record.text, "response": response}]
    return mark_synthetic(
        dataclasses.replace(record, pairs=pairs, meta={**record.meta, "respond": info})
    )


def decide(
    record: Record, generation: Generation, cfg: RespondConfig, spec: ModelSpec, seed: int,
    count_tokens: Any,
) -> Record | Drop:  # fmt: skip
    """The answered record, or why its response was rejected."""
    if generation.error:
        return Drop(generation.error, generation.detail)
    response = generation.text.strip()
    drop = check_response(response, count_tokens, cfg.max_response_tokens)
    return drop or responded(record, response, cfg, spec, seed, generation)


class Respond(
    ModelStage,
    stage="respond",
    config=RespondConfig,
    summary="LLM responses to instructions (chat template); empty or over-long responses rejected",
):
    """An instruction-tuned model answers each instruction record."""

    def setup(self) -> None:
        tokenizer = spec_tokenizer(self.model_spec())
        self._count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def wants(self, record: Record) -> bool:
        return wants_response(record, self.config)

    def request(self, record: Record, tokenizer: Any) -> GenerationRequest:
        cfg = self.config
        return chat_request(tokenizer, record.text, sampling_seed(self.seed, record.id), cfg.system)

    def parse(self, record: Record, generation: Generation) -> Record | Drop:
        seed = sampling_seed(self.seed, record.id)
        return decide(record, generation, self.config, self.model_spec(), seed, self._count)
