"""The `chat:` section of a suite: an MT-Bench-style benchmark graded by an LLM judge.

    chat:
      questions: ../questions/mt-bench-en.jsonl   # MT-Bench's schema (eval/chat_questions.py)
      lang: en                    # the answers' language; others get a character-ratio row
      samples: 3                  # answers per question, each sampled with its own seed
      judge: {base_url: http://127.0.0.1:8000/v1, model: judge}   # or a model folder

The judge takes the options every model stage takes (`transforms/inference/core.py`'s
`InferenceOptions`: backend, model, base_url, api_key_env, max_model_len, ...), so a judge is
named in a suite as it is in a spec. The model under evaluation is `iptkit eval MODEL`, run
with the transformers backend and `answer:`'s options; as in FastChat's `gen_model_answer`, each
category is sampled at its own temperature (writing and roleplay 0.7, STEM and humanities 0.1,
the others greedy).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from iptkit.transforms.inference.core import InferenceOptions, ModelSpec, SamplingSpec
from iptkit.transforms.stage_config import ExistingPath

# FastChat llm_judge's temperature_config (gen_model_answer.py).
MT_BENCH_TEMPERATURES: dict[str, float] = {
    "writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
    "reasoning": 0.0, "stem": 0.1, "humanities": 0.1,
}  # fmt: skip


class ChatJudge(InferenceOptions):
    """The judge: a model folder (backend transformers or vllm) or an endpoint (base_url)."""

    max_new_tokens: int = Field(1024, ge=1, description="most tokens of one judgment")
    prompt_too_long: Literal["truncate", "reject"] = Field(
        "reject",
        description="a judge prompt over max_model_len - max_new_tokens tokens: reject (it "
        "counts as a judgment without a rating) or truncate (loses the instructions)",
    )

    @model_validator(mode="after")
    def _no_stage_keys(self) -> ChatJudge:
        # The record-stage keys a judge inherits mean nothing in an eval suite: refuse them
        # rather than ignore them.
        stage_only = {"save", "sources", "kinds", "max_record_chars", "cache"}
        given = sorted(stage_only & self.model_fields_set)
        if given:
            raise ValueError(f"{', '.join(given)}: pipeline stage options, not judge options")
        return self


class ChatAnswer(BaseModel):
    """How the model under evaluation answers (the transformers backend)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(1024, ge=1, description="most tokens of one answer (FastChat)")
    max_model_len: int = Field(
        4096, ge=16, description="the model's context: prompt (earlier turns too) + answer"
    )
    temperature: dict[str, float] = Field(
        default_factory=lambda: dict(MT_BENCH_TEMPERATURES),
        description="sampling temperature per category (FastChat's by default); 0: greedy",
    )
    default_temperature: float = Field(
        0.7, ge=0, description="temperature of a category not in `temperature`"
    )
    batch_size: int = Field(8, ge=1, description="prompts per generate call")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights dtype; auto: the checkpoint's own"
    )

    def model_spec(self, model: str, device: str | None) -> ModelSpec:
        """The model under evaluation as the inference layer runs it (greedy; `sampling`
        gives each category its temperature)."""
        return ModelSpec(
            "transformers", model, dtype=self.dtype,
            device=device or "auto",
            max_model_len=self.max_model_len, batch_size=self.batch_size,
            prompt_too_long="reject", sampling=SamplingSpec(max_new_tokens=self.max_new_tokens),
        )  # fmt: skip

    def sampling(self, spec: ModelSpec, category: str) -> SamplingSpec:
        temperature = self.temperature.get(category, self.default_temperature)
        return SamplingSpec(max_new_tokens=spec.sampling.max_new_tokens, temperature=temperature)


class ChatSection(BaseModel):
    """A chat benchmark: questions, how they are answered and who judges the answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    questions: ExistingPath = Field(
        ..., description="question file in MT-Bench's schema (JSONL), relative to the suite"
    )
    references: ExistingPath | None = Field(
        None,
        description="FastChat's reference answer file (question_id, choices[0].turns) for "
        "math/reasoning/coding questions without their own `reference`",
    )
    lang: str = Field("en", description="the language answers should be in")
    turns: int = Field(2, ge=1, description="user turns answered and judged per question")
    samples: int = Field(3, ge=1, description="answers per question, each seeded apart")
    seed: int = Field(0, description="seeds the sampling and the bootstrap")
    resamples: int = Field(1000, ge=10, description="bootstrap draws for the 95% intervals")
    min_char_ratio: float | None = Field(
        None,
        ge=0,
        le=1,
        description="flag a category whose answers' mean target-language character ratio is "
        "below this; default: the shared minimum for `lang` (ja 0.60, Ma et al.)",
    )
    answer: ChatAnswer = Field(default_factory=ChatAnswer, description="the model's answers")
    judge: ChatJudge = Field(..., description="the judge model or endpoint")
