"""The judge's prompts: MT-Bench's single-answer grading, 1-10, verdict written "[[rating]]".

The layout follows FastChat's `llm_judge` (`data/judge_prompts.jsonl`: single-v1,
single-math-v1, single-v1-multi-turn, single-math-v1-multi-turn), in words of our own: a system
turn setting the judge's task, then the question and the answer between start and end markers;
for math, reasoning and coding the reference answer goes before the answer and the judge is told
to compare against it; for the second turn the judge reads the whole conversation and grades the
answer to the second question only. Every variant ends by asking for the rating in the
"[[rating]]" form, which `chat_scores.parse_rating` reads.
"""

from __future__ import annotations

from iptkit.eval.chat_questions import Question

_RATE = (
    "Start with a brief explanation and stay as objective as you can. Then give your rating "
    'from 1 to 10, written exactly in this form: "[[rating]]", as in "Rating: [[5]]".'
)

SYSTEM_SINGLE = "You are a helpful assistant."

INSTRUCTION_SINGLE = (
    "You are an impartial judge. Grade the quality of the AI assistant's answer to the user "
    "question below, weighing how helpful, relevant, accurate and deep it is, how much detail "
    "it gives and how creative it is. " + _RATE
)

INSTRUCTION_REFERENCE = (
    "You are an impartial judge. Grade the quality of the AI assistant's answer to the user "
    "question below, weighing correctness and helpfulness. A reference answer and the "
    "assistant's answer follow: compare the two, and name and correct any mistake in the "
    "assistant's answer. " + _RATE
)

SYSTEM_MULTI = (
    "You are an impartial judge. Grade the quality of the AI assistant's answer to the user's "
    "questions in the conversation below, weighing how helpful, relevant, accurate and deep it "
    "is, how much detail it gives and how creative it is. Grade only the assistant's answer to "
    "the second user question. " + _RATE
)

SYSTEM_MULTI_REFERENCE = (
    "You are an impartial judge. Grade the quality of the AI assistant's answer to the user's "
    "questions in the conversation below, weighing correctness and helpfulness. A reference "
    "answer to each question comes first: compare the assistant's answers with them, and name "
    "and correct any mistake. Grade only the assistant's answer to the second user question. "
    + _RATE
)


def _conversation(title: str, questions: tuple[str, ...], answers: tuple[str, ...]) -> str:
    lines = [f"<|The Start of {title}|>\n"]
    for question, answer in zip(questions, answers, strict=True):
        lines += [f"### User:\n{question}\n", f"### Assistant:\n{answer}\n"]
    lines.append(f"<|The End of {title}|>")
    return "\n".join(lines)


def judge_prompt(question: Question, answers: tuple[str, ...], turn: int) -> tuple[str, str]:
    """The judge's system and user turns grading the answer to turn `turn` (1-based) of
    `question`, given the model's answers to turns 1..turn."""
    reference = question.needs_reference
    if turn == 1:
        parts = [
            "[Instruction]",
            INSTRUCTION_REFERENCE if reference else INSTRUCTION_SINGLE,
            "",
            f"[Question]\n{question.turns[0]}",
            "",
        ]
        if reference:
            parts += [
                "[The Start of Reference Answer]",
                question.reference[0],
                "[The End of Reference Answer]",
                "",
            ]
        parts += [
            "[The Start of Assistant's Answer]",
            answers[0],
            "[The End of Assistant's Answer]",
        ]
        return SYSTEM_SINGLE, "\n".join(parts)
    asked = question.turns[:turn]
    user = _conversation("Assistant's Conversation with User", asked, answers[:turn])
    if reference:
        user = _conversation("Reference Answer", asked, question.reference[:turn]) + "\n\n\n" + user
    return (SYSTEM_MULTI_REFERENCE if reference else SYSTEM_MULTI), user
