"""Pre-training format: raw texts and their instruction-response pairs as one M-shot text.

Instruction Pre-Training (Cheng et al. 2024, §2.2 and Figure 3) diversifies the synthesized
pairs with few-shot templates and joins each raw text to its pairs; the texts and pairs of M
rounds are concatenated into one M-shot pre-training example. What is the paper's and what is
iptkit's own here:

- The paper's (its released code, LMOps `instruction_pretrain/utils/read_compre_pt.py`,
  `get_patterns` and `format_one_pt_rc`): five layouts of a text and its pairs, `classic`
  (the text, then its pairs), `dialog` (the pairs as a two-person conversation),
  `numbered_questions` (all questions numbered, then all answers), `inline_few_shot` (the
  pairs but the last as worked examples, the last as the exercise) and `next_turn_dialog`
  (a conversation, then its next turn), weighted 80/5/5/5/5 when every round of the text has
  at least two pairs and `classic`/`dialog` 95/5 otherwise; the question-first inversion
  (pairs before the text, 5 in 100, classic and dialog only); options reformatted (a heading,
  item markers, an item end) with the answer given by its marker; and ONE pattern for a whole
  M-shot text: LMOps draws its pattern dictionary once per text from one seed, so every round
  of the text shares its pair patterns, layout and option format.
- iptkit's own: the inventory of patterns (`patterns/{en,ja,pl}.yaml`, written for this
  repository, grouped by the pair's task kind: free form, multiple choice, chain of thought),
  Japanese and Polish wording, and drawing every choice from a key (f"{seed}:{record_id}")
  through `iptkit.hashing`, so the same key gives the same text on any worker.

A pair's format decides its pattern family: multiple choice when the instruction ends with an
option list (the synthesizer writes `Options:` then `- option` lines, Table 7), chain of
thought when the pair carries the synthesizer's `Let's think step by step` / `Therefore, the
answer is`, free-form otherwise. The question and answer texts are kept verbatim, except an
option list, which is re-laid out (its options keep their text and order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from iptkit.errors import IptkitError
from iptkit.hashing import keyed_choice, keyed_weighted_choice
from iptkit.transforms.text.scripts import base_lang, script_counts
from iptkit.transforms.text.text_stats import char_mode_share

Pair = dict[str, str]
Example = tuple[str, list[Pair]]

PAIR_FORMATS = ("free_form", "multiple_choice", "chain_of_thought")
INVENTORY_LANGS = ("en", "ja", "pl")
# LMOps' rc_modes and weights (read_compre_pt.py, get_patterns): the last three need two pairs.
LAYOUT_WEIGHTS = {
    "classic": 80,
    "dialog": 5,
    "numbered_questions": 5,
    "inline_few_shot": 5,
    "next_turn_dialog": 5,
}
FEW_PAIR_LAYOUT_WEIGHTS = {"classic": 95, "dialog": 5}
LAYOUTS = tuple(LAYOUT_WEIGHTS)
QUESTION_FIRST_WEIGHTS = {True: 5, False: 95}  # LMOps' rc_inversion
INVERTIBLE = ("classic", "dialog")
# Between the pairs of a text and between the rounds of an M-shot text (LMOps draws these from
# its patterns' example separators: a blank line or two).
SEPARATORS = ("\n\n", "\n\n", "\n\n\n")

# Layout frames and their fields, each used exactly once in a frame.
FRAME_FIELDS = {
    "classic": ("text", "pairs"),
    "question_first": ("pairs", "text"),
    "dialog": ("text", "turns"),
    "numbered": ("text", "questions", "answers"),
    "next_turn": ("text", "turns", "turn"),
}
INLINE_FIELDS = {
    "head": ("text",),
    "example": ("question", "answer"),
    "test": ("question", "answer"),
}

# An option list: a heading line (English, Japanese or Polish) then "- option" lines; what
# follows the list (a chain-of-thought cue) is kept after it.
_HEADING = re.compile(r"^\s*(?:options|選択肢|opcje)\s*[:：]\s*$", re.IGNORECASE)
_COT_MARKERS = ("let's think step by step", "therefore, the answer is", "段階的に考え")
_FIELD = re.compile(r"\{(\w+)\}")

ROMAN = "i ii iii iv v vi vii viii ix x xi xii xiii xiv xv xvi xvii xviii xix xx".split()
MARKER_SEQUENCES: dict[str, tuple[str, ...]] = {
    "upper": tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    "lower": tuple("abcdefghijklmnopqrstuvwxyz"),
    "digits": tuple(str(i) for i in range(1, 27)),
    "roman": tuple(ROMAN),
    "roman_upper": tuple(r.upper() for r in ROMAN),
}
# Sequences only natural in one language's texts.
LANG_MARKER_SEQUENCES: dict[str, dict[str, tuple[str, ...]]] = {
    "ja": {
        "katakana": tuple("アイウエオカキクケコサシスセソタチツテトナニヌネノ"),
        "circled": tuple("①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬⑭⑮⑯⑰⑱⑲⑳"),
    },
}
MARKER_FORMATS = ("{m}.", "({m})", "{m})", "[{m}]", "{m}:")
BULLETS = ("-", "*", "+", "•", "--", "[-]")


def fill(template: str, **fields: str) -> str:
    """The template with each `{field}` replaced once, left to right, by plain text: unlike
    `str.format`, braces inside the values (code, LaTeX) are kept as they are."""
    parts = re.split(r"\{(\w+)\}", template)
    return "".join(fields[p] if i % 2 else p for i, p in enumerate(parts))


# --- The inventory --------------------------------------------------------------------------


@dataclass(frozen=True)
class PairPattern:
    """One way to write a pair: `q` around the question, `a` around the answer, `sep` between."""

    q: str
    a: str
    sep: str = "\n"

    def render(self, question: str, answer: str) -> str:
        return fill(self.q, question=question) + self.sep + fill(self.a, answer=answer)


@dataclass(frozen=True)
class InlineFrame:
    """An inline few-shot frame: the text's heading, a worked example, the exercise."""

    head: str
    example: str
    test: str


@dataclass(frozen=True)
class Inventory:
    """One language's patterns (patterns/LANG.yaml)."""

    lang: str
    pairs: dict[str, tuple[PairPattern, ...]]
    classic: tuple[str, ...]
    question_first: tuple[str, ...]
    dialog: tuple[str, ...]
    speakers: tuple[tuple[str, str], ...]
    numbered: tuple[str, ...]
    inline: tuple[InlineFrame, ...]
    next_turn: tuple[str, ...]
    option_headings: tuple[str, ...]

    @property
    def pair_count(self) -> int:
        return sum(len(patterns) for patterns in self.pairs.values())


def _check_fields(where: str, template: Any, fields: tuple[str, ...]) -> str:
    if not isinstance(template, str):
        raise IptkitError(f"{where}: expected a string, got {template!r}")
    found = _FIELD.findall(template)
    if sorted(found) != sorted(fields):
        raise IptkitError(
            f"{where}: {template!r} has fields {found}; it needs each of {list(fields)} once "
            "and no other"
        )
    return template


def parse_inventory(data: Any, source: str) -> Inventory:
    """An inventory from its YAML data; a missing or malformed entry is an error naming the file
    and the entry (`source` is the file's name)."""
    try:
        pairs: dict[str, tuple[PairPattern, ...]] = {}
        for fmt in PAIR_FORMATS:
            patterns = []
            for i, entry in enumerate(data["pairs"][fmt]):
                where = f"{source}: pairs.{fmt}[{i}]"
                if not isinstance(entry, dict) or set(entry) - {"q", "a", "sep"}:
                    raise IptkitError(f"{where}: expected {{q, a, sep?}}, got {entry!r}")
                patterns.append(
                    PairPattern(
                        _check_fields(f"{where}.q", entry.get("q"), ("question",)),
                        _check_fields(f"{where}.a", entry.get("a"), ("answer",)),
                        str(entry.get("sep", "\n")),
                    )
                )
            pairs[fmt] = tuple(patterns)
        layouts = data["layouts"]
        frames = {
            name: tuple(
                _check_fields(f"{source}: layouts.{name}[{i}]", t, fields)
                for i, t in enumerate(layouts[name])
            )
            for name, fields in FRAME_FIELDS.items()
        }
        inline = tuple(
            InlineFrame(
                **{
                    part: _check_fields(f"{source}: layouts.inline[{i}].{part}", frame[part], f)
                    for part, f in INLINE_FIELDS.items()
                }
            )
            for i, frame in enumerate(layouts["inline"])
        )
        speakers = tuple((str(a), str(b)) for a, b in layouts["speakers"])
        headings = tuple(str(h) for h in data["options"]["headings"])
    except (KeyError, TypeError, ValueError) as exc:
        raise IptkitError(f"{source}: malformed pattern inventory ({exc!r})") from None
    inventory = Inventory(
        lang=str(data.get("lang")),
        pairs=pairs,
        inline=inline,
        speakers=speakers,
        option_headings=headings,
        **frames,
    )
    empty = [name for name, value in vars(inventory).items() if not value]
    empty += [f"pairs.{fmt}" for fmt, patterns in pairs.items() if not patterns]
    if empty:
        raise IptkitError(f"{source}: empty {', '.join(empty)}")
    return inventory


@cache
def inventory(lang: str) -> Inventory:
    """The inventory of one of INVENTORY_LANGS, read once per process from the package data."""
    name = f"{lang}.yaml"
    text = resources.files("iptkit.transforms.synth").joinpath("patterns", name).read_text("utf-8")
    return parse_inventory(yaml.safe_load(text), f"transforms/synth/patterns/{name}")


def inventory_for(lang: str | None, text: str = "") -> Inventory:
    """Japanese and Polish wording for those languages (any tag whose base is `ja` or `pl`),
    English for everything else. A record without a language gets Japanese wording when its
    text is mostly kana and Han with some kana (as the rule miner decides)."""
    base = base_lang(lang) or ""
    if not base and text:
        counts = script_counts(text)
        base = "ja" if counts["kana"] and char_mode_share(counts) > 0.5 else ""
    return inventory(base if base in INVENTORY_LANGS else "en")


# --- Options --------------------------------------------------------------------------------


def split_options(instruction: str) -> tuple[str, list[str], str] | None:
    """(stem, options, rest) of an instruction with an option list of two or more `- ` lines
    under an options heading; None without one. `rest` is what follows the list."""
    lines = instruction.split("\n")
    for i, line in enumerate(lines):
        if not _HEADING.match(line):
            continue
        j = i + 1
        while j < len(lines) and re.match(r"^\s*-\s*\S", lines[j]):
            j += 1
        if j - i - 1 >= 2:
            options = [re.sub(r"^\s*-\s*", "", line).strip() for line in lines[i + 1 : j]]
            return "\n".join(lines[:i]).strip(), options, "\n".join(lines[j:]).strip()
    return None


@dataclass(frozen=True)
class OptionFormat:
    """How one text writes its option lists: a heading, a marker per position (a bullet, or a
    sequence such as A. B. C.), one option per line or all on one line, an item end."""

    heading: str
    markers: tuple[str, ...]
    lettered: bool
    inline: bool
    item_end: str

    def marker(self, i: int) -> str:
        return self.markers[i] if i < len(self.markers) else f"({i + 1})"

    def render(self, stem: str, options: list[str], rest: str) -> str:
        items = [f"{self.marker(i)} {o}{self.item_end}" for i, o in enumerate(options)]
        body = " ".join(items) if self.inline else "\n".join(items)
        head = f"{self.heading} " if self.inline and self.heading else self.heading
        block = (head + body) if self.inline else "\n".join(filter(None, (self.heading, body)))
        return "\n".join(filter(None, (stem, block, rest)))

    def answer(self, response: str, options: list[str]) -> str:
        """A response that is one of the options, with its marker when the markers name the
        options (A., (ii)...); other responses as written."""
        stripped = response.strip()
        if self.lettered and stripped in options:
            return f"{self.marker(options.index(stripped))} {stripped}"
        return response


def draw_option_format(inv: Inventory, key: str) -> OptionFormat:
    sequences = {**MARKER_SEQUENCES, **LANG_MARKER_SEQUENCES.get(inv.lang, {})}
    styles = [(b, None) for b in BULLETS] + [(f, s) for s in sequences for f in MARKER_FORMATS]
    fmt, sequence = keyed_choice(styles, key, "option_markers")
    if sequence is None:
        markers, lettered = (fmt,) * 26, False
    else:
        markers, lettered = tuple(fill(fmt, m=m) for m in sequences[sequence]), True
    return OptionFormat(
        heading=keyed_choice(inv.option_headings, key, "option_heading"),
        markers=markers,
        lettered=lettered,
        inline=keyed_weighted_choice((True, False), (1, 3), key, "option_inline"),
        item_end=keyed_weighted_choice((";", ""), (1, 2), key, "option_end"),
    )


# --- Pairs ----------------------------------------------------------------------------------


def pair_format(pair: Pair) -> str:
    """The pair's format: chain of thought, multiple choice or free form (CoT wins where a
    multiple-choice question is answered with reasoning: its patterns ask for reasoning)."""
    both = f"{pair['instruction']}\n{pair['response']}".lower()
    if any(marker in both for marker in _COT_MARKERS):
        return "chain_of_thought"
    if split_options(pair["instruction"]) is not None:
        return "multiple_choice"
    return "free_form"


@dataclass(frozen=True)
class Prepared:
    """A pair ready to lay out: its format, question (options re-laid out) and answer."""

    fmt: str
    question: str
    answer: str


def prepare(pair: Pair, options: OptionFormat) -> Prepared:
    question, answer = pair["instruction"].strip(), pair["response"].strip()
    found = split_options(question)
    if found is not None:
        stem, items, rest = found
        question, answer = options.render(stem, items, rest), options.answer(answer, items)
    return Prepared(pair_format(pair), question, answer)


# --- The style of one M-shot text -----------------------------------------------------------


@dataclass(frozen=True)
class Style:
    """Every choice of one M-shot text, drawn once from its key and kept across its rounds."""

    lang: str
    layout: str
    question_first: bool
    patterns: dict[str, PairPattern]
    classic: str
    question_first_frame: str
    dialog: str
    speakers: tuple[str, str]
    numbered: str
    question_markers: tuple[str, ...]
    inline: InlineFrame
    next_turn: str
    options: OptionFormat
    pair_separator: str
    round_separator: str


def layout_weights(min_pairs: int) -> dict[str, int]:
    """LMOps' weights: all five layouts when every round has two pairs or more, else the two
    that work with one pair."""
    return LAYOUT_WEIGHTS if min_pairs >= 2 else FEW_PAIR_LAYOUT_WEIGHTS


def draw_layout(key: str, min_pairs: int) -> tuple[str, bool]:
    """The layout of a text and whether its pairs come first, with LMOps' weights."""
    weights = layout_weights(min_pairs)
    layout = keyed_weighted_choice(tuple(weights), tuple(weights.values()), key, "layout")
    inverted = layout in INVERTIBLE and keyed_weighted_choice(
        tuple(QUESTION_FIRST_WEIGHTS), tuple(QUESTION_FIRST_WEIGHTS.values()), key, "inversion"
    )
    return layout, inverted


def draw_style(lang: str | None, key: str, min_pairs: int, text: str = "") -> Style:
    """The style of a text whose rounds have at least `min_pairs` pairs each (`text` decides
    the wording when `lang` is unset)."""
    inv = inventory_for(lang, text)
    layout, inverted = draw_layout(key, min_pairs)
    sequence = keyed_choice(("digits", "roman", "upper", "lower"), key, "question_sequence")
    marker = keyed_choice(MARKER_FORMATS, key, "question_marker")
    return Style(
        lang=inv.lang,
        layout=layout,
        question_first=inverted,
        patterns={fmt: keyed_choice(inv.pairs[fmt], key, "pair", fmt) for fmt in PAIR_FORMATS},
        classic=keyed_choice(inv.classic, key, "classic"),
        question_first_frame=keyed_choice(inv.question_first, key, "question_first"),
        dialog=keyed_choice(inv.dialog, key, "dialog"),
        speakers=keyed_choice(inv.speakers, key, "speakers"),
        numbered=keyed_choice(inv.numbered, key, "numbered"),
        question_markers=tuple(fill(marker, m=m) for m in MARKER_SEQUENCES[sequence]),
        inline=keyed_choice(inv.inline, key, "inline"),
        next_turn=keyed_choice(inv.next_turn, key, "next_turn"),
        options=draw_option_format(inv, key),
        pair_separator=keyed_choice(SEPARATORS, key, "pair_separator"),
        round_separator=keyed_choice(SEPARATORS, key, "round_separator"),
    )


def style_for(examples: list[Example], lang: str | None, key: str) -> Style:
    """The style of an M-shot text: the layouts open to it depend on its fewest pairs."""
    counts = [len(pairs) for _, pairs in examples if pairs]
    first = examples[0][0] if examples else ""
    return draw_style(lang, key, min(counts, default=0), first)


# --- Rendering ------------------------------------------------------------------------------


def _turns(style: Style, pairs: list[Prepared]) -> str:
    first, second = style.speakers
    return "\n".join(f"{first}: {p.question}\n{second}: {p.answer}" for p in pairs)


def _numbered(style: Style, values: list[str]) -> str:
    markers = style.question_markers
    return "\n".join(
        f"{markers[i] if i < len(markers) else f'({i + 1})'} {v}" for i, v in enumerate(values)
    )


def render_example(text: str, pairs: list[Pair], style: Style) -> str:
    """One raw text and its pairs in the style's layout; the text alone when it has no pairs.
    A layout that needs two pairs falls back to classic for a round with one."""
    text = text.strip()
    if not pairs:
        return text
    prepared = [prepare(pair, style.options) for pair in pairs]
    layout = style.layout if len(prepared) >= 2 or style.layout in INVERTIBLE else "classic"
    if layout in INVERTIBLE:
        if layout == "dialog":
            block = _turns(style, prepared)
        else:
            block = style.pair_separator.join(
                style.patterns[p.fmt].render(p.question, p.answer) for p in prepared
            )
        if style.question_first:
            return fill(style.question_first_frame, pairs=block, text=text)
        if layout == "dialog":
            return fill(style.dialog, text=text, turns=block)
        return fill(style.classic, text=text, pairs=block)
    if layout == "numbered_questions":
        return fill(
            style.numbered,
            text=text,
            questions=_numbered(style, [p.question for p in prepared]),
            answers=_numbered(style, [p.answer for p in prepared]),
        )
    if layout == "inline_few_shot":
        frame = style.inline
        examples = [fill(frame.example, question=p.question, answer=p.answer) for p in prepared]
        last = prepared[-1]
        test = fill(frame.test, question=last.question, answer=last.answer)
        return fill(frame.head, text=text) + style.pair_separator.join([*examples[:-1], test])
    return fill(  # next_turn_dialog
        style.next_turn,
        text=text,
        turns=_turns(style, prepared[:-1]),
        turn=_turns(style, prepared[-1:]),
    )


def render_with(style: Style, examples: list[Example]) -> str:
    """The M-shot text of the examples, every round in the one style."""
    return style.round_separator.join(render_example(t, p, style) for t, p in examples)


def render_augmented(examples: list[Example], lang: str | None, key: str) -> str:
    """The M-shot pre-training text of M (raw text, pairs) examples in ONE style drawn from the
    key (LMOps keeps one pattern dictionary across the rounds of a text), so the whole text is a
    function of the examples, the language and the key."""
    return render_with(style_for(examples, lang, key), examples)
