"""The stage contract: the three bases (record, group, model), the shared piece (rejects,
exceptions, counters and time), self-registration, the context's file placement, and the
exception ceiling of a whole run."""

import dataclasses
import json

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from conftest import run_cli, spec_with_test_stage
from llm_helpers import tiny_models
from pydantic import ValidationError

from iptkit.rundir import RunDir
from iptkit.transforms.inference.core import Generation, GenerationRequest, InferenceOptions
from iptkit.transforms.record import Record
from iptkit.transforms.stage import (
    Drop,
    GroupStage,
    ModelStage,
    RecordStage,
    Stage,
    StageContext,
    metrics_namespace,
    stage_types,
)
from iptkit.transforms.stage_config import BASE_DIR, ExistingPath, StageConfig


class Upper(RecordStage):
    def apply(self, record):
        if record.text == "drop":
            return Drop("asked_to", "the text said so")
        if record.text == "boom":
            raise RuntimeError("cannot")
        return dataclasses.replace(record, text=record.text.upper())


class BatchedUpper(Upper):
    batch_size = 4

    def apply_batch(self, records):
        if any(r.text == "boom" for r in records):
            raise RuntimeError("a bad record spoils the batch")
        return [self.apply(r) for r in records]


def _records(texts, source="s"):
    return [Record(id=t, source=source, text=t) for t in texts]


def _run_in(p, stage, records):
    """Kept texts and (id, stage, reason) of the rejects of `stage` over `records` in `p`."""
    out = p | beam.Create(records) | stage
    kept = out["kept"] | "texts" >> beam.Map(lambda r: r.text)
    return kept, out["rejects"] | beam.Map(lambda r: (r.id, r.stage, r.reason))


@pytest.mark.parametrize("cls", [Upper, BatchedUpper])
def test_record_stage_kept_rejects_and_exceptions(cls):
    stage = cls(StageConfig(), StageContext("upper"))
    p = beam.Pipeline()
    kept, reasons = _run_in(p, stage, _records(["a", "drop", "boom", "b", "c", "d", "e"]))
    assert_that(kept, equal_to(["A", "B", "C", "D", "E"]), label="kept")
    expected = [("drop", "upper", "asked_to"), ("boom", "upper", "exception")]
    assert_that(reasons, equal_to(expected), label="rejects")
    result = p.run()
    result.wait_until_finish()
    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query()["counters"]
        if c.key.metric.namespace == metrics_namespace("upper")
    }
    assert counters["in"] == 7 and counters["out"] == 5
    assert counters["dropped.exception"] == 1 and counters["dropped.asked_to"] == 1
    assert counters["process_us"] > 0  # every stage shows its time


def test_exception_reject_carries_the_traceback():
    stage = Upper(StageConfig(), StageContext("upper"))
    with beam.Pipeline() as p:
        out = p | beam.Create(_records(["boom"])) | stage
        details = out["rejects"] | beam.Map(lambda r: r.detail)
        assert_that(
            details,
            lambda got: (
                (
                    len(got) == 1
                    and got[0].startswith("RuntimeError: cannot")
                    and "test_stage.py" in got[0]
                    and 'raise RuntimeError("cannot")' in got[0]
                )
                or pytest.fail(f"no traceback in {got}")
            ),
        )


def test_selection_applies_the_stage_to_chosen_sources_only():
    stage = Upper(StageConfig(sources=["web"]), StageContext("upper"))
    records = _records(["x"], "web") + [Record(id="y", source="docs", text="boom")]
    with beam.Pipeline() as p:
        kept, reasons = _run_in(p, stage, records)
        assert_that(kept, equal_to(["X", "boom"]), label="kept")
        assert_that(reasons, equal_to([]), label="rejects")


class _Longest(GroupStage):
    """Keeps the longest text per first letter; a group starting with 'x' raises."""

    def group_key(self, record):
        return record.text[0]

    def decide_group(self, key, records):
        if key == "x":
            raise ValueError("no x groups")
        best = max(records, key=lambda r: (len(r.text), r.id))
        for r in records:
            yield r if r is best or r.id == best.id else (r, Drop("shorter", f"than {best.id}"))


def test_group_stage_decides_per_key_and_an_exception_rejects_its_group():
    stage = _Longest(StageConfig(), StageContext("longest"))
    records = _records(["apple", "ant", "bee", "beetle", "x1", "x22"])
    with beam.Pipeline() as p:
        kept, reasons = _run_in(p, stage, records)
        assert_that(kept, equal_to(["apple", "beetle"]), label="kept")
        assert_that(
            reasons,
            equal_to(
                [
                    ("ant", "longest", "shorter"),
                    ("bee", "longest", "shorter"),
                    ("x1", "longest", "exception"),
                    ("x22", "longest", "exception"),
                ]
            ),
            label="rejects",
        )


class _Echo(ModelStage):
    """Asks the model to continue each text; `skip` is not asked, `ask?` is dropped before
    the model, `parse!` raises while parsing."""

    def wants(self, record):
        return record.text != "skip"

    def request(self, record, tokenizer):
        if record.text == "ask?":
            return Drop("cannot_ask", "a question mark")
        return GenerationRequest(record.text, 0)

    def parse(self, record, generation: Generation):
        if record.text == "parse!":
            raise KeyError("bad output")
        return dataclasses.replace(record, meta={"new_tokens": generation.new_tokens})


def test_model_stage_prompts_generates_and_parses_with_a_real_model(tmp_path):
    tools = tiny_models()
    tokenizer = tools.build_tokenizer(["hello world", "ask", "parse"], vocab_size=300)
    tools.tiny_llama(tokenizer, seed=0).save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    config = InferenceOptions(model=str(tmp_path / "m"), max_new_tokens=3, max_model_len=64)
    stage = _Echo(config, StageContext("echo", run=RunDir(str(tmp_path / "run"))))
    records = _records(["hello", "world", "skip", "ask?", "parse!"])
    with beam.Pipeline() as p:
        out = p | beam.Create(records) | stage
        kept = out["kept"] | beam.Map(lambda r: (r.text, r.meta.get("new_tokens")))
        reasons = out["rejects"] | beam.Map(lambda r: (r.id, r.reason))
        assert_that(kept, equal_to([("hello", 3), ("world", 3), ("skip", None)]), label="kept")
        assert_that(
            reasons, equal_to([("ask?", "cannot_ask"), ("parse!", "exception")]), label="rej"
        )


def test_every_stage_registers_itself_with_its_config_and_summary():
    types = stage_types()
    assert list(types) == [
        "normalize", "langid", "filters", "dedup_exact", "dedup_near", "extract", "categorize",
        "xcit", "decontaminate", "synthesize", "translate", "respond", "judge", "mix", "pack",
        "preference",
    ]  # fmt: skip
    for name, cls in types.items():
        assert issubclass(cls, Stage) and cls.type_name == name and cls.summary
        assert issubclass(cls.config_class, StageConfig)
        assert cls.__module__ == f"iptkit.transforms.stages.{name}"  # one module per stage
    assert [n for n, c in types.items() if c.tail] == ["mix", "pack"]


def test_a_stage_needs_config_and_summary_to_register():
    with pytest.raises(TypeError, match="names its config and summary"):

        class _Bad(RecordStage, stage="bad_stage_for_test"):
            def apply(self, record):
                return record

    assert "bad_stage_for_test" not in stage_types()


def test_the_context_places_side_files_in_the_run_directory(tmp_path):
    run = RunDir(str(tmp_path))
    stages = stage_types()
    near = stages["dedup_near"](None, StageContext("dedup_near_2", 1, run))
    assert near.files() == {"clusters": str(tmp_path / "dedup_near_2" / "clusters.json")}
    (tmp_path / "dedup_near_2").mkdir()
    (tmp_path / "dedup_near_2" / "clusters.json").write_text("{}")
    assert run.index({"dedup_near_2": near.files(), "other": {"x": str(tmp_path / "no")}}) == {
        "dedup_near_2": {"clusters": "dedup_near_2/clusters.json"}
    }


class _Fragile(RecordStage):
    """Raises on every record whose text contains 'e'."""

    type_name, config_class, summary = "fragile", StageConfig, "raises on e"

    def apply(self, record):
        if "e" in record.text:
            raise ZeroDivisionError("e is not allowed")
        return record


def test_a_stage_raising_past_the_ceiling_fails_the_run(corpus, monkeypatch, capsys):
    spec = spec_with_test_stage(corpus, monkeypatch, _Fragile)
    assert run_cli("run", spec) == 5
    err = capsys.readouterr().err
    assert "raised an exception" in err and "max_exception_share 0.01" in err
    assert "ZeroDivisionError: e is not allowed" in err and "in apply" in err
    stats = json.loads((corpus.parent / "run" / "stats.json").read_text())
    assert stats["exception_ceiling"] and stats["exception_ceiling"][0].startswith("stage fragile")
    assert stats["violations"] == []  # the ledger still balances: the records are rejects

    # A ceiling the user raises lets the same run pass, with the rejects kept.
    assert run_cli("run", spec, "--set", "max_exception_share=1") == 0
    stats = json.loads((corpus.parent / "run" / "stats.json").read_text())
    assert stats["stages"]["fragile"]["dropped"]["exception"] >= 1
    assert stats["exception_ceiling"] == []


class WithModel(StageConfig):
    model: ExistingPath


def test_existing_path_resolves_against_the_spec_folder(tmp_path):
    (tmp_path / "m.bin").write_bytes(b"x")
    cfg = WithModel.model_validate({"model": "m.bin"}, context={BASE_DIR: str(tmp_path)})
    assert cfg.model == str(tmp_path / "m.bin")
    with pytest.raises(ValidationError, match="no such file or folder"):
        WithModel.model_validate({"model": "missing.bin"}, context={BASE_DIR: str(tmp_path)})
