"""Seeded hashes, the one source of every deterministic choice: the same key picks the same item
on any worker and run.

Every hash in iptkit is BLAKE2b of a message (`digest`, `hash_int`). Strings are encoded as
UTF-8 with `surrogatepass`, so an id or text holding a lone surrogate (an invalid input byte
kept by the reader) hashes like any other instead of raising. Per-record choices hash
`seed:part:...` (`seeded_int`); synthesis, which makes many small choices per record (which
template, which sentence), hashes a key and a salt naming the choice (`keyed_int`). Never
Python's `hash()` (salted per process) or the global `random` state (order-dependent), so
outputs are byte-identical across runs and runners.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from typing import TypeVar

T = TypeVar("T")


def digest(message: str | bytes, size: int = 8) -> bytes:
    """BLAKE2b of `message` (`size` bytes)."""
    data = message.encode("utf-8", "surrogatepass") if isinstance(message, str) else message
    return hashlib.blake2b(data, digest_size=size).digest()


def hash_int(message: str | bytes, size: int = 8) -> int:
    """`digest` as a big-endian integer (so integers sort as the digests do)."""
    return int.from_bytes(digest(message, size), "big")


def seeded_int(seed: int, *parts: str, size: int = 8) -> int:
    """The hash of `seed:part:...`: a record's rank, sampling seed or bucket."""
    return hash_int(":".join([str(seed), *parts]), size)


def keyed_int(key: str, *salt: str) -> int:
    """A 64-bit integer from the key and the salt (the parts are joined unambiguously)."""
    return hash_int("\x1f".join((key, *salt)))


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


def keyed_weighted_choice(items: Sequence[T], weights: Sequence[int], key: str, *salt: str) -> T:
    """One item, drawn with probability proportional to its integer weight (LMOps' layout and
    inversion weights): the keyed integer modulo the total weight picks a slot."""
    if len(items) != len(weights) or not items or any(w < 0 for w in weights) or not sum(weights):
        raise ValueError(f"keyed_weighted_choice needs one non-negative weight per item: {weights}")
    bounds = list(accumulate(weights))
    return items[bisect_right(bounds, keyed_int(key, *salt) % bounds[-1])]
