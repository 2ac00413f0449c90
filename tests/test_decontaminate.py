"""decontaminate: benchmark items planted in real text are found (verbatim, lightly edited, as
fragments; English and Japanese), clean text is left alone, and the three actions work."""

import gzip
import io
import json
import random
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import zstandard
from pydantic import ValidationError

from iptkit.errors import IptkitError
from iptkit.transforms.reading.benchmarks import BenchExample, BenchmarkSet, load_set
from iptkit.transforms.record import Record
from iptkit.transforms.stage import Drop
from iptkit.transforms.stages.decontaminate import (
    META_KEY,
    DecontaminateConfig,
    build_index,
    decide,
    find_matches,
    index_bytes,
    index_from_bytes,
    load_index,
    mask_spans,
    read_index,
    substring_starts,
    write_index,
)
from iptkit.transforms.text.contam_text import fold

DATA = Path(__file__).resolve().parents[1] / "pipelines" / "examples" / "data"
BENCH = DATA / "bench"
BENCHMARKS = [
    str(BENCH / "arc_mini_en.jsonl"),
    {"path": str(BENCH / "jqa_mini_ja.jsonl"), "fields": {"id": "qid", "answer": "label"}},
]


def config(**options) -> DecontaminateConfig:
    return DecontaminateConfig.model_validate({"benchmarks": BENCHMARKS, **options})


@pytest.fixture(scope="module")
def cfg() -> DecontaminateConfig:
    return config()


@pytest.fixture(scope="module")
def index(cfg):
    return load_index(cfg, seed=7)


@pytest.fixture(scope="module")
def examples(cfg):
    return [e for b in cfg.benchmarks for e in load_set(b)]


def _jsonl_texts(raw: bytes) -> list[str]:
    texts = []
    for line in raw.decode("utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("text"), str) and row["text"].strip():
            texts.append(row["text"])
    return texts


def clean_texts() -> dict[str, list[str]]:
    """Every text of the bundled demo corpus, by language (none contains a benchmark item)."""
    en = _jsonl_texts(gzip.decompress((DATA / "web_en.jsonl.gz").read_bytes()))
    ja_raw = zstandard.ZstdDecompressor().stream_reader(
        io.BytesIO((DATA / "web_ja.jsonl.zst").read_bytes())
    )
    ja = _jsonl_texts(ja_raw.read())
    other = [
        t for t in pq.read_table(DATA / "web_multi.parquet").column("content").to_pylist() if t
    ]
    for path in sorted((DATA / "docs").glob("*.txt")):
        other.append(path.read_bytes().decode("utf-8", "replace"))
    for name in ("chats_lmsys.jsonl", "chats_sharegpt.jsonl"):
        for line in (DATA / name).read_text().splitlines():
            row = json.loads(line)
            turns = row.get("conversation") or row.get("conversations") or []
            other += [t.get("content") or t.get("value") or "" for t in turns]
    return {"en": en, "ja": ja, "other": other}


@pytest.fixture(scope="module")
def hosts():
    return clean_texts()


def is_japanese(text: str) -> bool:
    return bool(re.search(r"[\u3040-\u30ff]", text))


def plant(item: str, host: str, rng: random.Random) -> str:
    """`item` inside a longer real document, at a paragraph break."""
    paragraphs = host.split("\n")
    at = rng.randrange(len(paragraphs) + 1)
    return "\n".join(paragraphs[:at] + [item] + paragraphs[at:])


def light_edit(text: str, rng: random.Random) -> str:
    """Case, punctuation, whitespace and line-break edits, as copying and reformatting make."""
    text = rng.choice([str.upper, str.lower, str.title, lambda t: t])(text)
    text = re.sub(r"[?.,!、。？]", lambda m: rng.choice(["", " ", ";", m.group(0)]), text)
    if is_japanese(text):
        chars = list(text)
        for _ in range(3):
            chars.insert(rng.randrange(1, len(chars)), rng.choice([" ", "\n", "\u3000"]))
        return "".join(chars)
    words = text.split(" ")
    return "".join(w + rng.choice([" ", "  ", "\n", " \t"]) for w in words).strip()


def fragment(text: str) -> str:
    """The middle of an item: 15 words, or 25 characters of Japanese."""
    if is_japanese(text):
        start = max(0, (len(text) - 25) // 2)
        return text[start : start + 25]
    words = text.split()
    start = max(0, (len(words) - 15) // 2)
    return " ".join(words[start : start + 15])


def recall(index, examples, hosts, transform, seed: int, detectors=("ngram", "substring", "exact")):
    rng = random.Random(seed)
    found = 0
    for number, example in enumerate(examples):
        pool = hosts["ja"] if is_japanese(example.question) else hosts["en"]
        text = plant(transform(example.question, rng), pool[number % len(pool)], rng)
        hits = {
            (index.names[m.example], index.ids[m.example])
            for m in find_matches(text, index, detectors)
        }
        found += (example.benchmark, example.id) in hits
    return found / len(examples)


def test_verbatim_items_are_found(index, examples, hosts):
    assert recall(index, examples, hosts, lambda q, _: q, seed=1) >= 0.99
    for detector in ("ngram", "substring"):
        assert recall(index, examples, hosts, lambda q, _: q, 2, (detector,)) >= 0.99, detector


def test_lightly_edited_items_are_found(index, examples, hosts):
    assert recall(index, examples, hosts, light_edit, seed=3) >= 0.9
    assert recall(index, examples, hosts, light_edit, 4, ("ngram",)) >= 0.9


def test_fragments_inside_longer_documents_are_found(index, examples, hosts):
    assert recall(index, examples, hosts, lambda q, _: fragment(q), seed=5) >= 0.9


def test_an_item_alone_on_a_line_is_an_exact_match(index, examples):
    example = examples[40]
    text = "Notes\n" + example.question.upper().replace("。", "") + "\nmore notes"
    matches = find_matches(text, index, ("exact",))
    assert [(m.detector, index.ids[m.example]) for m in matches] == [("exact", example.id)]
    assert text[matches[0].start : matches[0].end] == example.question.upper().replace("。", "")


def test_no_hits_on_clean_real_text(index, hosts):
    texts = [t for group in hosts.values() for t in group]
    assert len(texts) > 150
    flagged = [t[:80] for t in texts if find_matches(t, index, ("ngram", "substring", "exact"))]
    assert flagged == []


def test_spans_point_into_the_original_text(index, examples):
    item = examples[0].question
    text = "Straße ﬁne. " + item.replace(" ", "  ") + " Tail."
    (match, *_) = [m for m in find_matches(text, index, ("ngram",))]
    assert text[match.start : match.end] == item.replace(" ", "  ").rstrip("?")


def test_folding_words_and_characters():
    folded = fold("Don't  STOP—now!\n日本語 ok")
    assert folded.text() == "dontstopnow日本語ok"
    # Punctuation is deleted, not a break (lm-eval's janitor does the same): "stopnow".
    words = [folded.text()[a:b] for a, b in zip(folded.words[:-1], folded.words[1:], strict=True)]
    assert words == ["dont", "stopnow", "日", "本", "語", "ok"]


def test_substring_choice_is_seeded(cfg, examples):
    example = examples[0]
    letters = fold(example.text()).chars.size
    first = substring_starts(example, 7, letters, 50, 3)
    assert first == substring_starts(example, 7, letters, 50, 3)
    assert len(first) == 3 and first != substring_starts(example, 8, letters, 50, 3)
    assert substring_starts(example, 7, 40, 50, 3) == [0]  # shorter: the whole example


def _augmented(examples) -> Record:
    en, ja = examples[1], examples[35]
    return Record(
        id="aug-1",
        source="synth",
        kind="augmented",
        text=f"Some raw text about the weather.\n{en.question}\nAnswer: it evaporated.",
        pairs=[
            {"instruction": ja.question, "response": "蒸散です。"},
            {"instruction": "Q", "response": "A"},
        ],
        meta={"url": "x"},
    )


def test_report_flags_with_evidence(cfg, index, examples):
    record = _augmented(examples)
    out = decide(record, index, cfg, "decont_after")
    assert isinstance(out, Record) and out.text == record.text and out.meta["url"] == "x"
    found = out.meta[META_KEY]
    assert {(f["checked"], f["field"], f["example"]) for f in found} == {
        ("augmented", "text", examples[1].id),
        ("pairs", "pairs[0]", examples[35].id),
    }
    assert {f["stage"] for f in found} == {"decont_after"}
    assert record.meta == {"url": "x"}  # the input is not mutated
    clean = Record(id="c", source="s", text="Nothing to see here at all.")
    assert decide(clean, index, cfg, "decont") is clean


def test_drop_keeps_the_evidence_on_the_reject(index, examples):
    out = decide(_augmented(examples), index, config(action="drop"), "decont")
    assert isinstance(out, Drop) and out.reason == "contaminated"
    assert examples[35].id in out.detail and "6 match(es)" in out.detail
    assert {f["example"] for f in out.record.meta[META_KEY]} == {examples[1].id, examples[35].id}


def test_mask_cuts_the_matched_spans(index, examples):
    cfg = config(action="mask", mask_with="[…]")
    out = decide(_augmented(examples), index, cfg, "decont")
    assert isinstance(out, Record)
    assert out.text.startswith("Some raw text about the weather.") and "[…]" in out.text
    assert out.pairs[0]["response"] == "蒸散です。" and "[…]" in out.pairs[0]["instruction"]
    assert out.pairs[1] == {"instruction": "Q", "response": "A"}
    again = decide(out, index, config(), "check")
    assert META_KEY not in again.meta or not [
        f for f in again.meta[META_KEY] if f["stage"] == "check"
    ]
    only_item = Record(id="o", source="s", text=examples[2].question)
    dropped = decide(only_item, index, cfg.model_copy(update={"mask_with": ""}), "decont")
    assert isinstance(dropped, Drop) and "nothing left" in dropped.detail


def test_mask_spans_merges_overlaps():
    assert mask_spans("abcdefgh", [(5, 7), (1, 3), (2, 4)], "_") == "a_e_h"


def test_index_holds_only_the_detectors_turned_on(examples):
    ngram_only = config(detectors=["ngram"])
    index = build_index(examples, ngram_only, 1)
    assert index.ngram_keys.size and index.substrings is None and not index.exact_keys.size
    assert index.totals == {"arc_mini_en": 32, "jqa_mini_ja": 30}


def test_the_index_file_round_trips_and_is_the_same_bytes_each_build(
    tmp_path, cfg, index, examples, hosts
):
    path = str(tmp_path / "run" / "decontaminate" / "bench-index.bin")
    assert write_index(path, cfg, 7) == path
    data = Path(path).read_bytes()
    assert data == index_bytes(load_index(cfg, seed=7))  # deterministic: one build, one file
    loaded = read_index(path)
    for name in ("totals", "names", "ids", "questions", "ngram"):
        assert getattr(loaded, name) == getattr(index, name), name
    for name in ("ngram_keys", "ngram_owners", "exact_keys", "exact_owners"):
        assert np.array_equal(getattr(loaded, name), getattr(index, name)), name
        assert not getattr(loaded, name).flags.writeable  # views into the file's bytes
    assert loaded.substrings.prefix == index.substrings.prefix
    for a, b in zip(loaded.substrings.arrays(), index.substrings.arrays(), strict=True):
        assert np.array_equal(a, b) and a.dtype == b.dtype
    texts = [f"{host}\n{e.question}" for host, e in zip(hosts, examples, strict=False)]
    found = [find_matches(t, loaded, cfg.detectors) for t in texts]
    assert found == [find_matches(t, index, cfg.detectors) for t in texts]
    assert all(found)
    # Without the substring detector there is no table, and the file says so.
    ngram_only = config(detectors=["ngram"])
    assert index_from_bytes(index_bytes(load_index(ngram_only, 7))).substrings is None


def test_parquet_and_nested_fields(tmp_path):
    import pyarrow as pa

    rows = [
        {"q": {"stem": "What is the boiling point of water at sea level in Celsius?"}, "k": "x1"}
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "b.parquet")
    bench = BenchmarkSet(path=str(tmp_path / "b.parquet"), fields={"question": "q.stem", "id": "k"})
    (example,) = load_set(bench)
    assert (example.benchmark, example.id, example.question[:7]) == ("b", "x1", "What is")


def test_bad_benchmark_files_are_spec_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "fine question"}\n{"prompt": "no question"}\n')
    with pytest.raises(ValidationError, match=r"bad.jsonl:2: no field `question`"):
        DecontaminateConfig.model_validate({"benchmarks": [str(bad)]})
    with pytest.raises(ValidationError, match="no file matches"):
        DecontaminateConfig.model_validate({"benchmarks": [str(tmp_path / "none*.jsonl")]})
    with pytest.raises(ValidationError, match="fields.answer"):
        DecontaminateConfig.model_validate(
            {"benchmarks": [{"path": str(bad), "fields": {"answer": "gold"}}]}
        )


def test_lm_eval_task_loads_offline_from_a_local_dataset(tmp_path, monkeypatch):
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    data = tmp_path / "tiny.jsonl"
    data.write_text((BENCH / "jqa_mini_ja.jsonl").read_text())
    (tmp_path / "tiny.yaml").write_text(
        "task: iptkit_tiny_qa\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: label\n'
    )
    bench = BenchmarkSet(lm_eval_task="iptkit_tiny_qa", lm_eval_include_path=str(tmp_path))
    examples = load_set(bench)
    assert len(examples) == 30 and examples[0].answer == "光合成"
    with pytest.raises(IptkitError, match="cannot load it offline.*never downloads"):
        load_set(BenchmarkSet(lm_eval_task="arc_easy"))


def test_a_glob_is_one_set_per_file():
    cfg = DecontaminateConfig.model_validate(
        {"benchmarks": ["bench/*.jsonl"]}, context={"base_dir": str(DATA)}
    )
    assert [Path(b.path).name for b in cfg.benchmarks] == ["arc_mini_en.jsonl", "jqa_mini_ja.jsonl"]
    assert [len(load_set(b)) for b in cfg.benchmarks] == [32, 30]


JA_ITEM = (
    "Debian では、apt を使ってパッケージをダウンロードしてインストールすることができます。"
    "依存関係にあるパッケージも自動的に解決されます。apt が自動で入れたパッケージのうち、"
    "どのパッケージからも必要とされなくなったものはどのコマンドで削除できますか。"
)
# Clean text on the same subject: it shares stock phrases with the item (「パッケージをダウン
# ロードしてインストール」, 20 letters; 「することができます」) but no passage.
JA_CLEAN = (
    "この手順では、ウェブブラウザーでパッケージをダウンロードしてインストールしたあとの"
    "設定を説明します。ダウンロードしたファイルは、ダブルクリックで開くことができます。"
    "インストールが終わったら、一度ログアウトしてください。"
)


def test_japanese_stock_phrases_are_not_contamination():
    """A window of 13 letters (one a word, before calibration) flagged clean Japanese on shared
    stock phrases; the default window of `ngram_spaceless` letters does not, and still finds
    the item verbatim and as a fragment of 40 characters."""
    bench = [BenchExample("ja_tech", "q1", JA_ITEM)]
    cfg = config(detectors=["ngram"])
    index = build_index(bench, cfg, 1)
    assert find_matches(JA_CLEAN, index, ("ngram",)) == []
    assert len(find_matches(JA_CLEAN + "\n" + JA_ITEM, index, ("ngram",))) == 1
    assert find_matches(JA_CLEAN + JA_ITEM[60:100], index, ("ngram",))
    one_letter_a_word = build_index(bench, config(detectors=["ngram"], ngram_spaceless=13), 1)
    assert find_matches(JA_CLEAN, one_letter_a_word, ("ngram",))


def test_ngram_windows_weigh_spaceless_letters_against_words():
    """13 words of spaced text, `ngram_spaceless` letters of Japanese, in between when mixed."""
    english = fold(" ".join(f"w{i}" for i in range(20)))
    starts, ends = english.ngram_spans(13, 21)
    assert (ends - starts).tolist() == [13] * 8
    japanese = fold("あ" * 30)
    starts, ends = japanese.ngram_spans(13, 21)
    assert (ends - starts).tolist() == [21] * 10
    # Mixed: each word weighs 21/13 letters, so 13 letters and 5 words (13*13 + 5*21 >= 273).
    mixed = fold("あ" * 13 + " word" * 10)
    starts, ends = mixed.ngram_spans(13, 21)
    assert int(ends[0] - starts[0]) == 13 + 5
    assert fold("あ" * 20).ngram_spans(13, 21)[0].size == 0
