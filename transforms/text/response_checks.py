"""Checks on a model's response, for the respond stage: each says why a response fails.

Ma et al. drop responses over 2,000 tokens (counted with the generating model's tokenizer) as
degenerate repetitions; an empty response is no answer. A response in the wrong script is
caught by `translation_checks.check_script`, which the respond stage can apply to its target
language as well (Ma et al.'s Japanese character ratio, 0.60).
"""

from __future__ import annotations

from collections.abc import Callable

from iptkit.transforms.stage import Drop

# Counts the tokens of a text, e.g. `lambda t: len(tokenizer.encode(t))`.
CountTokens = Callable[[str], int]
MAX_RESPONSE_TOKENS = 2000


def check_response(
    response: str, count_tokens: CountTokens, max_tokens: int = MAX_RESPONSE_TOKENS
) -> Drop | None:
    """`empty_response` or `response_too_long`, or None when the response passes."""
    if not response.strip():
        return Drop("empty_response", "the model returned no text")
    tokens = count_tokens(response)
    if tokens > max_tokens:
        return Drop("response_too_long", f"{tokens} tokens, more than {max_tokens}")
    return None
