"""Deterministic choices from a key: the same key picks the same item on any worker and run.

Synthesis makes many small random choices per record (which template, which sentence, where to
cut a text). Each is drawn from blake2b of the record's key (e.g. f"{seed}:{record_id}") and a
salt naming the choice, never from Python's `hash()` (salted per process) or the global `random`
state (shared, order-dependent), so outputs are byte-identical across runs and runners.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def keyed_int(key: str, *salt: str) -> int:
    """A 64-bit integer from the key and the salt (the parts are joined unambiguously)."""
    data = "\x1f".join((key, *salt)).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def keyed_index(n: int, key: str, *salt: str) -> int:
    """An index in range(n), n > 0."""
    if n <= 0:
        raise ValueError(f"keyed_index needs a positive count, got {n}")
    return keyed_int(key, *salt) % n


def keyed_choice(items: Sequence[T], key: str, *salt: str) -> T:
    """One item of a non-empty sequence."""
    return items[keyed_index(len(items), key, *salt)]


def keyed_order(items: Sequence[T], key: str, *salt: str) -> list[T]:
    """The items in an order drawn from the key: sorted by each position's keyed hash, so the
    order depends on the key and the positions only, never on the items' values."""
    ranks = [keyed_int(key, *salt, str(i)) for i in range(len(items))]
    return [items[i] for i in sorted(range(len(items)), key=ranks.__getitem__)]
