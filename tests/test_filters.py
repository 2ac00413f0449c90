"""filters: each check alone, the order, character mode, tag mode, bad input, and a whole run."""

import gzip
import json
import random
import shutil
import textwrap
import time
from functools import cache
from pathlib import Path

import pytest
from conftest import DEMO_SPEC
from pydantic import ValidationError

from iptkit.pipelines.cli import main
from iptkit.transforms.record import Record
from iptkit.transforms.stage import Drop
from iptkit.transforms.stages.filters import (
    CHECKS,
    OVERRIDES,
    FiltersConfig,
    QualityFilters,
    evaluate,
    text_mode,
)

DATA = DEMO_SPEC.parent / "data"
DEFAULTS = FiltersConfig()
REPETITION_NGRAMS = [f"dup_{n}gram_frac" for n in range(5, 11)]


def _jsonl_texts(raw: str) -> dict[int, str]:
    """Text by 1-based line number, for the lines that are well-formed records."""
    texts = {}
    for number, line in enumerate(raw.splitlines(), 1):
        try:
            text = json.loads(line)["text"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(text, str) and text.strip():
            texts[number] = text
    return texts


@cache
def inventory() -> dict:
    return json.loads((DATA / "inventory.json").read_text())


@cache
def web_en() -> dict[int, str]:
    return _jsonl_texts(gzip.decompress((DATA / "web_en.jsonl.gz").read_bytes()).decode())


@cache
def web_ja() -> dict[int, str]:
    import zstandard

    raw = zstandard.ZstdDecompressor().stream_reader((DATA / "web_ja.jsonl.zst").open("rb"))
    return _jsonl_texts(raw.read().decode())


def failed(text: str, cfg: FiltersConfig = DEFAULTS, lang: str | None = None) -> list[str]:
    """Every failing check, in check order (tag mode's view)."""
    return [f.name for f in evaluate(text, lang, cfg, all_checks=True).failed]


def cfg_with(**update) -> FiltersConfig:
    return DEFAULTS.model_copy(update=update)


# --- crafted texts, built from one good English page (plate tectonics, 166 words, 3 paragraphs)


def good_en() -> str:
    return web_en()[2]


def paras() -> list[str]:
    return good_en().split("\n\n")


def sentences() -> list[str]:
    return [s.rstrip(".") + "." for s in good_en().replace("\n\n", " ").split(". ")]


def made_up_words(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3)) for _ in range(count)]  # fmt: skip


def wrapped(width: int, joiner: str) -> str:
    """The page re-wrapped into lines of at most `width` characters, each ending in a period."""
    lines = textwrap.wrap(good_en().replace("\n\n", " "), width - 1)
    return joiner.join(line if line.endswith(".") else line + "." for line in lines)


def every_nth_word(phrase: str, step: int, count: int) -> str:
    words, out = good_en().split(" "), []
    for i, word in enumerate(words):
        out.append(word)
        if i % step == step - 1 and len(out) < len(words) + count:
            out.append(phrase)
    return " ".join(out)


def copied_chunks(n: int, count: int) -> str:
    """The page plus a paragraph of `count` n-word chunks copied from it, each after a made-up
    word, so n-grams repeat but (n+1)-grams do not."""
    words = good_en().split()
    starts = random.Random(n).sample(range(0, len(words) - n, n), count)
    glue = made_up_words(count + 1, seed=n)
    chunks = [" ".join([glue[i], *words[s : s + n]]) for i, s in enumerate(starts)]
    return good_en() + "\n\n" + " ".join([*chunks, glue[-1]]) + "."


def two_letter_words() -> str:
    rng = random.Random(3)
    words = [rng.choice("abcdefghiklmnoprstuvwy") + rng.choice("aeiouy") for _ in range(80)]
    words[10], words[40] = "to", "of"
    return " ".join(words) + "."


SHARE = "Share this article."
# (check, text, other checks switched off). A check is switched off only where it measures the
# same thing: a repeated long line is also a repeated paragraph and a run of repeated n-grams,
# and a repeated 7-gram is also a repeated 5- and 6-gram.
WORD_CASES = [
    ("min_chars", good_en, {"min_chars": 2000}),
    ("max_chars", good_en, {"max_chars": 500}),
    ("max_lorem_ipsum", lambda: good_en() + " Lorem ipsum dolor sit amet.", {}),
    ("max_curly_braces", lambda: good_en() + " The map reads {plates: 7}.", {}),
    ("min_words", lambda: "The plates move slowly over the hot mantle, and that builds hills.", {}),
    ("max_words", good_en, {"max_words": 100}),
    ("min_mean_word_len", two_letter_words, {}),
    (
        "max_mean_word_len",
        lambda: "The " + " ".join(w * 2 + "x" for w in made_up_words(60, 1)) + " of the end.",
        {},
    ),
    (
        "max_symbol_word_ratio",
        lambda: good_en() + " " + " ".join("#" + w for w in made_up_words(25, 2)) + ".",
        {},
    ),
    (
        "min_alpha_word_frac",
        lambda: good_en() + "\n\nFigures: " + " ".join(str(1000 + 7 * i) for i in range(50)) + ".",
        {},
    ),
    ("min_stop_words", lambda: " ".join(made_up_words(80, 5)) + ".", {}),
    ("max_bullet_line_frac", lambda: "\n".join("- " + s for s in sentences()), {}),
    ("max_ellipsis_line_frac", lambda: "\n".join(s[:-1] + "..." for s in sentences()), {}),
    ("min_terminal_punct_line_frac", lambda: "\n\n".join(p.rstrip(".") for p in paras()), {}),
    ("max_short_line_frac", lambda: wrapped(28, "\n"), {}),
    ("max_newline_word_ratio", lambda: wrapped(38, "\n\n"), {}),
    (
        "max_javascript_line_frac",
        lambda: good_en() + "\nPlease enable JavaScript to see the comments.",
        {"max_javascript_line_frac": 0},
    ),
    # Three repeated "~~~" lines: many repeated lines, few repeated characters.
    ("dup_line_frac", lambda: "\n~~~\n\n".join(paras()) + "\n~~~", {}),
    (
        "dup_line_char_frac",
        lambda: "\n".join(paras() + paras()[:1]),
        {"char_dup_ratio": None, **dict.fromkeys(REPETITION_NGRAMS)},
    ),
    ("char_dup_ratio", lambda: "\n\n".join(paras()) + f"\n{SHARE}\n\n{SHARE}", {}),
    (
        "dup_para_frac",
        lambda: "\n\n".join(["\n".join(textwrap.wrap(p, 90)) for p in paras()] + ["~~~"] * 3),
        {},
    ),
    (
        "dup_para_char_frac",
        lambda: "\n\n".join(paras() + paras()[:1]),
        {"dup_line_char_frac": None, "char_dup_ratio": None, **dict.fromkeys(REPETITION_NGRAMS)},
    ),
    ("top_2gram_frac", lambda: every_nth_word("cheap flights", 3, 60), {}),
    ("top_3gram_frac", lambda: every_nth_word("blue green red", 6, 22), {}),
    ("top_4gram_frac", lambda: every_nth_word("blue gray pink teal", 10, 13), {}),
    *(
        (
            f"dup_{n}gram_frac",
            lambda n=n: copied_chunks(n, -(-45 // n)),
            dict.fromkeys(REPETITION_NGRAMS[: n - 5]),
        )  # fmt: skip
        for n in range(5, 11)
    ),
]


def test_every_check_has_a_case_and_runs_in_option_order():
    assert sorted(case[0] for case in WORD_CASES) == sorted(c.name for c in CHECKS)
    fields = list(FiltersConfig.model_fields)
    assert [c.name for c in CHECKS] == [f for f in fields if f in {c.name for c in CHECKS}]
    # Cheap first: lengths and substring counts, then words, lines, paragraphs, n-grams last.
    names = [c.name for c in CHECKS]
    assert names[:4] == ["min_chars", "max_chars", "max_lorem_ipsum", "max_curly_braces"]
    assert names.index("min_words") < names.index("dup_line_frac") < names.index("top_2gram_frac")
    assert all(field.description for field in FiltersConfig.model_fields.values())


def test_the_good_page_passes_every_default():
    assert failed(good_en()) == []


@pytest.mark.parametrize(("check", "make", "off"), WORD_CASES, ids=[c[0] for c in WORD_CASES])
def test_each_check_alone_rejects_its_crafted_text(check, make, off):
    text, cfg = make(), cfg_with(**off)
    assert failed(text, cfg) == [check]
    # null switches the check off, and then the same text passes.
    assert failed(text, cfg_with(**{**off, check: None})) == []
    drop = QualityFilters(cfg).apply(Record(id="x", source="s", text=text))
    assert isinstance(drop, Drop) and drop.reason == check
    assert drop.detail.startswith("measured ") and str(getattr(cfg, check)) in drop.detail


def test_first_failing_check_rejects_in_fixed_order():
    spam = web_en()[40]  # "cheap flights cheap flights ...": fails four checks
    assert failed(spam) == [
        "min_words",
        "min_stop_words",
        "min_terminal_punct_line_frac",
        "top_2gram_frac",
        "top_3gram_frac",
        "top_4gram_frac",
    ]
    stage = QualityFilters(DEFAULTS)
    record = Record(id="spam", source="web", text=spam)
    assert stage.apply(record).reason == "min_words"
    assert stage.apply(record) == Drop("min_words", "measured 48, must be at least 50 (word mode, lang en)")  # fmt: skip
    later = QualityFilters(cfg_with(min_words=None, min_stop_words=None))
    assert later.apply(record).reason == "min_terminal_punct_line_frac"


def test_all_checks_off_keeps_anything():
    off = FiltersConfig(**dict.fromkeys((c.name for c in CHECKS), None), overrides={})
    assert all(failed(text, off) == [] for text in ["x", "#### ....", web_en()[40]])


# --- character mode

JA_SENTENCE = "毎年春になると、ニュースで桜の開花宣言が話題になります。開花宣言は、各地の気象台が決めた標本木に五輪以上の花が咲いた時点で発表されます。"  # fmt: skip
JA_MENU = "、".join("コーヒー トースト サラダ スープ パスタ ピザ ケーキ プリン ゼリー クッキー ドーナツ ワッフル パンケーキ オムライス カレーライス ハンバーグ ステーキ グラタン ドリア リゾット サンドイッチ".split()) + "。"  # fmt: skip


def good_ja() -> str:
    return web_ja()[1]


def ja_copied_chunks() -> str:
    """The page plus eight 22-character pieces of it (longer than one 5-gram of Japanese's
    four characters a word), each after a distinct kana."""
    body = "".join(c for c in good_ja() if not c.isspace())
    pieces = [
        kana + body[s : s + 22]
        for kana, s in zip("ヌネノハヒフヘホ", range(20, 300, 35), strict=True)
    ]
    return good_ja() + "\n\n" + "".join(pieces) + "。"


def every_nth_char(text: str, phrase: str, step: int) -> str:
    """`phrase` after every `step`-th character (not after a line break: a line of the phrase
    alone would be a repeated line)."""
    return "".join(
        ch + (phrase if i % step == step - 1 and ch != "\n" else "") for i, ch in enumerate(text)
    )


CHAR_CASES = [
    ("min_chars", lambda: JA_SENTENCE, {}),
    ("max_chars", good_ja, {"max_chars": 200}),
    ("min_stop_words", lambda: JA_MENU, {"min_chars": 50}),
    (
        "min_terminal_punct_line_frac",
        lambda: "\n\n".join(p.rstrip("。") for p in good_ja().split("\n\n")),
        {},
    ),  # fmt: skip
    ("top_2gram_frac", lambda: every_nth_char(good_ja(), "格安航空券の予約", 10), {}),
    ("dup_5gram_frac", ja_copied_chunks, {}),
]


@pytest.mark.parametrize(("check", "make", "char"), CHAR_CASES, ids=[c[0] for c in CHAR_CASES])
def test_character_mode_checks_alone(check, make, char):
    text = make()
    cfg = FiltersConfig(overrides={"ja": char})
    assert text_mode(text, None, "en") == ("char", "ja")
    assert failed(text, cfg) == [check]
    # An override switches a check off: the language's entry wins over the defaults.
    assert failed(text, FiltersConfig(overrides={"ja": {**char, check: None}})) == []


def test_japanese_good_pages_pass_and_junk_does_not():
    entry = inventory()["web_ja.jsonl.zst"]
    junk = set(entry["junk_at"])
    not_japanese = set(entry["mostly_english_at"])
    good = {n: t for n, t in web_ja().items() if n not in junk | not_japanese}
    assert len(good) == entry["records"] - 3 - 1 - 2  # malformed, junk, mostly English
    for number, text in good.items():
        assert failed(text) == [], number
        assert failed(text, lang="ja") == [], number
    for number in junk:
        assert failed(web_ja()[number]), number
        assert failed(web_ja()[number], lang="ja"), number


def test_word_checks_would_wrongly_reject_japanese_and_character_mode_does_not():
    text = good_ja()
    # Read as English, a Japanese page has a handful of "words", each a whole clause long.
    assert failed(text, lang="en")[:2] == ["min_words", "max_mean_word_len"]
    for lang in (None, "ja", "ja_Jpan", "jpn", "ja-JP"):
        assert failed(text, lang=lang) == [], lang
    assert text_mode(text, "zh-Hant", "en") == ("char", "zh")
    assert text_mode("สวัสดีครับ ยินดีต้อนรับ", None, "en") == ("char", "th")
    assert text_mode("안녕하세요 반갑습니다", None, "en") == ("char", "ko")
    assert text_mode(text, "pl", "en") == ("word", "pl")


def test_language_overrides_win_over_mode_and_are_checked():
    cfg = FiltersConfig(overrides={"char": {"min_chars": 100}, "ja_Jpan": {"min_chars": 500}})
    assert cfg.overrides["ja"] == {"min_chars": 500}
    assert failed(good_ja(), cfg) == ["min_chars"]  # 334 characters < 500 for ja
    assert failed(good_ja(), cfg, lang="zh") == []  # zh takes the char entry: 100
    # The spec's entries go over the calibrated defaults: Japanese keeps its other units.
    assert cfg.for_text("char", "ja").chars_per_word == OVERRIDES["ja"]["chars_per_word"]
    with pytest.raises(ValidationError, match="action cannot be overridden"):
        FiltersConfig(overrides={"ja": {"action": "tag"}})
    with pytest.raises(ValidationError, match="min_chars: Input should be greater than or equal"):
        FiltersConfig(overrides={"ja": {"min_chars": -1}})
    with pytest.raises(ValidationError, match="min_wrods"):
        FiltersConfig(overrides={"ja": {"min_wrods": 5}})


# --- calibrated languages: natural prose kept, its junk rejected (samples written for iptkit)

SAMPLES = Path(__file__).resolve().parent / "data" / "filters"


@cache
def prose(lang: str) -> str:
    return (SAMPLES / f"prose_{lang}.txt").read_text(encoding="utf-8")


def repeated_lines(text: str) -> str:
    """The text with a third of its lines each repeated twice more at the end (a template
    that repeats blocks)."""
    lines = [line for line in text.split("\n") if line.strip()]
    return text + "\n" + "\n".join(line for line in lines[::3] for _ in range(2))


def code_dump(text: str, comment: str) -> str:
    """The text's first paragraph, then a generated listing with comments in its language."""
    lines = [f"value_{i} = items.get('key_{i}', {i})\n{comment}" for i in range(30)]
    return text.split("\n\n")[0] + "\n" + "\n".join(lines)


def test_natural_japanese_prose_is_kept_and_its_junk_rejected():
    """A manual's consistent wording (「このオプションを指定すると」 four times) is not
    repetition: on 10-character n-grams (two characters a word, before calibration) the sample
    measured a duplicated 5-gram fraction of 0.17 and was rejected."""
    text = prose("ja")
    assert text_mode(text, None, "en") == ("char", "ja")
    assert failed(text) == [] and failed(text, lang="ja") == []
    verdict = evaluate(text, "ja", DEFAULTS, all_checks=True)
    assert verdict.values["dup_5gram_frac"] < DEFAULTS.dup_5gram_frac
    assert failed(repeated_lines(text), lang="ja")
    assert failed(code_dump(text, "# 設定を読み込む"), lang="ja")
    sentences = [s + "。" for s in text.replace("\n", "").split("。") if s]
    assert "dup_5gram_frac" in failed("".join(sentences * 2), lang="ja")


def test_polish_is_a_first_class_language():
    """Polish (word mode) has its own stop words and n-gram thresholds, in OVERRIDES."""
    text = prose("pl")
    assert failed(text, lang="pl") == []
    pl = DEFAULTS.for_text("word", "pl")
    assert DEFAULTS.stop_words["pl"] and pl.dup_5gram_frac < DEFAULTS.dup_5gram_frac
    # A list of Polish nouns has no stop word: before Polish had a list, nothing checked it.
    nouns = " ".join(
        w for w in text.split() if w.lower().strip(".,:") not in DEFAULTS.stop_words["pl"]
    )
    assert "min_stop_words" in failed(nouns, lang="pl")
    assert failed(repeated_lines(text), lang="pl")
    assert failed(code_dump(text, "# wczytaj ustawienia"), lang="pl")


def test_every_language_threshold_is_in_one_place():
    """The defaults of `overrides` are OVERRIDES; each entry names only known options."""
    assert DEFAULTS.overrides == {k: dict(v) for k, v in OVERRIDES.items()}
    assert {"char", "ja", "pl", "th"} <= set(OVERRIDES)
    for key, entry in OVERRIDES.items():
        FiltersConfig(overrides={key: entry})


# --- the sample corpus: good pages pass, junk is rejected


def test_english_good_pages_pass_and_listed_junk_is_rejected():
    junk = inventory()["web_en.jsonl.gz"]["junk_at"]
    for number, text in web_en().items():
        assert (failed(text) != []) == (number in junk), number
    # Not one threshold tuned to the sample: with Gopher's word count off, other checks still
    # catch every junk page (symbols, navigation, keyword stuffing, "Click here now").
    without_length = cfg_with(min_words=None)
    for number in junk:
        assert failed(web_en()[number], without_length), number


# --- tag mode


def test_tag_mode_keeps_every_record_and_records_the_failures():
    stage = QualityFilters(FiltersConfig(action="tag"))
    spam = Record(id="spam", source="web", text=web_en()[40], meta={"url": "u"})
    tagged = stage.apply(spam)
    assert isinstance(tagged, Record) and tagged.text == spam.text
    found = tagged.meta["filters"]
    assert found["mode"] == "word" and found["lang"] == "en"
    assert found["failed"] == failed(spam.text)
    assert found["values"]["min_words"] == 48 and found["values"]["top_2gram_frac"] > 0.2
    assert tagged.meta["url"] == "u" and "filters" not in spam.meta  # input not mutated
    clean = stage.apply(Record(id="ok", source="web", text=good_ja()))
    assert clean.meta["filters"]["failed"] == [] and clean.meta["filters"]["mode"] == "char"
    empty = stage.apply(Record(id="e", source="web", text=" \n "))
    assert empty.meta["filters"]["failed"] == ["empty_text"]


# --- bad input


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty_text"),
        (" \n\t\u3000 ", "empty_text"),
        ("a" * 1_000_000, "min_words"),
        ("あ" * 500_000, "max_chars"),
        ("あ" * 2_000, "min_stop_words"),
        ("Ünïcødé 日本語 한국어 ไทย العربية русский " * 3, "min_words"),
        (good_en() + b" bad \xff byte".decode("utf-8", "surrogateescape"), None),
        ("\ud800" * 300 + "日本語のテキストです。", "top_2gram_frac"),
    ],
    ids=[
        "empty",
        "whitespace",
        "one_char_mb",
        "one_kana",
        "one_kana_short",
        "mixed",
        "bad_byte",
        "surrogates",
    ],  # fmt: skip
)
def test_bad_input_gives_a_named_reason(text, reason):
    result = QualityFilters(DEFAULTS).apply(Record(id="x", source="s", text=text))
    if reason is None:
        assert isinstance(result, Record)
    else:
        assert isinstance(result, Drop) and result.reason == reason


def test_megabyte_lines_are_linear():
    rng = random.Random(0)
    vocab = made_up_words(5000, seed=11) + ["the", "of", "and"]
    line = " ".join(rng.choice(vocab) for _ in range(170_000)) + "."  # ~1 MB, one line
    kanji = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)] + list("のにはをたがでてと")
    ja_line = "".join(rng.choice(kanji) for _ in range(340_000)) + "。"  # ~1 MB in UTF-8
    cfg = FiltersConfig(action="tag", max_words=None, overrides={})
    for text in (line, ja_line, "x" * 1_000_000):
        start = time.process_time()
        verdict = evaluate(text, None, cfg, all_checks=True)
        assert time.process_time() - start < 1.0
        assert "dup_10gram_frac" in verdict.values  # every statistic was computed


# --- a whole run


def test_cli_run_with_normalize_and_filters_balances_and_names_reasons(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("web_en.jsonl.gz", "web_ja.jsonl.zst", "chats_lmsys.jsonl"):
        shutil.copy(DATA / name, data / name)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        output: {tmp_path / "run"}
        sources:
          - {{name: web_en, format: jsonl, path: data/web_en.jsonl.gz}}
          - {{name: web_ja, format: jsonl, path: data/web_ja.jsonl.zst}}
          - {{name: chats, format: conversations, path: data/chats_lmsys.jsonl, id_field: conversation_id}}
        stages:
          - normalize: {{form: NFKC}}
          - filters: {{}}
        """)
    )
    assert main(["run", str(spec)]) == 0
    run = tmp_path / "run"
    stats = json.loads((run / "stats.json").read_text())
    assert stats["violations"] == []
    for name, row in stats["stages"].items():
        assert row["in"] == row["out"] + sum(row["dropped"].values()), name
    assert stats["stages"]["filters"]["dropped"] == {"min_words": 4, "min_chars": 1}
    rejects = [
        json.loads(line)
        for path in sorted((run / "rejects" / "filters").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    expected = {f"web_en:web_en.jsonl.gz:{n}" for n in inventory()["web_en.jsonl.gz"]["junk_at"]}
    expected |= {f"web_ja:web_ja.jsonl.zst:{n}" for n in inventory()["web_ja.jsonl.zst"]["junk_at"]}
    assert {r["id"] for r in rejects} == expected
    assert all(r["stage"] == "filters" and r["detail"].startswith("measured ") for r in rejects)
    # Chat records are not web pages: the default `kinds: [raw]` lets them through untouched.
    assert not [r for r in rejects if r["source"] == "chats"]
