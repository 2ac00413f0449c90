"""A model of the inference layer driven in-process, for evaluation: no Beam pipeline.

A chat benchmark is a few hundred requests in rounds that depend on each other (the second turn
needs the first turn's answer, the judge needs both), so it calls the inference layer's handler
(`transforms/inference/prompt_handler.make_handler`: tokenizing, the length policy, seeded
sampling, failure isolation, every backend) directly, batch by batch, instead of building a
pipeline per round. Prompts are built with the same `chat_request` as the model stages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from iptkit.transforms.inference.chat_prompt import Shots, chat_request
from iptkit.transforms.inference.core import (
    Generation,
    GenerationRequest,
    ModelSpec,
    SamplingSpec,
    spec_tokenizer,
)


class ChatModel:
    """One loaded model (or endpoint client) answering chat requests in batches.

    `generate` may take other sampling settings than the spec's (MT-Bench samples each category
    at its own temperature): the transformers backend runs them on the same loaded weights; a
    server's client carries its spec's sampling, so there it is the spec's or an error.
    """

    def __init__(self, spec: ModelSpec):
        from iptkit.transforms.inference.prompt_handler import make_handler

        self.spec = spec
        self._handlers = {spec.sampling: make_handler(spec)}
        self._model = self._handlers[spec.sampling].load_model()
        self.tokenizer = spec_tokenizer(spec)

    def request(
        self, user: str, seed: int, system: str | None = None, shots: Shots = ()
    ) -> GenerationRequest:
        """The request for one user turn after `shots` (earlier turns), as the stages build it."""
        return chat_request(self.tokenizer, user, seed, system, shots)

    def _handler(self, sampling: SamplingSpec) -> Any:
        if sampling not in self._handlers:
            if self.spec.backend != "transformers":
                raise ValueError(
                    f"backend {self.spec.backend} samples as its options say; per-category "
                    "sampling needs backend transformers"
                )
            from iptkit.transforms.inference.prompt_handler import make_handler

            self._handlers[sampling] = make_handler(
                dataclasses.replace(self.spec, sampling=sampling)
            )
        return self._handlers[sampling]

    def generate(
        self, requests: Sequence[GenerationRequest], sampling: SamplingSpec | None = None
    ) -> list[Generation]:
        """A Generation per request, in order (failures as `Generation(error=...)`); equal
        requests (a greedy prompt asked for several samples) are generated once."""
        handler = self._handler(sampling or self.spec.sampling)
        size = handler.batch_size(self.spec)
        unique = list(dict.fromkeys(requests))
        done: list[Generation] = []
        for start in range(0, len(unique), size):
            done += handler.run_inference(unique[start : start + size], self._model)
        answered = dict(zip(unique, done, strict=True))
        return [answered[r] for r in requests]

    def close(self) -> None:
        """Free the weights (or the client's connections) before the next model loads."""
        close = getattr(self._model, "close", None)
        if callable(close):
            close()
        self._model = None
        self._handlers.clear()
