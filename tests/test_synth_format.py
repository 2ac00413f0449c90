"""The synthesizer's format and its parsing, against the paper's Table 13 and LMOps' rules."""

from pathlib import Path

from iptkit.transforms.synth.lmops_format import (
    ParseCounts,
    answer_text,
    cook_example,
    cook_pairs,
    cook_read,
    filter_pairs,
    parse_pairs,
    parse_sequence,
    question_text,
)

TABLE13 = (Path(__file__).parent / "data" / "table13_coqa_2shot.txt").read_text().rstrip("\n")


def qa(q: str, a: str) -> dict[str, str]:
    return {"instruction": q, "response": a}


def test_golden_table13_two_shot_sequence():
    """The paper's 2-shot CoQA sequence (Table 13, verbatim) parses into its two examples."""
    (text1, pairs1), (text2, pairs2) = parse_sequence(TABLE13)
    assert text1.startswith("Our school life is very interesting!")
    assert text1.endswith("The Music Club meets on Tuesday at three fifteen.")
    assert pairs1 == [
        qa("What club does Helen like?", "Helen likes the reading club."),
        qa("How many friends does the story teller describe?", "I have four friends."),
        qa("Are you and your friends smart?", "unknown"),
    ]
    assert text2.startswith("Billy and Sara are brother and sister.")
    assert "\n\nThe rest of the week" in text2  # the blank line inside a text is kept
    assert pairs2 == [
        qa("how do billy and Sara know each other?", "Billy and Sara are brother and sister."),
        qa("Did they do something yesterday?", "no."),
        qa("When did they do something?", "last July"),
        qa("What did they do?", "They went to the beach"),
    ]
    # Our formatting writes the same sequence back (LMOps closes with "</END></s>"; the
    # paper's rendering shows a space before </s>).
    ours = cook_example(text1, pairs1) + cook_example(text2, pairs2)
    assert ours == TABLE13.replace(" </s>", "</s>")


def test_cook_read_and_pairs_are_lmops_strings():
    assert cook_read("A text.") == "<s> <CON> A text. </CON>\n\n"
    assert cook_read("") == "<s>"
    assert (
        cook_pairs([qa("Q1?", "A1"), qa("Q2?", "A2")])
        == "<QUE> Q1? <ANS> A1 </END>\n\n<QUE> Q2? <ANS> A2 </END>"
    )


def test_table7_option_and_cot_forms():
    q = question_text("Which?", ["red", "blue"], cot=True)
    assert q == "Which?\nOptions:\n- red\n- blue\nLet's think step by step."
    assert answer_text("red", "Roses are red.") == "Roses are red.\nTherefore, the answer is red"
    assert cook_pairs([qa(q, "x")]).startswith("<QUE> Which?\nOptions:\n- red")


def test_parsing_counts_every_rule():
    generated = (
        "<QUE> Good? <ANS> yes </END>\n\n"
        "<QUE> Two answers? <ANS> a <ANS> b </END>\n\n"
        "No marker? <ANS> c </END>\n\n"
        "<QUE> Empty answer? <ANS>   </END>\n\n"
        "<QUE> good? <ANS> duplicate, other case </END>\n\n"
        "<QUE> Cut off? <ANS> becau"
    )
    counts = ParseCounts()
    assert parse_pairs(generated, counts) == [qa("Good?", "yes")]
    assert counts.as_dict() == {
        "kept": 1,
        "ans_count": 1,
        "duplicate_question": 1,
        "empty_answer": 1,
        "no_question": 1,
        "unterminated": 1,
    }


def test_text_after_eos_is_not_this_example():
    counts = ParseCounts()
    out = "<QUE> A? <ANS> b </END></s><s> <CON> next text </CON>\n\n<QUE> C? <ANS> d </END>"
    assert parse_pairs(out, counts) == [qa("A?", "b")]
    assert counts.as_dict() == {"kept": 1}


def test_pair_filters():
    context = "Paris is the capital of France."
    counts = ParseCounts()
    pairs = parse_pairs(
        "<QUE> Capital? <ANS> Paris </END>"
        "<QUE> Repeat the text. <ANS> Paris is the capital\nof France. </END>"
        "<QUE> Long? <ANS> " + "x" * 50 + " </END>",
        counts,
    )
    kept = filter_pairs(pairs, context, max_chars=40, counts=counts)
    assert kept == [qa("Capital?", "Paris")]
    assert counts.as_dict() == {"kept": 1, "copied_context": 1, "overlong": 1}
