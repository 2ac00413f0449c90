"""Packing token sequences into fixed-length rows: the pure logic of the pack stage.

Input: documents in their final order, each token ids (BOS/EOS already added) and a loss mask.
Output: rows of exactly `seq_len` tokens with a mask (padding has mask 0) and the start of every
document piece in the row (a row always starts a piece at 0), as `iptkit.shards` stores them.

- `concat`: documents one after the other, cut at row ends (no padding but the last row's;
  documents are cut). The usual GPT pre-training layout.
- `best_fit`: documents longer than `seq_len` are split into `seq_len` chunks first; the pieces
  then go, longest first, into the row with the least room that still fits them (best-fit
  decreasing), so no piece is cut again and padding stays small (Ding et al. 2024, "Fewer
  truncations improve language modeling").
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass
class Row:
    """One packed sequence before it is written."""

    tokens: np.ndarray
    mask: np.ndarray
    starts: list[int]
    used: int


@dataclass(frozen=True)
class Piece:
    """A document (or a chunk of one) ready to place: ids and mask as uint32/uint8 arrays."""

    ids: np.ndarray
    mask: np.ndarray


def _row(pieces: list[Piece], seq_len: int, pad_id: int) -> Row:
    tokens = np.full(seq_len, pad_id, dtype=np.uint32)
    mask = np.zeros(seq_len, dtype=np.uint8)
    starts, pos = [], 0
    for p in pieces:
        starts.append(pos)
        tokens[pos : pos + len(p.ids)] = p.ids
        mask[pos : pos + len(p.ids)] = p.mask
        pos += len(p.ids)
    return Row(tokens, mask, starts or [0], pos)


def chunks(piece: Piece, seq_len: int) -> list[Piece]:
    """A document as pieces of at most seq_len tokens."""
    return [
        Piece(piece.ids[i : i + seq_len], piece.mask[i : i + seq_len])
        for i in range(0, len(piece.ids), seq_len)
    ]


def pack_concat(docs: Iterable[Piece], seq_len: int, pad_id: int) -> Iterator[Row]:
    """Documents in order, joined and cut into rows; the last row is padded."""
    current: list[Piece] = []
    room = seq_len
    for doc in docs:
        ids, mask = doc.ids, doc.mask
        while len(ids):
            take = min(room, len(ids))
            current.append(Piece(ids[:take], mask[:take]))
            ids, mask, room = ids[take:], mask[take:], room - take
            if room == 0:
                yield _row(current, seq_len, pad_id)
                current, room = [], seq_len
    if current:
        yield _row(current, seq_len, pad_id)


def pack_best_fit(docs: Iterable[Piece], seq_len: int, pad_id: int) -> Iterator[Row]:
    """Best-fit decreasing over documents split into seq_len chunks.

    Pieces are sorted by length, longest first, ties kept in input order (a stable sort), so
    the result depends on the input order only; rows come out in the order they were opened.
    """
    pieces = [c for d in docs for c in chunks(d, seq_len)]
    order = sorted(range(len(pieces)), key=lambda i: -len(pieces[i].ids))
    bins: list[list[Piece]] = []
    # (room left, bin number), sorted: the first entry with room >= n is the best fit.
    rooms: list[tuple[int, int]] = []
    for i in order:
        piece = pieces[i]
        n = len(piece.ids)
        k = bisect.bisect_left(rooms, (n, -1))
        if k < len(rooms):
            room, b = rooms.pop(k)
        else:
            room, b = seq_len, len(bins)
            bins.append([])
        bins[b].append(piece)
        if room - n > 0:
            bisect.insort(rooms, (room - n, b))
    for b in bins:
        yield _row(b, seq_len, pad_id)


PACKERS = {"concat": pack_concat, "best_fit": pack_best_fit}


def efficiency(rows: list[Row], documents: int) -> dict[str, float]:
    """Padding share (pad cells / all cells) and cut share (extra pieces / documents)."""
    cells = sum(len(r.tokens) for r in rows)
    pad = sum(len(r.tokens) - r.used for r in rows)
    pieces = sum(len(r.starts) for r in rows)
    return {
        "padding_share": pad / cells if cells else 0.0,
        "cut_share": (pieces - documents) / documents if documents else 0.0,
    }
