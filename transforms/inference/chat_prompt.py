"""Prompts for instruction-following models, and the prompt-then-generate step of model stages.

translate, respond and judge all talk to an instruction-tuned model the same way: a user turn
(optionally after a system turn and few-shot user/assistant turns) rendered with the model's
own chat template, so the model sees the format it was tuned on. A tokenizer without a chat
template (a base model, a test tokenizer) gets a plain layout instead: the turns separated by
blank lines, ending where the answer should start.

`PromptAndGenerate` is the shared Beam step: a per-worker tokenizer builds each element's
request, then the inference layer's `Generate` runs it; keys travel through untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import apache_beam as beam

from iptkit.transforms.inference.core import (
    Generate,
    GenerationRequest,
    Messages,
    ModelSpec,
    spec_tokenizer,
)

# (user, assistant) turns shown before the real request.
Shots = Sequence[tuple[str, str]]
# Builds `(key, request)` for one element with the model's tokenizer.
BuildRequest = Callable[[Any, Any], tuple[Any, GenerationRequest]]


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_messages(user: str, system: str | None = None, shots: Shots = ()) -> Messages:
    """The turns of one request as (role, content) pairs: system, few-shot pairs, the user."""
    turns = [("system", system)] if system else []
    for question, answer in shots:
        turns += [("user", question), ("assistant", answer)]
    return (*turns, ("user", user))


def chat_prompt(tokenizer: Any, user: str, system: str | None = None, shots: Shots = ()) -> str:
    """The prompt text for one user turn, in the model's chat format when it has one.

    A template that writes the BOS token itself loses it here: the handlers add special tokens
    when encoding (`add_special_tokens`), and a doubled BOS degrades many models.
    """
    if has_chat_template(tokenizer):
        messages = [
            {"role": role, "content": text} for role, text in chat_messages(user, system, shots)
        ]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        bos = getattr(tokenizer, "bos_token", None)
        return text[len(bos) :] if bos and text.startswith(bos) else text
    parts = [system] if system else []
    parts += [f"{question}\n\n{answer}" for question, answer in shots]
    parts.append(user)
    return "\n\n".join(parts) + "\n\n"


def chat_request(
    tokenizer: Any, user: str, seed: int, system: str | None = None, shots: Shots = ()
) -> GenerationRequest:
    """A request with both forms of the turns: the prompt rendered here (for completions and
    local models) and the messages (for a chat endpoint, which applies its own template)."""
    return GenerationRequest(
        chat_prompt(tokenizer, user, system, shots), seed, chat_messages(user, system, shots)
    )


class _Requests(beam.DoFn):
    def __init__(self, spec: ModelSpec, build: BuildRequest):
        self._spec, self._build = spec, build

    def setup(self) -> None:
        self._tokenizer = spec_tokenizer(self._spec)

    def process(self, element: Any):
        yield self._build(element, self._tokenizer)


class PromptAndGenerate(beam.PTransform):
    """`element -> (key, Generation)`: `build(element, tokenizer)` gives `(key, request)`."""

    def __init__(self, spec: ModelSpec, build: BuildRequest, label: str = ""):
        super().__init__(label=label or None)
        self._spec, self._build = spec, build

    def expand(self, elements):
        return (
            elements
            | "Prompts" >> beam.ParDo(_Requests(self._spec, self._build))
            | "Generate" >> Generate(self._spec)
        )
