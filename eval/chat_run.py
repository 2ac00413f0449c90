"""A chat suite's run: the model answers every question's turns, the judge grades each answer.

    OUT/chat/answers.jsonl     each sample's answers, turn by turn (or why a turn has none)
    OUT/chat/judgments.jsonl   each judgment: the judge's output and the rating read from it

Round by round, as FastChat's llm_judge does: turn 1 of every question and sample, then turn 2
with turn 1's answer in the conversation, then the judge over every answered turn (the
reference-guided prompt for math, reasoning and coding; the multi-turn prompt for turn 2). The
model is freed before the judge loads. Each sampled answer has its own seed (the suite's seed,
the question, the sample, the turn); a greedy category's samples are one request answered once,
as are identical judge prompts under a greedy judge.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path

from iptkit.eval.chat_infer import ChatModel
from iptkit.eval.chat_judge_prompts import judge_prompt
from iptkit.eval.chat_questions import Question, read_questions, read_references
from iptkit.eval.chat_scores import Judgment, Scoring, parse_rating, summary_rows
from iptkit.eval.chat_suite import ChatSection
from iptkit.eval.files import write_jsonl
from iptkit.eval.summary import Row
from iptkit.transforms.inference.core import GenerationRequest, SamplingSpec, sampling_seed
from iptkit.transforms.text.language_checks import MIN_SCRIPT_RATIO, min_ratio, target_char_ratio

CHAT_DIR = "chat"


@dataclass
class Answer:
    """One sample's answers to a question's turns; `error` stops it at the turn that failed."""

    question: Question
    sample: int
    turns: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict:
        q = self.question
        return {"question_id": q.id, "category": q.category, "sample": self.sample,
                "turns": self.turns, "error": self.error}  # fmt: skip


def _seed(seed: int, greedy: bool, *parts: object) -> int:
    """A request's sampling seed; 0 when greedy, so equal prompts make equal requests."""
    return 0 if greedy else sampling_seed(seed, "/".join(map(str, parts)))


def answer_questions(
    model: ChatModel, questions: list[Question], chat: ChatSection
) -> list[Answer]:
    """Every sample's answers, turn by turn; a failed turn ends that sample's conversation."""
    answers = [Answer(q, s) for q in questions for s in range(chat.samples)]
    for turn in range(chat.turns):
        live = [a for a in answers if a.error is None]
        by_sampling: dict[SamplingSpec, list[Answer]] = {}
        for a in live:
            by_sampling.setdefault(
                chat.answer.sampling(model.spec, a.question.category), []
            ).append(a)
        for sampling, group in by_sampling.items():
            requests = [
                model.request(
                    a.question.turns[turn],
                    _seed(chat.seed, sampling.greedy, a.question.id, a.sample, turn + 1),
                    shots=tuple(zip(a.question.turns[:turn], a.turns, strict=True)),
                )
                for a in group
            ]
            for a, generation in zip(group, model.generate(requests, sampling), strict=True):
                if generation.error:
                    a.error = f"turn {turn + 1}: {generation.error} {generation.detail}".strip()
                else:
                    a.turns.append(generation.text.strip())
    return answers


def judge_answers(
    judge: ChatModel, answers: list[Answer], chat: ChatSection
) -> tuple[list[Judgment], list[dict]]:
    """A judgment per sample and turn (failed answers included, as judgments with an error),
    and the rows of judgments.jsonl."""
    greedy = judge.spec.sampling.greedy
    asked: list[tuple[Answer, int, GenerationRequest]] = []
    for a in answers:
        for turn in range(1, len(a.turns) + 1):
            system, user = judge_prompt(a.question, tuple(a.turns), turn)
            seed = _seed(chat.seed, greedy, "judge", a.question.id, a.sample, turn)
            asked.append((a, turn, judge.request(user, seed, system)))
    outputs = judge.generate([r for _, _, r in asked])
    judgments, lines = [], []
    for (a, turn, _), generation in zip(asked, outputs, strict=True):
        q = a.question
        error = f"{generation.error} {generation.detail}".strip() if generation.error else None
        rating = None if error else parse_rating(generation.text)
        judgments.append(Judgment(q.id, q.category, a.sample, turn, rating, error))
        lines.append({"question_id": q.id, "category": q.category, "sample": a.sample,
                      "turn": turn, "rating": rating, "error": error,
                      "judgment": generation.text})  # fmt: skip
    for a in answers:  # turns never answered: judgments without a rating, counted
        for turn in range(len(a.turns) + 1, chat.turns + 1):
            q = a.question
            judgments.append(Judgment(q.id, q.category, a.sample, turn, None, a.error))
    return judgments, lines


def char_ratios(answers: list[Answer], lang: str) -> list[tuple[str, str, float]]:
    """(category, question id, ratio) for every answered turn whose prose has letters."""
    return [
        (a.question.category, a.question.id, ratio)
        for a in answers
        for text in a.turns
        if (ratio := target_char_ratio(text, lang)) is not None
    ]


def run_chat(model: str, suite: str, chat: ChatSection, device: str | None, out: Path) -> list[Row]:
    """Answer, judge and score a chat suite; writes OUT/chat/ and returns the summary rows."""
    references = read_references(Path(chat.references)) if chat.references else None
    questions = read_questions(Path(chat.questions), chat.turns, references)
    answerer = ChatModel(chat.answer.model_spec(model, device))
    answers = answer_questions(answerer, questions, chat)
    answerer.close()
    gc.collect()
    write_jsonl(out / CHAT_DIR / "answers.jsonl", [a.to_json() for a in answers])
    judge = ChatModel(chat.judge.model_spec())
    try:
        judgments, lines = judge_answers(judge, answers, chat)
    finally:
        judge.close()
    write_jsonl(out / CHAT_DIR / "judgments.jsonl", lines)
    english = chat.lang.split("-")[0] == "en"
    minimum = chat.min_char_ratio
    scoring = Scoring(
        task=suite, lang=chat.lang, seed=chat.seed, resamples=chat.resamples,
        min_char_ratio=min_ratio(MIN_SCRIPT_RATIO, chat.lang) if minimum is None else minimum,
    )  # fmt: skip
    return summary_rows(scoring, judgments, [] if english else char_ratios(answers, chat.lang))
