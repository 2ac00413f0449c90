"""Errors a user can fix.

Every error raised for bad input derives from `IptkitError`; the CLI prints its message (no
traceback) and exits with its `exit_code`, so the message itself must name the file, line or
key at fault and what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass


class IptkitError(Exception):
    """Base class of user-facing errors; `exit_code` is what the CLI exits with."""

    exit_code = 1


@dataclass(frozen=True)
class SpecProblem:
    """One problem found in a spec: where (dotted key and line) and what is expected."""

    key: str
    line: int | None
    message: str
    origin: str = ""

    def __str__(self) -> str:
        where = self.origin or "spec"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class SpecError(IptkitError):
    """The spec is wrong; raised before any pipeline starts (exit code 2)."""

    exit_code = 2

    def __init__(self, problems: list[SpecProblem]):
        self.problems = problems
        lines = [str(p) for p in problems]
        head = "invalid spec" if len(problems) == 1 else f"invalid spec ({len(problems)} problems)"
        super().__init__(head + ":\n  " + "\n  ".join(lines))


class LedgerError(IptkitError):
    """The run lost or invented records: a stage's `in` differs from `out + sum(dropped)`."""

    exit_code = 3


class ExceptionCeilingError(IptkitError):
    """A stage's code raised on more of its input than the spec's `max_exception_share`: the
    run wrote its ledger and rejects, but its corpus is mostly a bug's (exit code 5)."""

    exit_code = 5


class EvalError(IptkitError):
    """An evaluation cannot run as asked: unknown task, no model, a dataset not cached for an
    offline run (exit code 4)."""

    exit_code = 4
