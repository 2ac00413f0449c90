"""langid with the real lid.176 model on the bundled English, Japanese, Polish and multilingual
text, the pure script-share functions, bad inputs, spec errors, and a whole run on two runners."""

import gzip
import io
import json
import pickle

import pyarrow.parquet as pq
import pytest
import zstandard
from conftest import DEMO_SPEC, files_under, run_cli
from pydantic import ValidationError

from iptkit.errors import SpecError
from iptkit.pipelines.spec import load_plan
from iptkit.transforms.record import Record
from iptkit.transforms.stage import Drop
from iptkit.transforms.stages.langid import LangId, LangidConfig, model_text
from iptkit.transforms.text.scripts import lang_scripts, script_shares, target_script_ratio

DATA = DEMO_SPEC.parent / "data"
INVENTORY = json.loads((DATA / "inventory.json").read_text())
MOSTLY_ENGLISH = INVENTORY["web_ja.jsonl.zst"]["mostly_english_at"]
# A Japanese post under a line of English site chrome: fastText still says ja (0.42 of letters
# are kana or Han).
JA_WITH_CHROME = (
    "今日は東京で新しいカフェに行きました。コーヒーがとても美味しかったです。"
    " Menu Home About Contact Login Cart Search Shop Blog News"
)
CLICK = "Click here now"  # lid.176: en at 0.8025


def lines(name: str) -> dict[int, str]:
    """The texts of a bundled JSONL file by line number, skipping lines that are not records."""
    raw = (DATA / name).read_bytes()
    raw = gzip.decompress(raw) if name.endswith(".gz") else raw
    if name.endswith(".zst"):
        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
    out = {}
    for n, line in enumerate(raw.decode().splitlines(), 1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("text"), str) and obj["text"].strip():
            out[n] = obj["text"]
    return out


def good_lines(name: str) -> list[str]:
    """The file's records less the junk and the mostly-English pages the inventory lists."""
    entry = INVENTORY[name]
    bad = set(entry["junk_at"]) | set(entry.get("mostly_english_at", []))
    return [text for n, text in lines(name).items() if n not in bad]


def stage(**options) -> LangId:
    s = LangId(LangidConfig(**options))
    s.setup()
    return s


def rec(text: str, **kw) -> Record:
    return Record(id="x", source="s", text=text, **kw)


def test_english_japanese_polish_are_recognised():
    s = stage()
    polish = (DATA / "docs" / "polish_notes.txt").read_text().split("\n\n")
    for texts, lang in (
        (good_lines("web_en.jsonl.gz"), "en"),
        (good_lines("web_ja.jsonl.zst"), "ja"),
        ([p for p in polish if p.strip()], "pl"),
        (good_lines("web_pl.jsonl.gz"), "pl"),
    ):
        assert len(texts) >= 3
        results = [s.apply(rec(t)) for t in texts]
        assert [r.lang for r in results] == [lang] * len(texts), [r.meta for r in results]
        assert min(r.lang_score for r in results) > 0.9
        assert all(r.meta["langid"][0] == [lang, r.lang_score] for r in results)


def test_multilingual_rows_match_their_hints():
    rows = [r for r in pq.read_table(DATA / "web_multi.parquet").to_pylist() if r["content"]]
    s = stage()
    predicted = [(s.apply(rec(row["content"])).lang, row["lang_hint"]) for row in rows]
    assert len(predicted) == sum(INVENTORY["web_multi.parquet"]["languages"].values())
    assert all(p == hint for p, hint in predicted), predicted


def test_script_ratio_drops_japanese_that_is_mostly_english():
    out = stage(script_ratio={"ja": 0.6}).apply(rec(JA_WITH_CHROME))
    assert isinstance(out, Drop) and out.reason == "script_ratio"
    assert out.detail.startswith("predicted ja (") and "0.42" in out.detail
    assert "han+kana, below 0.6" in out.detail
    assert stage().apply(rec(JA_WITH_CHROME)).lang == "ja"  # the check, not the model, drops it

    pages = lines("web_ja.jsonl.zst")
    good = good_lines("web_ja.jsonl.zst")
    # On the corpus's two mostly-English pages fastText itself answers en...
    predicting = stage(keep=["ja"], script_ratio={"ja": 0.6})
    for n in MOSTLY_ENGLISH:
        out = predicting.apply(rec(pages[n]))
        assert isinstance(out, Drop) and out.reason == "lang_not_kept", out
        assert out.detail.startswith("predicted en")
    assert all(isinstance(predicting.apply(rec(t)), Record) for t in good)
    # ...so the script check catches them where their source declares them Japanese.
    declared = stage(trust_declared=True, script_ratio={"ja": 0.6})
    for n in MOSTLY_ENGLISH:
        out = declared.apply(rec(pages[n], lang="ja"))
        assert isinstance(out, Drop) and out.reason == "script_ratio", out
        assert out.detail.startswith("declared ja, but 0.0")
    kept = [declared.apply(rec(t, lang="ja")) for t in good]
    assert all(isinstance(r, Record) and r.lang == "ja" for r in kept)


def test_script_shares_on_crafted_text():
    assert script_shares("人々は日本語を話す") == {"kana": 3 / 9, "han": 6 / 9}
    assert target_script_ratio("人々は日本語を話す。", "ja") == 1.0
    assert script_shares("日本かな 12") == {"kana": 0.5, "han": 0.5}
    boilerplate = "日本語です。" + " Subscribe to our newsletter for more news today" * 2
    assert target_script_ratio(boilerplate, "ja") == pytest.approx(5 / 85)
    assert target_script_ratio("한국어 텍스트입니다 (韓國語)", "ko") == 1.0
    assert target_script_ratio("한국어 텍스트입니다", "ja") == 0.0
    assert target_script_ratio("Привет, мир! 2024 (hello)", "ru") == pytest.approx(9 / 14)
    assert script_shares("Привет, мир!") == {"cyrillic": 1.0}
    assert script_shares("12345 !!! 2024-01-01") == {}
    assert target_script_ratio("12345 !!!", "ja") == 0.0
    assert target_script_ratio("text", "xx") is None
    assert lang_scripts("jpn_Jpan") == lang_scripts("ja") == {"kana", "han"}
    assert lang_scripts("srp_Latn") == {"latin"} and lang_scripts("sr") == {"cyrillic"}


def test_keep_min_score_and_top_k():
    english = good_lines("web_en.jsonl.gz")[0]
    dropped = stage(keep=["ja", "pl"]).apply(rec(english))
    assert isinstance(dropped, Drop) and dropped.reason == "lang_not_kept"
    assert dropped.detail.startswith("predicted en (0.9") and dropped.detail.endswith("ja, pl")
    assert stage(keep=["en"]).apply(rec(english)).lang == "en"

    assert stage(min_score=0.8).apply(rec(CLICK)).lang_score == 0.8025
    low = stage(min_score=0.9).apply(rec(CLICK))
    assert isinstance(low, Drop) and low.reason == "low_lang_score"
    assert low.detail == "predicted en (0.802), below min_score 0.9"
    by_lang = {"en": 0.9, "default": 0.0}
    assert stage(min_score=by_lang).apply(rec(CLICK)).reason == "low_lang_score"
    assert stage(min_score=by_lang).apply(rec("Dzień dobry")).lang == "pl"  # 0.72, default 0
    assert stage(min_score={"pl": 0.9, "default": 0.5}).apply(rec(CLICK)).lang == "en"
    assert stage(min_score={"pl": 0.0, "default": 0.9}).apply(rec(CLICK)).reason == (
        "low_lang_score"
    )

    top = stage(top_k=2).apply(rec(CLICK)).meta["langid"]
    assert top == [["en", 0.8025], ["es", 0.0247]]
    assert len(stage(top_k=5).apply(rec(CLICK)).meta["langid"]) == 5


def test_tag_mode_keeps_every_record_and_notes_why():
    tag = stage(keep=["ja"], script_ratio={"ja": 0.6}, action="tag")
    english = tag.apply(rec(CLICK, meta={"url": "u"}))
    assert english.lang == "en" and english.lang_score == 0.8025
    assert english.meta["url"] == "u" and english.meta["langid_failed"] == "lang_not_kept"
    chrome = tag.apply(rec(JA_WITH_CHROME))
    assert chrome.lang == "ja" and chrome.meta["langid_failed"] == "script_ratio"
    empty = tag.apply(rec("12345 !!!", lang="en"))
    assert empty.lang is None and empty.lang_score is None
    assert empty.meta == {"langid": [], "langid_failed": "no_language"}
    passing = tag.apply(rec("日本語の文章です。東京は晴れです。"))
    assert passing.lang == "ja" and "langid_failed" not in passing.meta


def test_trust_declared_skips_prediction_but_not_the_checks():
    english = good_lines("web_en.jsonl.gz")[0]
    trusted = stage(trust_declared=True)
    kept = trusted.apply(rec(english, lang="de", meta={"url": "u"}))
    assert kept.lang == "de" and kept.lang_score is None and kept.meta == {"url": "u"}
    assert trusted.apply(rec(english)).lang == "en"  # nothing declared: predicted
    assert trusted.apply(rec(english, lang="")).lang == "en"
    dropped = stage(trust_declared=True, keep=["en"]).apply(rec(english, lang="de"))
    assert isinstance(dropped, Drop) and dropped.reason == "lang_not_kept"
    assert dropped.detail == "declared de; kept: en"
    # A declaration has no score, so no min_score applies to it.
    assert stage(trust_declared=True, min_score=0.99).apply(rec(CLICK, lang="en")).lang == "en"
    overwritten = stage().apply(rec(english, lang="de", lang_score=1.0))
    assert overwritten.lang == "en" and overwritten.lang_score < 1.0


def test_bad_inputs_never_crash_and_drops_are_named():
    s = stage()
    for text in ("", " \n\t ", "12345 !!! 2024", "★★★ $$$ 🔥🔥🔥", "\ud800\udcff"):
        out = s.apply(rec(text))
        assert isinstance(out, Drop) and out.reason == "no_language", text
    assert s.apply(rec("a" * 1_000_000)).lang == "en"  # one repeated letter: a weak guess
    assert s.apply(rec("あ" * 1_000_000)).lang == "ja"
    assert s.apply(rec("日本語 English Русский 한국어 ١٢٣ 😀")).lang is not None
    assert s.apply(rec("bad \udcff byte in an English sentence about the garden")).lang == "en"
    huge = "This is an ordinary English sentence about gardens.\n" * 40_000  # 2 MB
    assert s.apply(rec(huge)).lang == "en"
    assert s.apply(rec(huge.replace("\n", " "))).lang == "en"  # one 2 MB line
    assert len(model_text(huge, 10_000)) <= 10_000
    assert model_text("a\nb\r\n\tc\u2028d  e\x00f", 100) == "a b c d e\x00f"
    assert "\n" not in model_text("x\n" * 10, 100)


def test_stage_pickles_without_the_model():
    s = stage()
    clone = pickle.loads(pickle.dumps(s))
    assert clone._model is None and s._model is not None
    clone.setup()
    assert clone.apply(rec("Dzień dobry, jak się masz? To jest polski tekst.")).lang == "pl"


def test_missing_model_is_a_spec_error(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "output: out\nsources:\n  - {name: a, format: jsonl, path: a.jsonl}\n"
        "stages:\n  - langid: {model: models/lid.218e.bin}\n"
    )
    with pytest.raises(SpecError) as exc:
        load_plan(str(spec))
    (problem,) = exc.value.problems
    assert problem.key == "stages.0.langid.model" and problem.line == 5
    assert "no such file" in problem.message and "lid.218e.bin" in problem.message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"script_ratio": {"xx": 0.6}}, "no known script for xx"),
        ({"script_ratio": {"ja": 60}}, "ratios are between 0 and 1"),
        ({"min_score": 1.5}, "scores are between 0 and 1"),
        ({"min_score": {"en": 0.5, "default": -0.1}}, "scores are between 0 and 1"),
        ({"keep": []}, "at least 1 item"),
        ({"top_k": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValidationError, match=message):
        LangidConfig(**options)


def test_run_balances_its_ledger_and_is_identical_on_two_workers(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""\
seed: 5
output: {tmp_path / "one"}
sources:
  - {{name: en, format: jsonl, path: {DATA / "web_en.jsonl.gz"}}}
  - {{name: ja, format: jsonl, path: {DATA / "web_ja.jsonl.zst"}, lang: ja}}
  - {{name: multi, format: parquet, path: {DATA / "web_multi.parquet"}, text_field: content, id_field: doc_id}}
stages:
  - normalize: {{form: NFKC}}
  - langid: {{keep: [en, ja], script_ratio: {{ja: 0.6}}, trust_declared: true, batch_size: 16}}
""")
    assert run_cli("run", spec) == 0
    two_workers = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    assert run_cli("run", spec, "--out", tmp_path / "two", *two_workers) == 0

    stats = json.loads((tmp_path / "one" / "stats.json").read_text())
    row = stats["stages"]["langid"]
    assert row["in"] == stats["stages"]["normalize"]["out"]
    assert row["in"] == row["out"] + sum(row["dropped"].values())
    assert row["dropped"] == {"lang_not_kept": 19, "script_ratio": 2, "no_language": 1}
    rejects = [
        json.loads(line)
        for path in sorted((tmp_path / "one" / "rejects" / "langid").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    by_reason = {}
    for r in rejects:
        by_reason.setdefault(r["reason"], set()).add(r["id"].rsplit(":", 1)[-1])
    assert by_reason["script_ratio"] == {str(n) for n in MOSTLY_ENGLISH}
    assert all(r["source"] == "multi" for r in rejects if r["reason"] == "lang_not_kept")

    def pick(run):
        return {k: v for k, v in files_under(run).items() if k.startswith(("output/", "rejects/"))}

    one = pick(tmp_path / "one")
    assert any(k.startswith("rejects/langid/") for k in one)
    assert one == pick(tmp_path / "two")
