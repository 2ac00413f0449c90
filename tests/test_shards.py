"""Tests for iptkit.shards: the on-disk shard format, its writer and its reader."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import iptkit.shards as shards_module
from iptkit.errors import IptkitError
from iptkit.shards import (
    FORMAT_VERSION,
    Manifest,
    ShardError,
    ShardSet,
    ShardWriter,
    open_shards,
    sha256_file,
    token_dtype_for,
    verify_shards,
)

SEQ_LEN = 8
TOKENIZER_SHA = "ab" * 32


def make_writer(out_dir: Path, **overrides: Any) -> ShardWriter:
    kwargs: dict[str, Any] = dict(
        seq_len=SEQ_LEN,
        vocab_size=1000,
        tokenizer_path="tok/tokenizer.json",
        tokenizer_sha256=TOKENIZER_SHA,
        special_tokens={"bos": 1, "eos": 2, "pad": 0},
        spec_hash="spec-123",
        seed=7,
        has_loss_mask=False,
        sequences_per_shard=3,
        mix={"web": 0.75, "sft": 0.25},
    )
    kwargs.update(overrides)
    return ShardWriter(out_dir, **kwargs)


def sample(i: int, vocab_size: int = 1000) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """A deterministic row: tokens, mask and doc starts that vary with i."""
    tokens = (np.arange(SEQ_LEN) * 37 + i * 11) % vocab_size
    mask = ((np.arange(SEQ_LEN) + i) % 3 == 0).astype(np.uint8)
    starts = (0,) if i % 2 == 0 else (0, 1 + i % (SEQ_LEN - 1))
    return tokens, mask, starts


def write(out_dir: Path, n: int, *, mask: bool = False, **overrides: Any) -> Manifest:
    with make_writer(out_dir, has_loss_mask=mask, **overrides) as writer:
        for i in range(n):
            tokens, m, starts = sample(i, overrides.get("vocab_size", 1000))
            writer.add(tokens, m if mask else None, starts)
    assert writer.manifest is not None
    return writer.manifest


def bin_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("mask", [False, True])
def test_round_trip(tmp_path: Path, mask: bool) -> None:
    manifest = write(tmp_path, 5, mask=mask)
    shards = open_shards(tmp_path)
    assert len(shards) == 5
    assert shards.manifest == manifest
    for i in range(5):
        tokens, m, starts = sample(i)
        row = shards[i]
        np.testing.assert_array_equal(row.tokens, tokens)
        np.testing.assert_array_equal(row.doc_starts, starts)
        if mask:
            np.testing.assert_array_equal(row.loss_mask, m)
        else:
            assert row.loss_mask is None
    np.testing.assert_array_equal(shards[-1].tokens, sample(4)[0])
    with pytest.raises(IndexError):
        shards[5]


def test_manifest_contents(tmp_path: Path) -> None:
    manifest = write(tmp_path, 4)
    assert manifest.format_version == FORMAT_VERSION
    assert manifest.split == "train"
    assert manifest.tokenizer.path == "tok/tokenizer.json"
    assert manifest.tokenizer.sha256 == TOKENIZER_SHA
    assert manifest.special_tokens == {"bos": 1, "eos": 2, "pad": 0}
    assert (manifest.spec_hash, manifest.seed) == ("spec-123", 7)
    assert manifest.mix == {"web": 0.75, "sft": 0.25}
    # rows 1 and 3 have two documents each
    assert (manifest.totals.sequences, manifest.totals.tokens, manifest.totals.documents) == (
        4,
        32,
        6,
    )
    text = (tmp_path / "manifest.json").read_text()
    assert text.endswith("}\n")
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"
    assert Manifest.from_json(text) == manifest
    assert manifest.to_json() == text


def test_rollover_into_multiple_shards(tmp_path: Path) -> None:
    manifest = write(tmp_path, 7, mask=True)
    assert [s.name for s in manifest.shards] == ["train-00000", "train-00001", "train-00002"]
    assert [s.sequences for s in manifest.shards] == [3, 3, 1]
    expected = sorted(
        [
            f"train-0000{k}.{role}.bin"
            for k in range(3)
            for role in ("tokens", "mask", "docs", "docidx")
        ]
        + ["manifest.json"]
    )
    assert bin_files(tmp_path) == expected
    shards = open_shards(tmp_path)
    assert [shards.shard_index(i) for i in (0, 2, 3, 5, 6, -1)] == [
        (0, 0),
        (0, 2),
        (1, 0),
        (1, 2),
        (2, 0),
        (2, 0),
    ]
    for i in range(7):
        np.testing.assert_array_equal(shards[i].tokens, sample(i)[0])


@pytest.mark.parametrize(
    ("vocab_size", "dtype", "itemsize"),
    [(1000, "uint16", 2), (65536, "uint16", 2), (65537, "uint32", 4), (200_000, "uint32", 4)],
)
def test_dtype_selection(tmp_path: Path, vocab_size: int, dtype: str, itemsize: int) -> None:
    assert token_dtype_for(vocab_size) == dtype
    top = np.full(SEQ_LEN, vocab_size - 1)
    with make_writer(tmp_path, vocab_size=vocab_size) as writer:
        writer.add(top)
    manifest = writer.manifest
    assert manifest is not None and manifest.dtype == dtype
    tokens_file = tmp_path / manifest.shards[0].files["tokens"].path
    assert tokens_file.stat().st_size == SEQ_LEN * itemsize
    np.testing.assert_array_equal(open_shards(tmp_path)[0].tokens, top)


def test_readable_with_plain_numpy(tmp_path: Path) -> None:
    """Only json + numpy.memmap and manifest fields: the format's 'no iptkit code' promise."""
    write(tmp_path, 5, mask=True)
    m = json.loads((tmp_path / "manifest.json").read_text())
    seq_len = m["seq_len"]
    rows_tokens, rows_mask, rows_starts = [], [], []
    for shard in m["shards"]:
        n, files = shard["sequences"], shard["files"]
        tokens = np.memmap(
            tmp_path / files["tokens"]["path"], dtype=m["dtype"], mode="r", shape=(n, seq_len)
        )
        mask = np.memmap(
            tmp_path / files["mask"]["path"], dtype=np.uint8, mode="r", shape=(n, seq_len)
        )
        docs = np.memmap(
            tmp_path / files["docs"]["path"], dtype=np.uint32, mode="r", shape=(shard["documents"],)
        )
        docidx = np.memmap(
            tmp_path / files["docidx"]["path"], dtype=np.uint64, mode="r", shape=(n + 1,)
        )
        for r in range(n):
            rows_tokens.append(tokens[r].tolist())
            rows_mask.append(mask[r].tolist())
            rows_starts.append(docs[int(docidx[r]) : int(docidx[r + 1])].tolist())
    assert rows_tokens == [sample(i)[0].tolist() for i in range(5)]
    assert rows_mask == [sample(i)[1].tolist() for i in range(5)]
    assert rows_starts == [list(sample(i)[2]) for i in range(5)]


def test_position_ids_reset_at_document_starts(tmp_path: Path) -> None:
    with make_writer(tmp_path) as writer:
        writer.add(np.arange(SEQ_LEN), doc_starts=(0, 3, 5))
        writer.add(np.arange(SEQ_LEN))
    shards = open_shards(tmp_path)
    assert shards.position_ids(0).tolist() == [0, 1, 2, 0, 1, 0, 1, 2]
    assert shards.position_ids(1).tolist() == list(range(SEQ_LEN))
    assert shards.position_ids(0).dtype == np.int64


GOOD_TOKENS = np.arange(SEQ_LEN)
GOOD_MASK = np.ones(SEQ_LEN, dtype=np.uint8)


@pytest.mark.parametrize(
    ("has_mask", "args", "message"),
    [
        (False, (np.arange(SEQ_LEN - 1),), "shape"),
        (False, (np.arange(SEQ_LEN) * 0.5,), "integers"),
        (False, (np.full(SEQ_LEN, 1000),), "token id 1000"),
        (False, (np.full(SEQ_LEN, -1),), "token id -1"),
        (False, (GOOD_TOKENS, GOOD_MASK), "has_loss_mask=False"),
        (True, (GOOD_TOKENS, None), "loss_mask is required"),
        (True, (GOOD_TOKENS, np.full(SEQ_LEN, 2)), "0 or 1"),
        (True, (GOOD_TOKENS, np.ones(SEQ_LEN + 1)), "loss_mask has shape"),
        (False, (GOOD_TOKENS, None, (1, 3)), "start with 0"),
        (False, (GOOD_TOKENS, None, (0, 4, 2)), "sorted and unique"),
        (False, (GOOD_TOKENS, None, (0, 2, 2)), "sorted and unique"),
        (False, (GOOD_TOKENS, None, (0, SEQ_LEN)), ">= seq_len"),
        (False, (GOOD_TOKENS, None, ()), "non-empty"),
    ],
)
def test_add_validation_names_sequence_and_problem(
    tmp_path: Path, has_mask: bool, args: tuple[Any, ...], message: str
) -> None:
    writer = make_writer(tmp_path, has_loss_mask=has_mask)
    writer.add(GOOD_TOKENS, GOOD_MASK if has_mask else None)
    with pytest.raises(ShardError, match="sequence 1") as info:
        writer.add(*args)
    assert message in str(info.value)
    # The bad row was not written: the writer still closes with exactly one sequence.
    assert writer.close().totals.sequences == 1


def test_zero_sequences_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ShardError, match="no sequences"):
        with make_writer(out):
            pass
    assert bin_files(out) == []


def test_exception_in_context_leaves_no_manifest_and_no_final_files(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with make_writer(tmp_path) as writer:
            for i in range(5):  # one full shard sealed, one in progress
                writer.add(sample(i)[0], doc_starts=sample(i)[2])
            assert any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())
            raise RuntimeError("boom")
    assert bin_files(tmp_path) == []
    with pytest.raises(ShardError, match="did not finish"):
        open_shards(tmp_path)


def test_existing_manifest_requires_overwrite(tmp_path: Path) -> None:
    write(tmp_path, 7)  # three shards
    with pytest.raises(ShardError, match="overwrite=True"):
        make_writer(tmp_path)
    with pytest.raises(ShardError, match="one directory holds one split"):
        make_writer(tmp_path, split="validation", overwrite=True)
    manifest = write(tmp_path, 2, overwrite=True)  # one shard: old shards 1 and 2 must go
    assert [s.name for s in manifest.shards] == ["train-00000"]
    assert bin_files(tmp_path) == sorted(
        ["manifest.json"] + [f"train-00000.{r}.bin" for r in ("tokens", "docs", "docidx")]
    )
    assert verify_shards(tmp_path) == []


def test_failed_overwrite_keeps_old_set(tmp_path: Path) -> None:
    old = write(tmp_path, 4)
    with pytest.raises(RuntimeError):
        with make_writer(tmp_path, overwrite=True) as writer:
            writer.add(np.zeros(SEQ_LEN, dtype=np.int64))
            raise RuntimeError("killed")
    assert open_shards(tmp_path).manifest == old


def test_overwrite_interrupted_while_renaming_leaves_no_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old manifest goes before any new file is renamed, so a half-replaced set never looks whole."""
    write(tmp_path, 4)
    real_publish = shards_module._TempFile.publish
    calls = []

    def publish_then_crash(self: Any) -> None:
        calls.append(self)
        if len(calls) == 2:
            raise OSError("disk full")
        real_publish(self)

    monkeypatch.setattr(shards_module._TempFile, "publish", publish_then_crash)
    with pytest.raises(OSError, match="disk full"):
        write(tmp_path, 4, overwrite=True)
    assert not (tmp_path / "manifest.json").exists()
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())


def test_checksum_mismatch_detected_by_verify(tmp_path: Path) -> None:
    manifest = write(tmp_path, 4)
    path = tmp_path / manifest.shards[1].files["tokens"].path
    data = bytearray(path.read_bytes())
    data[3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="sha256") as info:
        open_shards(tmp_path)
    assert path.name in str(info.value)
    open_shards(tmp_path, verify=False)  # same size: only the checksum can see it
    problems = verify_shards(tmp_path)
    assert len(problems) == 1 and path.name in problems[0]


def test_truncated_file_detected_by_size_check(tmp_path: Path) -> None:
    manifest = write(tmp_path, 4, mask=True)
    path = tmp_path / manifest.shards[0].files["mask"].path
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ShardError, match="truncated") as info:
        open_shards(tmp_path, verify=False)
    assert path.name in str(info.value)


def test_missing_file_reported(tmp_path: Path) -> None:
    manifest = write(tmp_path, 4)
    (tmp_path / manifest.shards[0].files["docs"].path).unlink()
    problems = verify_shards(tmp_path)
    assert len(problems) == 1 and "missing" in problems[0]


def test_verify_checks_contents_behind_valid_checksums(tmp_path: Path) -> None:
    """A docs.bin whose row does not start at 0 is caught even when the manifest's sha256 was updated."""
    manifest = write(tmp_path, 2)
    entry = manifest.shards[0].files["docs"]
    path = tmp_path / entry.path
    docs = np.fromfile(path, dtype="<u4")
    docs[0] = 1
    docs.tofile(path)
    files = dict(
        manifest.shards[0].files, docs=dataclasses.replace(entry, sha256=sha256_file(path))
    )
    shard = dataclasses.replace(manifest.shards[0], files=files)
    (tmp_path / "manifest.json").write_text(dataclasses.replace(manifest, shards=[shard]).to_json())
    problems = verify_shards(tmp_path)
    assert len(problems) == 1 and problems[0].startswith(f"shard {shard.name}: doc starts")


def test_unsupported_format_version(tmp_path: Path) -> None:
    write(tmp_path, 1)
    path = tmp_path / "manifest.json"
    data = json.loads(path.read_text())
    data["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(data))
    with pytest.raises(ShardError, match="format_version"):
        open_shards(path)
    assert "format_version" in verify_shards(tmp_path)[0]


def test_same_input_gives_identical_bytes(tmp_path: Path) -> None:
    write(tmp_path / "a", 7, mask=True)
    write(tmp_path / "b", 7, mask=True)
    names = bin_files(tmp_path / "a")
    assert names == bin_files(tmp_path / "b")
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    before = {n: (tmp_path / "a" / n).read_bytes() for n in names}
    write(tmp_path / "a", 7, mask=True, overwrite=True)
    assert {n: (tmp_path / "a" / n).read_bytes() for n in bin_files(tmp_path / "a")} == before


def test_manifest_sha256_matches_files(tmp_path: Path) -> None:
    manifest = write(tmp_path, 4, mask=True)
    for shard in manifest.shards:
        for entry in shard.files.values():
            data = (tmp_path / entry.path).read_bytes()
            assert (
                entry.sha256
                == hashlib.sha256(data).hexdigest()
                == sha256_file(tmp_path / entry.path)
            )
            assert entry.bytes == len(data)


def test_pickled_shardset_reopens(tmp_path: Path) -> None:
    """Pickles carry no array data (workers re-open the memmaps), yet read the same rows."""
    seq_len = 4096
    rows = [(np.arange(seq_len) + i) % 1000 for i in range(6)]
    with make_writer(tmp_path, seq_len=seq_len, has_loss_mask=True) as writer:
        for i, row in enumerate(rows):
            writer.add(row, np.full(seq_len, i % 2))
    shards = open_shards(tmp_path)
    for i in range(len(shards)):  # open every shard's memmaps before pickling
        shards[i]
    payload = pickle.dumps(shards)
    assert len(payload) < 6 * seq_len  # the token files alone are 12x larger
    clone = pickle.loads(payload)
    assert isinstance(clone, ShardSet) and len(clone) == 6
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(clone[i].tokens, row)
        np.testing.assert_array_equal(clone[i].loss_mask, np.full(seq_len, i % 2))


def test_writer_argument_checks(tmp_path: Path) -> None:
    with pytest.raises(ShardError, match="tokenizer_sha256"):
        make_writer(tmp_path, tokenizer_sha256="tok/tokenizer.json")
    with pytest.raises(ShardError, match="special token 'eos'"):
        make_writer(tmp_path, special_tokens={"eos": 1000})
    with pytest.raises(ShardError, match="split"):
        make_writer(tmp_path, split="../train")
    with pytest.raises(ShardError, match="mix"):
        make_writer(tmp_path, mix={"web": object()})
    assert bin_files(tmp_path) == []


def test_stale_temp_files_from_killed_run_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".tmp-train-00009.tokens.bin").write_bytes(b"half")
    (tmp_path / ".tmp-manifest.json").write_text("{")
    write(tmp_path, 1)
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())


def test_shard_error_is_user_facing_and_a_value_error() -> None:
    assert issubclass(ShardError, IptkitError) and issubclass(ShardError, ValueError)
