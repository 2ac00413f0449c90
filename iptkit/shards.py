"""Packed-sequence shard files: the one definition of their on-disk format.

The pack stage writes shards with :class:`ShardWriter`; the trainer and
``iptkit inspect`` read them with :func:`open_shards`. The format is
deliberately plain so that anyone can read it with numpy alone, without
iptkit installed. This docstring is the specification of that format.

Directory layout
----------------
One directory holds one split (e.g. ``train``)::

    manifest.json                  written last; its presence means "complete"
    <prefix>-00000.tokens.bin      token ids,      shape [n, seq_len]
    <prefix>-00000.mask.bin        loss mask,      shape [n, seq_len]  (SFT only)
    <prefix>-00000.docs.bin        document starts, flat uint32
    <prefix>-00000.docidx.bin      offsets into docs.bin, shape [n + 1]
    <prefix>-00001.tokens.bin      ...

``<prefix>`` defaults to the split name. Every ``.bin`` file is raw
little-endian binary with no header, so its size is exactly
``rows * columns * itemsize``. Files being written carry a ``.tmp-`` name
prefix and are renamed into place only when the whole set is complete, and
``manifest.json`` is renamed into place after all of them: a directory with
a ``manifest.json`` is whole, a directory without one is not a shard set.
No file is ever empty: a writer that received no sequences raises instead.

Files
-----
``tokens.bin``
    ``manifest["dtype"]``: ``"uint16"`` when ``vocab_size <= 65536`` (all ids
    fit), else ``"uint32"``. Row ``r`` is packed sequence ``r`` of the shard.
    Tokens are stored exactly as the pack stage produced them: this layer
    inserts no BOS, EOS or padding of its own. Which ids the pack stage used
    for those roles is recorded in ``manifest["special_tokens"]``
    (e.g. ``{"bos": 1, "eos": 2, "pad": 0}``).
``mask.bin``
    uint8, 0 or 1, same shape as tokens; present iff
    ``manifest["has_loss_mask"]``. ``mask[r, t] == 1`` means token ``t`` is a
    training target (the loss on predicting it from the tokens before it
    counts); 0 means it is context or padding only.
``docs.bin`` / ``docidx.bin``
    Document boundaries in CSR form, used to reset position ids (and, if the
    trainer wants, attention) at each document. ``docidx.bin`` is uint64 of
    shape ``[n + 1]`` with ``docidx[0] == 0``; the document start positions
    of row ``r`` are ``docs[docidx[r]:docidx[r + 1]]`` (uint32, strictly
    increasing, each ``< seq_len``). Every row's starts begin with 0: a row's
    first token always starts a document, including when it continues a
    document cut at the end of the previous row.

``manifest.json`` (sorted keys, indent 2, trailing newline) holds
``format_version``, ``split``, ``seq_len``, ``dtype``, ``vocab_size``,
``tokenizer`` (``path``, ``sha256``), ``special_tokens``, ``has_loss_mask``,
``spec_hash``, ``seed``, ``mix`` (the achieved data mix), ``totals``
(``sequences``, ``tokens`` = sequences * seq_len including padding,
``documents``) and ``shards``: a list of ``{name, sequences, documents,
files}`` where ``files`` maps a role (``tokens``, ``mask``, ``docs``,
``docidx``) to ``{path, sha256, bytes}`` with ``path`` relative to the
manifest's directory. A shard's ``documents`` counts entries of its
``docs.bin``, i.e. document pieces: a document cut across two rows counts
twice.

Reading without iptkit
----------------------
::

    import json, numpy as np

    root = "out/train"
    m = json.load(open(f"{root}/manifest.json"))
    L = m["seq_len"]
    tok_dtype = np.dtype(m["dtype"]).newbyteorder("<")
    for shard in m["shards"]:
        n, f = shard["sequences"], shard["files"]
        tokens = np.memmap(f"{root}/{f['tokens']['path']}", dtype=tok_dtype,
                           mode="r", shape=(n, L))
        if m["has_loss_mask"]:
            mask = np.memmap(f"{root}/{f['mask']['path']}", dtype=np.uint8,
                             mode="r", shape=(n, L))
        docs = np.memmap(f"{root}/{f['docs']['path']}", dtype="<u4",
                         mode="r", shape=(shard["documents"],))
        docidx = np.memmap(f"{root}/{f['docidx']['path']}", dtype="<u8",
                           mode="r", shape=(n + 1,))
        starts_of_row_0 = docs[docidx[0]:docidx[1]]

Preference pairs
----------------
A manifest with ``"layout": "pairs"`` (absent means ``"packed"``, the layout above) and
``"pairs"`` (their count, ``sequences / 2``) holds
preference pairs for the trainer's ``orpo`` and ``dpo`` modes: rows ``2i`` and ``2i + 1`` are
pair ``i``, the chosen then the rejected response, each one document (``docs`` is ``[0]``)
laid out as ``prompt tokens, response tokens, padding`` with the loss mask 1 exactly on the
response (its end token included). The prompt is the tokens before the first mask 1, the same
in both rows; padding is ``special_tokens["pad"]`` with mask 0. Such a set always has a loss
mask, and every shard holds whole pairs (an even number of rows)::

    pairs = tokens.reshape(n // 2, 2, L)     # [pair, chosen/rejected, position]

Writing the same inputs twice gives byte-identical files, manifest included
(no timestamps, no absolute paths beyond the tokenizer path you pass in).
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import json
import operator
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iptkit.errors import IptkitError
from iptkit.publish import PublishOnClose

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
TMP_PREFIX = ".tmp-"
MAX_UINT16_VOCAB = 2**16
LAYOUTS = ("packed", "pairs")
"""`packed`: rows of packed documents; `pairs`: preference pairs, chosen then rejected row."""

_TOKEN_DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}
_MASK_DTYPE = np.dtype("<u1")
_DOCS_DTYPE = np.dtype("<u4")
_DOCIDX_DTYPE = np.dtype("<u8")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


class ShardError(IptkitError, ValueError):
    """A shard set cannot be written or read as asked; the message says why and what to do.

    An IptkitError so the CLI prints it without a traceback; a ValueError so
    callers outside iptkit can catch it as bad input.
    """


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks so shard-sized files do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def token_dtype_for(vocab_size: int) -> str:
    """The token dtype name for a vocabulary: the smallest of uint16/uint32 that holds every id."""
    if not 1 <= vocab_size <= 2**32:
        raise ShardError(f"vocab_size must be in [1, 2**32], got {vocab_size}")
    return "uint16" if vocab_size <= MAX_UINT16_VOCAB else "uint32"


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class FileEntry:
    """One binary file of a shard; bytes and sha256 let readers detect truncation and corruption."""

    path: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class ShardEntry:
    """One shard: how many rows and document pieces it holds, and its files by role."""

    name: str
    sequences: int
    documents: int
    files: dict[str, FileEntry]


@dataclass(frozen=True)
class TokenizerInfo:
    """The tokenizer the ids came from; the sha256 catches training with a different one."""

    path: str
    sha256: str


@dataclass(frozen=True)
class Totals:
    """Split-wide counts, so tools can report sizes without opening any shard."""

    sequences: int
    tokens: int
    documents: int


@dataclass(frozen=True)
class Manifest:
    """Everything needed to read a split's shards and to know what produced them."""

    format_version: int
    split: str
    seq_len: int
    dtype: str
    vocab_size: int
    tokenizer: TokenizerInfo
    special_tokens: dict[str, int]
    has_loss_mask: bool
    spec_hash: str
    seed: int
    mix: dict[str, Any]
    shards: list[ShardEntry]
    totals: Totals
    layout: str = "packed"

    @property
    def pairs(self) -> int:
        """Preference pairs in a `pairs` layout (two rows each); 0 for packed rows."""
        return self.totals.sequences // 2 if self.layout == "pairs" else 0

    def to_json(self) -> str:
        """Deterministic JSON (sorted keys, indent 2, trailing newline) so reruns give equal bytes.
        The default layout is left out, so packed sets keep the bytes they had before pairs."""
        data = dataclasses.asdict(self)
        if self.layout == "packed":
            del data["layout"]
        else:
            data["pairs"] = self.pairs
        return json.dumps(data, sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse and type-check a manifest; the version is checked first so old readers fail clearly."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ShardError(f"manifest is not valid JSON ({exc}); re-run the pack stage") from exc
        if not isinstance(data, dict):
            raise ShardError("manifest is not a JSON object; re-run the pack stage")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ShardError(
                f"manifest format_version {version!r} is not supported by this iptkit "
                f"(it reads version {FORMAT_VERSION}); use the iptkit version that wrote it "
                "or re-run the pack stage with this one"
            )
        tokenizer = _get(data, "tokenizer", dict)
        totals = _get(data, "totals", dict)
        layout = data.get("layout", "packed")
        if layout not in LAYOUTS:
            raise ShardError(
                f"manifest layout {layout!r} is not one of {', '.join(LAYOUTS)}; re-run the pack "
                "stage"
            )
        return cls(
            layout=layout,
            format_version=version,
            split=_get(data, "split", str),
            seq_len=_get(data, "seq_len", int),
            dtype=_get(data, "dtype", str),
            vocab_size=_get(data, "vocab_size", int),
            tokenizer=TokenizerInfo(
                path=_get(tokenizer, "path", str, "tokenizer"),
                sha256=_get(tokenizer, "sha256", str, "tokenizer"),
            ),
            special_tokens=_special_tokens_from(_get(data, "special_tokens", dict)),
            has_loss_mask=_get(data, "has_loss_mask", bool),
            spec_hash=_get(data, "spec_hash", str),
            seed=_get(data, "seed", int),
            mix=_get(data, "mix", dict),
            shards=[_shard_from(s, i) for i, s in enumerate(_get(data, "shards", list))],
            totals=Totals(
                sequences=_get(totals, "sequences", int, "totals"),
                tokens=_get(totals, "tokens", int, "totals"),
                documents=_get(totals, "documents", int, "totals"),
            ),
        )


def _get(data: Mapping[str, Any], key: str, kind: type, where: str = "manifest") -> Any:
    """Fetch a typed field, naming it on failure (bool is not accepted as int)."""
    value = data.get(key) if isinstance(data, Mapping) else None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ShardError(
            f"{where} field {key!r} is missing or not a {kind.__name__}; re-run the pack stage"
        )
    return value


def _special_tokens_from(data: dict[str, Any]) -> dict[str, int]:
    for name in data:
        _get(data, name, int, "special_tokens")
    return dict(data)


def _shard_from(data: Any, index: int) -> ShardEntry:
    where = f"shards[{index}]"
    if not isinstance(data, dict):
        raise ShardError(f"manifest {where} is not an object; re-run the pack stage")
    files = _get(data, "files", dict, where)
    return ShardEntry(
        name=_get(data, "name", str, where),
        sequences=_get(data, "sequences", int, where),
        documents=_get(data, "documents", int, where),
        files={
            role: FileEntry(
                path=_get(entry, "path", str, f"{where}.files.{role}"),
                sha256=_get(entry, "sha256", str, f"{where}.files.{role}"),
                bytes=_get(entry, "bytes", int, f"{where}.files.{role}"),
            )
            for role, entry in files.items()
        },
    )


def _roles(has_loss_mask: bool) -> tuple[str, ...]:
    return ("tokens", "mask", "docs", "docidx") if has_loss_mask else ("tokens", "docs", "docidx")


def _expected_bytes(manifest: Manifest, shard: ShardEntry, role: str) -> int:
    """File size implied by the shard's shape: the basis of the truncation check."""
    cells = shard.sequences * manifest.seq_len
    return {
        "tokens": cells * _TOKEN_DTYPES[manifest.dtype].itemsize,
        "mask": cells * _MASK_DTYPE.itemsize,
        "docs": shard.documents * _DOCS_DTYPE.itemsize,
        "docidx": (shard.sequences + 1) * _DOCIDX_DTYPE.itemsize,
    }[role]


# --------------------------------------------------------------------------- writer


class _TempFile:
    """A file streamed under a ``.tmp-`` name and hashed as written; renamed only by publish()."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.temp = final.with_name(TMP_PREFIX + final.name)
        self._fh = open(self.temp, "wb", buffering=1 << 20)
        self._hash = hashlib.sha256()
        self._bytes = 0

    def write(self, data: bytes) -> None:
        self._fh.write(data)
        self._hash.update(data)
        self._bytes += len(data)

    def seal(self) -> FileEntry:
        """Flush and fsync so the bytes are on disk before any rename can make them look final."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        return FileEntry(path=self.final.name, sha256=self._hash.hexdigest(), bytes=self._bytes)

    def publish(self) -> None:
        os.replace(self.temp, self.final)

    def discard(self) -> None:
        self._fh.close()
        self.temp.unlink(missing_ok=True)


class _OpenShard:
    """The shard currently being filled: one temp file per role plus running counts."""

    def __init__(self, out_dir: Path, name: str, has_loss_mask: bool) -> None:
        self.name = name
        self.files = {
            role: _TempFile(out_dir / f"{name}.{role}.bin") for role in _roles(has_loss_mask)
        }
        self.sequences = 0
        self.documents = 0
        self.files["docidx"].write(np.zeros(1, _DOCIDX_DTYPE).tobytes())

    def append(self, tokens: np.ndarray, mask: np.ndarray | None, starts: np.ndarray) -> None:
        self.files["tokens"].write(tokens.tobytes())
        if mask is not None:
            self.files["mask"].write(mask.tobytes())
        self.files["docs"].write(starts.tobytes())
        self.sequences += 1
        self.documents += len(starts)
        self.files["docidx"].write(np.array([self.documents], _DOCIDX_DTYPE).tobytes())

    def seal(self) -> ShardEntry:
        files = {role: f.seal() for role, f in self.files.items()}
        return ShardEntry(
            name=self.name, sequences=self.sequences, documents=self.documents, files=files
        )


class ShardWriter(PublishOnClose):
    """Streams packed sequences into shard files of one split, atomically and deterministically.

    Nothing gets a final name until :meth:`close`, and ``manifest.json`` is
    renamed into place last, so a killed or failed run never leaves a set that
    looks complete. Use as a context manager: a clean exit closes, an
    exception discards every temp file and writes no manifest.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        *,
        seq_len: int,
        vocab_size: int,
        tokenizer_path: str,
        tokenizer_sha256: str,
        special_tokens: Mapping[str, int],
        spec_hash: str,
        seed: int,
        has_loss_mask: bool,
        sequences_per_shard: int,
        split: str = "train",
        prefix: str | None = None,
        mix: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        layout: str = "packed",
    ) -> None:
        self._dtype = token_dtype_for(vocab_size)
        if layout not in LAYOUTS:
            raise ShardError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
        if layout == "pairs" and (not has_loss_mask or sequences_per_shard % 2):
            raise ShardError(
                "layout pairs needs has_loss_mask=True and an even sequences_per_shard "
                f"(got {has_loss_mask}, {sequences_per_shard}): a pair is two rows of one shard"
            )
        self._layout = layout
        _check_writer_args(
            seq_len,
            sequences_per_shard,
            split,
            prefix,
            tokenizer_sha256,
            special_tokens,
            vocab_size,
        )
        self._out_dir = Path(out_dir)
        self._seq_len = seq_len
        self._vocab_size = vocab_size
        self._has_loss_mask = has_loss_mask
        self._per_shard = sequences_per_shard
        self._split = split
        self._prefix = prefix or split
        self._overwrite = overwrite
        self._header = dict(
            tokenizer=TokenizerInfo(path=str(tokenizer_path), sha256=tokenizer_sha256),
            special_tokens=dict(special_tokens),
            spec_hash=spec_hash,
            seed=seed,
            mix=_json_normalised(mix or {}),
        )
        self._out_dir.mkdir(parents=True, exist_ok=True)
        self._existing_manifest()  # fail fast, before any work is done
        self._remove_stale_temps()
        self._current: _OpenShard | None = None
        self._shards: list[ShardEntry] = []
        self._temp_files: list[_TempFile] = []
        self._count = 0
        self._finished = False
        self.manifest: Manifest | None = None

    @property
    def done(self) -> bool:
        return self._finished

    def add(
        self,
        tokens: Any,
        loss_mask: Any = None,
        doc_starts: Any = (0,),
    ) -> None:
        """Validate one packed sequence and append it, rolling to a new shard when one is full."""
        if self._finished:
            raise ShardError("ShardWriter is already closed or aborted; create a new writer")
        where = f"sequence {self._count} of split {self._split!r}"
        tok = _check_tokens(tokens, self._seq_len, self._vocab_size, where).astype(
            _TOKEN_DTYPES[self._dtype]
        )
        mask = _check_mask(loss_mask, self._has_loss_mask, self._seq_len, where)
        starts = _check_doc_starts(doc_starts, self._seq_len, where)
        if self._current is None:
            self._current = self._open_shard()
        self._current.append(tok, mask, starts)
        self._count += 1
        if self._current.sequences == self._per_shard:
            self._seal_current()

    def close(self) -> Manifest:
        """Seal, rename every file into place, then write manifest.json last; returns the manifest.

        Closing a writer that received no sequences is an error (an empty
        shard set is almost always an upstream bug, and empty files cannot be
        memory-mapped); it leaves nothing behind.
        """
        if self.manifest is not None:
            return self.manifest
        if self._finished:
            raise ShardError("ShardWriter was aborted; nothing to close")
        try:
            if self._count == 0:
                raise ShardError(
                    f"no sequences were added to split {self._split!r}; refusing to write an empty "
                    "shard set (check that the pack stage received any documents)"
                )
            if self._layout == "pairs" and self._count % 2:
                raise ShardError(
                    f"split {self._split!r} has layout pairs but an odd number of rows "
                    f"({self._count}); add each pair as its chosen then its rejected row"
                )
            if self._current is not None:
                self._seal_current()
            manifest = self._build_manifest()
            self._publish(manifest, self._existing_manifest())
        except BaseException:
            self.abort()
            raise
        self._finished = True
        self.manifest = manifest
        return manifest

    def abort(self) -> None:
        """Remove every temp file written so far; no manifest is written."""
        for temp in self._temp_files:
            temp.discard()
        self._temp_files.clear()
        self._current = None
        self._finished = True

    def _open_shard(self) -> _OpenShard:
        shard = _OpenShard(
            self._out_dir, f"{self._prefix}-{len(self._shards):05d}", self._has_loss_mask
        )
        self._temp_files.extend(shard.files.values())
        return shard

    def _seal_current(self) -> None:
        assert self._current is not None
        self._shards.append(self._current.seal())
        self._current = None

    def _build_manifest(self) -> Manifest:
        return Manifest(
            format_version=FORMAT_VERSION,
            split=self._split,
            seq_len=self._seq_len,
            dtype=self._dtype,
            vocab_size=self._vocab_size,
            has_loss_mask=self._has_loss_mask,
            shards=list(self._shards),
            totals=Totals(
                sequences=self._count,
                tokens=self._count * self._seq_len,
                documents=sum(s.documents for s in self._shards),
            ),
            layout=self._layout,
            **self._header,
        )

    def _existing_manifest(self) -> Manifest | None:
        """The manifest this writer will replace, or None; raises when replacing is not allowed.

        One directory holds one split, so a manifest for another split is
        never replaced: that would silently delete someone else's data.
        """
        path = self._out_dir / MANIFEST_NAME
        if not path.exists():
            return None
        try:
            old = Manifest.from_json(path.read_text(encoding="utf-8"))
        except ShardError as exc:
            raise ShardError(
                f"{path} exists but cannot be read ({exc}); remove the directory or write elsewhere"
            ) from exc
        if old.split != self._split:
            raise ShardError(
                f"{path} belongs to split {old.split!r}; one directory holds one split, so write "
                f"split {self._split!r} to its own directory"
            )
        if not self._overwrite:
            raise ShardError(
                f"{path} already holds split {self._split!r}; pass overwrite=True to replace it "
                "or choose another output directory"
            )
        return old

    def _publish(self, manifest: Manifest, old: Manifest | None) -> None:
        """Make the new set visible; the old manifest goes first so no mixed set ever looks whole."""
        manifest_path = self._out_dir / MANIFEST_NAME
        if old is not None:
            manifest_path.unlink()
        for temp in self._temp_files:
            temp.publish()
        if old is not None:
            self._remove_old_files(old, manifest)
        _fsync_dir(self._out_dir)
        temp_manifest = _TempFile(manifest_path)
        self._temp_files.append(temp_manifest)
        temp_manifest.write(manifest.to_json().encode("utf-8"))
        temp_manifest.seal()
        temp_manifest.publish()
        _fsync_dir(self._out_dir)

    def _remove_old_files(self, old: Manifest, new: Manifest) -> None:
        keep = {f.path for s in new.shards for f in s.files.values()}
        for shard in old.shards:
            for entry in shard.files.values():
                if entry.path not in keep and _is_plain_name(entry.path):
                    (self._out_dir / entry.path).unlink(missing_ok=True)

    def _remove_stale_temps(self) -> None:
        """Temp files from a killed run of this split would otherwise linger forever."""
        for stale in self._out_dir.glob(f"{TMP_PREFIX}{self._prefix}-*.bin"):
            stale.unlink()
        (self._out_dir / (TMP_PREFIX + MANIFEST_NAME)).unlink(missing_ok=True)


def _check_writer_args(
    seq_len: int,
    sequences_per_shard: int,
    split: str,
    prefix: str | None,
    tokenizer_sha256: str,
    special_tokens: Mapping[str, int],
    vocab_size: int,
) -> None:
    if not 1 <= seq_len <= 2**32:
        raise ShardError(f"seq_len must be in [1, 2**32], got {seq_len}")
    if sequences_per_shard < 1:
        raise ShardError(f"sequences_per_shard must be >= 1, got {sequences_per_shard}")
    for label, name in (("split", split), ("prefix", prefix or split)):
        if not _NAME_RE.fullmatch(name):
            raise ShardError(
                f"{label} {name!r} must be a plain file-name part (letters, digits, '_', '-', '.')"
            )
    if not _SHA256_RE.fullmatch(tokenizer_sha256):
        raise ShardError(
            f"tokenizer_sha256 must be 64 lowercase hex digits (use sha256_file), got {tokenizer_sha256!r}"
        )
    for name, token_id in special_tokens.items():
        if (
            isinstance(token_id, bool)
            or not isinstance(token_id, int)
            or not 0 <= token_id < vocab_size
        ):
            raise ShardError(
                f"special token {name!r} has id {token_id!r}, not an int in [0, {vocab_size})"
            )


def _json_normalised(mix: Mapping[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON now, so a bad mix fails at construction and reads back equal."""
    try:
        return json.loads(json.dumps(dict(mix), sort_keys=True))
    except (TypeError, ValueError) as exc:
        raise ShardError(f"mix must be JSON-serialisable with string keys: {exc}") from exc


def _check_tokens(tokens: Any, seq_len: int, vocab_size: int, where: str) -> np.ndarray:
    arr = np.asarray(tokens)
    if arr.shape != (seq_len,):
        raise ShardError(f"{where}: tokens have shape {arr.shape}, expected ({seq_len},) (seq_len)")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ShardError(f"{where}: tokens must be integers, got dtype {arr.dtype}")
    bad = np.flatnonzero((arr < 0) | (arr >= vocab_size))
    if bad.size:
        pos = int(bad[0])
        raise ShardError(
            f"{where}: token id {int(arr[pos])} at position {pos} is outside [0, vocab_size={vocab_size})"
        )
    return arr


def _check_mask(mask: Any, has_loss_mask: bool, seq_len: int, where: str) -> np.ndarray | None:
    if not has_loss_mask:
        if mask is not None:
            raise ShardError(
                f"{where}: a loss_mask was given but the writer has has_loss_mask=False"
            )
        return None
    if mask is None:
        raise ShardError(
            f"{where}: loss_mask is required because the writer has has_loss_mask=True"
        )
    arr = np.asarray(mask)
    if arr.shape != (seq_len,):
        raise ShardError(
            f"{where}: loss_mask has shape {arr.shape}, expected ({seq_len},) (seq_len)"
        )
    if not (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer)) or np.any(
        (arr != 0) & (arr != 1)
    ):
        raise ShardError(f"{where}: loss_mask values must be 0 or 1")
    return arr.astype(_MASK_DTYPE)


def _check_doc_starts(doc_starts: Any, seq_len: int, where: str) -> np.ndarray:
    arr = np.asarray(doc_starts)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ShardError(
            f"{where}: doc_starts must be a non-empty 1-D list of ints, got {doc_starts!r}"
        )
    if arr[0] != 0:
        raise ShardError(
            f"{where}: doc_starts must start with 0 (a row always begins a document), got {arr[0]}"
        )
    if np.any(np.diff(arr) <= 0):
        raise ShardError(f"{where}: doc_starts must be sorted and unique, got {arr.tolist()}")
    if arr[-1] >= seq_len:
        raise ShardError(f"{where}: doc_starts value {arr[-1]} is >= seq_len {seq_len}")
    return arr.astype(_DOCS_DTYPE)


def _fsync_dir(path: Path) -> None:
    """Persist renames; directories cannot be opened for fsync on Windows."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_plain_name(path: str) -> bool:
    """Manifest paths must stay inside the shard directory and never name a temp file."""
    return Path(path).name == path and not path.startswith(".")


# --------------------------------------------------------------------------- reader


@dataclass(frozen=True)
class PackedSequence:
    """One row: memmap views (no copy) of its tokens and mask, and its document starts."""

    tokens: np.ndarray
    loss_mask: np.ndarray | None
    doc_starts: np.ndarray


@dataclass(frozen=True)
class _ShardMaps:
    tokens: np.memmap
    mask: np.memmap | None
    docs: np.memmap
    docidx: np.memmap


class ShardSet:
    """Random access to a split's packed sequences across all its shards.

    Each shard's files are memory-mapped on first use and kept open. Pickling
    drops the maps and the copy re-opens them lazily, so a ShardSet can be
    handed to DataLoader worker processes.
    """

    def __init__(self, manifest: Manifest, root: str | os.PathLike[str]) -> None:
        self.manifest = manifest
        self.root = Path(root)
        self._ends = np.cumsum([s.sequences for s in manifest.shards]).tolist()
        self._maps: dict[int, _ShardMaps] = {}

    def __len__(self) -> int:
        return self.manifest.totals.sequences

    def __getitem__(self, index: int) -> PackedSequence:
        shard, row = self.shard_index(index)
        maps = self._maps_for(shard)
        lo, hi = int(maps.docidx[row]), int(maps.docidx[row + 1])
        return PackedSequence(
            tokens=maps.tokens[row],
            loss_mask=None if maps.mask is None else maps.mask[row],
            doc_starts=maps.docs[lo:hi],
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state

    def shard_index(self, index: int) -> tuple[int, int]:
        """(shard number in manifest.shards, row within that shard) of a global index."""
        i = operator.index(index)
        total = len(self)
        if i < 0:
            i += total
        if not 0 <= i < total:
            raise IndexError(f"sequence index {index} out of range for {total} sequences")
        shard = bisect.bisect_right(self._ends, i)
        return shard, i - (self._ends[shard - 1] if shard else 0)

    def position_ids(self, index: int) -> np.ndarray:
        """int64 positions restarting at 0 at each document start.

        Packed documents then get the same positions they would have alone.
        """
        starts = np.asarray(self[index].doc_starts, dtype=np.int64)
        positions = np.arange(self.manifest.seq_len, dtype=np.int64)
        segment = np.searchsorted(starts, positions, side="right") - 1
        return positions - starts[segment]

    def _maps_for(self, shard: int) -> _ShardMaps:
        if shard not in self._maps:
            self._maps[shard] = self._open_maps(self.manifest.shards[shard])
        return self._maps[shard]

    def _open_maps(self, entry: ShardEntry) -> _ShardMaps:
        m = self.manifest

        def mm(role: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.memmap:
            return np.memmap(self.root / entry.files[role].path, dtype=dtype, mode="r", shape=shape)

        rows = (entry.sequences, m.seq_len)
        return _ShardMaps(
            tokens=mm("tokens", _TOKEN_DTYPES[m.dtype], rows),
            mask=mm("mask", _MASK_DTYPE, rows) if m.has_loss_mask else None,
            docs=mm("docs", _DOCS_DTYPE, (entry.documents,)),
            docidx=mm("docidx", _DOCIDX_DTYPE, (entry.sequences + 1,)),
        )


def open_shards(path: str | os.PathLike[str], *, verify: bool = True) -> ShardSet:
    """Open a split from its directory or manifest.json, refusing anything incomplete or corrupt.

    Sizes are always checked (cheap, catches truncation); ``verify=True`` also
    checks every sha256, which reads all bytes once.
    """
    manifest_path = _manifest_path(path)
    manifest = _load_manifest(manifest_path)
    problems = _set_problems(manifest, manifest_path.parent, verify)
    if problems:
        raise ShardError(f"{manifest_path}: shard set is not usable:\n  " + "\n  ".join(problems))
    return ShardSet(manifest, manifest_path.parent)


def verify_shards(path: str | os.PathLike[str]) -> list[str]:
    """Every problem found in a split (manifest, sizes, checksums, then contents); [] means healthy."""
    manifest_path = _manifest_path(path)
    try:
        manifest = _load_manifest(manifest_path)
    except ShardError as exc:
        return [str(exc)]
    problems = _set_problems(manifest, manifest_path.parent, verify=True)
    if problems:
        return problems
    return _content_problems(ShardSet(manifest, manifest_path.parent))


def _manifest_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p / MANIFEST_NAME if p.is_dir() else p


def _load_manifest(manifest_path: Path) -> Manifest:
    try:
        text = manifest_path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ShardError(
            f"{manifest_path} not found: either the path is wrong or the pack run that wrote this "
            "directory did not finish (the manifest is written last); re-run the pack stage"
        ) from exc
    try:
        return Manifest.from_json(text)
    except ShardError as exc:
        raise ShardError(f"{manifest_path}: {exc}") from exc


def _set_problems(manifest: Manifest, root: Path, verify: bool) -> list[str]:
    problems = _manifest_problems(manifest)
    if problems:
        return problems
    for shard in manifest.shards:
        problems += _shard_file_problems(manifest, shard, root, verify)
    return problems


def _manifest_problems(m: Manifest) -> list[str]:
    """Internal consistency of the manifest, so size checks below can trust its numbers."""
    problems = []
    if not (1 <= m.vocab_size <= 2**32 and m.dtype == token_dtype_for(m.vocab_size)):
        problems.append(f"manifest dtype {m.dtype!r} does not match vocab_size {m.vocab_size}")
    if (
        m.seq_len < 1
        or not m.shards
        or any(s.sequences < 1 or s.documents < s.sequences for s in m.shards)
    ):
        problems.append(
            "manifest has no shards, an empty shard, or a shard with fewer documents than sequences"
        )
    expected = Totals(
        sequences=sum(s.sequences for s in m.shards),
        tokens=sum(s.sequences for s in m.shards) * m.seq_len,
        documents=sum(s.documents for s in m.shards),
    )
    if m.totals != expected:
        problems.append(f"manifest totals {m.totals} do not match its shards ({expected})")
    if m.layout == "pairs" and (not m.has_loss_mask or any(s.sequences % 2 for s in m.shards)):
        problems.append("a pairs layout needs a loss mask and an even number of rows per shard")
    return problems


def _shard_file_problems(m: Manifest, shard: ShardEntry, root: Path, verify: bool) -> list[str]:
    roles = _roles(m.has_loss_mask)
    if sorted(shard.files) != sorted(roles):
        return [
            f"shard {shard.name}: files {sorted(shard.files)} do not match expected roles {sorted(roles)}"
        ]
    problems = []
    for role in roles:
        entry = shard.files[role]
        problem = _file_problem(entry, _expected_bytes(m, shard, role), root, verify)
        if problem:
            problems.append(f"shard {shard.name} {role}: {problem}")
    return problems


def _file_problem(entry: FileEntry, expected: int, root: Path, verify: bool) -> str | None:
    if not _is_plain_name(entry.path):
        return f"path {entry.path!r} is not a plain file name in the shard directory"
    path = root / entry.path
    if entry.bytes != expected:
        return f"manifest records {entry.bytes} bytes for {path}, but its shape needs {expected}; re-run the pack stage"
    if not path.is_file():
        return f"{path} is missing; the directory is incomplete, copy it again or re-run the pack stage"
    size = path.stat().st_size
    if size != expected:
        return (
            f"{path} is {size} bytes, expected {expected}; the file is truncated or from another run, "
            "copy it again or re-run the pack stage"
        )
    if verify and sha256_file(path) != entry.sha256:
        return (
            f"{path} sha256 does not match the manifest; the file is corrupted, "
            "copy it again or re-run the pack stage"
        )
    return None


def _content_problems(shards: ShardSet) -> list[str]:
    """Deep checks of what the writer guarantees, for files that match their checksums but may not be ours."""
    m = shards.manifest
    problems = []
    for k, entry in enumerate(m.shards):
        maps = shards._maps_for(k)
        problems += [
            f"shard {entry.name}: {p}" for p in _doc_problems(maps, entry.documents, m.seq_len)
        ]
        if int(maps.tokens.max()) >= m.vocab_size:
            problems.append(f"shard {entry.name}: a token id is >= vocab_size {m.vocab_size}")
        if maps.mask is not None and int(maps.mask.max()) > 1:
            problems.append(f"shard {entry.name}: loss mask has values other than 0/1")
    return problems


def _doc_problems(maps: _ShardMaps, documents: int, seq_len: int) -> list[str]:
    idx = np.asarray(maps.docidx, dtype=np.int64)
    if idx[0] != 0 or idx[-1] != documents or np.any(np.diff(idx) < 1):
        return ["docidx is not 0, increasing by >= 1 per row, ending at the document count"]
    docs = np.asarray(maps.docs, dtype=np.int64)
    within_row = np.ones(len(docs) - 1, dtype=bool)
    within_row[idx[1:-1] - 1] = False
    if (
        np.any(docs[idx[:-1]] != 0)
        or np.any(np.diff(docs)[within_row] <= 0)
        or docs.max() >= seq_len
    ):
        return ["doc starts are not 0-first, strictly increasing and < seq_len in every row"]
    return []
