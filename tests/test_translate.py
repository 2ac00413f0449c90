"""translate: prompts (plain and chat template, few-shot), retry seeds and sampling, the
translated record and its link; whole runs with tiny models are in test_llm_stages.py."""

import pytest
from llm_helpers import chat_tokenizer
from pydantic import ValidationError
from transformers import AutoTokenizer

from iptkit.transforms.inference.chat_prompt import chat_prompt
from iptkit.transforms.inference.core import ModelSpec, SamplingSpec, sampling_seed
from iptkit.transforms.record import Record
from iptkit.transforms.stage import Drop
from iptkit.transforms.stages.translate import (
    Settled,
    TranslateConfig,
    assembled,
    attempt_spec,
    build_prompt,
    needs_translation,
    request_text,
    retry_seed,
    seed_key,
    segments,
    translated,
)

TEXT = "Write a birthday message for NAME_1 using {name}."


def rec(lang="en", kind="instruction", text=TEXT, pairs=()):
    return Record(id="c1", source="chats", text=text, kind=kind, lang=lang, pairs=list(pairs))


def cfg(**kw):
    return TranslateConfig(model="/tmp", **kw)


class Plain:
    """A tokenizer without a chat template: the plain layout applies."""

    chat_template = None


def test_request_text_keeps_braces_and_needs_a_language_and_a_prompt():
    text = request_text(rec(), cfg())
    assert text.endswith("\n\n" + TEXT) and text.startswith("Translate the following English")
    assert request_text(rec(lang=None), cfg()) == Drop(
        "no_lang", "the record has no language: run langid first or set source_lang"
    )
    assert request_text(rec(lang=None), cfg(source_lang="en")) == text
    assert request_text(rec(lang="de"), cfg()).reason == "no_prompt"
    assert (
        request_text(rec(lang="pl"), cfg(prompts={"pl-ja": "PL->JA: {text}"})) == "PL->JA: " + TEXT
    )
    ja = request_text(rec(lang="ja", text="こんにちは"), cfg(target="en"))
    assert ja.startswith("次の日本語の文章を") and ja.endswith("こんにちは")


@pytest.mark.parametrize(
    "source, target, opening",
    [
        ("en", "pl", "Translate the following English text into natural Polish."),
        ("pl", "en", "Przetłumacz poniższy polski tekst na naturalny angielski."),
        ("ja", "pl", "次の日本語の文章を自然なポーランド語に翻訳してください。"),
        ("pl", "ja", "Przetłumacz poniższy polski tekst na naturalny japoński."),
    ],
)
def test_polish_is_built_in_both_ways(source, target, opening):
    """Polish is a first-class language (PLLuM): each pair has a prompt in its source language
    that keeps code, URLs and placeholders (what the translation checks require)."""
    text = request_text(rec(lang=source), cfg(target=target))
    assert text.startswith(opening) and text.endswith("\n\n" + TEXT)
    assert "NAME_1" in text.removesuffix(TEXT) and "{name}" in text.removesuffix(TEXT)


def test_plain_prompt_with_few_shot_examples():
    c = cfg(
        prompts={"en-ja": "EN->JA: {text}"},
        examples={"en-ja": [{"source": "Hello.", "target": "こんにちは。"}]},
        system="You translate.",
    )
    prompt = build_prompt(rec(), c, Plain())
    assert prompt == f"You translate.\n\nEN->JA: Hello.\n\nこんにちは。\n\nEN->JA: {TEXT}\n\n"


def test_chat_template_prompt_without_a_doubled_bos():
    tok = chat_tokenizer([TEXT, "こんにちは。"])
    c = cfg(examples={"en-ja": [{"source": "Hello.", "target": "こんにちは。"}]})
    prompt = build_prompt(rec(), c, tok)
    assert prompt.startswith("<|user|>\nTranslate the following English text")
    assert "<|assistant|>\nこんにちは。</s>\n<|user|>\n" in prompt
    assert prompt.endswith(f"{TEXT}</s>\n<|assistant|>\n")
    # A template that writes BOS itself: the handler adds it when encoding, so it goes here.
    tok.chat_template = "<s>" + tok.chat_template
    assert chat_prompt(tok, "hi") == "<|user|>\nhi</s>\n<|assistant|>\n"


def test_retry_seeds_differ_per_attempt_and_never_depend_on_order():
    seeds = [retry_seed(7, "c1", a) for a in range(4)]
    assert seeds[0] == sampling_seed(7, "c1") and len(set(seeds)) == 4
    assert seeds == [retry_seed(7, "c1", a) for a in range(4)]
    assert retry_seed(8, "c1", 1) != seeds[1] and retry_seed(7, "c2", 1) != seeds[1]
    assert all(0 <= s < 2**63 for s in seeds)


def test_retries_sample_when_the_first_attempt_is_greedy():
    greedy = ModelSpec("transformers", "/m", sampling=SamplingSpec(temperature=0.0))
    assert attempt_spec(greedy, 0, 0.7) is greedy
    assert attempt_spec(greedy, 1, 0.7).sampling.temperature == 0.7
    sampled = ModelSpec("transformers", "/m", sampling=SamplingSpec(temperature=0.3))
    assert attempt_spec(sampled, 2, 0.7) is sampled


def test_translated_record_is_synthetic_and_linked():
    source = rec(pairs=[{"instruction": TEXT, "response": "Happy birthday!"}])
    source.meta = {"langid": [["en", 0.9]], "language": "English"}
    c = cfg()
    texts = {"text": " 誕生日 ", "pairs[0].response": "お誕生日おめでとう！"}
    out = translated(source, texts, "ja", "/tmp", 1, c.model_spec(), 3, c)
    assert out.id == "c1#ja" and out.text == "誕生日" and out.lang == "ja"
    # The pair is translated too: the instruction is the text, so it reuses its translation.
    assert out.pairs == [{"instruction": "誕生日", "response": "お誕生日おめでとう！"}]
    assert out.origin == "synthetic" and out.meta["origin_before"] == "organic"
    assert out.meta["parallel"] == {
        "lang": "en", "text": TEXT, "pairs": source.pairs, "id": "c1", "origin": "organic",
        "pairs_aligned": True,
    }  # fmt: skip
    assert "langid" not in out.meta and out.meta["language"] == "English"  # the source's
    assert out.meta["translate"]["attempts"] == 2 and out.meta["translate"]["new_tokens"] == 3
    # pairs: drop (Ma et al.): the text alone; the link says the pairs are not mirrored.
    dropped = translated(source, {"text": "誕生日"}, "ja", "/tmp", 0, c.model_spec(), 1,
                         cfg(pairs="drop"))  # fmt: skip
    assert dropped.pairs == [] and dropped.meta["parallel"]["pairs_aligned"] is False


PAIRED = rec(
    text="Summarise this.",
    pairs=[
        {"instruction": "Summarise this.", "response": "A short summary."},
        {"instruction": "And in one word?", "response": ""},
    ],
)


def test_segments_are_the_text_and_each_pairs_parts():
    assert segments(PAIRED, cfg()) == [
        ("text", "Summarise this."),
        ("pairs[0].response", "A short summary."),
        ("pairs[1].instruction", "And in one word?"),
    ]
    assert segments(PAIRED, cfg(pairs="drop")) == [("text", "Summarise this.")]
    # A pair's seed differs from the text's; the text keeps the record's plain seed.
    assert seed_key("c1", "text") == "c1" and seed_key("c1", "pairs[0].response") != "c1"


def test_a_record_is_translated_whole_or_rejected_naming_the_segment():
    c = cfg()
    spec = c.model_spec()
    done = [
        Settled("text", "これを要約して。"),
        Settled("pairs[0].response", "短い要約です。", attempt=2, new_tokens=4),
        Settled("pairs[1].instruction", "一言で言うと？", new_tokens=3),
    ]
    out = assembled(PAIRED, done, c, spec)
    assert out.pairs == [
        {"instruction": "これを要約して。", "response": "短い要約です。"},
        {"instruction": "一言で言うと？", "response": ""},
    ]
    assert out.meta["translate"]["attempts"] == 3 and out.meta["translate"]["segments"] == 3
    failed = [done[0], Settled("pairs[0].response", Drop("length_ratio", "after 3 attempt(s): x"))]
    failed.append(done[2])
    assert assembled(PAIRED, failed, c, spec) == Drop(
        "length_ratio", "pairs[0].response: after 3 attempt(s): x"
    )
    with pytest.raises(ValueError, match="segments"):
        assembled(PAIRED, done[:2], c, spec)


def test_what_is_translated_and_options():
    assert needs_translation(rec(), cfg())
    assert cfg().prompt_too_long == "reject"  # a cut prompt would give a partial translation
    assert not needs_translation(rec(lang="ja"), cfg())
    assert not needs_translation(rec(kind="raw"), cfg())
    assert needs_translation(rec(kind="raw"), cfg(kinds=["raw"]))
    with pytest.raises(ValidationError, match="attempts"):
        cfg(attempts=0)
    with pytest.raises(ValidationError, match="no known script for xx"):
        cfg(checks={"script_ratio": {"xx": 0.5}})
    with pytest.raises(ValidationError, match="backend transformers needs a model"):
        TranslateConfig()


def test_real_tokenizer_loads_through_the_layer(tmp_path):
    tok = chat_tokenizer(["hello"])
    tok.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path).chat_template == tok.chat_template
