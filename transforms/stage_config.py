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


class StageConfig(BaseModel):
    """Base of every stage's options: unknown keys are errors, and `save` is common to all."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    save: bool = Field(
        False, description="also write this stage's kept records to RUN/data/STAGE/*.jsonl.gz"
    )
