"""The ledger: assembly from counts, the invariant, the summary table, and a run that loses
records (a deliberately broken stage) failing with exit code 3."""

import dataclasses
import json

import apache_beam as beam
import pytest
from conftest import run_cli, spec_with_test_stage

from iptkit.files import atomic_write
from iptkit.pipelines.ledger import assemble, summary_table, violations
from iptkit.transforms.record import Record
from iptkit.transforms.stage import Drop, Expand, RecordStage, Stage
from iptkit.transforms.stage_config import StageConfig

COUNTS = {
    "read\tout": 8,
    "read\tdropped\tbad_json": 2,
    "normalize\tout": 7,
    "normalize\tdropped\tinvalid_utf8": 1,
}


def test_assemble_and_balanced():
    stats = assemble(["normalize"], COUNTS, keep_records=True)
    assert stats["read"] == 10 and stats["rejected_at_read"] == 2 and stats["output_records"] == 7
    assert stats["stages"]["normalize"] == {"in": 8, "out": 7, "dropped": {"invalid_utf8": 1}}
    assert violations(stats) == []
    assert assemble(["normalize"], COUNTS, keep_records=False)["output_records"] is None


def test_stage_with_no_events_counts_zero_and_unbalanced_is_found():
    stats = assemble(["normalize", "other"], {"read\tout": 3, "normalize\tout": 3}, True)
    assert stats["stages"]["other"] == {"in": 3, "out": 0, "dropped": {}}
    assert violations(stats) == ["stage other: in 3 != out 0 + dropped 0"]


def test_summary_table_lists_reasons_and_times():
    table = summary_table(assemble(["normalize"], COUNTS, True), {"normalize": 1.234})
    header, read, norm = table.splitlines()
    assert header.split()[:5] == ["stage", "in", "out", "dropped", "time"]
    assert read.split()[:6] == ["read", "10", "8", "2", "-", "bad_json"]
    assert "1.23" in norm and "invalid_utf8 1" in norm


def test_added_records_balance_only_when_announced():
    counts = {**COUNTS, "normalize\tadded\tturns": 2, "normalize\tout": 9}
    stats = assemble(["normalize"], counts, keep_records=True)
    assert stats["stages"]["normalize"]["added"] == {"turns": 2} and violations(stats) == []
    assert "added by turns 2" in summary_table(stats, {})
    del counts["normalize\tadded\tturns"]
    assert violations(assemble(["normalize"], counts, True)) == [
        "stage normalize: in 8 != out 9 + dropped 1"
    ]


class _Options(StageConfig):
    pass


class _Twice(RecordStage):
    """Doubles web records (announced as added), drops chats: a stage that expands records."""

    type_name, config_class, summary = "twice", _Options, "test"

    def apply(self, record: Record) -> Record | Drop | Expand:
        if record.source == "chats":
            return Drop("no_chats")
        copy = dataclasses.replace(record, id=record.id + "#2")
        return Expand([record, copy], "copy") if record.source == "web" else record


def test_an_expanding_stage_balances_and_its_records_reach_the_output(corpus, monkeypatch):
    spec = spec_with_test_stage(corpus, monkeypatch, _Twice)
    assert run_cli("run", spec) == 0
    stats = json.loads((corpus.parent / "run" / "stats.json").read_text())
    row = stats["stages"]["twice"]
    assert row["added"] == {"copy": 3} and row["dropped"] == {"no_chats": 1}
    assert row["in"] + 3 == row["out"] + 1 and stats["output_records"] == row["out"]


class _Lossy(Stage):
    """Keeps non-web records and emits no rejects: web records vanish (a bug on purpose)."""

    type_name, config_class, summary = "lossy", _Options, "drops web records without a reject"

    def run(self, records):
        kept = records | beam.Filter(lambda r: not r.id.startswith("web"))
        rejects = records | "none" >> beam.Filter(lambda r: False)
        return {"kept": kept, "rejects": rejects}


def test_a_stage_that_loses_records_fails_the_run(corpus, monkeypatch, capsys):
    spec = spec_with_test_stage(corpus, monkeypatch, _Lossy)
    assert run_cli("run", spec) == 3
    err = capsys.readouterr().err
    assert "ledger does not balance" in err and "stage lossy: in 6 != out 3 + dropped 0" in err
    stats = json.loads((corpus.parent / "run" / "stats.json").read_text())
    assert stats["violations"] == ["stage lossy: in 6 != out 3 + dropped 0"]


def test_atomic_write_leaves_no_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "out" / "file.json"
    atomic_write(str(target), b"first")
    from apache_beam.io.filesystems import FileSystems

    def boom(*_args, **_kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(FileSystems, "rename", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(target), b"second")
    assert target.read_bytes() == b"first"
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]


def test_events_are_folded_per_bundle_and_exact_across_bundles():
    """Each bundle hands the ledger one dict of counts, not one event per element (the
    in-memory runner holds the ledger's Flatten whole), and the sums are exact over bundles:
    the multi-threaded DirectRunner splits 3,000 elements over workers and bundles."""
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.util import assert_that, equal_to

    from iptkit.pipelines.ledger import CountAs, CountEvents, KeyCounts
    from iptkit.transforms.bundle_fold import Merged

    def few(folded):
        assert 0 < len(folded) < 300, f"{len(folded)} events for 3,000 elements"

    options = PipelineOptions(["--direct_num_workers=2", "--direct_running_mode=multi_threading"])
    with beam.Pipeline(options=options) as p:
        numbers = p | beam.Create(range(3000)) | beam.Reshuffle()
        parity = numbers | "Parity" >> CountEvents(lambda n: "odd" if n % 2 else "even")
        every = numbers | "All" >> CountAs("all")
        folded = (parity, every) | beam.Flatten()
        assert_that(folded | "How many" >> beam.combiners.ToList(), few, label="Few")
        totals = folded | beam.CombineGlobally(Merged(KeyCounts()))
        assert_that(totals, equal_to([{"all": 3000, "even": 1500, "odd": 1500}]), label="Sums")
