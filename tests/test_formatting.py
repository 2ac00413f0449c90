"""Formatting: each kind into segments; loss masks cover exactly the response tokens."""

import numpy as np
import pytest
from pack_helpers import write_tokenizer

from iptkit.transforms.record import Record
from iptkit.transforms.tail.formatting import (
    BUILTIN_TEMPLATES,
    FormatError,
    format_record,
    tokenize_segments,
)
from iptkit.transforms.tail.tokenizer import load_tokenizer

OWN_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{{ message['content'] }}{{ '<|im_end|>' + '\\n' }}{% endfor %}"
)
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "original first question"},
    {"role": "assistant", "content": "Preheat the oven, then knead the dough."},
    {"role": "user", "content": "And in Japanese?"},
    {"role": "assistant", "content": "東京は日本の首都です。"},
]
RESPONSES = [CONVERSATION[2]["content"], CONVERSATION[4]["content"]]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return load_tokenizer(write_tokenizer(tmp_path_factory.mktemp("tok"), OWN_TEMPLATE))


def _runs(ids, mask):
    """The masked tokens as contiguous runs."""
    runs, current = [], []
    for i, m in zip(ids, mask, strict=True):
        if m:
            current.append(i)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


@pytest.mark.parametrize(
    "template, end",
    [
        (BUILTIN_TEMPLATES["chatml"], "<|im_end|>"),
        (BUILTIN_TEMPLATES["llama3"], "<|eot_id|>"),
        (BUILTIN_TEMPLATES["plain"], "</s>"),
        (OWN_TEMPLATE, "<|im_end|>"),
    ],
    ids=["chatml", "llama3", "plain", "tokenizer"],
)
def test_masked_tokens_decode_to_exactly_the_responses(tok, template, end):
    record = Record(
        id="c1",
        source="chats",
        text="How do I bake bread?",  # the first user turn as the record stages left it
        kind="instruction",
        meta={"conversation": CONVERSATION},
    )
    segments = format_record(record, template, "</s>")
    [(ids, mask)] = tokenize_segments(tok, [segments])
    runs = _runs(ids, mask)
    assert [tok.decode(r) for r in runs] == [r + end for r in RESPONSES]
    whole = tok.decode(ids)
    assert "How do I bake bread?" in whole and "original first question" not in whole
    assert "Be brief." in whole
    # every non-target token is prompt: no response text hides outside the mask
    context = tok.decode([i for i, m in zip(ids, mask, strict=True) if not m])
    assert not any(r in context for r in RESPONSES)


def test_pairs_become_a_conversation(tok):
    record = Record(
        id="p",
        source="s",
        text="Q1",
        kind="instruction",
        pairs=[{"instruction": "Q1", "response": "The quick brown fox."}],
    )
    [(ids, mask)] = tokenize_segments(
        tok, [format_record(record, BUILTIN_TEMPLATES["plain"], "</s>")]
    )
    assert [tok.decode(r) for r in _runs(ids, mask)] == ["The quick brown fox.</s>"]
    assert tok.decode(ids).startswith("### Instruction:\nQ1\n\n### Response:\n")


def test_raw_and_augmented_are_all_targets(tok):
    for kind in ("raw", "augmented"):
        record = Record(id="r", source="s", text="Travelling with only a carry-on bag.", kind=kind)
        [(ids, mask)] = tokenize_segments(tok, [format_record(record, "", "</s>")])
        assert mask is None and tok.decode(ids) == record.text


def test_tuning_masks_pairs_only(tok):
    text = "Some context about bread. Q: How do I bake bread? A: Preheat the oven."
    spans = {"instruction": "How do I bake bread?", "response": "Preheat the oven."}
    by_pairs = Record(id="t", source="s", text=text, kind="tuning", pairs=[spans])
    start = text.index("How")
    by_spans = Record(
        id="t", source="s", text=text, kind="tuning",
        meta={"target_spans": [[start, start + len(spans["instruction"])],
                               [text.index("Preheat"), len(text)]]},
    )  # fmt: skip
    for record in (by_pairs, by_spans):
        [(ids, mask)] = tokenize_segments(tok, [format_record(record, "", "")])
        assert [tok.decode(r) for r in _runs(ids, mask)] == list(spans.values())
        assert tok.decode(ids) == text
        assert np.count_nonzero(mask) < len(mask)


@pytest.mark.parametrize(
    "record, reason",
    [
        (Record(id="x", source="s", text="hi", kind="instruction"), "no_response"),
        (Record(id="x", source="s", text="   ", kind="raw"), "empty_after_format"),
        (
            Record(id="x", source="s", text="abc", kind="tuning", pairs=[{"instruction": "zz"}]),
            "pair_not_in_text",
        ),
    ],
)
def test_unformattable_records_name_a_reason(record, reason):
    with pytest.raises(FormatError) as err:
        format_record(record, BUILTIN_TEMPLATES["chatml"], "</s>")
    assert err.value.reason == reason


def test_whole_text_tokens_when_boundaries_fall_between_tokens(tok):
    """The tokens are those of the rendered text as a whole (what inference sees)."""
    record = Record(id="c", source="s", text="How do I bake bread?", kind="instruction",
                    meta={"conversation": CONVERSATION})  # fmt: skip
    segments = format_record(record, BUILTIN_TEMPLATES["chatml"], "</s>")
    [(ids, mask)] = tokenize_segments(tok, [segments])
    assert ids == tok.encode("".join(s.text for s in segments))
    assert len(mask) == len(ids)


def test_a_token_across_a_boundary_falls_back_to_segments(tok):
    """A target span starting inside a word: the whole-text token would straddle it, so the
    segments are encoded apart and the mask still covers exactly the span."""
    text = "How do I bake bread? Preheat the oven."
    start = text.index("ead?")
    record = Record(id="t", source="s", text=text, kind="tuning",
                    meta={"target_spans": [[start, len(text)]]})  # fmt: skip
    segments = format_record(record, "", "")
    whole = tok.encode(text)
    [(ids, mask)] = tokenize_segments(tok, [segments])
    assert ids != whole  # "bread" is one token of the whole text
    assert [tok.decode(r) for r in _runs(ids, mask)] == [text[start:]]
