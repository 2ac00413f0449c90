"""Chat suites (MT-Bench style, LLM judge): questions, judge prompts, ratings, bootstrap
intervals, per-category rows; end to end with the tiny chat models as the model and, as the
judge, a tiny local model (transformers) and the test OpenAI-compatible server with fixed
verdicts (so the aggregation is checked against hand-computed numbers); compare and report."""

import json
from pathlib import Path

import pytest
from openai_server import ServerProcess

from iptkit.errors import EvalError, SpecError
from iptkit.eval.chat_judge_prompts import judge_prompt
from iptkit.eval.chat_questions import Question, read_questions, read_references
from iptkit.eval.chat_scores import (
    Judgment,
    Scoring,
    bootstrap,
    parse_rating,
    percentile_interval,
    summary_rows,
)
from iptkit.eval.compare import compare, to_markdown
from iptkit.eval.compare_chart import error_bar
from iptkit.eval.report_model_sections import eval_section
from iptkit.eval.run import EvalRequest, evaluate
from iptkit.eval.suites import SUITES_DIR, load_suite
from iptkit.eval.summary import load_summary

CATEGORIES = {"writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem",
              "humanities"}  # fmt: skip


def write_lines(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


# --- ratings, intervals, aggregation -------------------------------------------------------


@pytest.mark.parametrize(
    "text, rating",
    [
        ("The answer is fine. Rating: [[8]]", 8.0),
        ("Good start [[3]] but then... final: [[6.5]]", 6.5),  # the verdict closes the judgment
        ("評価：［［９］］", 9.0),  # full-width brackets and digits
        ("I would give it a 7/10.", 7.0),  # the judge stage's looser forms, after [[N]]
        ("Rating: [[11]]", None),  # outside 1-10
        ("The response is helpful and accurate.", None),
    ],
)
def test_parse_rating(text, rating):
    assert parse_rating(text) == rating


def test_percentile_interval_hand_computed():
    # 40 means: the 2.5% point is the 2nd smallest (index floor(1.0) = 1), the 97.5% point the
    # 39th (index ceil(39.0) - 1 = 38).
    assert percentile_interval([float(v) for v in range(40, 0, -1)]) == (2.0, 39.0)
    assert percentile_interval([5.0]) == (5.0, 5.0)


def test_bootstrap():
    constant = bootstrap([7.0, 7.0, 7.0], seed=1, resamples=200)
    assert (constant.value, constant.stderr, constant.interval, constant.n) == (
        7.0,
        0.0,
        (7.0, 7.0),
        3,
    )
    single = bootstrap([4.0], seed=1, resamples=200)
    assert (single.stderr, single.interval) == (None, (4.0, 4.0))
    # Two values 0 and 1: a resample's mean is 0, 0.5 or 1 with probability 1/4, 1/2, 1/4, so
    # the 95% interval is [0, 1] and the standard error sqrt(0.25 / 2) = 0.354.
    two = bootstrap([0.0, 1.0], seed=3, resamples=4000)
    assert two.value == 0.5 and two.interval == (0.0, 1.0)
    assert two.stderr == pytest.approx(0.3536, abs=0.01)
    assert bootstrap([1.0, 5.0, 9.0], 5, 300) == bootstrap([1.0, 5.0, 9.0], 5, 300)  # seeded
    assert bootstrap([1.0, 5.0, 9.0], 5, 300) != bootstrap([1.0, 5.0, 9.0], 6, 300)


def test_summary_rows_hand_computed():
    j = Judgment
    judgments = [
        # writing w1: ratings 8, 6, 7 and one without -> question mean 7
        j("w1", "writing", 0, 1, 8.0), j("w1", "writing", 1, 1, 6.0),
        j("w1", "writing", 0, 2, 7.0), j("w1", "writing", 1, 2, None),
        # writing w2: all 4 -> 4; the category: (7 + 4) / 2 = 5.5
        *(j("w2", "writing", s, t, 4.0) for s in (0, 1) for t in (1, 2)),
        # math m1: 10 and a failed request
        j("m1", "math", 0, 1, 10.0), j("m1", "math", 0, 2, None, "request_failed boom"),
    ]  # fmt: skip
    ratios = [("writing", "w1", 1.0), ("writing", "w1", 0.5), ("writing", "w2", 0.25),
              ("math", "m1", 1.0)]  # fmt: skip
    rows = summary_rows(Scoring("mt-bench-ja", "ja", 0, 200, 0.6), judgments, ratios)
    got = {(r.category, r.metric): r for r in rows}
    assert [(r.category, r.metric) for r in rows] == [
        (c, m)
        for c in ("writing", "math", "overall")
        for m in ("judge_score", "unparsed_rate", "target_char_ratio")
    ]
    writing = got["writing", "judge_score"]
    assert (writing.value, writing.n, writing.lang, writing.source) == (5.5, 2, "ja", "chat")
    assert writing.interval[0] <= 4.0 + 1e-9 and writing.interval[1] >= 7.0 - 1e-9
    assert got["math", "judge_score"].value == 10.0
    assert got["overall", "judge_score"].value == 7.0  # questions 7, 4 and 10
    assert got["overall", "judge_score"].n == 3
    assert (got["writing", "unparsed_rate"].value, got["writing", "unparsed_rate"].n) == (0.125, 8)
    assert got["writing", "unparsed_rate"].flag == (
        "mt-bench-ja/writing: 1 of 8 judgments have no rating "
        "(1 without a [[rating]], 0 failed requests)"
    )
    assert "1 failed requests" in got["math", "unparsed_rate"].flag
    assert got["overall", "unparsed_rate"].value == 0.2  # 2 of 10
    # character ratio over questions: w1 (1 + 0.5) / 2 = 0.75, w2 0.25 -> 0.5, under 0.6
    assert got["writing", "target_char_ratio"].value == 0.5
    assert "below 0.60" in got["writing", "target_char_ratio"].flag
    assert got["math", "target_char_ratio"].flag is None


# --- questions and judge prompts ------------------------------------------------------------


@pytest.mark.parametrize("name", ["mt-bench", "mt-bench-ja", "mt-bench-pl"])
def test_bundled_suites_cover_every_category(name):
    suite = load_suite(name)
    questions = read_questions(Path(suite.chat.questions), suite.chat.turns)
    assert {q.category for q in questions} == CATEGORIES
    assert all(len(q.turns) == 2 for q in questions)
    assert all(len(q.reference) == 2 for q in questions if q.needs_reference)
    assert suite.chat.lang == {"mt-bench": "en"}.get(name, name[-2:])


def test_question_file_errors(tmp_path):
    good = {"question_id": 1, "category": "writing", "turns": ["a", "b"]}
    path = write_lines(tmp_path / "q.jsonl", [good, {**good, "question_id": 1}])
    with pytest.raises(EvalError, match=r"q.jsonl:2: duplicate question_id '1'"):
        read_questions(path, 2)
    path = write_lines(tmp_path / "q.jsonl", [{**good, "category": "math"}])
    with pytest.raises(EvalError, match=r"q.jsonl:1: question 1 \(math\) .*reference"):
        read_questions(path, 2)
    path = write_lines(tmp_path / "q.jsonl", [{**good, "turns": ["only one"]}])
    with pytest.raises(EvalError, match=r"q.jsonl:1: 1 turn\(s\); the suite answers 2"):
        read_questions(path, 2)
    assert read_questions(path, 1)[0].turns == ("only one",)
    path = write_lines(tmp_path / "q.jsonl", [{**good, "turns": "not a list"}])
    with pytest.raises(EvalError, match=r"q.jsonl:1: `turns` must be a non-empty list"):
        read_questions(path, 2)
    # FastChat's separate reference answers fill in a question's missing reference
    path = write_lines(tmp_path / "q.jsonl", [{**good, "category": "math"}])
    refs = write_lines(
        tmp_path / "ref.jsonl", [{"question_id": 1, "choices": [{"turns": ["r1", "r2"]}]}]
    )
    assert read_questions(path, 2, read_references(refs))[0].reference == ("r1", "r2")


def test_judge_prompts():
    plain = Question("1", "writing", ("Q-one", "Q-two"))
    system, user = judge_prompt(plain, ("A-one",), 1)
    assert "[[rating]]" in user and "Q-one" in user and "A-one" in user
    assert "Reference" not in user and "Q-two" not in user
    math = Question("2", "math", ("Q-one", "Q-two"), ("R-one", "R-two"))
    _, user = judge_prompt(math, ("A-one",), 1)
    assert user.index("R-one") < user.index("A-one") and "R-two" not in user
    system, user = judge_prompt(math, ("A-one", "A-two"), 2)
    assert "second user question" in system and "[[rating]]" in system
    for text in ("Q-one", "Q-two", "A-one", "A-two", "R-one", "R-two"):
        assert text in user
    assert user.index("R-two") < user.index("A-one")  # the references come first


# --- suite schema ---------------------------------------------------------------------------


def test_suite_chat_section_errors(tmp_path):
    questions = write_lines(
        tmp_path / "q.jsonl", [{"question_id": 1, "category": "writing", "turns": ["a", "b"]}]
    )
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\n")
    with pytest.raises(SpecError, match="a suite names lm-eval `tasks`, a `chat` section"):
        load_suite(str(suite))
    suite.write_text(
        f"name: s\nchat:\n  questions: {questions.name}\n  judge:\n    model: no-such-folder\n"
    )
    with pytest.raises(SpecError, match="no such folder"):
        load_suite(str(suite))
    suite.write_text(
        f"name: s\nchat:\n  questions: {questions.name}\n  judge:\n    base_url: http://x/v1\n"
        "    model: j\n    save: true\n"
    )
    with pytest.raises(SpecError, match="save: pipeline stage options"):
        load_suite(str(suite))
    suite.write_text(suite.read_text().replace("    save: true\n", ""))
    ok = load_suite(str(suite), ["chat.samples=5", "chat.judge.model=other"])  # --set
    assert (ok.chat.judge.backend, ok.chat.judge.model, ok.chat.samples) == ("openai", "other", 5)
    assert ok.chat.questions == str(questions)  # relative to the suite file


# --- end to end -----------------------------------------------------------------------------


def chat_suite(tmp_path: Path, questions: Path, judge: str, lang: str, samples: int = 2) -> Path:
    path = tmp_path / "chat-suite.yaml"
    path.write_text(
        f"name: tiny-chat-{lang}\nchat:\n  questions: {questions}\n  lang: {lang}\n"
        f"  samples: {samples}\n  resamples: 200\n"
        "  answer: {max_new_tokens: 24, max_model_len: 2048, batch_size: 16}\n"
        f"  judge: {judge}\n",
        encoding="utf-8",
    )
    return path


def test_chat_suite_with_a_local_tiny_judge(tmp_path, tiny_chat_models):
    """The Japanese bundled questions, the constant model answering and judging: it learnt to
    answer every chat prompt "はい、わかりました。評価：[[7]]", so every judgment reads 7."""
    model = tiny_chat_models["constant"]
    questions = SUITES_DIR.parent / "questions" / "mt-bench-ja.jsonl"
    judge = f"{{model: {model}, max_model_len: 2048, max_new_tokens: 24, batch_size: 16}}"
    suite = load_suite(str(chat_suite(tmp_path, questions, judge, "ja")))
    out = tmp_path / "eval"
    summary = evaluate(EvalRequest(model=str(model), out=out, suite=suite))
    rows = {(r.category, r.metric): r for r in summary.rows}
    assert {c for c, _ in rows} == CATEGORIES | {"overall"}
    judged = [json.loads(line) for line in (out / "chat" / "judgments.jsonl").open()]
    assert len(judged) == 8 * 2 * 2  # questions x samples x turns
    for category in CATEGORIES | {"overall"}:
        assert rows[category, "unparsed_rate"].value == 0.0
        assert rows[category, "judge_score"].value == 7.0
        assert rows[category, "judge_score"].interval == (7.0, 7.0)
        assert rows[category, "target_char_ratio"].value == 1.0  # the answer is all Japanese
    assert rows["overall", "unparsed_rate"].n == 32
    answers = [json.loads(line) for line in (out / "chat" / "answers.jsonl").open()]
    assert all(a["turns"] == ["はい、わかりました。評価：[[7]]"] * 2 for a in answers)
    again = evaluate(EvalRequest(model=str(model), out=tmp_path / "again", suite=suite))
    assert again.rows == summary.rows  # seeded: the same rows, intervals included
    assert load_summary(out).rows == summary.rows  # intervals survive summary.json


@pytest.fixture(scope="module")
def judge_server(tmp_path_factory, tiny_chat_models):
    server = ServerProcess(tiny_chat_models["random"], tmp_path_factory.mktemp("judge"), "judge")
    yield server
    server.stop()


def test_chat_suite_with_an_endpoint_judge_hand_computed(tmp_path, tiny_chat_models, judge_server):
    """Fixed verdicts per question and turn from the test server: the rows are hand-computed.

    writing: q1 turn 1 [[9]], turn 2 [[5]] -> 7; q2 turn 1 [[4]], turn 2 no rating -> 4;
    writing = (7 + 4) / 2 = 5.5. math: q3 [[10]] and [[8]] -> 9. overall: (7 + 4 + 9) / 3 = 6.67.
    """
    questions = write_lines(
        tmp_path / "q.jsonl",
        [
            {"question_id": 1, "category": "writing", "turns": ["Q1-first", "Q1-second"]},
            {"question_id": 2, "category": "writing", "turns": ["Q2-first", "Q2-second"]},
            {"question_id": 3, "category": "math", "turns": ["Q3-first", "Q3-second"],
             "reference": ["R3-first", "R3-second"]},
        ],
    )  # fmt: skip
    judge_server.reset()
    # Turn 2's prompt holds turn 1's question too: its rules come first.
    judge_server.control(replies=[
        ["Q1-second", "Second answer is weaker. Rating: [[5]]"],
        ["Q1-first", "Rating: [[9]]"],
        ["Q2-second", "I cannot decide."],
        ["Q2-first", "[[4]]"],
        ["Q3-second", "Correct. [[8]]"],
        ["Q3-first", "Exactly the reference. [[10]]"],
    ])  # fmt: skip
    judge = f"{{base_url: '{judge_server.base_url}', model: judge, max_new_tokens: 32}}"
    suite = load_suite(str(chat_suite(tmp_path, questions, judge, "en", samples=2)))
    out = tmp_path / "eval"
    summary = evaluate(EvalRequest(model=str(tiny_chat_models["constant"]), out=out, suite=suite))
    rows = {(r.category, r.metric): r for r in summary.rows}
    assert rows["writing", "judge_score"].value == 5.5
    assert rows["writing", "judge_score"].n == 2
    assert rows["math", "judge_score"].value == 9.0
    assert rows["overall", "judge_score"].value == round(20 / 3, 6)
    assert rows["writing", "unparsed_rate"].value == 0.25  # q2's second turn, both samples
    assert "2 of 8 judgments have no rating" in rows["writing", "unparsed_rate"].flag
    assert ("overall", "target_char_ratio") not in rows  # English: no ratio rows
    bodies = judge_server.bodies()
    # One request per question and turn: the judge is greedy, and the constant model's two
    # samples are the same text, so their judge prompts are one request.
    assert len(bodies) == 3 * 2
    math_turn2 = next(b for b in bodies if "Q3-second" in json.dumps(b))
    text = json.dumps(math_turn2["messages"], ensure_ascii=False)
    assert "R3-first" in text and "R3-second" in text and "はい、わかりました" in text
    judged = [json.loads(line) for line in (out / "chat" / "judgments.jsonl").open()]
    assert sum(j["rating"] is None for j in judged) == 2 and len(judged) == 12


def test_compare_and_report_show_categories_with_intervals(tmp_path):
    from iptkit.eval.files import write_json
    from iptkit.eval.summary import Row, Summary

    def run(name: str, writing: float) -> Path:
        rows = [
            Row("arc_easy", "acc_norm", 0.5, 0.03, 100, "en", 5),
            Row("mt-bench-ja", "judge_score", writing, 0.4, 8, "ja", source="chat",
                category="writing", interval=(writing - 1, writing + 1)),
            Row("mt-bench-ja", "target_char_ratio", 0.9, 0.01, 8, "ja", source="chat",
                category="writing", interval=(0.88, 0.92)),
            Row("mt-bench-ja", "judge_score", 6.0, 0.5, 8, "ja", source="chat",
                category="math", interval=(5.0, 7.0)),
        ]  # fmt: skip
        summary = Summary("m", "mt-bench-ja", rows)
        write_json(tmp_path / name / "summary.json", summary.to_json())
        return tmp_path / name

    base, other = run("base", 5.0), run("tuned", 6.5)
    comparison = compare([load_summary(base), load_summary(other)])
    assert [(r.task, r.metric, r.category) for r in comparison.rows][1:3] == [
        ("mt-bench-ja", "judge_score", "writing"),
        ("mt-bench-ja", "target_char_ratio", "writing"),
    ]  # per category, the ratio beside the score
    table = to_markdown(comparison)
    assert (
        "| mt-bench-ja / writing (ja) | judge_score | 8 | 5.0000 ± 0.4000 [4, 6] | "
        "6.5000 ± 0.4000 [5.5, 7.5] | +1.5000 ± 0.5657 * |"
    ) in table
    assert "| arc_easy (5-shot) | acc_norm | 100 |" in table
    assert error_bar(comparison.rows[1].cells[0]) == (1.0, 1.0)
    assert error_bar(comparison.rows[0].cells[0]) == (0.03, 0.03)
    html = eval_section({"base": json.loads((base / "summary.json").read_text()),
                         "tuned": json.loads((other / "summary.json").read_text())})  # fmt: skip
    assert "mt-bench-ja by category (ja)" in html
    assert "<td>5 ± 0.4 [4, 6]</td><td>0.9 ± 0.01 [0.88, 0.92]</td>" in html
    assert html.count("<svg") == 1 and "6.5 [5.5, 7.5]" in html
