"""The rule-based miner on real English and Japanese paragraphs: each task fires where its
pattern is present, every response is taken from the text, junk and short texts give nothing."""

import gzip
import json
from pathlib import Path

import pytest
import zstandard

from iptkit.transforms.synth.rule_miner import (
    ENGLISH_RULES,
    INSTRUCTIONS,
    JAPANESE_RULES,
    MINERS,
    POLISH_RULES,
    TASKS,
    keyword_counts,
    looks_like_prose,
    mine,
    miner_rules,
    sentence_keywords,
    split_sentences,
)

word_to_text_candidates = MINERS["word_to_text"]
DATA = Path(__file__).resolve().parents[1] / "pipelines" / "examples" / "data"

# Paragraphs written for these tests in the register of encyclopedia and news text, each with
# the connectives of one or more tasks.
CANALS = """\
The Canal Age in Britain

Before the railways, heavy goods in Britain moved slowly along rutted roads or around the coast by sea. A single horse could pull about two tons on a good road, but the same horse could tow thirty tons on a canal. Therefore, the cost of carrying coal fell sharply wherever a canal opened.

The Bridgewater Canal, completed in 1761, carried coal from the Duke of Bridgewater's mines at Worsley to Manchester. The price of coal in the city halved within a year because the canal was so much cheaper than packhorses. Many investors were impressed by these returns, so they poured money into new schemes across the country.

Canal building was hard manual work carried out by gangs of labourers called navvies. However, the engineers who planned the routes became famous figures of their time. Locks raised and lowered boats between different water levels so that a canal could cross hilly ground. In other words, a flight of locks acted as a staircase for boats climbing a valley side.

A summit level is defined as the highest stretch of a canal between two flights of locks. Water drained away from the summit every time a boat passed through, so engineers built reservoirs to feed it. Moreover, pumping engines lifted water back up to the summit in dry summers.

By the 1840s the railways offered faster and more reliable transport. As a result, many canal companies lost most of their traffic within a few decades.
"""

SAKE = """\
日本酒ができるまで

日本酒は、米と米こうじと水を原料として造られる醸造酒である。酒造りは伝統的に冬に行われてきた。なぜなら、低い気温のもとでは雑菌が繁殖しにくく、発酵をゆっくり進められるからだ。

まず、玄米を精米して表面のたんぱく質や脂質を取り除く。精米歩合とは、玄米に対して残った白米の重さの割合のことである。精米歩合が低い酒ほど雑味が少なく、香りが華やかになりやすい。そのため、吟醸酒には精米歩合六十パーセント以下の米が使われる。

蒸した米にこうじ菌をふりかけて、米こうじを作る。こうじ菌は米のでんぷんを糖に変える働きをもつ。つまり、こうじは酵母が利用できる糖を用意する役割を担っている。

酵母は糖をアルコールに変えるが、でんぷんを直接分解することはできない。しかし、日本酒ではでんぷんの糖化と糖の発酵が一つのタンクの中で同時に進む。これを「並行複発酵」と呼ぶ。

発酵を終えたもろみを搾ると、新酒と酒かすに分かれる。近年は海外での人気が高まっているため、輸出向けの銘柄を開発する酒蔵も増えている。
"""

SHORT_EN = "Thanks for reading."
SHORT_JA = "よろしくお願いします。"
JUNK = "★★★ >>> $$$ !!! 🔥🔥🔥 ###### ~~~~~ 💰💰💰 <<< ★★★ +++ @@@ %%% 🎉🎉 *** ||| ❤❤❤"
SPAM = " ".join(["cheap flights best deals buy now"] * 12) + "."


def load_corpus(name: str) -> list[tuple[str, str | None]]:
    """The bundled demo corpus (text, lang) of one file; broken lines are skipped, as the
    reader rejects them."""
    path = DATA / name
    raw = path.read_bytes()
    data = gzip.decompress(raw) if name.endswith(".gz") else zstandard.decompress(raw, 10**8)
    out = []
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("text"), str):
            out.append(record["text"])
    return out


def by_task(pairs: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for pair in pairs:
        out.setdefault(pair["task"], []).append(pair)
    return out


def mined_over_keys(text: str, lang: str, keys: int = 40) -> dict[str, list[dict[str, str]]]:
    """Every pair mined from the text under `keys` keys, by task."""
    out: dict[str, list[dict[str, str]]] = {}
    for i in range(keys):
        for task, pairs in by_task(mine(text, lang, f"1:{i}")).items():
            out.setdefault(task, []).extend(pairs)
    return out


LABELS = {
    "Yes", "No", "Maybe", "Therefore", "However", "Moreover", "Entailment", "Contradiction",
    "Neutral", "はい", "いいえ", "どちらとも言えない", "したがって", "しかし", "また", "含意",
    "矛盾", "中立", "Tak", "Nie", "Może", "Dlatego", "Jednak", "Ponadto", "Wynikanie",
    "Sprzeczność", "Neutralność",
}  # fmt: skip


def assert_taken_from(text: str, pair: dict[str, str]) -> None:
    """A response is a label, a span of the text, or keywords that each are spans."""
    response = pair["response"]
    assert response != text.strip()
    if response in LABELS:
        assert pair["task"] == "nli"
        return
    if response in text:
        return
    parts = response.split("、") if "、" in response else response.split(", ")
    assert pair["task"] == "word_to_text" and len(parts) == 3, pair
    assert all(part in text for part in parts), pair


# --- Helpers -------------------------------------------------------------------------------


def test_english_sentences_keep_abbreviations_and_offsets():
    text = "Dr. Smith met J. R. Jones in St. Albans. They talked.\nA new line starts here! Yes."
    sentences = split_sentences(text, "en")
    assert [s.text for s in sentences] == [
        "Dr. Smith met J. R. Jones in St. Albans.",
        "They talked.",
        "A new line starts here!",
        "Yes.",
    ]
    assert [s.line for s in sentences] == [0, 0, 1, 1]
    for s in sentences:
        assert text[s.start : s.end] == s.text


def test_japanese_sentences_split_without_spaces():
    text = "\u3000富士山は高い。「本当に？」と彼は聞いた！そうだ\n次の行です。"
    sentences = split_sentences(text, "ja")
    assert [s.text for s in sentences] == [
        "富士山は高い。",
        "「本当に？」",
        "と彼は聞いた！",
        "そうだ",
        "次の行です。",
    ]
    for s in sentences:
        assert text[s.start : s.end] == s.text


def test_prose_check():
    assert looks_like_prose("The canal carried coal to the city.", ENGLISH_RULES)
    assert not looks_like_prose(JUNK, ENGLISH_RULES)
    assert not looks_like_prose(SPAM, ENGLISH_RULES)
    assert not looks_like_prose("| 12 | 34 | 56 | 78 |", ENGLISH_RULES)
    assert looks_like_prose("日本酒は米から造られる。", JAPANESE_RULES)


def test_keywords_are_repeated_or_long_words_as_written():
    sentences = split_sentences(CANALS, "en")
    counts = keyword_counts(sentences, ENGLISH_RULES)
    assert counts["canal"] >= 5 and "the" not in counts
    words = sentence_keywords(
        "The Bridgewater Canal carried coal to Manchester.", counts, ENGLISH_RULES
    )
    # The text's most repeated words first, as written; among equally frequent ones the longest
    # ("Bridgewater" twice, as "Bridgewater's" too, before "carried" twice).
    assert words == ["Canal", "coal", "Bridgewater"]
    ja = split_sentences(SAKE, "ja")
    ja_words = sentence_keywords(
        "精米歩合が低い酒ほど雑味が少ない。", keyword_counts(ja, JAPANESE_RULES), JAPANESE_RULES
    )
    assert "精米歩合" in ja_words


def test_rules_follow_the_language():
    assert miner_rules("text", "en") is ENGLISH_RULES
    assert miner_rules("text", "ja-JP") is JAPANESE_RULES
    assert miner_rules("text", "pl") is POLISH_RULES
    assert miner_rules("text", "de") is None
    assert miner_rules(CANALS, None) is ENGLISH_RULES
    assert miner_rules(SAKE, None) is JAPANESE_RULES
    assert miner_rules("Привет, как дела? Всё хорошо.", None) is None
    assert mine(CANALS, "de", "1:a") == []


def test_instruction_templates_use_known_fields():
    for lang in ("en", "ja", "pl"):
        for templates in INSTRUCTIONS[lang].values():
            assert templates
        assert set(INSTRUCTIONS[lang]) == set(INSTRUCTIONS["en"])


# --- English -------------------------------------------------------------------------------


def test_english_every_task_fires_on_its_pattern():
    found = mined_over_keys(CANALS, "en")
    assert set(found) == set(TASKS)
    responses = {task: {p["response"] for p in pairs} for task, pairs in found.items()}
    # Title.
    assert "The Canal Age in Britain" in responses["summarize"]
    # "Therefore," (entailment), "However," (contradiction), "Moreover," (neutral), asked as a
    # label or as the continuation after the connective.
    assert responses["nli"] & {"Yes", "Therefore", "Entailment"}
    assert responses["nli"] & {"No", "However", "Contradiction"}
    assert responses["nli"] & {"Maybe", "Moreover", "Neutral"}
    continuations = responses["nli"] - LABELS
    assert continuations <= {
        "the cost of carrying coal fell sharply wherever a canal opened.",
        "the engineers who planned the routes became famous figures of their time.",
        "pumping engines lifted water back up to the summit in dry summers.",
        "many canal companies lost most of their traffic within a few decades.",
    }
    # because / so / so that / As a result.
    assert {
        "the canal was so much cheaper than packhorses",
        "they poured money into new schemes across the country",
        "a canal could cross hilly ground",
        "many canal companies lost most of their traffic within a few decades.",
    } <= responses["cause_effect"]
    cause = next(p for p in found["cause_effect"] if p["response"].startswith("the canal was"))
    assert "The price of coal in the city halved within a year" in cause["instruction"]
    # In other words.
    assert responses["paraphrase"] == {
        "a flight of locks acted as a staircase for boats climbing a valley side."
    }
    assert any("Locks raised and lowered boats" in p["instruction"] for p in found["paraphrase"])
    # is defined as / called; keyword sentences.
    assert (
        "the highest stretch of a canal between two flights of locks" in responses["word_to_text"]
    )
    assert any(p["instruction"].startswith(("Concepts:", "Keywords:", "Here are some", "Sentence:"))
               for p in found["word_to_text"])  # fmt: skip
    for pairs in found.values():
        for pair in pairs:
            assert_taken_from(CANALS, pair)


def test_bounded_deterministic_and_varied():
    pairs = mine(CANALS, "en", "7:rec")
    assert pairs == mine(CANALS, "en", "7:rec")
    tasks = [p["task"] for p in pairs]
    assert all(tasks.count(t) <= 2 for t in TASKS)
    assert tasks == sorted(tasks, key=tasks.index)  # a task's pairs come together
    one = mine(CANALS, "en", "7:rec", max_per_task=1)
    assert all([p["task"] for p in one].count(t) <= 1 for t in TASKS)
    outputs = {json.dumps(mine(CANALS, "en", f"7:{i}")) for i in range(30)}
    assert len(outputs) > 20
    orders = {
        tuple(dict.fromkeys(p["task"] for p in mine(CANALS, "en", f"7:{i}"))) for i in range(30)
    }
    assert len(orders) > 10
    instructions = [p["instruction"] for p in pairs]
    assert len(instructions) == len({i.lower() for i in instructions})


def test_completion_continues_after_the_cut():
    for i in range(20):
        (pair,) = by_task(mine(CANALS, "en", f"3:{i}"))["completion"]
        response = pair["response"]
        assert response in CANALS and len(response.split()) >= 6
        assert response[0].isupper() and response.endswith(".")
        assert response not in pair["instruction"]


def test_no_pairs_from_short_or_junk_text():
    for text in (SHORT_EN, JUNK, SPAM, "", "   ", "Title\n\nOne line."):
        assert mine(text, "en", "1:a") == []
    assert mine(SHORT_JA, "ja", "1:a") == []
    # Connectives between fragments too short to ask about.
    assert mine("It rained. Therefore, we left. However, it stopped.", "en", "1:a") == []


def test_the_bundled_english_corpus():
    """On the demo's real web texts: pairs on the articles, none on the junk records, every
    response taken from its text."""
    texts = load_corpus("web_en.jsonl.gz")
    counts = dict.fromkeys(TASKS, 0)
    for i, text in enumerate(texts):
        pairs = mine(text, "en", f"0:{i}")
        if not looks_like_prose(text, ENGLISH_RULES):
            assert pairs == [], text[:80]
        for pair in pairs:
            assert_taken_from(text, pair)
            counts[pair["task"]] += 1
    for task in ("summarize", "word_to_text", "cause_effect", "completion"):
        assert counts[task] >= 10, counts


# --- Japanese ------------------------------------------------------------------------------


def test_japanese_every_task_fires_on_its_pattern():
    found = mined_over_keys(SAKE, "ja")
    assert set(found) == set(TASKS)
    responses = {task: {p["response"] for p in pairs} for task, pairs in found.items()}
    assert "日本酒ができるまで" in responses["summarize"]
    # なぜなら...からだ (cause after the effect), そのため (effect), ため、 inside a sentence.
    assert {
        "低い気温のもとでは雑菌が繁殖しにくく、発酵をゆっくり進められる",
        "吟醸酒には精米歩合六十パーセント以下の米が使われる。",
        "輸出向けの銘柄を開発する酒蔵も増えている",
    } <= responses["cause_effect"]
    why = next(p for p in found["cause_effect"] if p["response"].startswith("低い気温"))
    assert "酒造りは伝統的に冬に行われてきた。" in why["instruction"]
    # つまり (paraphrase); しかし (contradiction), そのため (entailment).
    assert responses["paraphrase"] == {"こうじは酵母が利用できる糖を用意する役割を担っている。"}
    assert responses["nli"] & {"いいえ", "しかし", "矛盾"}
    assert responses["nli"] & {"はい", "したがって", "含意"}
    # とは (definition), これを「X」と呼ぶ (naming), keyword sentences.
    assert "玄米に対して残った白米の重さの割合のこと" in responses["word_to_text"]
    assert "並行複発酵" in responses["word_to_text"]
    for pairs in found.values():
        for pair in pairs:
            assert_taken_from(SAKE, pair)
            assert "Question" not in pair["instruction"]


def test_japanese_wording():
    joined = "\n".join(p["instruction"] for p in mine(SAKE, "ja", "2:x"))
    assert any(word in joined for word in ("ですか", "ください"))


def test_the_bundled_japanese_corpus():
    texts = load_corpus("web_ja.jsonl.zst")
    counts = dict.fromkeys(TASKS, 0)
    for i, text in enumerate(texts):
        pairs = mine(text, "ja", f"0:{i}")
        if not looks_like_prose(text, JAPANESE_RULES):
            assert pairs == [], text[:80]
        for pair in pairs:
            assert_taken_from(text, pair)
            counts[pair["task"]] += 1
    for task in ("summarize", "word_to_text", "completion"):
        assert counts[task] >= 5, counts


@pytest.mark.parametrize("text", ["文章。", "これはペンです。しかし、短い。"])
def test_japanese_short_text_gives_nothing(text):
    assert mine(text, "ja", "1:a") == []


def test_english_definitions_open_a_paragraph_and_name_a_term():
    text = (
        "A contract is a legally enforceable agreement between two or more parties.\n"
        "Courts enforce contracts every day across the country. The written form is a "
        "convenience that helps when the parties later disagree about the terms.\n"
        "In practice this means you should keep a copy of anything you have signed."
    )
    found = word_to_text_candidates(text, split_sentences(text, "en"), ENGLISH_RULES, "1:a")
    definitions = [c.fields for c in found if c.kind == "definition"]
    assert definitions == [
        {
            "term": "contract",
            "response": "a legally enforceable agreement between two or more parties",
        }
    ]


@pytest.mark.parametrize(
    "text",
    [
        ". Leading dot. Then more words here.",
        "\n\n\n",
        "Bad \udcff byte in a sentence that is long enough to count here.",
        "word " * 20000,
        "Therefore, " * 3000,
        "「」。！？" * 100,
    ],
)
def test_odd_texts_do_not_crash(text):
    for lang in ("en", "ja", None):
        for pair in mine(text, lang, "1:a"):
            assert_taken_from(text, pair)


# --- Polish --------------------------------------------------------------------------------

PHOTOSYNTHESIS = """\
Jak działa fotosynteza

Fotosynteza to proces, w którym rośliny wytwarzają cukry z dwutlenku węgla i wody przy udziale \
światła. Zachodzi ona głównie w liściach, ponieważ to tam znajduje się najwięcej chloroplastów. \
Rośliny potrzebują światła słonecznego, aby mogły produkować glukozę i tlen. Dlatego rośliny w \
ciemnych pomieszczeniach rosną wolniej i mają blade liście.
Chlorofil pochłania głównie światło czerwone i niebieskie. Jednak światło zielone jest w dużej \
mierze odbijane przez liście roślin. Nazywa się to odbiciem selektywnym. Zimą dni są krótsze, \
więc rośliny wytwarzają znacznie mniej cukrów niż latem. Ponadto niska temperatura spowalnia \
reakcje chemiczne zachodzące w komórkach roślin. Innymi słowy, chłodna i ciemna pora roku \
ogranicza wzrost większości roślin w naszym klimacie.
Ten artykuł opisuje podstawowe etapy fotosyntezy u roślin zielonych, np. fazę jasną i ciemną.
"""


def test_polish_sentences_split_on_polish_capitals_and_keep_abbreviations():
    texts = [s.text for s in split_sentences("Żaden liść nie rośnie, np. zimą. Śnieg pada.", "pl")]
    assert texts == ["Żaden liść nie rośnie, np. zimą.", "Śnieg pada."]
    texts = [s.text for s in split_sentences("To koniec. Łódź leży w centrum.", "pl")]
    assert texts == ["To koniec.", "Łódź leży w centrum."]


def test_polish_every_task_fires_on_its_pattern():
    found = mined_over_keys(PHOTOSYNTHESIS, "pl")
    assert set(found) == set(TASKS)
    responses = {task: {p["response"] for p in pairs} for task, pairs in found.items()}
    assert "Jak działa fotosynteza" in responses["summarize"]
    # ponieważ (cause), aby (purpose), więc (effect), Dlatego (effect opener).
    assert {
        "to tam znajduje się najwięcej chloroplastów",
        "mogły produkować glukozę i tlen",
        "rośliny wytwarzają znacznie mniej cukrów niż latem",
    } <= responses["cause_effect"]
    # Jednak (contradiction), Dlatego (entailment), Ponadto (neutral).
    assert responses["nli"] & {"Nie", "Jednak", "Sprzeczność"}
    assert responses["nli"] & {"Tak", "Dlatego", "Wynikanie"}
    assert responses["nli"] & {"Może", "Ponadto", "Neutralność"}
    # Innymi słowy (paraphrase); "X to Y" (definition); "Nazywa się to X" (naming).
    assert responses["paraphrase"] == {
        "chłodna i ciemna pora roku ogranicza wzrost większości roślin w naszym klimacie."
    }
    assert (
        "proces, w którym rośliny wytwarzają cukry z dwutlenku węgla i wody przy udziale światła"
        in responses["word_to_text"]
    )
    assert "odbiciem selektywnym" in responses["word_to_text"]
    for pairs in found.values():
        for pair in pairs:
            assert_taken_from(PHOTOSYNTHESIS, pair)
            assert "Question" not in pair["instruction"]


def test_polish_short_or_foreign_text_gives_nothing():
    assert mine("Krótki tekst.", "pl", "1:a") == []
    assert mine(PHOTOSYNTHESIS, "cs", "1:a") == []
