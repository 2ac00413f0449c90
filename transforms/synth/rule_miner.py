"""Rule-based miner: reading-comprehension pairs taken from a text by patterns, with no model.

The paper's "rule-based" ablation (Cheng et al. 2024, Table 4) and the CPU default of the demo:
AdaptLLM (Cheng et al. 2023, "Adapting Large Language Models via Reading Comprehension") turns
each raw text into reading-comprehension exercises mined from the text itself:

- summarize: the text's title (a short first line) or a stated topic ("This article explains X").
- word_to_text: write a sentence of the text from keywords it contains (or name its keywords),
  and definitions ("X is defined as Y", "X is a Y" opening a paragraph, "This is called X",
  「XとはY」, これを「X」と呼ぶ).
- nli: two adjacent sentences joined by a connective: "Therefore," marks entailment, "However,"
  contradiction, "Moreover," neutral; asked as a label or as a continuation.
- cause_effect: cause and effect around "because", "due to", "as a result", "so that",
  ", which is why" (なぜなら, ので, ため, そのため in Japanese).
- paraphrase: a sentence restated after "In other words," / "That is to say," (つまり, すなわち).
- completion: continue the text after a point drawn from the key.

The miner never invents facts: every response is a span of the text (a sentence, a clause, a
title, keywords as written) or a label (Yes/No/Maybe...). Fragments shorter than a few words are
not asked about, no response is the whole text, and each task gives at most `max_per_task` pairs
(AdaptLLM keeps two per kind), chosen and worded from the key (f"{seed}:{record_id}").
Pattern sets exist for English, Japanese (sentences split on 。！？, lengths counted in
characters) and Polish (iptkit's own: Polish connectives, definitions "X to Y", "Przez X
rozumie się Y", and labels); other languages get no pairs.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise

from iptkit.hashing import keyed_choice, keyed_index, keyed_order
from iptkit.transforms.synth.templates import fill
from iptkit.transforms.text.scripts import base_lang, script_counts, share
from iptkit.transforms.text.text_stats import char_mode_share

TASKS = ("summarize", "word_to_text", "nli", "cause_effect", "paraphrase", "completion")
SUPPORTED_LANGS = ("en", "ja", "pl")
MAX_PER_TASK = 2


@dataclass(frozen=True)
class Sentence:
    """A sentence of the text: its stripped text, where it starts and ends in the text, and its
    line (sentences of one line are adjacent; a heading is its own line)."""

    text: str
    start: int
    end: int
    line: int


@dataclass(frozen=True)
class Candidate:
    """A minable item: its task, its kind (which instruction templates ask about it) and the
    fields those templates fill in; `response` is the span of the text that answers (NLI's
    label templates answer with a label field instead)."""

    task: str
    kind: str
    fields: dict[str, str] = field(hash=False)


# --- Language rules ------------------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    """One language's patterns and length limits. Units are words (English) or non-space
    characters (Japanese)."""

    lang: str
    min_sentence: int  # a premise, a keyword sentence, a definition's sentence
    min_clause: int  # a cause, an effect, a hypothesis, a definition
    max_sentence: int  # longer "sentences" are lists, tables or junk
    title_units: tuple[int, int]
    # Connective opening a sentence that relates it to the previous one: regex -> label.
    nli_openers: tuple[tuple[re.Pattern[str], str], ...]
    effect_openers: re.Pattern[str]  # "Therefore, <effect>" after a cause
    cause_openers: re.Pattern[str]  # "なぜなら<cause>からだ" after an effect
    paraphrase_openers: re.Pattern[str]
    # Patterns inside one sentence, with named groups cause/effect, or a/b for a paraphrase.
    cause_effect_inside: tuple[tuple[re.Pattern[str], str], ...]
    paraphrase_inside: tuple[re.Pattern[str], ...]
    definitions: tuple[re.Pattern[str], ...]  # groups term, definition
    # Definitions only where the sentence opens a paragraph ("A contract is a legally binding
    # agreement..."): later in a paragraph "X is a Y" is mostly a comment, not a definition.
    opening_definitions: tuple[re.Pattern[str], ...]
    naming: re.Pattern[str]  # "This is called X": the term names the previous sentence
    topic: re.Pattern[str]  # group topic
    keyword: re.Pattern[str]
    stop_words: frozenset[str]


def _opener(words: str, comma: str) -> re.Pattern[str]:
    """A sentence starting with one of `words` and then `comma`; group `rest` is what follows."""
    return re.compile(rf"^(?P<connective>{words}){comma}(?P<rest>.+)$", re.DOTALL)


_EN_COMMA = r"\s*,\s+"
_EN_STOP = frozenset(
    """a about above after again against all almost also although always among an and another
    any are around as at be because been before being below between both but by can could did
    do does doing down during each either even ever every few for from further had has have
    having he her here hers him his how however if in into is it its itself just least less
    many may might more most much must my near never no nor not now of off often on once one
    only or other others our out over own per rather same she should since so some such than
    that the their them then there these they this those though through thus to too under
    until up upon very was we well were what when where whether which while who whom whose why
    will with within without would yet you your first second also used using make makes made
    like many much uses each between usually several""".split()
)
ENGLISH_RULES = Rules(
    lang="en",
    min_sentence=6,
    min_clause=4,
    max_sentence=60,
    title_units=(2, 15),
    nli_openers=(
        (
            _opener("Therefore|Thus|Hence|Accordingly|Consequently|For this reason", _EN_COMMA),
            "entailment",
        ),
        (
            _opener("However|On the contrary|In contrast|Nevertheless|Nonetheless", _EN_COMMA),
            "contradiction",
        ),
        (_opener("But|Yet", r"\s*,?\s+"), "contradiction"),
        (_opener("Moreover|Furthermore|In addition|Additionally|Also", _EN_COMMA), "neutral"),
    ),  # fmt: skip
    effect_openers=_opener(
        "As a result|Consequently|Therefore|Thus|Hence|For this reason|Accordingly", _EN_COMMA
    ),
    cause_openers=re.compile(r"(?!)"),  # English gives the cause after the effect inside one
    paraphrase_openers=_opener(
        "In other words|That is to say|That is|Namely|Put simply|Simply put|Put differently"
        "|In short|Similarly|Equally",
        _EN_COMMA,
    ),
    cause_effect_inside=(
        (re.compile(r"^(?:Because|Since) (?P<cause>[^,]+), (?P<effect>.+)$"), "effect"),
        (re.compile(r"^As a result of (?P<cause>[^,]+), (?P<effect>.+)$"), "effect"),
        (
            re.compile(
                r"^(?P<effect>.+?),? (?:because of|because|due to|owing to|on account of) "
                r"(?P<cause>.+)$"
            ),
            "cause",
        ),
        (re.compile(r"^(?P<cause>.+?),? so that (?P<effect>.+)$"), "purpose"),
        (
            re.compile(
                r"^(?P<cause>.+?), (?:which is why|and as a result|as a result|so) "
                r"(?P<effect>.+)$"
            ),
            "effect",
        ),
    ),  # fmt: skip
    paraphrase_inside=(
        re.compile(
            r"^(?P<a>.+?)[,;] (?:in other words|that is to say|that is|i\.e\.),? (?P<b>.+)$"
        ),
    ),
    definitions=(
        re.compile(
            r"^(?:An? |The )?(?P<term>[A-Za-z][\w'-]*(?: [\w'-]+){0,3}) "
            r"(?:is defined as|refers to|is the term for|means) (?P<definition>.+)$"
        ),
    ),
    opening_definitions=(
        re.compile(
            r"^(?:An? |The )?(?P<term>[A-Za-z][\w'-]*(?: [\w'-]+){0,2}) (?:is|are) "
            r"(?P<definition>(?:an?|the) .+)$"
        ),
    ),  # fmt: skip
    naming=re.compile(
        r"^(?:This|These|That|It|The \w+(?: \w+)?) (?:is|are) (?:called|known as|termed) "
        r"(?P<term>[^,;]+?)(?:,.*)?[.!]?$"
    ),
    topic=re.compile(
        r"^(?:This|The) (?:article|post|page|guide|chapter|essay|paper|report|section|book) "
        r"(?:is about|talks about|describes|explains|discusses|covers) (?P<topic>.+)$"
    ),
    keyword=re.compile(r"[A-Za-z][A-Za-z-]*[A-Za-z]"),  # "Bridgewater's": Bridgewater
    stop_words=_EN_STOP,
)

# Japanese: connectives open the sentence, usually followed by 、.
_JA_COMMA = r"、?"
JAPANESE_RULES = Rules(
    lang="ja",
    min_sentence=12,
    min_clause=6,
    max_sentence=150,
    title_units=(4, 40),
    nli_openers=(
        (_opener("だから|したがって|従って|そのため|このため|ゆえに|よって", _JA_COMMA), "entailment"),
        (_opener("しかしながら|しかし|ところが|だが|けれども|とはいえ", _JA_COMMA), "contradiction"),
        (_opener("また|さらに|加えて|その上|しかも", "、"), "neutral"),
    ),  # fmt: skip
    effect_openers=_opener("その結果|だから|したがって|従って|そのため|このため", _JA_COMMA),
    cause_openers=re.compile(
        r"^なぜなら(?:ば)?、?(?P<rest>.+?)(?:から|ため)(?:だ|です|である)?[。．！]?$", re.DOTALL
    ),
    paraphrase_openers=_opener("つまり|すなわち|言い換えれば|言い換えると|要するに|換言すれば", _JA_COMMA),
    cause_effect_inside=(
        # (な)ので / (の)ため、 closing a clause: "雨が降ったため、試合は中止された". Not もので,
        # and not のです, のでしょう, のではない, のである, のできる, where ので is no connective.
        (re.compile(r"^(?P<cause>.+?)(?<!も)(?:なので|ので|のため(?:に)?|ため(?:に)?)、(?P<effect>.+)$"), "effect"),
        (re.compile(r"^(?P<cause>.+?)(?<!も)な?ので(?![すしはあき、])(?P<effect>.+)$"), "effect"),
    ),
    paraphrase_inside=(re.compile(r"^(?P<a>.+?)、(?:つまり|すなわち)、?(?P<b>.+)$"),),
    definitions=(
        re.compile(r"^(?P<term>[^、。「」]{1,20}?)とは、?(?P<definition>.+?)(?:である|です|だ)?[。．]?$"),
        re.compile(r"^(?P<term>[^、。はがを]{2,20})は、?(?P<definition>.+のこと)(?:である|です|だ)[。]?$"),
    ),
    opening_definitions=(),
    naming=re.compile(r"^(?:これ|この\w{1,6}|それ)を[「『]?(?P<term>[^」』、。]{2,20})[」』]?と(?:呼|い|言)"),
    topic=re.compile(r"^(?:この|本)(?:記事|ページ|文章|章|稿|ガイド)では、?(?P<topic>.+?)(?:について|を)"),
    keyword=re.compile(r"[\u30a1-\u30fa\u30fc]{3,}|[\u4e00-\u9fff\u3005]{2,}"),
    stop_words=frozenset("場合 必要 可能 以上 以下 方法 時間 自分 今回 最近 一つ 二つ 三つ 今日".split()),
)  # fmt: skip

# Polish (iptkit's own patterns): spaced text like English, with Polish connectives, which often
# open a sentence without a comma ("Dlatego warto...", "Jednak nie...").
_PL_COMMA = r"\s*,?\s+"
_PL_STOP = frozenset(
    """a aby ale albo ani bardzo bez bo by być była było były będzie co czy dla do gdy gdzie go
    ich ile im innych i jak jaki jako jednak jego jej jest jeszcze jeśli już kiedy która które
    który lub ma mają może można mu na nad nam nas nie niż nich o od oraz po pod ponieważ przed
    przez przy również się są ta tak także te tego tej ten to tu tych tylko tym u w we więc wszystko
    z za ze że żeby jednym kilka wiele często zawsze bardziej najbardziej można należy swoje swój
    sobie jeden jedna dwa trzy""".split()
)
POLISH_RULES = Rules(
    lang="pl",
    min_sentence=6,
    min_clause=4,
    max_sentence=60,
    title_units=(2, 15),
    nli_openers=(
        (
            _opener(
                "Dlatego|Zatem|Tak więc|W związku z tym|Wobec tego|Stąd|Z tego powodu", _PL_COMMA
            ),
            "entailment",
        ),
        (
            _opener(
                "Jednak|Jednakże|Natomiast|Mimo to|Niemniej|Z drugiej strony|Ale|Lecz", _PL_COMMA
            ),
            "contradiction",
        ),
        (
            _opener("Ponadto|Co więcej|Dodatkowo|Poza tym|Również|Także|Oprócz tego", _PL_COMMA),
            "neutral",
        ),
    ),  # fmt: skip
    effect_openers=_opener(
        "W rezultacie|W efekcie|W konsekwencji|Dlatego|Z tego powodu|Wskutek tego|Zatem", _PL_COMMA
    ),
    cause_openers=re.compile(
        r"^(?:Dzieje się tak|Wynika to z tego|Stało się tak),? (?:ponieważ|bo|że) (?P<rest>.+)$",
        re.DOTALL,
    ),
    paraphrase_openers=_opener(
        "Innymi słowy|Inaczej mówiąc|To znaczy|Czyli|Krótko mówiąc|Mówiąc prościej", _PL_COMMA
    ),
    cause_effect_inside=(
        (
            re.compile(r"^(?:Ponieważ|Skoro|Dzięki temu, że) (?P<cause>[^,]+), (?P<effect>.+)$"),
            "effect",
        ),
        (
            re.compile(
                r"^(?P<effect>.+?),? (?:ponieważ|gdyż|bo|z powodu|dzięki temu, że|wskutek) (?P<cause>.+)$"
            ),
            "cause",
        ),
        (re.compile(r"^(?P<cause>.+?), (?:aby|żeby|by) (?P<effect>.+)$"), "purpose"),
        (
            re.compile(
                r"^(?P<cause>.+?), (?:dlatego|więc|w związku z czym|co sprawia, że) (?P<effect>.+)$"
            ),
            "effect",
        ),
    ),  # fmt: skip
    paraphrase_inside=(
        re.compile(r"^(?P<a>.+?)[,;] (?:czyli|to znaczy|innymi słowy|tj\.) (?P<b>.+)$"),
    ),
    definitions=(
        re.compile(
            r"^(?P<term>[A-ZĄĆĘŁŃÓŚŹŻ][\w-]*(?: [\w-]+){0,3}) (?:to|jest to|oznacza|nazywamy) "
            r"(?P<definition>.+)$"
        ),
        re.compile(r"^Przez (?P<term>[\w-]+(?: [\w-]+){0,3}) rozumie się (?P<definition>.+)$"),
    ),
    opening_definitions=(),
    naming=re.compile(
        r"^(?:Nazywa się to|Zjawisko to nazywamy|Nazywamy to|Jest to tak zwany|Jest to tzw\.|"
        r"Proces ten nazywa się|Nazywa się go) (?P<term>[^,;]+?)(?:,.*)?[.!]?$"
    ),
    topic=re.compile(
        r"^(?:Ten|Niniejszy) (?:artykuł|tekst|poradnik|rozdział|wpis) "
        r"(?:opisuje|omawia|dotyczy|wyjaśnia|przedstawia) (?P<topic>.+)$"
    ),
    keyword=re.compile(r"[^\W\d_][\w-]*[^\W\d_]"),
    stop_words=_PL_STOP,
)
RULES = {"en": ENGLISH_RULES, "ja": JAPANESE_RULES, "pl": POLISH_RULES}


def miner_rules(text: str, lang: str | None) -> Rules | None:
    """The rules for a record: its declared language's, or where none is declared, Japanese for
    a text mostly in kana and Han with some kana, English for one mostly in Latin letters."""
    base = base_lang(lang)
    if base:
        return RULES.get(base)
    counts = script_counts(text)
    if counts["kana"] and char_mode_share(counts) > 0.5:
        return JAPANESE_RULES
    if share(counts, {"latin"}) > 0.5:
        return ENGLISH_RULES
    return None


# --- Small pure helpers --------------------------------------------------------------------

_EN_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s+[\"'\u201c\u2018(\[]?[A-Z0-9])")
# Polish: the same, with Polish capitals and the low opening quote („).
_PL_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s+[\"'\u201e\u201c(\[]?[A-ZĄĆĘŁŃÓŚŹŻ0-9])")
_JA_END = re.compile(r"[。！？!?]+[」』）)]*")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr st prof sr jr vs etc e.g i.e no fig approx inc ltd".split()
    # Polish: np. (for example), m.in., tzw., tj., itd., itp., ok., wg, nr, ul., godz., zob.
    + "np m.in tzw tj itd itp ok wg nr ul godz zob por str inż mgr".split()
)
_LETTER = re.compile(r"[^\W\d_]")
_TRAILING = " \t.,;:!?。、．！？"
# How a sentence of running text ends (headings and list items do not).
_TERMINAL = tuple(".!?\"'\u201d\u2019)。！？」』）")


def split_sentences(text: str, lang: str) -> list[Sentence]:
    """The text's sentences with their offsets. English ends a sentence at . ! ? before a space
    and a capital or digit (not after Mr., e.g. or an initial); Japanese at 。！？ with any
    closing bracket, no space needed. A line break always ends a sentence."""
    out: list[Sentence] = []
    ends = {"ja": _JA_END, "pl": _PL_END}.get(lang, _EN_END)
    for line_no, match in enumerate(re.finditer(r"[^\n]+", text)):
        line = match.group()
        cuts = [0]
        for m in ends.finditer(line):
            if lang != "ja" and m.group().startswith(".") and _abbreviation_before(line, m.start()):
                continue
            cuts.append(m.end())
        cuts.append(len(line))
        for a, b in pairwise(cuts):
            piece = line[a:b]
            stripped = piece.strip()
            if stripped:
                start = match.start() + a + len(piece) - len(piece.lstrip())
                out.append(Sentence(stripped, start, start + len(stripped), line_no))
    return out


def _abbreviation_before(line: str, dot: int) -> bool:
    """Whether the word before the dot at `dot` is an abbreviation or an initial. Only the last
    few characters are looked at, so a long line costs linear time."""
    words = line[max(0, dot - 16) : dot].split()
    word = words[-1].lstrip("\"'(").lower() if words else ""
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def units(text: str, rules: Rules) -> int:
    """Length in words (English) or non-space characters (Japanese)."""
    return len(text.split()) if rules.lang != "ja" else len("".join(text.split()))


def looks_like_prose(text: str, rules: Rules) -> bool:
    """Mostly letters, and for spaced text mostly distinct words: keyword spam, symbol rows and
    number tables are not sentences to ask about."""
    chars = "".join(text.split())
    if not chars or len(chars) - len(_LETTER.sub("", chars)) < 0.6 * len(chars):
        return False
    if rules.lang == "ja":
        return True
    words = text.lower().split()
    return len(set(words)) >= 0.6 * len(words)


def is_sentence(s: Sentence, rules: Rules) -> bool:
    """A sentence worth asking about: prose, at least `min_sentence` and at most
    `max_sentence` units."""
    return rules.min_sentence <= units(s.text, rules) <= rules.max_sentence and looks_like_prose(
        s.text, rules
    )


def is_clause(text: str, rules: Rules) -> bool:
    return units(text, rules) >= rules.min_clause and looks_like_prose(text, rules)


def bare(text: str) -> str:
    """A clause without its closing punctuation, to quote inside an instruction."""
    return text.strip().rstrip(_TRAILING)


def keyword_counts(sentences: list[Sentence], rules: Rules) -> Counter[str]:
    """How often each candidate keyword (lower-cased) occurs in the text."""
    return Counter(
        w.lower()
        for s in sentences
        for w in rules.keyword.findall(s.text)
        if w.lower() not in rules.stop_words and (rules.lang == "ja" or len(w) >= 4)
    )


def sentence_keywords(sentence: str, counts: Counter[str], rules: Rules, k: int = 3) -> list[str]:
    """The sentence's `k` most salient keywords, as written in it: words the text repeats (its
    topic) or long ones, most frequent first, then longest, then first written. Fewer than `k`
    when the sentence has fewer."""
    long_word = 4 if rules.lang == "ja" else 9
    seen: dict[str, tuple[int, int, int, str]] = {}
    for pos, word in enumerate(rules.keyword.findall(sentence)):
        low = word.lower()
        count = counts.get(low, 0)
        if low not in seen and count and (count >= 2 or len(word) >= long_word):
            seen[low] = (-count, -len(word), pos, word)
    return [entry[3] for entry in sorted(seen.values())[:k]]


# --- Miners, one per task: each yields candidates in text order ----------------------------


def _adjacent(sentences: list[Sentence]) -> Iterator[tuple[Sentence, Sentence]]:
    for first, second in pairwise(sentences):
        if first.line == second.line:
            yield first, second


def _summarize(text: str, sentences: list[Sentence], rules: Rules, key: str) -> Iterator[Candidate]:
    lines = [line.strip() for line in text.strip().split("\n") if line.strip()]
    low, high = rules.title_units
    if len(lines) >= 2 and sum(is_sentence(s, rules) for s in sentences) >= 2:
        title = lines[0]
        if (
            low <= units(title, rules) <= high
            and not title.endswith(tuple(".,;:。、，"))
            and looks_like_prose(title, rules)
        ):
            yield Candidate("summarize", "title", {"response": title})
    for s in sentences:
        m = rules.topic.match(s.text)
        if m and is_clause(bare(m["topic"]), rules):
            yield Candidate("summarize", "topic", {"response": bare(m["topic"])})


def _word_to_text(
    text: str, sentences: list[Sentence], rules: Rules, key: str
) -> Iterator[Candidate]:
    previous: Sentence | None = None
    for s in sentences:
        opens = previous is None or previous.line != s.line
        for pattern in rules.definitions + (rules.opening_definitions if opens else ()):
            m = pattern.match(s.text)
            if m and is_clause(bare(m["definition"]), rules) and _is_term(m["term"], rules):
                yield Candidate(
                    "word_to_text",
                    "definition",
                    {"term": m["term"].strip(), "response": bare(m["definition"])},
                )
                break
        m = rules.naming.match(s.text)
        if m and previous and previous.line == s.line and is_sentence(previous, rules):
            term = bare(m["term"])
            if _is_term(term, rules):
                yield Candidate(
                    "word_to_text", "naming", {"sentence": previous.text, "response": term}
                )
        previous = s
    counts = keyword_counts(sentences, rules)
    joiner = "、" if rules.lang == "ja" else ", "
    for s in sentences:
        if not is_sentence(s, rules):
            continue
        words = sentence_keywords(s.text, counts, rules)
        if len(words) == 3:
            yield Candidate(
                "word_to_text",
                "keywords",
                {"keywords": joiner.join(words), "sentence": s.text, "response": s.text},
            )


# Words that make a would-be English term a clause ("In practice this means..."), not a name.
_NOT_IN_TERMS = {
    "en": frozenset(
        "it its this that these those there they he she we you i which what who in at on for with"
        " by as if when".split()
    ),
    "pl": frozenset(
        "to ten ta te tym tego tej dlatego jednak natomiast ponadto zatem więc także również on"
        " ona ono oni one my wy ja ty co kto który która które gdy kiedy jeśli jak w we na z ze do"
        " od przy dla po o a i ale czy nie się jest są".split()
    ),
}


def _is_term(term: str, rules: Rules) -> bool:
    """A name to ask about: short, prose, and in English without pronouns or a preposition."""
    if rules.lang == "ja":
        return 1 <= units(term, rules) <= 20 and looks_like_prose(term, rules)
    words = term.strip().lower().split()
    excluded = _NOT_IN_TERMS.get(rules.lang, frozenset())
    return bool(words) and not excluded & set(words) and looks_like_prose(term, rules)


_NLI_ANSWERS = {
    "en": {
        "entailment": {"yes_no": "Yes", "connective_answer": "Therefore", "relation": "Entailment"},
        "contradiction": {
            "yes_no": "No",
            "connective_answer": "However",
            "relation": "Contradiction",
        },
        "neutral": {"yes_no": "Maybe", "connective_answer": "Moreover", "relation": "Neutral"},
    },
    "pl": {
        "entailment": {"yes_no": "Tak", "connective_answer": "Dlatego", "relation": "Wynikanie"},
        "contradiction": {
            "yes_no": "Nie",
            "connective_answer": "Jednak",
            "relation": "Sprzeczność",
        },
        "neutral": {"yes_no": "Może", "connective_answer": "Ponadto", "relation": "Neutralność"},
    },
    "ja": {
        "entailment": {"yes_no": "はい", "connective_answer": "したがって", "relation": "含意"},
        "contradiction": {"yes_no": "いいえ", "connective_answer": "しかし", "relation": "矛盾"},
        "neutral": {
            "yes_no": "どちらとも言えない",
            "connective_answer": "また",
            "relation": "中立",
        },
    },
}


def _nli(text: str, sentences: list[Sentence], rules: Rules, key: str) -> Iterator[Candidate]:
    for premise, second in _adjacent(sentences):
        for pattern, label in rules.nli_openers:
            m = pattern.match(second.text)
            if m:
                if is_sentence(premise, rules) and is_clause(m["rest"], rules):
                    fields = {
                        "premise": premise.text,
                        "hypothesis": _capitalize(m["rest"].strip(), rules),
                        "continuation": m["rest"].strip(),
                        "connective": m["connective"],
                        **_NLI_ANSWERS[rules.lang][label],
                    }
                    yield Candidate("nli", "nli", fields)
                break


def _capitalize(text: str, rules: Rules) -> str:
    """A hypothesis read on its own starts with a capital (it followed "Therefore, ")."""
    return text if rules.lang == "ja" else text[:1].upper() + text[1:]


def _cause_effect(
    text: str, sentences: list[Sentence], rules: Rules, key: str
) -> Iterator[Candidate]:
    for first, second in _adjacent(sentences):
        if not is_sentence(first, rules):
            continue
        m = rules.effect_openers.match(second.text)
        if m and is_clause(m["rest"], rules):
            yield Candidate(
                "cause_effect", "effect", {"cause": first.text, "response": m["rest"].strip()}
            )
        m = rules.cause_openers.match(second.text)
        if m and is_clause(m["rest"], rules):
            yield Candidate(
                "cause_effect", "cause", {"effect": first.text, "response": bare(m["rest"])}
            )
    for s in sentences:
        if not looks_like_prose(s.text, rules) or units(s.text, rules) > rules.max_sentence:
            continue
        for pattern, kind in rules.cause_effect_inside:
            m = pattern.match(s.text)
            if not m:
                continue
            cause, effect = bare(m["cause"]), bare(m["effect"])
            if is_clause(cause, rules) and is_clause(effect, rules):
                if kind == "cause":
                    yield Candidate("cause_effect", "cause", {"effect": effect, "response": cause})
                else:
                    yield Candidate("cause_effect", kind, {"cause": cause, "response": effect})
                break


def _paraphrase(
    text: str, sentences: list[Sentence], rules: Rules, key: str
) -> Iterator[Candidate]:
    for first, second in _adjacent(sentences):
        m = rules.paraphrase_openers.match(second.text)
        if m and is_sentence(first, rules) and is_clause(m["rest"], rules):
            yield Candidate(
                "paraphrase",
                "paraphrase",
                {
                    "sentence": first.text,
                    "connective": m["connective"],
                    "response": m["rest"].strip(),
                },
            )
    for s in sentences:
        for pattern in rules.paraphrase_inside:
            m = pattern.match(s.text)
            if m and is_clause(m["a"], rules) and is_clause(bare(m["b"]), rules):
                yield Candidate(
                    "paraphrase",
                    "paraphrase",
                    {"sentence": bare(m["a"]), "connective": "", "response": bare(m["b"])},
                )


def _completion(
    text: str, sentences: list[Sentence], rules: Rules, key: str
) -> Iterator[Candidate]:
    """One continuation: the sentence (with the next one where it follows on the same line)
    after a cut drawn from the key, asked about from the two sentences before the cut (the text
    itself is shown above the pairs, so the whole first part would only repeat it)."""
    body = [
        i for i, s in enumerate(sentences) if is_sentence(s, rules) and s.text.endswith(_TERMINAL)
    ]
    if len(body) < 4:
        return
    cut = 1 + keyed_index(len(body) - 2, key, "completion")  # 1 .. n-2: a sentence follows
    after = sentences[body[cut]]
    following = sentences[body[cut] + 1]
    if following.line == after.line and is_sentence(following, rules):
        response = text[after.start : following.end]
    else:
        response = after.text
    joiner = "" if rules.lang == "ja" else " "
    before = joiner.join(sentences[i].text for i in body[max(0, cut - 2) : cut])
    yield Candidate("completion", "completion", {"before": before, "response": response})


Miner = Callable[[str, list[Sentence], Rules, str], Iterator[Candidate]]
MINERS: dict[str, Miner] = {
    "summarize": _summarize,
    "word_to_text": _word_to_text,
    "nli": _nli,
    "cause_effect": _cause_effect,
    "paraphrase": _paraphrase,
    "completion": _completion,
}

# --- Instructions: (instruction, response) templates per language and kind -----------------
# A response template is "{response}" (a span of the text) or a label field.

_EN_YES_NO = "\nOptions:\n- Yes\n- No\n- Maybe"
_JA_YES_NO = "\n選択肢:\n- はい\n- いいえ\n- どちらとも言えない"
_PL_YES_NO = "\nOpcje:\n- Tak\n- Nie\n- Może"
INSTRUCTIONS: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {
    "en": {
        "title": (
            ("What is a potential title for this text?", "{response}"),
            ("Write a title for the above article.", "{response}"),
            ("Generate a short title for this text.", "{response}"),
        ),
        "topic": (
            ("What is this text about?", "{response}"),
            ("Briefly summarize the topic of the article.", "{response}"),
        ),
        "keywords": (
            ("Concepts: {keywords}\nWrite a sentence that includes all these words.", "{response}"),
            ("Keywords: {keywords}\nFind the sentence in the text that includes all these keywords.", "{response}"),
            ("Here are some concepts: {keywords}\nWhat is a sentence about these concepts in the article?", "{response}"),
            ("Sentence: {sentence}\nWhat are the keywords in this sentence?", "{keywords}"),
        ),
        "definition": (
            ("What is the definition of \"{term}\"?", "{response}"),
            ("Explain the meaning of \"{term}\".", "{response}"),
            ("How does the text define {term}?", "{response}"),
        ),
        "naming": (
            ("{sentence}\nWhat is this called?", "{response}"),
            ("What term does the text use for the following?\n{sentence}", "{response}"),
        ),
        "nli": (
            ("Premise: \"{premise}\"\nHypothesis: \"{hypothesis}\"\nDoes the premise entail the hypothesis?" + _EN_YES_NO, "{yes_no}"),
            ("Based on the sentence \"{premise}\", is the sentence \"{hypothesis}\" true?" + _EN_YES_NO, "{yes_no}"),
            ("Sentence 1: \"{premise}\"\nSentence 2: \"{hypothesis}\"\nWhich word best connects them?\nOptions:\n- Therefore\n- However\n- Moreover", "{connective_answer}"),
            ("Assess the relationship between sentence 1: \"{premise}\" and sentence 2: \"{hypothesis}\". Is it entailment, neutral or contradiction?", "{relation}"),
            ("{premise} {connective},\nHow do you finish this sentence?", "{continuation}"),
            ("Complete the following text: {premise} {connective},", "{continuation}"),
        ),
        "effect": (
            ("What is the effect of \"{cause}\"?", "{response}"),
            ("Here is a premise: {cause}\nWhat is the effect?", "{response}"),
            ("What happens as a result of the following?\n{cause}", "{response}"),
        ),
        "cause": (
            ("What is the cause of \"{effect}\"?", "{response}"),
            ("Here is a result: {effect}\nWhat is the cause?", "{response}"),
            ("According to the text, why is the following the case? {effect}", "{response}"),
        ),
        "purpose": (
            ("What is the purpose of \"{cause}\"?", "{response}"),
            ("Why is the following done? {cause}", "{response}"),
        ),
        "paraphrase": (
            ("Restate the following sentence in other words: {sentence}", "{response}"),
            ("\"{sentence}\" In other words?", "{response}"),
            ("How does the text rephrase the statement \"{sentence}\"?", "{response}"),
        ),
        "completion": (
            ("How would you continue the text after \"{before}\"?", "{response}"),
            ("Here is part of the text: {before}\nWhat comes next?", "{response}"),
            ("Complete the passage: {before}", "{response}"),
        ),
    },
    "ja": {
        "title": (
            ("この文章にふさわしいタイトルは何ですか？", "{response}"),
            ("上の文章の見出しを書いてください。", "{response}"),
        ),
        "topic": (
            ("この文章は何について書かれていますか？", "{response}"),
            ("この記事の主題を簡潔に答えてください。", "{response}"),
        ),
        "keywords": (
            ("キーワード: {keywords}\nこれらの言葉をすべて含む文を書いてください。", "{response}"),
            ("次の言葉をすべて含む文を本文から探してください: {keywords}", "{response}"),
            ("次の文のキーワードは何ですか？\n{sentence}", "{keywords}"),
        ),
        "definition": (
            ("{term}とは何ですか？", "{response}"),
            ("「{term}」の意味を説明してください。", "{response}"),
        ),
        "naming": (
            ("{sentence}\nこれを何と呼びますか？", "{response}"),
            ("次のことを本文では何と呼んでいますか？\n{sentence}", "{response}"),
        ),
        "nli": (
            ("前提: 「{premise}」\n仮説: 「{hypothesis}」\n前提から仮説を導けますか？" + _JA_YES_NO, "{yes_no}"),
            ("文1: 「{premise}」\n文2: 「{hypothesis}」\n二つの文をつなぐのに最も適切な言葉はどれですか？\n選択肢:\n- したがって\n- しかし\n- また", "{connective_answer}"),
            ("文1: 「{premise}」\n文2: 「{hypothesis}」\n二つの文の関係は含意、中立、矛盾のどれですか？", "{relation}"),
            ("次の文の続きを書いてください: {premise}{connective}、", "{continuation}"),
        ),
        "effect": (
            ("次のことの結果は何ですか？\n{cause}", "{response}"),
            ("原因: {cause}\nその結果どうなりますか？", "{response}"),
        ),
        "cause": (
            ("次のことの原因は何ですか？\n{effect}", "{response}"),
            ("結果: {effect}\nその理由は何ですか？", "{response}"),
        ),
        "purpose": (("次のことの目的は何ですか？\n{cause}", "{response}"),),
        "paraphrase": (
            ("次の文を言い換えてください: {sentence}", "{response}"),
            ("「{sentence}」とは、つまりどういうことですか？", "{response}"),
        ),
        "completion": (
            ("次の文章の続きを書いてください: {before}", "{response}"),
            ("「{before}」の次に続く文は何ですか？", "{response}"),
        ),
    },
    "pl": {
        "title": (
            ("Jaki tytuł pasowałby do tego tekstu?", "{response}"),
            ("Napisz tytuł do powyższego artykułu.", "{response}"),
        ),
        "topic": (
            ("O czym jest ten tekst?", "{response}"),
            ("Krótko podaj temat artykułu.", "{response}"),
        ),
        "keywords": (
            ("Pojęcia: {keywords}\nNapisz zdanie, które zawiera wszystkie te słowa.", "{response}"),
            ("Słowa kluczowe: {keywords}\nZnajdź w tekście zdanie, które zawiera wszystkie te słowa.", "{response}"),
            ("Zdanie: {sentence}\nJakie są słowa kluczowe tego zdania?", "{keywords}"),
        ),
        "definition": (
            ("Czym jest „{term}”?", "{response}"),
            ("Wyjaśnij znaczenie pojęcia „{term}”.", "{response}"),
            ("Jak tekst definiuje pojęcie {term}?", "{response}"),
        ),
        "naming": (
            ("{sentence}\nJak to się nazywa?", "{response}"),
            ("Jakiego terminu używa tekst na określenie tego?\n{sentence}", "{response}"),
        ),
        "nli": (
            ("Przesłanka: „{premise}”\nHipoteza: „{hypothesis}”\nCzy z przesłanki wynika hipoteza?" + _PL_YES_NO, "{yes_no}"),
            ("Zdanie 1: „{premise}”\nZdanie 2: „{hypothesis}”\nKtóre słowo najlepiej je łączy?\nOpcje:\n- Dlatego\n- Jednak\n- Ponadto", "{connective_answer}"),
            ("Jaka jest relacja między zdaniem „{premise}” a zdaniem „{hypothesis}”: wynikanie, neutralność czy sprzeczność?", "{relation}"),
            ("{premise} {connective}\nJak dokończysz to zdanie?", "{continuation}"),
        ),
        "effect": (
            ("Jaki jest skutek tego: „{cause}”?", "{response}"),
            ("Przyczyna: {cause}\nJaki jest skutek?", "{response}"),
        ),
        "cause": (
            ("Jaka jest przyczyna tego: „{effect}”?", "{response}"),
            ("Skutek: {effect}\nCo jest przyczyną?", "{response}"),
            ("Według tekstu, dlaczego tak jest? {effect}", "{response}"),
        ),
        "purpose": (
            ("W jakim celu: „{cause}”?", "{response}"),
            ("Po co się to robi? {cause}", "{response}"),
        ),
        "paraphrase": (
            ("Powiedz inaczej: {sentence}", "{response}"),
            ("„{sentence}” Innymi słowy?", "{response}"),
        ),
        "completion": (
            ("Jak dalej brzmi tekst po fragmencie „{before}”?", "{response}"),
            ("Oto fragment tekstu: {before}\nCo następuje dalej?", "{response}"),
        ),
    },
}  # fmt: skip


# --- The miner -----------------------------------------------------------------------------


def mine(
    text: str, lang: str | None, key: str, *, max_per_task: int = MAX_PER_TASK
) -> list[dict[str, str]]:
    """Instruction-response pairs ({"instruction", "response", "task"}) mined from the text.

    Per task, at most `max_per_task` candidates, drawn from `key`; the tasks come in an order
    drawn from `key`, each task's pairs together (AdaptLLM keeps a kind's demonstrations
    together, like few-shot examples). Empty for unsupported languages and for texts too short
    or too broken to have sentences worth asking about."""
    rules = miner_rules(text, lang)
    if rules is None:
        return []
    sentences = split_sentences(text, rules.lang)
    whole = text.strip()
    pairs: list[dict[str, str]] = []
    seen: set[str] = set()
    for task in keyed_order(TASKS, key, "tasks"):
        found = list(MINERS[task](text, sentences, rules, key))
        for i, candidate in enumerate(keyed_order(found, key, task)[:max_per_task]):
            template = keyed_choice(INSTRUCTIONS[rules.lang][candidate.kind], key, task, str(i))
            instruction = fill(template[0], **candidate.fields).strip()
            response = fill(template[1], **candidate.fields).strip()
            if not response or response == whole or instruction.lower() in seen:
                continue
            seen.add(instruction.lower())
            pairs.append({"instruction": instruction, "response": response, "task": task})
    return pairs
