"""Formatting: each record kind as training text segments, each segment a loss target or not.

What the model learns from depends on the kind (Cheng et al. 2024; Kodama & Oda 2026):
- `raw` and `augmented`: the text as is, every token a target (augmented records were already
  rendered with the synthesis templates by the synthesize stage).
- `instruction`: the conversation (`pairs`, else `meta["conversation"]` turns) through a chat
  template; only assistant contents and the end token after each are targets (SFT loss mask).
- `tuning` (synthesizer tuning data): the text as is, targets only on the instruction-response
  pairs, given as `meta["target_spans"]` (character `[start, end)` spans) or else found by
  searching each pair's instruction and response in the text, in order.

Why segments: the mask must cover exactly the response tokens. The rendered text is encoded
whole when every segment boundary falls between tokens (checked with the tokenizer's offsets),
else segment by segment, so a token never straddles a target boundary and the masked tokens
decode to exactly the responses (see `tokenize_segments`). A chat template is any Jinja template in the
transformers convention (`messages`, `add_generation_prompt`, `bos_token`, `eos_token`,
`raise_exception`); assistant contents are replaced by sentinels while rendering, so the spans
are found in the rendered text without parsing the template. Templates get an empty
`bos_token`: the pack stage puts BOS before every document itself (`add_bos`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from iptkit.transforms.record import Record

# Built-in chat templates, in the transformers Jinja convention. `plain` ends each response
# with the EOS token; `chatml` and `llama3` end each turn with their own end token.
BUILTIN_TEMPLATES = {
    "chatml": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "llama3": (
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
        "<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n"
        "{% endif %}"
    ),
    "plain": (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
        "{% elif m['role'] == 'user' %}### Instruction:\n{{ m['content'] }}\n\n"
        "### Response:\n{% else %}{{ m['content'] }}{{ eos_token }}\n\n{% endif %}"
        "{% endfor %}"
    ),
}
# Strings that end an assistant turn; the one right after a response is a target too.
END_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "</s>", "<|endoftext|>", "<eos>")
_SENTINEL = "\x00iptkit-response-{}\x00"
ROLES = {"user", "assistant", "system"}


class FormatError(ValueError):
    """A record that cannot be formatted; becomes a reject with the message as detail."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Segment:
    """A piece of training text; `target` marks its tokens as loss targets."""

    text: str
    target: bool


@lru_cache(maxsize=8)
def _compiled(template: str) -> Any:
    """A template compiled as transformers does (sandboxed, trim_blocks, lstrip_blocks)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise FormatError("template_error", f"chat template: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


def messages_of(record: Record) -> list[dict[str, str]]:
    """The conversation of an instruction record: its pairs, else meta["conversation"].

    The first user turn of a conversation is `record.text`, which stages such as translate
    rewrite; the other turns are taken from the conversation as read.
    """
    if record.pairs:
        messages = []
        for pair in record.pairs:
            messages.append({"role": "user", "content": pair.get("instruction", "")})
            messages.append({"role": "assistant", "content": pair.get("response", "")})
        return messages
    turns = record.meta.get("conversation") if isinstance(record.meta, dict) else None
    if not isinstance(turns, list):
        return []
    messages, first_user = [], True
    for turn in turns:
        role, content = turn.get("role"), turn.get("content")
        if role == "human":
            role = "user"
        if role == "gpt":
            role = "assistant"
        if role not in ROLES or not isinstance(content, str):
            raise FormatError("bad_conversation", f"turn {turn!r}: expected {{role, content}}")
        if role == "user" and first_user:
            content, first_user = record.text, False
        messages.append({"role": role, "content": content})
    return messages


def render_chat(
    messages: list[dict[str, str]], template: str, eos_token: str = ""
) -> list[Segment]:
    """The conversation rendered by `template`, assistant contents (and the end token right
    after each) as target segments, everything else as context."""
    if not any(m["role"] == "assistant" and m["content"] for m in messages):
        raise FormatError("no_response", "the conversation has no assistant response")
    marked, responses = [], []
    for m in messages:
        if m["role"] == "assistant":
            marked.append({"role": "assistant", "content": _SENTINEL.format(len(responses))})
            responses.append(m["content"])
        else:
            marked.append(m)
    rendered = _compiled(template).render(
        messages=marked, add_generation_prompt=False, bos_token="", eos_token=eos_token
    )
    segments: list[Segment] = []
    rest = rendered
    ends = tuple(t for t in (eos_token, *END_TOKENS) if t)
    for i, response in enumerate(responses):
        before, found, rest = rest.partition(_SENTINEL.format(i))
        if not found:
            raise FormatError("template_error", f"the chat template dropped response {i}")
        end = next((t for t in ends if rest.startswith(t)), "")
        rest = rest[len(end) :]
        segments += [Segment(before, False), Segment(response + end, True)]
    segments.append(Segment(rest, False))
    return merge([s for s in segments if s.text])


def tuning_segments(record: Record) -> list[Segment]:
    """Synthesizer tuning data: targets on the pairs only (see the module docstring)."""
    text = record.text
    spans = record.meta.get("target_spans") if isinstance(record.meta, dict) else None
    if spans is None:
        spans, pos = [], 0
        for pair in record.pairs:
            for part in (pair.get("instruction", ""), pair.get("response", "")):
                start = text.find(part, pos) if part else -1
                if start < 0:
                    raise FormatError(
                        "pair_not_in_text", f"pair text {part[:40]!r} not found in the record"
                    )
                spans.append((start, start + len(part)))
                pos = start + len(part)
    segments, pos = [], 0
    for start, end in sorted((int(a), int(b)) for a, b in spans):
        if not 0 <= pos <= start <= end <= len(text):
            raise FormatError("bad_span", f"target span [{start}, {end}) overlaps or is outside")
        segments += [Segment(text[pos:start], False), Segment(text[start:end], True)]
        pos = end
    segments.append(Segment(text[pos:], False))
    return merge([s for s in segments if s.text])


def merge(segments: list[Segment]) -> list[Segment]:
    """Adjacent segments with the same flag as one, so tokenization cuts only where it must."""
    out: list[Segment] = []
    for s in segments:
        if out and out[-1].target == s.target:
            out[-1] = Segment(out[-1].text + s.text, s.target)
        else:
            out.append(s)
    return out


def format_record(record: Record, template: str, eos_token: str = "") -> list[Segment]:
    """The training segments of one record (raises FormatError with a reason)."""
    if record.kind == "instruction":
        segments = render_chat(messages_of(record), template, eos_token)
    elif record.kind == "tuning":
        segments = tuning_segments(record)
    else:
        segments = [Segment(record.text, True)] if record.text else []
    if not any(s.text.strip() for s in segments):
        raise FormatError("empty_after_format", "no text left after formatting")
    return segments


def _masked_by_offsets(
    segments: list[Segment], ids: list[int], offsets: list[tuple[int, int]]
) -> list[int] | None:
    """The mask of a whole-text encoding when every segment boundary falls between tokens,
    else None (a token straddles a boundary, so the mask could not be exact)."""
    bounds, pos = [], 0
    for s in segments:
        bounds.append((pos, pos + len(s.text), s.target))
        pos += len(s.text)
    mask, k = [], 0
    for start, end in offsets:
        while k < len(bounds) - 1 and start >= bounds[k][1]:
            k += 1
        seg_start, seg_end, target = bounds[k]
        if end > seg_end or start < seg_start:
            return None
        mask.append(int(target))
    return mask if len(mask) == len(ids) else None


def tokenize_segments(
    tokenizer: Any, batch: list[list[Segment]]
) -> list[tuple[list[int], list[int] | None]]:
    """Token ids and loss mask of each document.

    A document is encoded whole (the tokens a model sees at inference) when the tokenizer
    gives character offsets and no token straddles a target boundary; otherwise each segment
    is encoded on its own, so target tokens are exactly the target text's tokens either way.
    The mask is None when every token is a target (raw text), which the shards store as 1s.
    """
    out: list[tuple[list[int], list[int] | None]] = [([], None)] * len(batch)
    # Plain text needs no offsets (building them costs a sixth of the encode).
    single = [d for d, segs in enumerate(batch) if len(segs) == 1]
    for d, ids in zip(
        single, tokenizer.encode_batch([batch[d][0].text for d in single]), strict=True
    ):
        target = batch[d][0].target
        out[d] = (ids, None if target else [0] * len(ids))
    multi = [d for d, segs in enumerate(batch) if len(segs) > 1]
    whole = tokenizer.encode_batch_offsets(["".join(s.text for s in batch[d]) for d in multi])
    pending: list[int] = []
    for k, d in enumerate(multi):
        mask = None if whole is None else _masked_by_offsets(batch[d], *whole[k])
        if mask is None:
            pending.append(d)
        else:
            out[d] = (whole[k][0], mask)
    flat = [s.text for d in pending for s in batch[d]]
    encoded = tokenizer.encode_batch(flat) if flat else []
    k = 0
    for d in pending:
        ids: list[int] = []
        mask: list[int] = []
        for s in batch[d]:
            piece = encoded[k]
            k += 1
            ids += piece
            mask += [int(s.target)] * len(piece)
        out[d] = (ids, None if all(mask) else mask)
    return out
