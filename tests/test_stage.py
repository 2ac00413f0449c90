"""The stage contract: per-record and batched stages, exceptions as rejects, path options."""

import dataclasses

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from pydantic import ValidationError

from iptkit.transforms.record import Record
from iptkit.transforms.stage import ApplyStage, Drop, RecordStage
from iptkit.transforms.stage_config import BASE_DIR, ExistingPath, StageConfig


class Upper(RecordStage):
    name = "upper"

    def apply(self, record):
        if record.text == "drop":
            return Drop("asked_to", "the text said so")
        if record.text == "boom":
            raise RuntimeError("cannot")
        return dataclasses.replace(record, text=record.text.upper())


class BatchedUpper(Upper):
    name = "batched"
    batch_size = 4

    def apply_batch(self, records):
        if any(r.text == "boom" for r in records):
            raise RuntimeError("a bad record spoils the batch")
        return [self.apply(r) for r in records]


@pytest.mark.parametrize("stage", [Upper(), BatchedUpper()])
def test_kept_rejects_and_exceptions(stage):
    texts = ["a", "drop", "boom", "b", "c", "d", "e"]
    with beam.Pipeline() as p:
        out = p | beam.Create([Record(id=t, source="s", text=t) for t in texts]) | ApplyStage(stage)
        kept = out["kept"] | "ids" >> beam.Map(lambda r: r.text)
        reasons = out["rejects"] | beam.Map(lambda r: (r.id, r.stage, r.reason))
        assert_that(kept, equal_to(["A", "B", "C", "D", "E"]), label="kept")
        assert_that(
            reasons,
            equal_to([("drop", stage.name, "asked_to"), ("boom", stage.name, "exception")]),
            label="rejects",
        )


class WithModel(StageConfig):
    model: ExistingPath


def test_existing_path_resolves_against_the_spec_folder(tmp_path):
    (tmp_path / "m.bin").write_bytes(b"x")
    cfg = WithModel.model_validate({"model": "m.bin"}, context={BASE_DIR: str(tmp_path)})
    assert cfg.model == str(tmp_path / "m.bin")
    with pytest.raises(ValidationError, match="no such file or folder"):
        WithModel.model_validate({"model": "missing.bin"}, context={BASE_DIR: str(tmp_path)})
