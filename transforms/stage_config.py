"""Options every stage accepts, and the base of each stage's own options model."""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

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


# Keys of every stage's options that say where a stage runs, never what it computes: outside
# the spec hash, as the spec's `pipeline_options` are (pipelines/spec.py).
PLACEMENT_KEYS = ("resources",)


class Resources(BaseModel):
    """What a stage's workers need, as Beam resource hints (`with_resource_hints`): a runner
    that honours them (Dataflow) runs the stage on workers that have it, so model stages go to
    GPU workers and cleaning stays on CPU workers in one job; other runners ignore them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accelerator: str | None = Field(
        None,
        description="the accelerator each worker of this stage needs, in Dataflow's form "
        "`type:GPU_TYPE;count:N;install-nvidia-driver`, e.g. "
        "`type:nvidia-tesla-t4;count:1;install-nvidia-driver`",
    )
    min_ram: str | None = Field(
        None,
        description="the least memory a worker of this stage needs, with a unit "
        "(B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. `16GB`",
    )

    @field_validator("accelerator")
    @classmethod
    def _accelerator_form(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = dict(part.partition(":")[::2] for part in value.split(";"))
        if not parts.get("type"):
            raise ValueError(
                f"{value!r} names no accelerator type; write "
                "type:GPU_TYPE;count:N;install-nvidia-driver (e.g. type:nvidia-tesla-t4;count:1)"
            )
        count = parts.get("count")
        if count is not None and not (count.isdigit() and int(count) > 0):
            raise ValueError(f"count:{count} in {value!r} is not a positive whole number")
        return value

    @field_validator("min_ram")
    @classmethod
    def _ram_size(cls, value: str | None) -> str | None:
        from apache_beam.transforms.resources import MinRamHint

        if value is not None:
            try:
                MinRamHint.parse(value)
            except ValueError:
                raise ValueError(
                    f"{value!r} is not a size; write a number and a unit, e.g. 16GB or 512MiB"
                ) from None
        return value

    def hints(self) -> dict[str, str]:
        """The keyword arguments of Beam's `PTransform.with_resource_hints`; empty if none."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class StageConfig(BaseModel):
    """Base of every stage's options: unknown keys are errors; `save`, `sources`, `kinds`,
    `max_record_chars` and `resources` are common to all stages (the base applies the selection
    and the size bound, the builder the resource hints, so no stage re-implements them)."""

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
    resources: Resources | None = Field(
        None,
        description="resource hints for this stage's workers, {accelerator, min_ram}: "
        "accelerator in Dataflow's form (`type:nvidia-l4;count:1;install-nvidia-driver`, "
        "optionally `;machine_type:g2-standard-8`), min_ram a size (`16GB`); Dataflow runs the "
        "stage on workers that have them (docs/runners.md), other runners ignore them; outside "
        "the spec hash",
    )

    def selects(self, source: str, kind: str) -> bool:
        """Whether this stage applies to a record of `source` and `kind`."""
        return (self.sources is None or source in self.sources) and (
            self.kinds is None or kind in self.kinds
        )
