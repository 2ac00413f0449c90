"""dedup_exact: normalisation switches and hashing without Beam; scope and survivors with Beam."""

import hashlib
import json
from pathlib import Path
from typing import Any

import apache_beam as beam

from iptkit.transforms.record import Record
from iptkit.transforms.stage import KEPT, REJECTS, StageContext
from iptkit.transforms.stages.dedup_exact import (
    DedupExact,
    DedupExactConfig,
    group_key,
    normalise,
    text_hash,
)


def run_stage(
    transform: beam.PTransform,
    records: list[Record],
    tmp_path: Path,
    distributions: dict[str, Any] | None = None,
):
    """Run `transform` on `records`; return (kept records by id, rejects as dicts by id). The
    Beam metric distributions the run reported are put in `distributions`, by name, if given."""
    out = tmp_path / "stage-output.json"
    tmp_path.mkdir(parents=True, exist_ok=True)

    def dump(rows: list[str]) -> None:
        out.write_text("[" + ",".join(rows) + "]")

    p = beam.Pipeline()
    result = p | beam.Create(records) | transform
    (
        (
            # As ASCII JSON: ids and texts may hold lone surrogates (undecodable bytes).
            result[KEPT] | "Kept" >> beam.Map(lambda r: json.dumps([KEPT, r.to_dict()])),
            result[REJECTS] | "Rejects" >> beam.Map(lambda r: json.dumps([REJECTS, r.to_dict()])),
        )
        | beam.Flatten()
        | beam.combiners.ToList()
        | beam.Map(dump)
    )
    run = p.run()
    run.wait_until_finish()
    if distributions is not None:
        for metric in run.metrics().query()["distributions"]:
            distributions[metric.key.metric.name] = metric.committed
    rows = json.loads(out.read_text())
    kept = {r["id"]: Record(**r) for tag, r in rows if tag == KEPT}
    rejects = {r["id"]: r for tag, r in rows if tag == REJECTS}
    assert len(kept) + len(rejects) == len(records), "every record comes out exactly once"
    return kept, rejects


def test_each_normalisation_switch():
    default = DedupExactConfig()
    assert normalise("  Straße \n\t Ｕｐ ", default) == "strasse ｕｐ"
    assert normalise("A  b", DedupExactConfig(collapse_whitespace=False)) == "a  b"
    assert normalise("ABC", DedupExactConfig(lowercase=False)) == "ABC"
    # Punctuation of any script goes, symbols and digits stay; off by default.
    text = "「こんにちは」。Hello, world! ¿Qué? 5 $"
    assert normalise(text, default) == text.casefold()
    assert (
        normalise(text, DedupExactConfig(remove_punctuation=True))
        == "こんにちはhello world qué 5 $"
    )
    # Digits of any script (ASCII, full-width, Arabic-Indic) go with remove_digits.
    assert normalise("room 12 / ３ / ٣", DedupExactConfig(remove_digits=True)) == "room / /"


def test_hash_is_a_strong_stable_digest_of_the_normalised_text():
    assert text_hash("abc") == hashlib.blake2b(b"abc", digest_size=16).hexdigest()
    assert len(text_hash("")) == 32 and text_hash("a") != text_hash("b")
    # An undecodable input byte (kept as a lone surrogate) hashes without error.
    assert text_hash("bad \udcff byte") != text_hash("bad \ufffd byte")
    cfg = DedupExactConfig()
    one = Record(id="1", source="a", text="Same  TEXT")
    other = Record(id="2", source="b", text="same text")
    assert group_key(one, cfg) == group_key(other, cfg)
    by_source = DedupExactConfig(scope="source")
    assert group_key(one, by_source) != group_key(other, by_source)


def _records() -> list[Record]:
    return [
        Record(id="web:3", source="web", text="The  same page."),
        Record(id="web:1", source="web", text="the same page."),
        Record(id="docs:9", source="docs", text="The same page."),
        Record(id="docs:2", source="docs", text="Another page."),
        Record(id="web:2", source="web", text="Another page!"),
        Record(id="web:4", source="web", text=""),
    ]


def test_scope_global_and_source_keep_the_lowest_id_in_any_order(tmp_path):
    records = _records()
    kept, rejects = run_stage(DedupExact(DedupExactConfig()), records, tmp_path)
    assert sorted(kept) == ["docs:2", "docs:9", "web:2", "web:4"]
    assert rejects["web:1"]["reason"] == "exact_duplicate"
    assert rejects["web:1"]["detail"] == "same normalised text as docs:9"
    assert rejects["web:3"]["stage"] == "dedup_exact"
    assert rejects["web:3"]["record"]["text"] == "The  same page."  # the whole record is kept

    # The same records in reverse order give the same choice.
    again, _ = run_stage(DedupExact(DedupExactConfig()), records[::-1], tmp_path)
    assert sorted(again) == sorted(kept)

    by_source, rejects = run_stage(
        DedupExact(
            DedupExactConfig(scope="source", remove_punctuation=True), StageContext("dedup_src")
        ),
        records,
        tmp_path,
    )
    assert sorted(by_source) == ["docs:2", "docs:9", "web:1", "web:2", "web:4"]
    assert set(rejects) == {"web:3"} and rejects["web:3"]["stage"] == "dedup_src"
    assert rejects["web:3"]["detail"] == "same normalised text as web:1"
