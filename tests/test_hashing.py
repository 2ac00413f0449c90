"""The one seeded-hash module: stable values, surrogate-safe, and every caller on it."""

import hashlib
import subprocess

import pytest
from conftest import REPO

from iptkit.hashing import digest, hash_int, keyed_int, seeded_int
from iptkit.transforms.document import TokenizedDoc
from iptkit.transforms.stages.mix import MixConfig
from iptkit.transforms.tail.mix_solver import copies

LONE = "doc\udcff"  # an invalid input byte kept by the reader as a lone surrogate


def test_values_are_blake2b_of_the_joined_message():
    expected = hashlib.blake2b(b"7:abc", digest_size=8).digest()
    assert seeded_int(7, "abc") == int.from_bytes(expected, "big")
    assert seeded_int(7, "a", "b") == hash_int("7:a:b")
    assert digest("x", 16) == hashlib.blake2b(b"x", digest_size=16).digest()
    assert keyed_int("k", "salt") == hash_int("k\x1fsalt")
    # Integers sort as their digests do (the ranks that used bytes or hex kept their order).
    ids = [f"r{i}" for i in range(50)]
    by_int = sorted(ids, key=lambda i: seeded_int(3, i, size=16))
    by_hex = sorted(ids, key=lambda i: digest(f"3:{i}", 16).hex())
    assert by_int == by_hex


def test_a_lone_surrogate_hashes_everywhere():
    """mix's document hash used to raise UnicodeEncodeError on such an id."""
    assert seeded_int(1, LONE) != seeded_int(1, "doc")
    cfg = MixConfig(ratios={"raw": 1.0}, total_tokens="all")
    doc = TokenizedDoc(id=LONE, source="s", kind="raw", ids=[1, 2, 3])
    plan = cfg.solve({"raw": 3})
    assert copies(plan.groups["raw"], (seeded_int(5, doc.id), doc.id), None) == 1


def test_no_module_hashes_on_its_own():
    """Every seeded choice in the package goes through iptkit/hashing.py (sha256 checksums of
    files aside; benchmarks/ measures bare libraries and keeps their own calls)."""
    package = ["iptkit", "pipelines", "transforms", "trainer", "eval"]
    found = subprocess.run(
        ["git", "grep", "-n", "hashlib.blake2b", "--", *package],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert [line for line in found if not line.startswith("iptkit/hashing.py")] == []


def test_keyed_weighted_choice_follows_the_weights():
    from collections import Counter

    from iptkit.hashing import keyed_weighted_choice

    n = 20_000
    counts = Counter(keyed_weighted_choice("abc", (8, 1, 1), f"k{i}", "s") for i in range(n))
    assert abs(counts["a"] / n - 0.8) < 0.01 and abs(counts["c"] / n - 0.1) < 0.01
    assert keyed_weighted_choice("ab", (0, 3), "k") == "b"
    assert keyed_weighted_choice("ab", (1, 1), "k", "x") == keyed_weighted_choice(
        "ab", (1, 1), "k", "x"
    )
    for bad in ((1,), (0, 0), (-1, 2)):
        with pytest.raises(ValueError, match="weight"):
            keyed_weighted_choice("ab", bad, "k")
