"""The optional extras: which `pip install 'iptkit[EXTRA]'` a spec option needs, checked early.

The core install runs every CPU stage and is what a Beam worker image holds (docker/); a model
backend or an lm-eval benchmark set needs more. Their options check here while the spec is
validated, so a slim install stops before any pipeline starts, naming the extra to install,
rather than with an ImportError from a worker in the middle of a run.
"""

from __future__ import annotations

import importlib.util


def missing(*modules: str) -> list[str]:
    """The modules among `modules` this interpreter cannot import: found, not imported, so
    that checking for torch does not load it."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def require(extra: str, what: str, *modules: str) -> None:
    """Raise ValueError naming `extra` when a module `what` imports is not installed; raised in a
    pydantic validator, it becomes a spec problem with its key and line."""
    absent = missing(*modules)
    if absent:
        raise ValueError(
            f"{what} needs {' and '.join(absent)}, not installed here: "
            f"pip install 'iptkit[{extra}]'"
        )
