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
from collections.abc import Collection
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems

from iptkit.errors import IptkitError
from iptkit.files import is_local, read_bytes

CACHE_DIR = "cache"
SPEC_RESOLVED = "spec.resolved.yaml"
# What a run writes at the top of RUN (besides each stage's own folder, RUN/<stage>/).
RUN_FILES = (SPEC_RESOLVED, "stats.json", "timings.json", "report.html")
RUN_FOLDERS = (".ledger", "rejects", "output", "data", "contamination", "shards")
# Never a run directory: system trees (nor anything inside them) and top-level system folders.
SYSTEM_TREES = ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/boot", "/dev",
                "/proc", "/sys", "/run")  # fmt: skip
SYSTEM_FOLDERS = ("/", "/var", "/home", "/tmp", "/opt", "/srv", "/mnt", "/media", "/root")
# What outlives a run: finished generations (reused by the rerun), the trainer's and eval's runs.
KEPT = (CACHE_DIR, "train", "eval")


@dataclass(frozen=True)
class RunDir:
    """The layout of RUN, as DESIGN.md's run-directory contract gives it."""

    root: str

    def path(self, *parts: str) -> str:
        return FileSystems.join(self.root, *parts)

    @property
    def spec_resolved(self) -> str:
        return self.path(SPEC_RESOLVED)

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

    def check_location(self) -> None:
        """Refuse a RUN inside a system folder, or one that is a top-level folder of the system
        (`--out /`, `--out ../../etc`): a run writes and, on a rerun, deletes there."""
        if not is_local(self.root):
            return
        where = os.path.realpath(self.root)
        inside = [d for d in SYSTEM_TREES if where == d or where.startswith(d + os.sep)]
        if inside or where in SYSTEM_FOLDERS:
            raise IptkitError(
                f"{self.root} is {where}, a system folder: choose a run directory of your own"
            )

    def prepare(self, spec_hash: str, stage_folders: Collection[str], force: bool = False) -> None:
        """Make RUN ready for a run of the spec with `spec_hash`, deleting only what iptkit wrote.

        A rerun of the same spec removes the earlier run's own files (RUN_FILES, RUN_FOLDERS and
        the stages' folders `stage_folders`) so no stale file mixes in, and keeps what outlives
        a run (KEPT: the generation cache, the trainer's and eval's runs). Refused unless
        `force`: a RUN holding a run of another spec (by hash), or anything iptkit did not
        write; with `force` the earlier run's files go and the others stay. Nothing is deleted
        from a folder that is not a run directory (no spec.resolved.yaml): `--out .` never
        touches a user's `data/`.
        """
        if not FileSystems.exists(self.root):
            FileSystems.mkdirs(self.root)
            return
        files = [
            self.relative(m.path) for m in FileSystems.match([self.path("**")])[0].metadata_list
        ]
        tops = {f.split("/", 1)[0] for f in files}
        previous = self._previous_hash() if SPEC_RESOLVED in tops else None
        owned = set(RUN_FILES) | set(RUN_FOLDERS) | set(stage_folders)
        foreign = sorted(tops - set(KEPT) - (owned if previous is not None else set()))
        problems = []
        if previous is not None and previous != spec_hash:
            problems.append(
                f"it holds a run of another spec ({previous[:19]}…, this one is {spec_hash[:19]}…)"
            )
        if foreign:
            shown = ", ".join(foreign[:8]) + (
                f" and {len(foreign) - 8} more" if len(foreign) > 8 else ""
            )
            problems.append(f"it holds files iptkit did not write: {shown}")
        if problems and not force:
            raise IptkitError(
                f"{self.root}: "
                + "; ".join(problems)
                + ". Choose a new or empty --out, or add --force to replace the earlier run's "
                "files (files iptkit did not write are kept)"
            )
        if previous is None:
            return
        doomed = [f for f in files if f.split("/", 1)[0] in owned]
        if doomed:
            FileSystems.delete([self.path(*f.split("/")) for f in doomed])
        for top in owned & tops:
            _remove_empty_dirs(self.path(top))

    def _previous_hash(self) -> str:
        """The spec hash an earlier run wrote in spec.resolved.yaml's header ("" if none)."""
        for line in read_bytes(self.spec_resolved).decode("utf-8", "replace").splitlines()[:5]:
            if line.startswith("# spec_hash: "):
                return line.removeprefix("# spec_hash: ").strip()
        return ""


def _remove_empty_dirs(root: str) -> None:
    """Remove the folders an earlier run left empty below a local `root` (itself included).

    Deleting files leaves their folders behind; an empty folder can still mean something to
    the next reader (a trainer's `checkpoints/step-N/` looks like a checkpoint). Object stores
    have no folders, so only local paths need this.
    """
    if "://" in root or not os.path.isdir(root):
        return
    for folder, _, _ in sorted(os.walk(root), key=lambda entry: -entry[0].count(os.sep)):
        if not os.listdir(folder):
            os.rmdir(folder)
