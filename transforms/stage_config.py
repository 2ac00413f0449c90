"""Options every stage accepts, and the base of each stage's own options model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StageConfig(BaseModel):
    """Base of every stage's options: unknown keys are errors, and `save` is common to all."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    save: bool = Field(
        False, description="also write this stage's kept records to RUN/data/STAGE/*.jsonl.gz"
    )
