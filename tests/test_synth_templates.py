"""The pre-training format: M-shot texts from raw texts and pairs, templates drawn per key."""

import re

import pytest

from iptkit.hashing import keyed_choice, keyed_index, keyed_order
from iptkit.transforms.synth.templates import (
    ENGLISH,
    JAPANESE,
    PAIR_FORMATS,
    TEMPLATE_SETS,
    fill,
    pair_format,
    render_augmented,
    render_example,
    template_set,
)

TEXT_EN = (
    "The Rhine rises in the Swiss Alps and flows north to the North Sea. It passes through "
    "six countries and carries more freight than any other river in Europe."
)
TEXT_EN_2 = (
    "Basel lies where the Rhine turns north. Its port ships containers to Rotterdam, and its "
    "chemical industry grew along the river in the nineteenth century."
)
TEXT_JA = (
    "富士山は静岡県と山梨県にまたがる活火山である。標高は3776メートルで、日本で最も高い山だ。"
    "2013年には世界文化遺産に登録された。"
)
FREE = {"instruction": "Where does the Rhine rise?", "response": "In the Swiss Alps."}
MC = {
    "instruction": "Which sea does the Rhine flow into?\nOptions:\n- The Baltic Sea\n- The North Sea",
    "response": "The North Sea",
}
COT = {
    "instruction": "How many countries does the Rhine pass through?\nLet's think step by step.",
    "response": "The text says it passes through six countries.\nTherefore, the answer is six.",
}
FREE_JA = {"instruction": "富士山の標高は何メートルですか？", "response": "3776メートル"}
MC_JA = {
    "instruction": "富士山が世界文化遺産に登録されたのは何年ですか？\nOptions:\n- 2003年\n- 2013年",
    "response": "2013年",
}


def test_keyed_choices_are_deterministic_and_spread():
    assert keyed_index(7, "3:a", "x") == keyed_index(7, "3:a", "x")
    assert len({keyed_index(7, f"3:{i}", "x") for i in range(200)}) == 7
    # The salt separates choices made from one key.
    assert len({keyed_index(1000, "3:a", str(s)) for s in range(20)}) > 15
    assert keyed_choice("abc", "k") in "abc"
    assert sorted(keyed_order(list(range(10)), "k")) == list(range(10))
    assert len({tuple(keyed_order(list(range(6)), f"k{i}")) for i in range(30)}) > 20
    with pytest.raises(ValueError, match="positive count"):
        keyed_index(0, "k")


def test_every_template_has_each_field_once():
    for templates in TEMPLATE_SETS.values():
        for fmt in PAIR_FORMATS:
            for template in templates.family(fmt):
                assert re.findall(r"\{(\w+)\}", template) == ["instruction", "response"]
        for template in templates.introductions:
            assert sorted(re.findall(r"\{(\w+)\}", template)) == ["pairs", "text"]


def test_fill_keeps_braces_in_values():
    assert fill("Q: {instruction}\nA: {response}", instruction="f({x})", response="{y}") == (
        "Q: f({x})\nA: {y}"
    )


def test_pair_formats():
    assert pair_format(FREE) == "free_form"
    assert pair_format(MC) == "multiple_choice"
    assert pair_format(MC_JA) == "multiple_choice"
    assert pair_format(COT) == "chain_of_thought"
    # "options" in running prose is no option list.
    assert pair_format({"instruction": "What options: none?", "response": "None."}) == "free_form"


def test_language_picks_the_wording():
    assert template_set("ja") is JAPANESE
    assert template_set("ja-JP") is JAPANESE
    assert template_set("jpn_Jpan") is JAPANESE
    for lang in ("en", "pl", None, ""):
        assert template_set(lang) is ENGLISH


def test_same_key_same_text_and_keys_vary():
    examples = [(TEXT_EN, [FREE, MC, COT]), (TEXT_EN_2, [FREE])]
    first = render_augmented(examples, "en", "7:rec-1")
    assert first == render_augmented(examples, "en", "7:rec-1")
    renders = {render_augmented(examples, "en", f"7:rec-{i}") for i in range(60)}
    assert len(renders) > 30
    # Each introduction and each free-form template is used by some key.
    intros = {render_example(TEXT_EN, [FREE], "en", f"k{i}") for i in range(2000)}
    assert len(intros) == len({(a, b) for a in ENGLISH.introductions for b in ENGLISH.free_form})


def test_every_pair_appears_verbatim_with_its_text():
    examples = [(TEXT_EN, [FREE, MC, COT]), (TEXT_EN_2, [FREE]), (TEXT_JA, [FREE_JA, MC_JA])]
    for i in range(50):
        out = render_augmented(examples, "en", f"1:{i}")
        position = 0
        for text, pairs in examples:
            position = out.index(text, position)
            for pair in pairs:
                position = out.index(pair["instruction"], position)
                position = out.index(pair["response"], position)


def test_examples_are_separated_by_blank_lines():
    examples = [(TEXT_EN, [FREE]), (TEXT_EN_2, [FREE])]
    for i in range(30):
        key = f"2:{i}"
        out = render_augmented(examples, "en", key)
        one = render_example(TEXT_EN, [FREE], "en", f"{key}:0")
        two = render_example(TEXT_EN_2, [FREE], "en", f"{key}:1")
        assert out == f"{one}\n\n{two}"


def test_text_without_pairs_is_the_text():
    assert render_example(f"  {TEXT_EN}\n", [], "en", "k") == TEXT_EN
    assert render_augmented([(TEXT_EN, [])], "ja", "k") == TEXT_EN


def test_japanese_wording():
    outs = [render_augmented([(TEXT_JA, [FREE_JA, MC_JA])], "ja", f"5:{i}") for i in range(80)]
    joined = "\n".join(outs)
    for phrase in (
        "質問:",
        "回答:",
        "次の文章を読んで質問に答えてください。",
        "正しい選択肢を選んでください。",
    ):
        assert phrase in joined
    english_words = ("Question:", "Answer", "Read the following", "Choose the correct")
    assert not any(word in joined for word in english_words)


def test_english_wording_for_other_languages():
    joined = "\n".join(render_augmented([(TEXT_EN, [FREE, MC])], "de", f"5:{i}") for i in range(80))
    assert "Read the following article and answer the questions." in joined
    assert "Choose the correct option." in joined
    assert not re.search(r"[\u3040-\u30ff]", joined)


def test_multiple_choice_and_chain_of_thought_templates():
    """MC pairs use MC templates and CoT pairs CoT templates, with the option list and the
    reasoning kept whole."""
    seen: dict[str, set[str]] = {"multiple_choice": set(), "chain_of_thought": set()}
    for i in range(100):
        key = f"9:{i}"
        out = render_example(TEXT_EN, [MC, COT], "en", key)
        mc_block, cot_block = out.split("\n\n")[-2:]
        assert "Options:\n- The Baltic Sea\n- The North Sea" in mc_block
        assert "Let's think step by step." in cot_block
        assert cot_block.endswith("Therefore, the answer is six.")
        seen["multiple_choice"].add(_template_of(mc_block, MC))
        seen["chain_of_thought"].add(_template_of(cot_block, COT))
    assert seen["multiple_choice"] == set(ENGLISH.multiple_choice)
    assert seen["chain_of_thought"] == set(ENGLISH.chain_of_thought)


def test_pairs_of_one_example_share_a_template_per_format():
    second = {"instruction": "How long is the Rhine?", "response": "About 1,230 kilometres."}
    for i in range(40):
        out = render_example(TEXT_EN, [FREE, second], "en", f"4:{i}")
        a, b = out.split("\n\n")[-2:]
        assert _template_of(a, FREE) == _template_of(b, second)


def _template_of(block: str, pair: dict[str, str]) -> str:
    return block.replace(pair["instruction"], "{instruction}").replace(
        pair["response"], "{response}"
    )
