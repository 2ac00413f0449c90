"""Pre-training format: raw texts and their instruction-response pairs as one M-shot text.

Instruction Pre-Training (Cheng et al. 2024, §2.2) diversifies the synthesized pairs with the
FLAN templates (Longpre et al. 2023) and joins each raw text to its pairs with the AdaptLLM
reading-comprehension templates (Cheng et al. 2023); the texts and pairs of M rounds are
concatenated into one M-shot pre-training example. A model pre-trained on fixed wording would
learn the wording, so every example draws its templates from a key (f"{seed}:{record_id}"):
the same key gives the same text, different keys spread over the templates.

A pair's format decides its template family: multiple choice when the instruction lists
options (the synthesizer writes `Options:` then `- option` lines, Table 7), chain of thought
when the pair carries the synthesizer's `Let's think step by step` / `Therefore, the answer
is`, free-form otherwise. Every template keeps the instruction and the response verbatim: they
only add the words around them. Japanese records get Japanese wording; other languages English.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from iptkit.hashing import keyed_choice
from iptkit.transforms.text.scripts import base_lang

Pair = dict[str, str]
Example = tuple[str, list[Pair]]

# Pair templates: "{instruction}" and "{response}" each appear once, and nothing else is
# substituted, so a brace inside a text or a pair is never read as a field.
FREE_FORM_EN = (
    "Question: {instruction}\nAnswer: {response}",
    "Q: {instruction}\nA: {response}",
    "{instruction}\n{response}",
    "{instruction}\nAnswer: {response}",
    "Answer the question based on the text above.\n{instruction}\n{response}",
    "Please answer this question: {instruction}\nAnswer: {response}",
    "Answer the following question.\n{instruction}\n{response}",
    "Next question: {instruction}\n{response}",
    "Question: {instruction}\n{response}",
)
MULTIPLE_CHOICE_EN = (
    "Question: {instruction}\nAnswer: {response}",
    "Q: {instruction}\nA: {response}",
    "{instruction}\nThe answer is: {response}",
    "Choose the correct option.\n{instruction}\nAnswer: {response}",
    "Pick your answer from the options below.\n{instruction}\n{response}",
    "Problem: {instruction}\nAnswer: {response}",
)
CHAIN_OF_THOUGHT_EN = (
    "Question: {instruction}\nAnswer: {response}",
    "Q: {instruction}\nA: {response}",
    "{instruction}\n{response}",
    "Answer the question, reasoning step by step.\n{instruction}\n{response}",
    "{instruction}\nGive your reasoning, then the answer.\n{response}",
    "Problem: {instruction}\nSolution: {response}",
)
FREE_FORM_JA = (
    "質問: {instruction}\n回答: {response}",
    "Q: {instruction}\nA: {response}",
    "{instruction}\n{response}",
    "問: {instruction}\n答: {response}",
    "上の文章に基づいて質問に答えてください。\n{instruction}\n{response}",
    "次の質問に答えてください: {instruction}\n回答: {response}",
    "質問: {instruction}\n{response}",
)
MULTIPLE_CHOICE_JA = (
    "質問: {instruction}\n回答: {response}",
    "Q: {instruction}\nA: {response}",
    "{instruction}\n答え: {response}",
    "正しい選択肢を選んでください。\n{instruction}\n回答: {response}",
    "次の問題の答えを選択肢から選んでください。\n{instruction}\n正解: {response}",
)
CHAIN_OF_THOUGHT_JA = (
    "質問: {instruction}\n回答: {response}",
    "Q: {instruction}\nA: {response}",
    "{instruction}\n{response}",
    "段階的に考えて質問に答えてください。\n{instruction}\n{response}",
    "問: {instruction}\n考え方と答え: {response}",
)
# Text introductions (AdaptLLM's), with "{text}" and "{pairs}" each once.
INTRODUCTIONS_EN = (
    "{text}\n\n{pairs}",
    "Read the following article and answer the questions.\n\n{text}\n\n{pairs}",
    "{text}\n\nNow answer these questions:\n\n{pairs}",
    "Article: {text}\n\n{pairs}",
    "{text}\n\nAnswer the following questions based on the article:\n\n{pairs}",
    "Context: {text}\n\nUse evidence from the context to answer these questions:\n\n{pairs}",
    "Please answer some questions about the following article:\n{text}\n\n{pairs}",
    "{text}\n\nRespond to the following questions based on the above article:\n\n{pairs}",
)
INTRODUCTIONS_JA = (
    "{text}\n\n{pairs}",
    "次の文章を読んで質問に答えてください。\n\n{text}\n\n{pairs}",
    "{text}\n\n上の文章について、次の質問に答えてください。\n\n{pairs}",
    "記事: {text}\n\n{pairs}",
    "文章: {text}\n\nこの文章に基づいて、以下の質問に答えてください。\n\n{pairs}",
    "{text}\n\n文章の内容に基づいて次の質問に答えなさい。\n\n{pairs}",
)


@dataclass(frozen=True)
class TemplateSet:
    """The templates of one wording: a family per pair format and the text introductions."""

    free_form: tuple[str, ...]
    multiple_choice: tuple[str, ...]
    chain_of_thought: tuple[str, ...]
    introductions: tuple[str, ...]

    def family(self, fmt: str) -> tuple[str, ...]:
        return {
            "free_form": self.free_form,
            "multiple_choice": self.multiple_choice,
            "chain_of_thought": self.chain_of_thought,
        }[fmt]


ENGLISH = TemplateSet(FREE_FORM_EN, MULTIPLE_CHOICE_EN, CHAIN_OF_THOUGHT_EN, INTRODUCTIONS_EN)
JAPANESE = TemplateSet(FREE_FORM_JA, MULTIPLE_CHOICE_JA, CHAIN_OF_THOUGHT_JA, INTRODUCTIONS_JA)
TEMPLATE_SETS = {"en": ENGLISH, "ja": JAPANESE}
PAIR_FORMATS = ("free_form", "multiple_choice", "chain_of_thought")

# An "Options:" line (English or Japanese heading, either colon) followed by a "- option" line.
_OPTIONS = re.compile(r"^\s*(?:options|選択肢)\s*[:：]\s*\n\s*-\s*\S", re.IGNORECASE | re.MULTILINE)
_COT_MARKERS = ("let's think step by step", "therefore, the answer is", "段階的に考え")
EXAMPLE_SEPARATOR = "\n\n"
PAIR_SEPARATOR = "\n\n"


def template_set(lang: str | None) -> TemplateSet:
    """Japanese wording for Japanese (`ja`, `ja-JP`, `jpn_Jpan`), English for everything else."""
    return TEMPLATE_SETS.get(base_lang(lang) or "", ENGLISH)


def pair_format(pair: Pair) -> str:
    """The pair's format: chain of thought, multiple choice or free form (CoT wins where a
    multiple-choice question is answered with reasoning: its template asks for reasoning)."""
    both = f"{pair['instruction']}\n{pair['response']}".lower()
    if any(marker in both for marker in _COT_MARKERS):
        return "chain_of_thought"
    if _OPTIONS.search(pair["instruction"]):
        return "multiple_choice"
    return "free_form"


def fill(template: str, **fields: str) -> str:
    """The template with each `{field}` replaced once, left to right, by plain text: unlike
    `str.format`, braces inside the values (code, LaTeX) are kept as they are."""
    parts = re.split(r"\{(\w+)\}", template)
    return "".join(fields[p] if i % 2 else p for i, p in enumerate(parts))


def render_pair(pair: Pair, lang: str | None, key: str) -> str:
    """One pair in a template of its format, drawn from `key`."""
    fmt = pair_format(pair)
    template = keyed_choice(template_set(lang).family(fmt), key, "pair", fmt)
    return fill(
        template, instruction=pair["instruction"].strip(), response=pair["response"].strip()
    )


def render_example(text: str, pairs: list[Pair], lang: str | None, key: str) -> str:
    """One raw text and its pairs: the text alone when it has no pairs, else an introduction
    joining the text to its pairs. The pairs of one example share a template per format, as the
    few-shot demonstrations of FLAN do; different examples draw their own."""
    text = text.strip()
    if not pairs:
        return text
    rendered = PAIR_SEPARATOR.join(render_pair(pair, lang, key) for pair in pairs)
    intro = keyed_choice(template_set(lang).introductions, key, "intro")
    return fill(intro, text=text, pairs=rendered)


def render_augmented(examples: list[Example], lang: str | None, key: str) -> str:
    """The M-shot pre-training text of M (raw text, pairs) examples, separated by blank lines.

    Example i draws its templates from f"{key}:{i}", so the rounds of one record vary among
    themselves and the whole text is a function of the examples, the language and the key."""
    return EXAMPLE_SEPARATOR.join(
        render_example(text, pairs, lang, f"{key}:{i}") for i, (text, pairs) in enumerate(examples)
    )
