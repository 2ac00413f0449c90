"""Options every stage accepts, and the base of each stage's own options model."""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo

# The spec loader validates stage options with `context={"base_dir": <the spec's folder>}`.
BASE_DIR = "base_dir"


def _existing_path(value: str, info: ValidationInfo) -> str:
    """A path relative to the spec's folder, made absolute; it must exist (checked before the
    run starts, so a missing model file is a spec error naming its key and line)."""
    base = (info.context or {}).get(BASE_DIR, os.getcwd())
    path = (
        value if "://" in value else os.path.normpath(os.path.join(base, os.path.expanduser(value)))
    )
    if "://" not in path and not os.path.exists(path):
        raise ValueError(
            f"no such file or folder: {path} (paths are relative to the spec's folder)"
        )
    return path


ExistingPath = Annotated[str, AfterValidator(_existing_path)]


# Far above any document a corpus means to keep (a long novel is ~1 M characters), far below
# what takes a worker's memory (one 50 MB record took 9 GB in near-dedup before its cap).
MAX_RECORD_CHARS = 10_000_000


class StageConfig(BaseModel):
    """Base of every stage's options: unknown keys are errors; `save`, `sources`, `kinds` and
    `max_record_chars` are common to all stages (the base applies the selection and the size
    bound, so no stage re-implements them)."""

    # NaN and infinity are never a meaningful option value: a spec error, not hours of work.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    save: bool = Field(
        False, description="also write this stage's kept records to RUN/data/STAGE/*.jsonl.gz"
    )
    sources: list[str] | None = Field(
        None, description="apply only to records of these sources; the others pass through"
    )
    kinds: list[str] | None = Field(
        None, description="apply only to records of these kinds (raw, instruction, ...)"
    )

    max_record_chars: int = Field(
        MAX_RECORD_CHARS,
        ge=1,
        description="a record carrying more characters than this (text, pairs and meta) is "
        "rejected as `record_too_large` before the stage's work: bounds each record's memory "
        "and time in every record stage and in format (no effect on mix and pack)",
    )

    def selects(self, source: str, kind: str) -> bool:
        """Whether this stage applies to a record of `source` and `kind`."""
        return (self.sources is None or source in self.sources) and (
            self.kinds is None or kind in self.kinds
        )
