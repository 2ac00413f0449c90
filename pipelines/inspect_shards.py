"""`iptkit inspect SHARDS`: what a shard set holds, in words a person can check.

Prints the manifest summary, the mix (the manifest's `mix` and RUN/mix/report.json when the
shards sit in a run directory), and a few packed sequences decoded with the manifest's
tokenizer: loss-target tokens wrapped in ⟦ ⟧ (green on a terminal), each document start marked,
trailing padding collapsed. A preference set (layout pairs) shows pairs instead: the prompt
once, then the chosen and the rejected response. Reading goes through `iptkit.shards.open_shards`, so a truncated or
corrupt set is refused here exactly as the trainer would refuse it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iptkit.shards import MANIFEST_NAME, ShardError, ShardSet, open_shards
from iptkit.transforms.tail.tokenizer import LoadedTokenizer, TokenizerError, load_tokenizer

MIX_REPORT = Path("mix") / "report.json"
TARGET_OPEN, TARGET_CLOSE = "⟦", "⟧"
_GREEN, _RESET = "\x1b[32m", "\x1b[0m"


@dataclass(frozen=True)
class Style:
    """How target spans and boundaries are shown: brackets for files and pipes, colour on a TTY."""

    color: bool = False

    def target(self, text: str) -> str:
        return f"{_GREEN}{text}{_RESET}" if self.color else f"{TARGET_OPEN}{text}{TARGET_CLOSE}"

    def doc_start(self, n: int, continued: bool) -> str:
        label = f"doc {n}" + (" (continued)" if continued else "")
        return f"\n── {label} ──\n"


def split_dirs(path: str | Path) -> list[Path]:
    """The split folders under `path`: itself when it holds a manifest, else its children that do."""
    p = Path(path)
    if p.name == MANIFEST_NAME:
        return [p.parent]
    if (p / MANIFEST_NAME).is_file():
        return [p]
    found = sorted(c for c in p.iterdir() if (c / MANIFEST_NAME).is_file()) if p.is_dir() else []
    if not found:
        raise ShardError(f"{p}: no {MANIFEST_NAME} here or in its sub-folders; is it a shard set?")
    return found


def find_mix_report(split_dir: Path, levels: int = 3) -> Path | None:
    """RUN/mix/report.json of the run the shards belong to (RUN/shards[/split])."""
    for parent in [split_dir, *split_dir.parents][: levels + 1]:
        if (parent / MIX_REPORT).is_file():
            return parent / MIX_REPORT
    return None


def summary(shards: ShardSet) -> list[str]:
    m = shards.manifest
    t = m.totals
    return [
        f"split      {m.split}  ({len(m.shards)} shard(s), format v{m.format_version})",
        f"sequences  {t.sequences:,} x seq_len {m.seq_len:,} = {t.tokens:,} tokens ({m.dtype})",
        f"documents  {t.documents:,} pieces (a document cut across rows counts once per row)",
        f"tokenizer  {m.tokenizer.path}  sha256 {m.tokenizer.sha256[:12]}…  vocab {m.vocab_size:,}",
        f"special    {', '.join(f'{k}={v}' for k, v in sorted(m.special_tokens.items())) or '-'}",
        f"loss mask  {'yes' if m.has_loss_mask else 'no (every token is a target)'}",
        *(
            [f"pairs      {m.pairs:,} preference pairs (rows 2i: chosen, 2i+1: rejected)"]
            if m.layout == "pairs"
            else []
        ),
        f"spec       {m.spec_hash[:19]}…  seed {m.seed}",
    ]


def mix_lines(manifest_mix: dict[str, Any], report_path: Path | None) -> list[str]:
    """The achieved mix: the report's table when there is one, else the manifest's mix as JSON."""
    lines = []
    if manifest_mix:
        lines += [
            "manifest mix:",
            *("  " + ln for ln in json.dumps(manifest_mix, indent=2, sort_keys=True).splitlines()),
        ]
    if report_path is None:
        return lines or ["mix: none recorded (no mix stage, or the shards are outside their run)"]
    report = json.loads(report_path.read_text(encoding="utf-8"))
    lines += [
        f"mix report ({report_path}): requested {report['requested_total_tokens']} tokens, "
        f"taken {report['taken_total_tokens']:,}, largest share error "
        f"{report['max_share_error']:.4f}",
        f"  {'group':<20} {'requested':>9} {'achieved':>9} {'available':>12} {'taken':>12} "
        f"{'repeats':>7} {'docs':>7}",
    ]
    for group, row in report["groups"].items():
        lines.append(
            f"  {group:<20} {row['requested_share']:>9.4f} {row['achieved_share']:>9.4f} "
            f"{row['available_tokens']:>12,} {row['taken_tokens']:>12,} {row['repeats']:>7.2f} "
            f"{row['taken_documents']:>7,}"
        )
    if report.get("shortfall_tokens"):
        lines.append(f"  shortfall (best_effort): {report['shortfall_tokens']}")
    return lines


def _runs(mask: np.ndarray, lo: int, hi: int) -> list[tuple[int, int, bool]]:
    """[lo, hi) cut where the mask changes: (start, end, is_target)."""
    out, start = [], lo
    for i in range(lo + 1, hi + 1):
        if i == hi or mask[i] != mask[start]:
            out.append((start, i, bool(mask[start])))
            start = i
    return out


def render_sequence(
    shards: ShardSet, index: int, tok: LoadedTokenizer | None, style: Style, first_doc: int = 1
) -> str:
    """One packed row as text: document starts marked, targets styled, trailing pad collapsed."""
    m = shards.manifest
    row = shards[index]
    tokens = np.asarray(row.tokens, dtype=np.int64)
    mask = np.asarray(row.loss_mask) if row.loss_mask is not None else np.ones(len(tokens), int)
    end = len(tokens)
    pad = m.special_tokens.get("pad")
    if pad is not None and pad != m.special_tokens.get("eos"):
        while end > 0 and tokens[end - 1] == pad:
            end -= 1

    def text(a: int, b: int) -> str:
        ids = tokens[a:b].tolist()
        return tok.decode(ids) if tok is not None else " ".join(map(str, ids))

    starts = [int(s) for s in row.doc_starts] + [len(tokens)]
    parts = [
        f"[sequence {index}: {len(starts) - 1} document piece(s), "
        f"{int(mask[:end].sum())} target tokens of {len(tokens)}]"
    ]
    for n, (a, b) in enumerate(zip(starts[:-1], starts[1:], strict=True)):
        b = min(b, end)
        if a >= b:
            continue
        parts.append(style.doc_start(first_doc + n, continued=(a == 0 and index > 0)))
        for ra, rb, target in _runs(mask, a, b):
            piece = text(ra, rb)
            # With no loss mask every token is a target: no brackets around everything.
            parts.append(style.target(piece) if target and m.has_loss_mask else piece)
    if end < len(tokens):
        parts.append(f"\n⟨pad × {len(tokens) - end}⟩")
    return "".join(parts)


def render_pair(shards: ShardSet, pair: int, tok: LoadedTokenizer | None, style: Style) -> str:
    """One preference pair: its prompt (the chosen row's tokens before the first target), then
    each side's response (its targets), as the trainer reads them."""

    def text(ids: np.ndarray) -> str:
        return tok.decode(ids.tolist()) if tok is not None else " ".join(map(str, ids.tolist()))

    parts = [f"[pair {pair}: rows {2 * pair}, {2 * pair + 1}]"]
    for side, row in (("chosen", 2 * pair), ("rejected", 2 * pair + 1)):
        seq = shards[row]
        tokens = np.asarray(seq.tokens, dtype=np.int64)
        targets = np.flatnonzero(np.asarray(seq.loss_mask))
        start = int(targets[0]) if targets.size else len(tokens)
        if side == "chosen":
            parts.append(f"\n── prompt ({start} tokens) ──\n{text(tokens[:start])}")
        response = tokens[targets] if targets.size else tokens[:0]
        parts.append(f"\n── {side} ({targets.size} tokens) ──\n{style.target(text(response))}")
    return "".join(parts)


def inspect_shards(
    path: str | Path, n: int = 3, indices: list[int] | None = None, color: bool = False
) -> str:
    """Everything `iptkit inspect` prints for the shard set(s) at `path`."""
    style = Style(color)
    out: list[str] = []
    for split_dir in split_dirs(path):
        shards = open_shards(split_dir, verify=False)
        m = shards.manifest
        out += [f"== {split_dir} ==", *summary(shards), ""]
        out += [*mix_lines(m.mix, find_mix_report(split_dir)), ""]
        try:
            tok: LoadedTokenizer | None = load_tokenizer(m.tokenizer.path)
        except TokenizerError as exc:
            tok = None
            out.append(f"(tokenizer not available: {exc}; showing token ids)")
        if tok is not None and tok.sha256 != m.tokenizer.sha256:
            out.append("(warning: the tokenizer file changed since packing; decoding may be wrong)")
        count = m.pairs or len(shards)
        rows = (
            indices
            if indices is not None
            else sorted({int(i) for i in np.linspace(0, count - 1, min(n, count))})
        )
        for i in rows:
            shown = (
                render_pair(shards, i, tok, style)
                if m.pairs
                else render_sequence(shards, i, tok, style)
            )
            out += [shown, ""]
    return "\n".join(out)
