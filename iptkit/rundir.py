"""The run directory: where each output lives. It is the layout's one owner.

Stages never build RUN paths themselves: they ask their `StageContext` (`context.file(name)`
for RUN/<stage>/<name>, `context.run.contamination_summary(stage)`, `context.run.shards`), and
each stage says which files it leaves (`Stage.files()`); the runner indexes those that exist in
stats.json under `files`, and the reports and the CLI read that index instead of globbing.

Every file is written under a temporary name and renamed when complete
(`iptkit.files.atomic_write`), so a killed run never leaves a half-written file that looks
whole. `stats.json` is written last: a run directory without it is an unfinished run. Paths go
through Beam's FileSystems, so RUN may be `gs://...`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems

from iptkit.errors import IptkitError

CACHE_DIR = "cache"


@dataclass(frozen=True)
class RunDir:
    """The layout of RUN, as DESIGN.md's run-directory contract gives it."""

    root: str

    def path(self, *parts: str) -> str:
        return FileSystems.join(self.root, *parts)

    @property
    def spec_resolved(self) -> str:
        return self.path("spec.resolved.yaml")

    @property
    def stats(self) -> str:
        return self.path("stats.json")

    @property
    def timings(self) -> str:
        return self.path("timings.json")

    @property
    def ledger_counts(self) -> str:
        """Counts written by the pipeline itself; the driver turns them into stats.json."""
        return self.path(".ledger", "counts.json")

    @property
    def output_dir(self) -> str:
        return self.path("output")

    @property
    def shards(self) -> str:
        """RUN/shards: the pack stage's splits, each with its manifest.json."""
        return self.path("shards")

    def stage_file(self, stage: str, filename: str) -> str:
        """RUN/<stage>/<filename>: a stage's side file (a cluster or mix report)."""
        return self.path(stage, filename)

    def cache_dir(self, stage: str) -> str:
        """RUN/cache/<stage>/: a model stage's finished generations (kept across reruns)."""
        return self.path(CACHE_DIR, stage)

    def contamination_summary(self, stage: str) -> str:
        """RUN/contamination/stages/<stage>.json, combined into RUN/contamination/report.*."""
        return self.path("contamination", "stages", f"{stage}.json")

    def relative(self, path: str) -> str:
        """`path` relative to RUN, with "/" separators (as stats.json's index keeps it)."""
        prefix = self.path("")
        return path[len(prefix) :].replace("\\", "/") if path.startswith(prefix) else path

    def index(self, declared: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        """The stats.json index: per stage, each declared file that exists, relative to RUN."""
        found: dict[str, dict[str, str]] = {}
        for stage, files in declared.items():
            present = {k: self.relative(p) for k, p in files.items() if FileSystems.exists(p)}
            if present:
                found[stage] = present
        return found

    def indexed(self, stats: dict | None, label: str) -> dict[str, str]:
        """Absolute paths of the files indexed under `label`, by stage, in stats.json's order."""
        files = (stats or {}).get("files", {})
        return {stage: self.path(*f[label].split("/")) for stage, f in files.items() if label in f}

    def rejects_dir(self, stage: str) -> str:
        return self.path("rejects", stage)

    def data_dir(self, stage: str) -> str:
        return self.path("data", stage)

    def prepare(self) -> None:
        """Clear what an earlier run into the same RUN left, so no stale file mixes in.

        Everything in a run directory was written by iptkit, so all of it goes (stage reports
        included), but for RUN/cache/: finished generations, which the rerun reuses. A non-empty
        directory that an earlier run did not make (it has no spec.resolved.yaml) is refused, so
        `--out .` cannot delete a `data/`.
        """
        if not FileSystems.exists(self.root):
            FileSystems.mkdirs(self.root)
            return
        contents = [m.path for m in FileSystems.match([self.path("**")])[0].metadata_list]
        cache = self.path(CACHE_DIR, "")
        if contents and not FileSystems.exists(self.spec_resolved):
            raise IptkitError(
                f"{self.root} is not empty and is not an iptkit run directory "
                "(it has no spec.resolved.yaml); choose a new or empty --out"
            )
        # The generation cache survives a rerun: it is what makes a rerun cheap.
        contents = [p for p in contents if not p.startswith(cache)]
        if contents:
            FileSystems.delete(contents)
        _remove_empty_dirs(self.root)


def _remove_empty_dirs(root: str) -> None:
    """Remove the folders an earlier run left empty below a local `root`.

    Deleting files leaves their folders behind; an empty folder can still mean something to
    the next reader (a trainer's `checkpoints/step-N/` looks like a checkpoint). Object stores
    have no folders, so only local paths need this.
    """
    if "://" in root or not os.path.isdir(root):
        return
    for folder, _, _ in sorted(os.walk(root), key=lambda entry: -entry[0].count(os.sep)):
        if folder != root and not os.listdir(folder):
            os.rmdir(folder)
