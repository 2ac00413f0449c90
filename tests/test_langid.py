"""langid with the real lid.176 model on real English, Japanese and Polish text."""

import gzip
import io
import json
import pickle

import pyarrow.parquet as pq
import pytest
import zstandard
from conftest import DEMO_SPEC, files_under, run_cli

from iptkit.errors import SpecError
from iptkit.pipelines.spec import load_plan
from iptkit.transforms.langid import LangId, LangidConfig, model_text
from iptkit.transforms.record import Record
from iptkit.transforms.scripts import lang_scripts, script_shares, target_script_ratio
from iptkit.transforms.stage import Drop

DATA = DEMO_SPEC.parent / "data"
INVENTORY = json.loads((DATA / "inventory.json").read_text())


def lines(name: str) -> list[tuple[int, dict]]:
    raw = (DATA / name).read_bytes()
    raw = gzip.decompress(raw) if name.endswith(".gz") else raw
    if name.endswith(".zst"):
        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
    out = []
    for n, line in enumerate(raw.decode().splitlines(), 1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("text"), str) and obj["text"].strip():
            out.append((n, obj))
    return out


def stage(**options) -> LangId:
    s = LangId(LangidConfig(**options))
    s.setup()
    return s


def rec(text: str, **kw) -> Record:
    return Record(id="x", source="s", text=text, **kw)


def good_lines(name: str) -> list[str]:
    entry = INVENTORY[name]
    bad = {p for ps in entry["malformed_at"].values() for p in ps} | set(entry["junk_at"])
    bad |= set(entry.get("mostly_english_at", []))
    return [obj["text"] for n, obj in lines(name) if n not in bad]


def test_english_japanese_polish_are_recognised():
    s = stage()
    english, japanese = good_lines("web_en.jsonl.gz"), good_lines("web_ja.jsonl.zst")
    polish = (DATA / "docs" / "polish_notes.txt").read_text().split("\n\n")
    for texts, lang in ((english, "en"), (japanese, "ja"), (polish, "pl")):
        results = [s.apply(rec(t)) for t in texts]
        assert all(r.lang == lang for r in results), [
            r.meta["langid"] for r in results if r.lang != lang
        ]
        assert min(r.lang_score for r in results) > 0.5


def test_multilingual_rows_match_their_hints():
    table = pq.read_table(DATA / "web_multi.parquet").to_pylist()
    s = stage()
    pairs = [
        (s.apply(rec(row["content"])).lang, row["lang_hint"]) for row in table if row["content"]
    ]
    assert sum(p == h for p, h in pairs) == len(pairs), pairs


def test_script_ratio_drops_mostly_english_japanese_pages():
    # The model itself says "ja" here, yet most letters are Latin boilerplate.
    boiler = (
        "今日は東京で新しいカフェに行きました。コーヒーがとても美味しかったです。"
        " Menu Home About Contact Login Cart Search Shop Blog News"
    )
    out = stage(script_ratio={"ja": 0.6}).apply(rec(boiler))
    assert isinstance(out, Drop) and out.reason == "script_ratio" and "0.42" in out.detail
    assert isinstance(stage().apply(rec(boiler)), Record)
    # The corpus's mostly-English "Japanese" pages leave a Japanese-only corpus either way.
    s = stage(keep=["ja"], script_ratio={"ja": 0.6})
    by_line = dict(lines("web_ja.jsonl.zst"))
    for n in INVENTORY["web_ja.jsonl.zst"]["mostly_english_at"]:
        out = s.apply(rec(by_line[n]["text"]))
        assert isinstance(out, Drop) and out.reason in ("script_ratio", "lang_not_kept"), out
    kept = [s.apply(rec(t)) for t in good_lines("web_ja.jsonl.zst")]
    assert all(isinstance(r, Record) for r in kept)


def test_script_shares_on_crafted_text():
    assert script_shares("日本かな 12") == {"kana": 0.5, "han": 0.5}
    mixed = "日本語です。" + " Subscribe to our newsletter for more news today" * 2
    assert target_script_ratio(mixed, "ja") < 0.2
    assert target_script_ratio("한국어 텍스트입니다", "ko") == 1.0
    assert target_script_ratio("Привет, мир! 2024", "ru") == 1.0
    assert target_script_ratio("12345 !!!", "ja") == 0.0
    assert target_script_ratio("text", "xx") is None
    assert lang_scripts("jpn_Jpan") == lang_scripts("ja") and lang_scripts("srp_Latn") == {"latin"}


def test_keep_min_score_top_k_and_tag_mode():
    english = good_lines("web_en.jsonl.gz")[0]
    dropped = stage(keep=["ja"]).apply(rec(english))
    assert (
        isinstance(dropped, Drop)
        and dropped.reason == "lang_not_kept"
        and "predicted en" in dropped.detail
    )
    low = stage(min_score={"en": 1.01, "default": 0.0}).apply(rec(english))
    assert isinstance(low, Drop) and low.reason == "low_lang_score"
    assert isinstance(stage(min_score=0.5).apply(rec(english)), Record)
    out = stage(top_k=2).apply(rec(english))
    assert len(out.meta["langid"]) == 2 and out.meta["langid"][0][0] == "en"
    tagged = stage(keep=["ja"], action="tag").apply(rec(english, meta={"url": "u"}))
    assert tagged.lang == "en" and tagged.meta["langid_failed"] == "lang_not_kept"
    assert tagged.meta["url"] == "u"


def test_trust_declared_skips_prediction():
    english = good_lines("web_en.jsonl.gz")[0]
    kept = stage(trust_declared=True).apply(rec(english, lang="de"))
    assert kept.lang == "de" and "langid" not in kept.meta
    assert stage().apply(rec(english, lang="de")).lang == "en"


def test_bad_inputs_never_crash():
    s = stage()
    empty = s.apply(rec(" \n\t "))
    assert isinstance(empty, Drop) and empty.reason == "no_language"
    assert isinstance(s.apply(rec("a" * 1_000_000)), (Record, Drop))
    huge = "This is an ordinary English sentence about gardens. " * 40_000  # 2 MB, one line
    assert s.apply(rec(huge)).lang == "en"
    assert model_text("a\nb\r\nc", 100) == "a b c"
    assert isinstance(s.apply(rec("日本語 English Русский 한국어 ١٢٣")), Record)


def test_stage_pickles_without_the_model():
    s = stage()
    clone = pickle.loads(pickle.dumps(s))
    assert clone._model is None
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
    assert "no such file" in problem.message


def test_pipeline_run_balances_and_is_deterministic_across_workers(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""\
seed: 5
output: {tmp_path / "one"}
sources:
  - {{name: en, format: jsonl, path: {DATA / "web_en.jsonl.gz"}}}
  - {{name: ja, format: jsonl, path: {DATA / "web_ja.jsonl.zst"}}}
  - {{name: multi, format: parquet, path: {DATA / "web_multi.parquet"}, text_field: content, id_field: doc_id}}
stages:
  - normalize: {{form: NFKC}}
  - langid: {{keep: [en, ja], script_ratio: {{ja: 0.6}}, batch_size: 16}}
""")
    assert run_cli("run", spec) == 0
    assert (
        run_cli(
            "run",
            spec,
            "--out",
            tmp_path / "two",
            "--direct_num_workers=2",
            "--direct_running_mode=multi_processing",
        )
        == 0
    )
    stats = json.loads((tmp_path / "one" / "stats.json").read_text())
    row = stats["stages"]["langid"]
    assert row["in"] == row["out"] + sum(row["dropped"].values())
    assert row["dropped"]["lang_not_kept"] >= 19  # the 19 non-en/ja parquet rows

    def pick(run):
        return {k: v for k, v in files_under(run).items() if k.startswith(("output/", "rejects/"))}

    assert pick(tmp_path / "one") == pick(tmp_path / "two")
