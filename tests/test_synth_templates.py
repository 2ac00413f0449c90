"""The pre-training format: M-shot texts in one style per text, drawn from iptkit's inventory."""

import re
from collections import Counter
from importlib import resources

import pytest
import yaml

from iptkit.errors import IptkitError
from iptkit.hashing import keyed_choice, keyed_index, keyed_order
from iptkit.transforms.stages.langid import fasttext_predictor
from iptkit.transforms.synth.templates import (
    FEW_PAIR_LAYOUT_WEIGHTS,
    INVENTORY_LANGS,
    LAYOUT_WEIGHTS,
    PAIR_FORMATS,
    draw_layout,
    draw_style,
    fill,
    inventory,
    inventory_for,
    pair_format,
    parse_inventory,
    render_augmented,
    render_example,
    render_with,
    split_options,
    style_for,
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
TEXT_PL = (
    "Wisła jest najdłuższą rzeką Polski. Płynie z Beskidu Śląskiego przez Kraków i Warszawę "
    "do Morza Bałtyckiego, do którego uchodzi koło Gdańska."
)
FREE = {"instruction": "Where does the Rhine rise?", "response": "In the Swiss Alps."}
FREE_2 = {"instruction": "How long is the Rhine?", "response": "About 1,230 kilometres."}
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
    "instruction": "富士山が世界文化遺産に登録されたのは何年ですか？\n選択肢:\n- 2003年\n- 2013年",
    "response": "2013年",
}
FREE_PL = {"instruction": "Gdzie uchodzi Wisła?", "response": "Do Morza Bałtyckiego."}
FREE_PL_2 = {
    "instruction": "Przez jakie miasta płynie Wisła?",
    "response": "Przez Kraków i Warszawę.",
}
SIZES = {"en": 200, "ja": 100, "pl": 50}


def _raw(lang: str) -> dict:
    path = resources.files("iptkit.transforms.synth").joinpath("patterns", f"{lang}.yaml")
    return yaml.safe_load(path.read_text("utf-8"))


def test_keyed_choices_are_deterministic_and_spread():
    assert keyed_index(7, "3:a", "x") == keyed_index(7, "3:a", "x")
    assert len({keyed_index(7, f"3:{i}", "x") for i in range(200)}) == 7
    assert len({keyed_index(1000, "3:a", str(s)) for s in range(20)}) > 15
    assert keyed_choice("abc", "k") in "abc"
    assert sorted(keyed_order(list(range(10)), "k")) == list(range(10))
    with pytest.raises(ValueError, match="positive count"):
        keyed_index(0, "k")


@pytest.mark.parametrize("lang", INVENTORY_LANGS)
def test_inventory_sizes_fields_and_uniqueness(lang):
    inv = inventory(lang)
    assert inv.lang == lang
    assert inv.pair_count >= SIZES[lang]
    raw = _raw(lang)
    for fmt in PAIR_FORMATS:
        entries = raw["pairs"][fmt]
        assert len(entries) >= SIZES[lang] // 10, fmt  # every task kind has its share
        for entry in entries:
            assert re.findall(r"\{(\w+)\}", entry["q"]) == ["question"], entry
            assert re.findall(r"\{(\w+)\}", entry["a"]) == ["answer"], entry
        keys = [(e["q"], e["a"], e.get("sep", "\n")) for e in entries]
        duplicates = [k for k, n in Counter(keys).items() if n > 1]
        assert not duplicates, duplicates
    for name in ("classic", "question_first", "dialog", "numbered", "next_turn"):
        frames = raw["layouts"][name]
        assert len(frames) == len(set(frames)) >= 2, name
    assert len(inv.inline) >= 2 and len(inv.speakers) >= 4 and len(inv.option_headings) >= 5


def test_inventory_languages():
    """The wording (fields removed) of each inventory is identified as its language by fastText
    lid.176; Japanese patterns carry no English words, Polish ones no Japanese script."""
    predict = fasttext_predictor()
    for lang in INVENTORY_LANGS:
        raw = _raw(lang)
        words = [
            re.sub(r"\{\w+\}", " ", part)
            for fmt in PAIR_FORMATS
            for e in raw["pairs"][fmt]
            for part in (e["q"], e["a"])
        ]
        words += [re.sub(r"\{\w+\}", " ", f) for f in raw["layouts"]["classic"]]
        (top,) = predict(" ".join(" ".join(words).split()))
        assert top[0] == lang, (lang, top)
        if lang == "ja":
            english = [w for w in words if re.search(r"[A-Za-z]{3,}", w)]
            assert not english, english
        if lang == "pl":
            assert not [w for w in words if re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", w)]
            assert sum(bool(re.search(r"[ąćęłńóśźż]", w)) for w in words) >= 20


def test_a_bad_inventory_names_the_file_and_entry():
    raw = _raw("pl")
    raw["pairs"]["free_form"][3] = {"q": "Pytanie: {question} {text}", "a": "{answer}"}
    with pytest.raises(IptkitError, match=r"pl\.yaml: pairs\.free_form\[3\]\.q"):
        parse_inventory(raw, "pl.yaml")
    raw = _raw("en")
    del raw["layouts"]["numbered"]
    with pytest.raises(IptkitError, match="en.yaml: malformed"):
        parse_inventory(raw, "en.yaml")


def test_language_picks_the_inventory():
    assert inventory_for("ja-JP").lang == "ja" and inventory_for("jpn_Jpan").lang == "ja"
    assert inventory_for("pl").lang == "pl" and inventory_for("pol_Latn").lang == "pl"
    for lang in ("en", "de", None, ""):
        assert inventory_for(lang).lang == "en"
    # Without a language, a Japanese text gets Japanese wording; a declared one wins.
    assert inventory_for(None, TEXT_JA).lang == "ja" and inventory_for(None, TEXT_EN).lang == "en"
    assert inventory_for("en", TEXT_JA).lang == "en"
    assert style_for([(TEXT_JA, [FREE_JA])], None, "k").lang == "ja"


def test_layout_and_inversion_weights_over_many_keys():
    """LMOps' weights: 80/5/5/5/5 when every round has two pairs, 95/5 otherwise; pairs first
    in 5 of 100 classic and dialog texts."""
    n = 20_000
    many = [draw_layout(f"7:aug:{i}", 3) for i in range(n)]
    counts = Counter(layout for layout, _ in many)
    for layout, weight in LAYOUT_WEIGHTS.items():
        assert abs(counts[layout] / n - weight / 100) < 0.01, (layout, counts)
    invertible = [first for layout, first in many if layout in ("classic", "dialog")]
    assert abs(sum(invertible) / len(invertible) - 0.05) < 0.01
    assert not any(first for layout, first in many if layout not in ("classic", "dialog"))
    few = Counter(draw_layout(f"7:aug:{i}", 1)[0] for i in range(n))
    assert set(few) == set(FEW_PAIR_LAYOUT_WEIGHTS)
    assert abs(few["dialog"] / n - 0.05) < 0.01
    # The style of a text is drawn with that same layout.
    for i in range(200):
        style = draw_style("pl", f"7:aug:{i}", 3)
        assert (style.layout, style.question_first) == many[i]


def test_one_style_per_m_shot_text():
    """Every round of a text is laid out in the one style drawn from the text's key: the same
    pair in two rounds is written the same way, and the text is the rounds in that style."""
    examples = [(TEXT_EN, [FREE, MC, COT]), (TEXT_EN_2, [FREE, MC, COT]), (TEXT_EN, [FREE, FREE_2])]
    seen_layouts = set()
    for i in range(300):
        key = f"3:aug:{i}"
        style = style_for(examples, "en", key)
        seen_layouts.add(style.layout)
        out = render_augmented(examples, "en", key)
        assert out == render_with(style, examples)
        rounds = [render_example(t, p, style) for t, p in examples]
        assert out == style.round_separator.join(rounds)
        if style.layout == "classic":
            pattern = style.patterns["free_form"]
            assert out.count(pattern.render(FREE["instruction"], FREE["response"])) == 3
    assert seen_layouts == set(LAYOUT_WEIGHTS)
    # Different texts draw different styles.
    assert len({render_augmented(examples, "en", f"4:{i}") for i in range(60)}) > 50


@pytest.mark.parametrize(
    ("lang", "text", "pairs"),
    [
        ("en", TEXT_EN, [FREE, COT, FREE_2]),
        ("ja", TEXT_JA, [FREE_JA, FREE_JA]),
        ("pl", TEXT_PL, [FREE_PL, FREE_PL_2]),
    ],
)
def test_every_question_and_answer_kept_in_every_layout(lang, text, pairs):
    layouts = set()
    for i in range(400):
        style = style_for([(text, pairs)], lang, f"5:{i}")
        layouts.add((style.layout, style.question_first))
        out = render_example(text, pairs, style)
        assert text in out
        for pair in pairs:
            assert pair["instruction"] in out and pair["response"] in out
            if style.layout != "numbered_questions":  # numbered: all questions, then answers
                assert out.index(pair["instruction"]) < out.rindex(pair["response"])
        if not style.question_first and style.layout != "inline_few_shot":
            assert out.index(text) < out.index(pairs[0]["instruction"])
    assert len(layouts) == 6  # five layouts and the inversion


def test_numbered_inline_and_next_turn_layouts():
    pairs = [FREE, FREE_2, COT]
    found = set()
    for i in range(2000):
        style = style_for([(TEXT_EN, pairs)], "en", f"6:{i}")
        out = render_example(TEXT_EN, pairs, style)
        if style.layout == "numbered_questions":
            questions = [out.index(p["instruction"]) for p in pairs]
            answers = [out.index(p["response"]) for p in pairs]
            assert questions == sorted(questions) and max(questions) < min(answers)
            assert f"{style.question_markers[1]} {FREE_2['instruction']}" in out
        elif style.layout == "inline_few_shot":
            last = fill(style.inline.test, question=COT["instruction"], answer=COT["response"])
            assert out.endswith(last)
        elif style.layout == "next_turn_dialog":
            first, second = style.speakers
            assert out.endswith(f"{first}: {COT['instruction']}\n{second}: {COT['response']}")
        elif style.layout == "dialog" and not style.question_first:
            assert f"{style.speakers[1]}: {FREE['response']}" in out
        found.add(style.layout)
    assert found == set(LAYOUT_WEIGHTS)


def test_a_round_with_one_pair_stays_classic_under_a_two_pair_layout():
    for i in range(300):
        style = draw_style("en", f"8:{i}", 2)
        out = render_example(TEXT_EN, [FREE], style)
        if style.layout in ("numbered_questions", "inline_few_shot", "next_turn_dialog"):
            assert out == fill(
                style.classic,
                text=TEXT_EN,
                pairs=style.patterns["free_form"].render(FREE["instruction"], FREE["response"]),
            )


def test_options_are_reformatted_and_the_answer_follows_its_marker():
    assert split_options(MC["instruction"]) == (
        "Which sea does the Rhine flow into?",
        ["The Baltic Sea", "The North Sea"],
        "",
    )
    assert split_options("What options: none?") is None
    blocks, answers = set(), set()
    for i in range(300):
        style = draw_style("en", f"9:{i}", 1)
        out = render_example(TEXT_EN, [MC], style)
        assert out.index("The Baltic Sea") < out.index("The North Sea")
        assert "Which sea does the Rhine flow into?" in out
        options = style.options
        blocks.add(options.render("", ["The Baltic Sea", "The North Sea"], ""))
        answer = options.answer("The North Sea", ["The Baltic Sea", "The North Sea"])
        answers.add(answer)
        assert answer in out
        if options.lettered:
            assert answer == f"{options.markers[1]} The North Sea"
    assert len(blocks) > 60 and len(answers) > 20
    assert "The North Sea" in answers  # bullets keep the option's text alone
    # Japanese texts may mark options with katakana or circled digits.
    ja = {draw_style("ja", f"9:{i}", 1).options.markers[0] for i in range(600)}
    assert {"ア.", "①."} & ja


def test_pair_formats():
    assert pair_format(FREE) == "free_form"
    assert pair_format(MC) == "multiple_choice"
    assert pair_format(MC_JA) == "multiple_choice"
    assert pair_format(COT) == "chain_of_thought"
    polish = {"instruction": "Czy to prawda?\nOpcje:\n- Tak\n- Nie\n- Może", "response": "Tak"}
    assert pair_format(polish) == "multiple_choice"
    assert pair_format({"instruction": "What options: none?", "response": "None."}) == "free_form"


def test_fill_keeps_braces_in_values():
    assert (
        fill("Q: {question}\nA: {answer}", question="f({x})", answer="{y}") == "Q: f({x})\nA: {y}"
    )


def test_text_without_pairs_is_the_text():
    assert render_augmented([(f"  {TEXT_EN}\n", [])], "en", "k") == TEXT_EN
    assert render_augmented([(TEXT_EN, [])], "ja", "k") == TEXT_EN


def test_japanese_and_polish_wording():
    ja = "\n".join(
        render_augmented([(TEXT_JA, [FREE_JA, MC_JA])], "ja", f"5:{i}") for i in range(200)
    )
    assert "質問" in ja and "選択肢" in ja
    assert not re.search(r"\b(?:Question|Answer|Read the|Choose)\b", ja)
    pl = "\n".join(
        render_augmented([(TEXT_PL, [FREE_PL, FREE_PL_2])], "pl", f"5:{i}") for i in range(200)
    )
    assert "Pytanie" in pl and "Odpowied" in pl
    assert not re.search(r"\b(?:Question|Answer|Read the)\b", pl)
    de = "\n".join(render_augmented([(TEXT_EN, [FREE, MC])], "de", f"5:{i}") for i in range(80))
    assert "Answer" in de and not re.search(r"[\u3040-\u30ff]", de)
