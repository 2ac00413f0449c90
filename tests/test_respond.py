"""respond: the decision on a generated response (checks counted in real tokens), the record
it writes, what is answered, options; whole runs with tiny models are in test_llm_stages.py."""

import pytest
from llm_helpers import chat_tokenizer
from pydantic import ValidationError

from iptkit.transforms.inference.core import Generation
from iptkit.transforms.record import Record
from iptkit.transforms.stage import Drop
from iptkit.transforms.stages.respond import RespondConfig, decide, wants_response

INSTRUCTION = "日本の首都はどこですか？"


def rec(kind="instruction", lang="ja"):
    return Record(id="s1", source="sg", text=INSTRUCTION, kind=kind, lang=lang)


@pytest.fixture(scope="module")
def count():
    tok = chat_tokenizer([INSTRUCTION, "東京です。"])
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def cfg(**kw):
    return RespondConfig(
        model="/tmp", max_model_len=512, max_new_tokens=64, **{"max_response_tokens": 32, **kw}
    )


def test_good_response_is_recorded_with_its_model_and_sampling(count):
    c = cfg(max_response_tokens=32)
    spec = c.model_spec()
    out = decide(
        rec(), Generation(" 東京です。\n", prompt_tokens=9, new_tokens=4), c, spec, 5, count
    )
    assert out.pairs == [{"instruction": INSTRUCTION, "response": "東京です。"}]
    assert out.meta["respond"] == {
        "model": "/tmp", "temperature": 0.0, "top_p": 1.0, "top_k": 0, "max_new_tokens": 64,
        "seed": 5, "prompt_tokens": 9, "new_tokens": 4,
    }  # fmt: skip
    assert out.origin == "synthetic" and out.meta["origin_before"] == "organic"


def test_rejections_are_the_checks_reasons(count):
    c = cfg(max_response_tokens=5)
    spec = c.model_spec()
    assert decide(rec(), Generation("  \n"), c, spec, 5, count).reason == "empty_response"
    long = "東京です。" * 3
    drop = decide(rec(), Generation(long), c, spec, 5, count)
    assert drop.reason == "response_too_long" and f"{count(long)} tokens" in drop.detail
    assert count(long) > 5  # counted in the model's tokens, not characters
    failed = decide(rec(), Generation(error="prompt_too_long", detail="d"), c, spec, 5, count)
    assert failed == Drop("prompt_too_long", "d")


def test_what_is_answered_and_options():
    assert wants_response(rec(), cfg())
    assert not wants_response(rec(kind="raw"), cfg())
    assert wants_response(rec(), cfg(langs=["ja"])) and not wants_response(
        rec(lang="en"), cfg(langs=["ja"])
    )
    assert RespondConfig(model="/tmp").max_response_tokens == 2000
    assert RespondConfig(model="/tmp").max_new_tokens > 2000
    with pytest.raises(ValidationError, match="must exceed max_response_tokens"):
        RespondConfig(model="/tmp", max_new_tokens=100, max_response_tokens=100)
