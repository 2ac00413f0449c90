"""Answers to a prompt set by greedy decoding with transformers, for the generation metrics.

A prompt set is JSONL, one object a line: `id`, `prompt`, `lang` (the language the answer
should be in) and optionally `stop` (strings that end the answer; default a blank line, where a
base model starts its next paragraph or question). Greedy decoding makes the answers, and so the
metrics, a function of the model alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iptkit.errors import EvalError
from iptkit.jsonl import json_objects

DEFAULT_STOP = ("\n\n",)


@dataclass(frozen=True)
class Prompt:
    id: str
    prompt: str
    lang: str
    stop: tuple[str, ...] = DEFAULT_STOP


@dataclass(frozen=True)
class Generation:
    """A prompt's answer: the text up to the first stop string; `new_tokens` counts the tokens
    generated before the end-of-text token (or the limit)."""

    id: str
    lang: str
    prompt: str
    answer: str
    new_tokens: int


def read_prompts(path: Path) -> list[Prompt]:
    """The prompt set; a bad line is an error naming the file, the line and the field."""
    prompts: list[Prompt] = []
    seen: set[str] = set()
    for where, row in json_objects(path, "id, prompt, lang", EvalError):
        for key in ("id", "prompt", "lang"):
            if not isinstance(row.get(key), str) or not row[key]:
                raise EvalError(f"{where}: `{key}` must be a non-empty string")
        stop = row.get("stop", list(DEFAULT_STOP))
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise EvalError(f"{where}: `stop` must be a list of non-empty strings")
        if row["id"] in seen:
            raise EvalError(f"{where}: duplicate id {row['id']!r}")
        seen.add(row["id"])
        prompts.append(Prompt(row["id"], row["prompt"], row["lang"], tuple(stop)))
    if not prompts:
        raise EvalError(f"{path}: no prompts")
    return prompts


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """The text before the earliest stop string, without surrounding whitespace."""
    end = min((i for s in stop if (i := text.find(s)) >= 0), default=len(text))
    return text[:end].strip()


def new_token_budget(config: Any, prompt_tokens: int, wanted: int, batch: list[Prompt]) -> int:
    """`wanted`, or less where the prompt and the answer would outgrow the model's context
    (a small model trained on short sequences answers within what it was trained on)."""
    context = getattr(config, "max_position_embeddings", None)
    if context is None:
        return wanted
    if prompt_tokens >= context:
        raise EvalError(
            f"a prompt of {', '.join(p.id for p in batch)} is {prompt_tokens} tokens: the "
            f"model's context is {context}; shorten it or lower the batch size"
        )
    return min(wanted, context - prompt_tokens)


def load_model(model: str, device: str | None) -> tuple[Any, Any, str]:
    """Model (eval mode, the dtype its config names) and tokenizer padded on the left."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    # Local folders or the local Hugging Face cache only (evaluation is offline).
    tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
    tokenizer.padding_side = "left"  # generation continues on the right of every row
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    lm = (
        AutoModelForCausalLM.from_pretrained(model, dtype="auto", local_files_only=True)
        .to(device)
        .eval()
    )
    return lm, tokenizer, device


def generate(
    model: str,
    prompts: list[Prompt],
    *,
    max_new_tokens: int = 256,
    batch_size: int = 8,
    device: str | None = None,
) -> list[Generation]:
    """Greedy answers to `prompts`, in order, batch by batch."""
    import torch

    lm, tokenizer, device = load_model(model, device)
    out: list[Generation] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        inputs = tokenizer([p.prompt for p in batch], return_tensors="pt", padding=True).to(device)
        budget = new_token_budget(lm.config, inputs["input_ids"].shape[1], max_new_tokens, batch)
        with torch.inference_mode():
            ids = lm.generate(
                **inputs,
                do_sample=False,
                max_new_tokens=budget,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = ids[:, inputs["input_ids"].shape[1] :]
        ends = {tokenizer.eos_token_id, tokenizer.pad_token_id}  # generate pads finished rows
        for prompt, row in zip(batch, new, strict=True):
            tokens = row.tolist()
            tokens = tokens[: next((i for i, t in enumerate(tokens) if t in ends), len(tokens))]
            text = tokenizer.decode(tokens, skip_special_tokens=True)
            out.append(
                Generation(
                    prompt.id,
                    prompt.lang,
                    prompt.prompt,
                    cut_at_stop(text, prompt.stop),
                    len(tokens),
                )
            )
    return out
