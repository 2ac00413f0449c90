"""judge: score parsing on crafted judge outputs, options, and the selection (top N, threshold,
ties, best-of-n per instruction); the stage with real tiny models runs in test_llm_stages.py."""

import pytest
from pydantic import ValidationError

from iptkit.transforms.inference.core import Generation
from iptkit.transforms.record import Record
from iptkit.transforms.stage import Drop
from iptkit.transforms.stages.judge import (
    BELOW,
    NOT_TOP,
    UNPARSED,
    JudgeConfig,
    group_of,
    judged_pair,
    parse_score,
    rubric_text,
    scored,
    select,
)


@pytest.mark.parametrize(
    ("output", "score"),
    [
        ("The answer is helpful and accurate.\n\nRating: [[7]]", 7),
        ("Rating: [[ 9 ]]", 9),
        ("[[8.5]]", 8.5),
        ("Score: [[6/10]]", 6),
        ("I would give this 7/10.", 7),
        ("Overall: 4 / 10", 4),
        ("Score: 7", 7),
        ("score = 3", 3),
        ("**Rating:** 8", 8),
        ("Rating is 5 because the response is short.", 5),
        ("評価：7", 7),
        ("評価: 6点", 6),
        ("回答は丁寧です。点数は８です。", 8),
        ("スコア：「9」", 9),
        ("10点中6点です。", 6),
        ("This deserves 9 out of 10.", 9),
        # The last verdict of the most trusted form wins over earlier mentions and other forms.
        ("Score: 3 at first sight, but after all Rating: [[8]]", 8),
        ("A 2/10 answer elsewhere would fail; this one: 6/10", 6),
        ("Rating: [[１０]]", 10),
    ],
)
def test_parse_score(output, score):
    assert parse_score(output) == score


@pytest.mark.parametrize(
    "output",
    [
        "",
        "The response is good.",
        "Rating: [[11]]",  # off the scale
        "Rating: [[0]]",
        "It has 3 steps and 12 lines.",
        "Version 1/100 of the answer",
        "評価：とても良い",
    ],
)
def test_unparseable_scores(output):
    assert parse_score(output) is None


def rec(i, score=None, source="a", response="r"):
    meta = {} if score is False else {"judge": {"score": score}}
    return Record(
        id=f"r{i}", source=source, text="q", kind="instruction",
        pairs=[{"instruction": "q", "response": response}], meta=meta,
    )  # fmt: skip


def test_scored_record_and_unparsed_policy():
    cfg = JudgeConfig(model="/tmp")
    out = scored(rec(1, False), Generation(text="Rating: [[7]]", new_tokens=5), cfg)
    assert out.meta["judge"] == {"score": 7.0, "model": "/tmp", "new_tokens": 5}
    drop = scored(rec(1, False), Generation(text="nice"), cfg)
    assert isinstance(drop, Drop) and drop.reason == UNPARSED and "nice" in drop.detail
    kept = scored(
        rec(1, False), Generation(text="nice"), JudgeConfig(model="/tmp", unparsed="keep")
    )
    assert kept.meta["judge"]["score"] is None and kept.meta["judge"]["output"] == "nice"
    failed = scored(rec(1, False), Generation(error="prompt_too_long", detail="d"), cfg)
    assert failed == Drop("prompt_too_long", "d")


def test_rubric_and_pair():
    r = rec(1, False, response="")
    assert judged_pair(r) is None
    pair = {"instruction": "use {x}", "response": "{response} is literal"}
    text = rubric_text("Q: {instruction}\nA: {response}", pair)
    assert text == "Q: use {x}\nA: {response} is literal"
    with pytest.raises(ValidationError, match="the rubric needs \\{response\\}"):
        JudgeConfig(model="/tmp", rubric="only {instruction}")


def _split(out):
    out = list(out)
    kept = [o.id for o in out if isinstance(o, Record)]
    dropped = {o[0].id: o[1].reason for o in out if not isinstance(o, Record)}
    return kept, dropped


def test_top_n_threshold_and_unscored():
    records = [rec(1, 9), rec(2, 3), rec(3, 7), rec(4, None), rec(5, 8), rec(6, 5)]
    kept, dropped = _split(select(records, 0, None, 2))
    assert kept == ["r4", "r1", "r5"]  # the unscored pass; the two best
    assert dropped == {"r3": NOT_TOP, "r6": NOT_TOP, "r2": NOT_TOP}
    kept, dropped = _split(select(records, 0, 6, None))
    assert sorted(kept) == ["r1", "r3", "r4", "r5"]
    assert dropped == {"r2": BELOW, "r6": BELOW}
    kept, dropped = _split(select(records, 0, 6, 2))
    assert sorted(kept) == ["r1", "r4", "r5"] and dropped["r3"] == NOT_TOP
    assert dropped["r2"] == BELOW


def test_ties_are_broken_by_hash_not_order():
    records = [rec(i, 7) for i in range(20)]
    first, _ = _split(select(records, 1, None, 5))
    again, _ = _split(select(list(reversed(records)), 1, None, 5))
    other, _ = _split(select(records, 2, None, 5))
    assert first == again and len(first) == 5
    assert first != other  # the seed decides, not the ids' order
    assert first != ["r0", "r1", "r2", "r3", "r4"]


def candidate(of, k, score, source="a"):
    """Respond's sample k of instruction `of`, scored."""
    meta = {"respond": {"sample": k, "of": of, "n": 3}, "judge": {"score": score}}
    return Record(
        id=f"{of}#r{k}", source=source, text="q", kind="instruction",
        pairs=[{"instruction": "q", "response": f"answer {k}"}], meta=meta,
    )  # fmt: skip


def _best_of_n(records, seed=0, top_n=1, threshold=None):
    """The stage's selection per instruction: records grouped by `group_of`, each group chosen
    by `select` (what Judge.run's ByGroup does)."""
    groups = {}
    for r in records:
        groups.setdefault(group_of(r, "instruction"), []).append(r)
    kept, dropped = [], {}
    for key in sorted(groups):
        k, d = _split(select(groups[key], seed, threshold, top_n))
        kept += k
        dropped.update(d)
    return kept, dropped


def test_per_instruction_keeps_the_best_response_of_each_instruction():
    cfg = JudgeConfig(model="/tmp", per="instruction", top_n=1)
    assert cfg.per == "instruction"
    records = [
        candidate("q1", 0, 6), candidate("q1", 1, 9), candidate("q1", 2, 4),
        candidate("q2", 0, 8, source="b"), candidate("q2", 2, 3, source="b"),  # q2#r1 was dropped
        rec(7, 5),  # one response, no samples: a group of its own, so it stays
    ]  # fmt: skip
    assert [group_of(r, "instruction") for r in records] == ["q1", "q1", "q1", "q2", "q2", "r7"]
    assert group_of(records[3], "source") == "b" and group_of(records[3], "overall") == ""
    kept, dropped = _best_of_n(records)
    assert kept == ["q1#r1", "q2#r0", "r7"]
    assert dropped == {"q1#r0": NOT_TOP, "q1#r2": NOT_TOP, "q2#r2": NOT_TOP}
    # Top 2 of each, or a threshold within each instruction's candidates.
    assert _best_of_n(records, top_n=2)[0] == ["q1#r1", "q1#r0", "q2#r0", "q2#r2", "r7"]
    assert _best_of_n(records, top_n=None, threshold=5)[1] == {"q1#r2": BELOW, "q2#r2": BELOW}


def test_best_of_n_ties_are_broken_by_hash():
    records = [candidate(f"q{i}", k, 7) for i in range(8) for k in range(3)]
    first, _ = _best_of_n(records, seed=1)
    again, _ = _best_of_n(list(reversed(records)), seed=1)
    other, _ = _best_of_n(records, seed=2)
    assert first == again and len(first) == 8
    assert {r.split("#")[0] for r in first} == {f"q{i}" for i in range(8)}
    assert first != other  # the seed decides which tied sample stays, not arrival order
    assert {r.split("#")[1] for r in first} != {"r0"}
