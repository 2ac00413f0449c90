"""pack: records -> formatted, tokenized documents -> fixed-length shards with a manifest.

The stage runs in two places of the graph. Its formatting half (`FormatTokenize`, ledger row
`format`) turns each record into a `TokenizedDoc` right after the last record stage, so a `mix`
stage can count tokens; its packing half (`Pack`) writes RUN/shards/[STAGE/]SPLIT/.

How packing stays deterministic and scales past one machine's memory:
1. Route (a ParDo, no state): each document gets its split (validation by a seeded hash of its
   id, so repeats of a document never straddle train and validation; training stage by its
   `where`) and a sort key: the seeded blake2b of its key (the global shuffle) or, for a
   curriculum, its difficulty first.
2. Bucket count per split (a combine of token counts: one number per split reaches one
   worker): `bucket_count`, at least `buckets` and enough that a bucket holds about
   `bucket_tokens` tokens, so one worker's share stays bounded however large the corpus. The
   totals are sums over the documents, so the count, and the bytes, are the same on every
   runner and worker count. Each document then gets its bucket: a seeded hash of its key
   modulo the count, or for a curriculum an equal-width range of difficulty between its exact
   minimum and maximum (a combine), so the buckets in order, each sorted, are easy to hard over
   the whole split, not only within a bucket (a curriculum whose difficulties crowd into one
   range still puts that range on one worker).
3. GroupByKey on (split, bucket): one worker holds one bucket's token ids, sorts them by the
   sort key (so bundle order and worker count never matter), packs them and streams the rows
   into that bucket's own shard files with `ShardWriter`.
4. GroupByKey on split: one small step moves the buckets' files into the split folder and
   writes one `manifest.json` listing the buckets' shards in bucket order, with the mix report.
Documents are cut only within a bucket, so the bucket count changes the bytes (it follows from
the spec and the data, so the same spec still gives the same bytes on every runner and worker
count).

Memory: a document's bucket needs its split's token total, so every routed value waits for
that sum: the runner holds the routed PCollection whole (the bucket step reads a side input
computed from it, so it cannot fuse with routing; Dataflow writes it to its shuffle, the
in-memory runner keeps it in a list), and the GroupByKey holds it again. What iptkit chooses
is the size of a routed value, kept small: the sort key and the ids as bytes, 2 a token where
the vocabulary fits (`id_typecode`), no mask bytes for an unmasked document, and one shared
mask for such documents in the bucket's pieces (`target_mask`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from pydantic import BaseModel, ConfigDict, Field, model_validator

from iptkit.files import (
    atomic_write,
    delete_tree,
    is_local,
    list_tree,
    move,
    publish_tree,
    read_bytes,
)
from iptkit.hashing import seeded_int
from iptkit.shards import MANIFEST_NAME, Manifest, ShardWriter, Totals
from iptkit.transforms.document import GROUP_FIELDS, TokenizedDoc
from iptkit.transforms.preference import preference_of, rejected_view
from iptkit.transforms.record import Record
from iptkit.transforms.stage import Drop, RecordStage, Stage, StageContext, StageFn, outputs
from iptkit.transforms.stage_config import ExistingPath, StageConfig
from iptkit.transforms.tail.formatting import (
    BUILTIN_TEMPLATES,
    FormatError,
    format_record,
    tokenize_segments,
)
from iptkit.transforms.tail.packing import PACKERS, Piece
from iptkit.transforms.tail.tokenizer import LoadedTokenizer, TokenizerError, load_tokenizer

ROUTED = "routed"
# Tokens a bucket holds (the default of `bucket_tokens`): 128 MiB of uint32 ids, which one
# worker sorts and packs in memory.
DEFAULT_BUCKET_TOKENS = 2**25
PARTS_DIR = ".parts"
# transformers writes this "no limit" value as model_max_length when a model sets none.
_NO_LIMIT = 10**18


class TrainingStage(BaseModel):
    """One training stage's shard set: the documents its `where` matches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="folder name under RUN/shards/"
    )
    where: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description=f"field values a document must have (of {', '.join(GROUP_FIELDS)}); "
        "a list allows several; empty matches every document left",
    )

    def matches(self, doc: TokenizedDoc) -> bool:
        for name, want in self.where.items():
            value = doc.group_value(name)
            if value not in (want if isinstance(want, list) else [want]):
                return False
        return True


class PackConfig(StageConfig):
    """Options of the pack stage (formatting and tokenizing included)."""

    tokenizer: ExistingPath = Field(
        description="tokenizer.json, a Hugging Face tokenizer folder, or a sentencepiece .model"
    )
    seq_len: int = Field(ge=2, description="tokens per packed sequence")
    packing: Literal["concat", "best_fit"] = Field(
        "best_fit",
        description="concat: documents joined and cut at row ends; best_fit: long documents "
        "split into seq_len chunks, then best-fit-decreasing rows (fewer cuts, some padding)",
    )
    chat_template: str = Field(
        "auto",
        description="instruction records: tokenizer (its own chat_template), chatml, llama3, "
        "plain (### Instruction/### Response), or auto (the tokenizer's if it has one, else "
        "plain)",
    )
    add_bos: bool | None = Field(
        None, description="put BOS before each document (default: when the tokenizer has one)"
    )
    add_eos: bool = Field(True, description="put EOS after each document")
    pad_token: str | None = Field(
        None, description="padding token (default: the tokenizer's pad token, else EOS)"
    )
    long_documents: Literal["split", "drop"] = Field(
        "split",
        description="documents longer than seq_len: split across rows, or drop (reason too_long)",
    )
    validation: float = Field(
        0,
        ge=0,
        description="validation split: a share of documents (< 1) or a count (>= 1), chosen by "
        "seeded hash of the id; written to its own split folder",
    )
    order: Literal["shuffle", "curriculum"] = Field(
        "shuffle",
        description="shuffle: seeded hash of each document; curriculum: by the record's "
        "meta.difficulty, easy to hard (X-CIT self-paced learning), hash within ties, documents "
        "without one last",
    )
    training_stages: list[TrainingStage] = Field(
        default_factory=list,
        description="split into training stages, each its own shard set (a document goes to "
        "the first stage it matches; unmatched documents are dropped, reason no_stage)",
    )
    buckets: int = Field(
        1,
        ge=1,
        le=100_000,
        description="fewest groups documents are packed in (by hash; by difficulty range for "
        "a curriculum), each on one worker; more when a split passes bucket_tokens a group",
    )
    bucket_tokens: int = Field(
        DEFAULT_BUCKET_TOKENS,
        ge=1,
        description="tokens per packing group: a split gets max(buckets, ceil(its tokens / "
        "this)) groups, so one worker's share stays bounded as the corpus grows",
    )
    sequences_per_shard: int = Field(8192, ge=1, description="rows per shard file")
    megatron: bool = Field(
        False, description="also write Megatron-LM .bin/.idx files under SPLIT/megatron/"
    )
    preference: bool = Field(
        False,
        description="write preference shards (layout pairs) for the trainer's orpo and dpo "
        "modes: each preference record as two rows, prompt + chosen and prompt + rejected, "
        "padded, never packed; other records are dropped (not_a_pair), pairs over seq_len "
        "too (too_long); sequences_per_shard is rounded up to even",
    )
    model_max_length: int | None = Field(
        None,
        ge=1,
        description="the model's context; seq_len above it is an error (default: the tokenizer "
        "config's model_max_length)",
    )

    @model_validator(mode="after")
    def _check(self) -> PackConfig:
        if self.sources is not None or self.kinds is not None:
            raise ValueError(
                "pack packs every document it receives; select records with sources/kinds on "
                "the record stages or the mix"
            )
        if self.validation >= 1 and self.validation != int(self.validation):
            raise ValueError(f"validation {self.validation}: a share below 1 or a whole count")
        if self.preference and self.megatron:
            raise ValueError("megatron: the Megatron-LM files hold packed documents, not pairs")
        names = [s.name for s in self.training_stages]
        if len(set(names)) != len(names) or {"train", "validation"} & set(names):
            raise ValueError(f"training_stages names {names}: unique, not train or validation")
        for stage in self.training_stages:
            unknown = sorted(set(stage.where) - set(GROUP_FIELDS))
            if unknown:
                raise ValueError(
                    f"training_stages {stage.name}: where {unknown}: fields are "
                    f"{', '.join(GROUP_FIELDS)}"
                )
        if self.chat_template not in {"auto", "tokenizer", *BUILTIN_TEMPLATES}:
            raise ValueError(
                f"chat_template {self.chat_template!r}: one of auto, tokenizer, "
                f"{', '.join(BUILTIN_TEMPLATES)}"
            )
        try:
            tok = load_tokenizer(self.tokenizer)
            vocab = tok.vocab_size
        except (TokenizerError, OSError, RuntimeError, ValueError) as exc:
            raise ValueError(f"tokenizer {self.tokenizer}: {exc}") from None
        if vocab > 2**32:
            raise ValueError(
                f"tokenizer vocabulary {vocab} exceeds uint32 ({2**32} ids), the widest token dtype"
            )
        limit, where = self.model_max_length, "model_max_length"
        if limit is None:
            value = tok.config.get("model_max_length")
            if isinstance(value, int) and value < _NO_LIMIT:
                limit, where = value, f"{tok.path.parent}/tokenizer_config.json model_max_length"
        if limit is not None and self.seq_len > limit:
            raise ValueError(f"seq_len {self.seq_len} exceeds the model context ({where} {limit})")
        special_tokens(self, tok)
        template(self, tok)
        return self


def special_tokens(cfg: PackConfig, tok: LoadedTokenizer) -> dict[str, int]:
    """The ids the shards use for bos (if added), eos and pad; raises ValueError when missing."""
    found = tok.special_tokens
    out: dict[str, int] = {}
    if cfg.add_bos or (cfg.add_bos is None and "bos" in found):
        if "bos" not in found:
            raise ValueError(f"add_bos: tokenizer {tok.path} has no BOS token")
        out["bos"] = found["bos"]
    if "eos" in found:
        out["eos"] = found["eos"]
    elif cfg.add_eos:
        raise ValueError(f"add_eos: tokenizer {tok.path} has no EOS token; set add_eos: false")
    if cfg.pad_token is not None:
        pad = tok.token_to_id(cfg.pad_token)
        if pad is None:
            raise ValueError(f"pad_token {cfg.pad_token!r} is not in tokenizer {tok.path}")
        out["pad"] = pad
    elif "pad" in found or "eos" in found:
        out["pad"] = found.get("pad", found.get("eos"))
    else:
        raise ValueError(f"tokenizer {tok.path} has no pad or EOS token; set pad_token")
    return out


def template(cfg: PackConfig, tok: LoadedTokenizer) -> str:
    """The chat template instruction records are rendered with."""
    own = tok.chat_template
    if cfg.chat_template == "tokenizer":
        if own is None:
            raise ValueError(
                f"chat_template tokenizer: {tok.path.parent} has no tokenizer_config.json "
                "chat_template; name a built-in one"
            )
        return own
    if cfg.chat_template == "auto":
        return own if own is not None else BUILTIN_TEMPLATES["plain"]
    return BUILTIN_TEMPLATES[cfg.chat_template]


def difficulty_of(record: Record) -> float | None:
    """meta.difficulty as a finite number, else None (NaN would break the curriculum's sort)."""
    value = record.meta.get("difficulty") if isinstance(record.meta, dict) else None
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return float(value) if math.isfinite(value) else None


class FormatTokenize(RecordStage):
    """Record -> TokenizedDoc (format, then tokenize segment by segment); batched. The flow
    runs it before the tail (ledger row `format`), configured by the pack stage's options; a
    spec does not name it."""

    config_class = PackConfig
    batch_size = 1000
    kept_type = TokenizedDoc

    def __init__(self, config: PackConfig, context: StageContext | None = None):
        super().__init__(config, context or StageContext("format"))
        self._tok = load_tokenizer(config.tokenizer)

    def setup(self) -> None:
        tok = self._tok
        self._template = template(self.config, tok)
        eos = tok.special_tokens.get("eos")
        self._eos_text = tok.id_to_token(eos) if eos is not None else ""

    def apply(self, record: Record) -> TokenizedDoc | Drop:
        return self.apply_batch([record])[0]

    def apply_batch(self, records: list[Record]) -> list[TokenizedDoc | Drop]:
        results: list[Any] = []
        batch, where = [], []  # segments to tokenize; (record index, is the rejected side)
        for k, record in enumerate(records):
            try:
                views = [record]
                if self.config.preference and preference_of(record) is not None:
                    views.append(rejected_view(record))
                segments = [format_record(v, self._template, self._eos_text) for v in views]
            except FormatError as exc:
                results.append(Drop(exc.reason, str(exc)))
                continue
            results.append(None)
            for side, segs in enumerate(segments):
                batch.append(segs)
                where.append((k, side == 1))
        tokens: dict[tuple[int, bool], tuple[list[int], list[int] | None]] = dict(
            zip(where, tokenize_segments(self._tok, batch), strict=True)
        )
        for k, r in enumerate(records):
            if results[k] is not None:
                continue
            ids, mask = tokens[(k, False)]
            rejected = tokens.get((k, True), (None, None))
            if not ids or rejected[0] == []:
                results[k] = Drop("empty_after_format", "no tokens after tokenizing")
                continue
            results[k] = TokenizedDoc(
                id=r.id,
                source=r.source,
                kind=r.kind,
                ids=ids,
                mask=mask,
                lang=r.lang,
                category=r.category,
                origin=r.origin,
                difficulty=difficulty_of(r),
                rejected_ids=rejected[0],
                rejected_mask=rejected[1],
            )
        return results


@dataclass(frozen=True)
class SplitKey:
    """Where a document's rows go: RUN/shards/<folder>/, file prefix, bucket."""

    folder: str
    split: str
    prefix: str


def id_typecode(vocab_size: int) -> str:
    """The struct format token ids cross pack's shuffle in: uint16 when every id of the
    vocabulary fits (up to 65,536 ids: the demo's 2,000, most 32k-50k tokenizers), else
    uint32. The runner holds every routed document's ids at once (see the module's note on
    memory), so this halves pack's memory; it follows from the tokenizer, so it is the same on
    every runner and worker count."""
    return "H" if vocab_size <= 2**16 else "I"


def doc_bytes(
    doc: TokenizedDoc, bos: int | None, eos: int | None, typecode: str = "I"
) -> tuple[bytes, bytes]:
    """A document's ids with BOS/EOS added, as `typecode` (`id_typecode`) bytes in the
    machine's order (`doc_piece` reads them with numpy), and its mask as uint8 bytes, or b""
    when the document has no mask (every token a target but BOS: see `doc_piece`).

    `struct` converts a list of ints three times faster than numpy does (and into uint16
    three times faster than `array("H")`), checking each id's range, and a document without a
    mask sends no mask bytes through the shuffle.
    """
    ids = [*([] if bos is None else [bos]), *doc.ids, *([] if eos is None else [eos])]
    packed = struct.pack(f"={len(ids)}{typecode}", *ids)
    if doc.mask is None:
        return packed, b""
    mask = doc.mask
    last = mask[-1:] if mask else [1]  # EOS is a target when the document's end is
    return packed, bytes([*([] if bos is None else [0]), *mask, *(last if eos is not None else [])])


def doc_piece(ids: bytes, mask: bytes, bos: bool, typecode: str = "I") -> Piece:
    """The arrays `doc_bytes` sent, as views of its bytes: an empty mask is 1 for every token
    but a leading BOS (`target_mask`)."""
    tokens = np.frombuffer(ids, np.dtype(typecode))
    if mask:
        return Piece(tokens, np.frombuffer(mask, np.uint8))
    return Piece(tokens, target_mask(len(tokens), bos))


# A read-only 0 followed by ones, grown as needed, that `target_mask` slices.
_TARGETS: list[np.ndarray] = [np.zeros(1, np.uint8)]


def target_mask(n: int, bos: bool) -> np.ndarray:
    """n ones, the first 0 when it is BOS, as a read-only view of one shared array: a bucket
    holds all its documents' pieces at once, and a mask of its own would cost each unmasked
    document a byte per token."""
    shared = _TARGETS[0]
    if len(shared) <= n:
        shared = np.ones(max(n + 1, 2 * len(shared)), np.uint8)
        shared[0] = 0
        shared.flags.writeable = False
        _TARGETS[0] = shared
    return shared[:n] if bos else shared[1 : n + 1]


def padded_row(piece: Piece, seq_len: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """One side of a preference pair as a row: its tokens, then padding (mask 0)."""
    tokens = np.full(seq_len, pad, np.uint32)
    mask = np.zeros(seq_len, np.uint8)
    tokens[: len(piece.ids)] = piece.ids
    mask[: len(piece.mask)] = piece.mask
    return tokens, mask


def bucket_count(tokens: int, bucket_tokens: int, minimum: int) -> int:
    """Buckets of a split holding `tokens`: at least `minimum`, each about `bucket_tokens`."""
    return max(minimum, -(-tokens // bucket_tokens))


def curriculum_bucket(
    difficulty: float | None, span: tuple[float, float] | None, buckets: int
) -> int:
    """A document's bucket in a curriculum: equal-width ranges of difficulty over `span` (the
    exact minimum and maximum), so bucket order is difficulty order; documents without a
    difficulty go to the last bucket, where they sort last."""
    if difficulty is None or span is None:
        return buckets - 1
    lo, hi = span
    if hi <= lo:
        return 0
    return min(buckets - 1, int((difficulty - lo) / (hi - lo) * buckets))


class _RouteFn(StageFn):
    """Split, bucket and sort key of each document; BOS/EOS added; too_long/no_stage rejects."""

    def __init__(self, stage: Pack, specials: dict[str, int], typecode: str):
        super().__init__(stage)
        self._specials, self._typecode = specials, typecode

    def process(self, doc: TokenizedDoc, validation_ids: Any) -> Iterator[Any]:
        with self.timed():
            (routed,) = self.decide(lambda d: [self._route(d[0], validation_ids)], [doc])
        if isinstance(routed, Drop):
            yield from self.emit([(doc, routed)])
            return
        yield beam.pvalue.TaggedOutput(ROUTED, routed)
        yield from self.emit([(doc, doc)])

    def _route(self, doc: TokenizedDoc, validation_ids: Any) -> Any:
        cfg, seed = self.stage.config, self.stage.seed
        bos, eos = self._specials.get("bos"), self._specials["eos"] if cfg.add_eos else None
        n_tokens = doc.n_tokens + (bos is not None) + (eos is not None)
        if cfg.preference:
            if doc.rejected_ids is None:
                return Drop("not_a_pair", "not a preference record (no meta.preference.rejected)")
            n_tokens = max(n_tokens, len(doc.rejected_ids) + (bos is not None) + (eos is not None))
        if (cfg.long_documents == "drop" or cfg.preference) and n_tokens > cfg.seq_len:
            return Drop("too_long", f"{n_tokens} tokens > seq_len {cfg.seq_len}")
        folder = ""
        if cfg.training_stages:
            stage = next((s for s in cfg.training_stages if s.matches(doc)), None)
            if stage is None:
                return Drop("no_stage", "matches no training_stages entry")
            folder = stage.name + "/"
        if validation_ids is not None:
            in_val = doc.id in validation_ids
        else:
            in_val = seeded_int(seed, "validation", doc.id) < cfg.validation * 2**64
        split = "validation" if in_val else "train"
        prefix = f"{folder.rstrip('/')}-{split}" if folder else split
        # 63 bits: Beam's fast coder pickles ints past the int64 range, one by one.
        order = seeded_int(seed, "order", doc.key) >> 1
        hardness = doc.difficulty if doc.difficulty is not None else math.inf
        sort_key = (hardness if cfg.order == "curriculum" else 0.0, order, doc.key)
        key = (folder + split, prefix)
        value = (sort_key, *doc_bytes(doc, bos, eos, self._typecode))
        if cfg.preference:
            rejected = dataclasses.replace(doc, ids=doc.rejected_ids, mask=doc.rejected_mask)
            value += doc_bytes(rejected, bos, eos, self._typecode)
        return key, value


def value_tokens(value: tuple[Any, ...], itemsize: int = 4) -> int:
    """Tokens a routed value holds (both sides of a pair): its id arrays' lengths, `itemsize`
    bytes an id."""
    return sum(len(value[i]) for i in range(1, len(value), 2)) // itemsize


class _BucketFn(beam.DoFn):
    """(split, prefix), value -> (split, prefix, bucket), value, with the split's bucket count."""

    def __init__(self, seed: int, curriculum: bool):
        self._seed, self._curriculum = seed, curriculum

    def process(self, item: Any, counts: dict[str, int], span: Any):
        (folder, prefix), value = item
        n = counts[folder]
        if self._curriculum:
            hardness = value[0][0]
            difficulty = None if math.isinf(hardness) else hardness
            bucket = curriculum_bucket(difficulty, span, n)
        else:
            bucket = seeded_int(self._seed, "bucket", value[0][2]) % n
        yield (folder, prefix, bucket), value


def _span(pairs: Any) -> tuple[float, float]:
    """(min, max) of (min, max) pairs: a combine over documents' difficulties ((inf, -inf)
    when none has one, which no document then uses)."""
    lo, hi = math.inf, -math.inf
    for a, b in pairs:
        lo, hi = min(lo, a), max(hi, b)
    return lo, hi


def _part_dir(shards_root: str, folder: str, bucket: int) -> str:
    return FileSystems.join(shards_root, *folder.split("/"), PARTS_DIR, f"{bucket:05d}")


class _WriteBucketFn(StageFn):
    """Sorts one bucket's documents, packs them and writes its shard files (and Megatron's)."""

    def __init__(self, stage: Pack, header: dict[str, Any]):
        super().__init__(stage)
        self._cfg, self._root, self._header = stage.config, stage.context.run.shards, header

    def process(self, item: Any, has_mask: bool):
        with self.timed():
            yield self._bucket(item, has_mask)

    def _bucket(self, item: Any, has_mask: bool) -> tuple[str, int]:
        (folder, prefix, bucket), values = item
        docs = sorted(values, key=lambda v: v[0])
        bos = "bos" in self._header["special_tokens"]
        code = id_typecode(self._header["vocab_size"])
        # A pair's value holds both sides; each piece list keeps them in order, chosen first.
        pieces = [doc_piece(v[i], v[i + 1], bos, code) for v in docs for i in range(1, len(v), 2)]
        part = _part_dir(self._root, folder, bucket)
        # The writers need a local folder: the part itself, or a staging folder copied to a
        # remote RUN (gs://...) once complete.
        remote = not is_local(part)
        local = Path(tempfile.mkdtemp(prefix="iptkit-pack-")) if remote else Path(part)
        if local.exists():
            shutil.rmtree(local)  # a retried bundle starts clean
        try:
            self._write(local, folder, prefix, bucket, pieces, has_mask)
            if remote:
                publish_tree(local, part)
        finally:
            if remote:
                shutil.rmtree(local, ignore_errors=True)
        return folder, bucket

    def _write(
        self, part: Path, folder: str, prefix: str, bucket: int, pieces: list[Piece], has_mask: bool
    ) -> None:
        cfg, h = self._cfg, self._header
        name = f"{prefix}-b{bucket:05d}"
        per_shard = cfg.sequences_per_shard + (cfg.sequences_per_shard % 2 if cfg.preference else 0)
        with ShardWriter(
            part,
            seq_len=cfg.seq_len,
            vocab_size=h["vocab_size"],
            tokenizer_path=h["tokenizer_path"],
            tokenizer_sha256=h["tokenizer_sha256"],
            special_tokens=h["special_tokens"],
            spec_hash=h["spec_hash"],
            seed=h["seed"],
            has_loss_mask=has_mask or cfg.preference,
            sequences_per_shard=per_shard,
            split=folder.rsplit("/", 1)[-1],
            prefix=name,
            layout="pairs" if cfg.preference else "packed",
        ) as writer:
            if cfg.preference:
                for piece in pieces:
                    writer.add(*padded_row(piece, cfg.seq_len, h["special_tokens"]["pad"]), (0,))
                return
            for row in PACKERS[cfg.packing](pieces, cfg.seq_len, h["special_tokens"]["pad"]):
                writer.add(row.tokens, row.mask if has_mask else None, row.starts)
        if cfg.megatron:
            from iptkit.megatron import MegatronWriter

            with MegatronWriter(part / "megatron" / name, h["vocab_size"]) as mw:
                for p in pieces:
                    mw.add_document(p.ids)


class _FinalizeFn(StageFn):
    """Moves a split's bucket files into its folder and writes the one manifest.json."""

    def __init__(self, stage: Pack):
        super().__init__(stage)
        self._root = stage.context.run.shards

    def process(self, item: Any, mix: list[dict[str, Any]]):
        with self.timed():
            yield self._finalize(item, mix)

    def _finalize(self, item: Any, mix: list[dict[str, Any]]) -> str:
        folder, buckets = item
        out = FileSystems.join(self._root, *folder.split("/"))
        parts = [
            Manifest.from_json(
                read_bytes(
                    FileSystems.join(_part_dir(self._root, folder, b), MANIFEST_NAME)
                ).decode("utf-8")
            )
            for b in sorted(buckets)
        ]
        for b in sorted(buckets):
            part = _part_dir(self._root, folder, b)
            for rel in list_tree(part):
                if rel != MANIFEST_NAME:
                    move(
                        FileSystems.join(part, *rel.split("/")),
                        FileSystems.join(out, *rel.split("/")),
                    )
        delete_tree(FileSystems.join(out, PARTS_DIR))
        shards = [s for p in parts for s in p.shards]
        first = parts[0]
        manifest = Manifest(
            **{
                **{k: getattr(first, k) for k in first.__dataclass_fields__},
                "mix": _manifest_mix(mix),
                "shards": shards,
                "totals": Totals(
                    sequences=sum(p.totals.sequences for p in parts),
                    tokens=sum(p.totals.tokens for p in parts),
                    documents=sum(p.totals.documents for p in parts),
                ),
            }
        )
        atomic_write(FileSystems.join(out, MANIFEST_NAME), manifest.to_json().encode("utf-8"))
        return folder


def _manifest_mix(reports: list[dict[str, Any]]) -> dict[str, Any]:
    if not reports:
        return {}
    from iptkit.transforms.stages.mix import manifest_mix

    return json.loads(json.dumps(manifest_mix(reports[0]), sort_keys=True))


class Pack(
    Stage,
    stage="pack",
    config=PackConfig,
    summary="tokenizer and chat template of the format step; pack (concat or best fit) into "
    "RUN/shards/[STAGE/]SPLIT/ + manifest",
    tail=True,
):
    """Packs TokenizedDocs into RUN/shards/, with the mix's report (when a mix stage ran)
    in each manifest; returns {"kept": documents packed, "rejects": too_long / no_stage}."""

    def split_folders(self) -> list[str]:
        """The split folders under RUN/shards/ this stage writes (each gets a manifest)."""
        cfg = self.config
        stages = [f"{s.name}/" for s in cfg.training_stages] or [""]
        splits = ["train", "validation"] if cfg.validation else ["train"]
        return [stage + split for stage in stages for split in splits]

    def files(self) -> dict[str, str]:
        root = self.context.run.shards
        return {
            f"manifest:{folder}": FileSystems.join(root, *folder.split("/"), MANIFEST_NAME)
            for folder in self.split_folders()
        }

    def run(self, docs, report=None):
        cfg, ctx = self.config, self.context
        tok = load_tokenizer(cfg.tokenizer)
        specials = special_tokens(cfg, tok)
        header = {
            "vocab_size": tok.vocab_size,
            "tokenizer_path": str(tok.path),
            "tokenizer_sha256": tok.sha256,
            "special_tokens": specials,
            "spec_hash": ctx.spec_hash,
            "seed": ctx.seed,
        }
        validation_ids = None
        if cfg.validation >= 1:
            n, seed = int(cfg.validation), ctx.seed
            validation_ids = beam.pvalue.AsSingleton(
                docs
                | "Firsts" >> beam.Filter(lambda d: d.copy == 0)
                | "Val hash" >> beam.Map(lambda d: (seeded_int(seed, "validation", d.id), d.id))
                | "Val pick" >> beam.combiners.Top.Smallest(n)
                | "Val set" >> beam.Map(lambda xs: frozenset(i for _, i in xs))
            )
        else:
            validation_ids = beam.pvalue.AsSingleton(
                docs.pipeline | "No val" >> beam.Create([None])
            )
        has_mask = beam.pvalue.AsSingleton(
            docs
            | "Masked" >> beam.Map(lambda d: d.mask is not None)
            | "Any mask" >> beam.CombineGlobally(any)
        )
        if cfg.order == "curriculum":
            span = beam.pvalue.AsSingleton(
                docs
                | "Difficulties"
                >> beam.FlatMap(
                    lambda d: [] if d.difficulty is None else [(d.difficulty, d.difficulty)]
                )
                | "Span" >> beam.CombineGlobally(_span)
            )
        else:
            span = beam.pvalue.AsSingleton(docs.pipeline | "No span" >> beam.Create([None]))
        typecode = id_typecode(tok.vocab_size)
        routed = outputs(
            docs, _RouteFn(self, specials, typecode), "Route", validation_ids, tags=(ROUTED,)
        )
        by_split = routed.pop(ROUTED)
        minimum, per_bucket = cfg.buckets, cfg.bucket_tokens
        itemsize = struct.calcsize(f"={typecode}")
        counts = beam.pvalue.AsDict(
            by_split
            | "Split tokens" >> beam.Map(lambda kv: (kv[0][0], value_tokens(kv[1], itemsize)))
            | "Sum split tokens" >> beam.CombinePerKey(sum)
            | "Bucket count"
            >> beam.MapTuple(lambda split, n: (split, bucket_count(n, per_bucket, minimum)))
        )
        mix_side = beam.pvalue.AsList(
            report if report is not None else docs.pipeline | "No mix" >> beam.Create([])
        )
        (
            by_split
            | "Bucket" >> beam.ParDo(_BucketFn(ctx.seed, cfg.order == "curriculum"), counts, span)
            | "By bucket" >> beam.GroupByKey()
            | "Write buckets" >> beam.ParDo(_WriteBucketFn(self, header), has_mask)
            | "By split" >> beam.GroupByKey()
            | "Manifest" >> beam.ParDo(_FinalizeFn(self), mix_side)
        )
        return routed
