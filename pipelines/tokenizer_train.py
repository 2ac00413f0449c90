"""`iptkit tokenizer train`: a sentencepiece vocabulary from a language-balanced sample of a run.

A bilingual corpus is rarely balanced (English web text dwarfs Japanese), and a vocabulary
trained on it as is spends most pieces on the larger language, so Japanese text costs many more
tokens per character. This command reads a run's records (RUN/output/*.jsonl.gz, or record files),
groups them by `lang`, and samples each language to its share of the training characters
(deterministically: records in order of blake2b(seed:id)). One record in ten, by the same hash,
is held out to measure characters per token per language afterwards.

It writes `tokenizer.model` (sentencepiece) and a Hugging Face folder (tokenizer.json and
tokenizer_config.json, built from the model's pieces the way transformers' Llama converter does,
byte fallback kept), because the trainer and `pack` read tokenizer.json; and `report.json`.
Ids 0-3 are unk, bos (<s>), eos (</s>) and pad (<pad>); user special tokens follow.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from iptkit.errors import IptkitError
from iptkit.hashing import seeded_int

HELD_OUT_EVERY = 10  # one record in ten is held out for the report
HELD_OUT_CHARS = 200_000  # per language, enough for a stable chars-per-token figure
SPECIALS = {"unk": "<unk>", "bos": "<s>", "eos": "</s>", "pad": "<pad>"}
MAX_LINE_BYTES = 16384  # sentencepiece skips longer lines; longer paragraphs are cut
UNSET_LANG = "und"


class TokenizerTrainError(IptkitError, ValueError):
    """Inputs or options that cannot give a tokenizer; the message says which and why."""


@dataclass(frozen=True)
class TrainOptions:
    out: str
    vocab_size: int
    model: str = "unigram"
    byte_fallback: bool = False
    special: list[str] = field(default_factory=list)
    lang_balance: dict[str, float] | None = None  # None: equal shares of every language found
    sample_chars: int = 20_000_000
    seed: int = 0


@dataclass
class TrainReport:
    out: str
    model: str
    vocab_size: int
    byte_fallback: bool
    special_tokens: dict[str, int]
    sample_chars: dict[str, int]
    requested_share: dict[str, float]
    held_out_chars_per_token: dict[str, float]
    held_out_unk_tokens: dict[str, int]

    def text(self) -> str:
        lines = [
            f"tokenizer written to {self.out} (tokenizer.model, tokenizer.json, "
            "tokenizer_config.json, report.json)",
            f"{self.model}, vocab {self.vocab_size:,}, byte fallback "
            f"{'on' if self.byte_fallback else 'off'}",
            "  lang  share  sample chars  held-out chars/token  unk",
        ]
        for lang in sorted(self.sample_chars):
            lines.append(
                f"  {lang:<5} {self.requested_share[lang]:>5.2f} {self.sample_chars[lang]:>13,} "
                f"{self.held_out_chars_per_token.get(lang, float('nan')):>21.2f} "
                f"{self.held_out_unk_tokens.get(lang, 0):>4}"
            )
        return "\n".join(lines)


def parse_balance(text: str | None) -> dict[str, float] | None:
    """ "en=0.5,ja=0.5" -> {"en": 0.5, "ja": 0.5}, normalised to sum 1."""
    if not text:
        return None
    shares: dict[str, float] = {}
    for item in text.split(","):
        lang, sep, value = item.partition("=")
        try:
            share = float(value)
        except ValueError:
            share = -1.0
        if not sep or not lang.strip() or share <= 0:
            raise TokenizerTrainError(
                f"--lang-balance {text!r}: expected LANG=SHARE,... with positive shares "
                f"(e.g. en=0.5,ja=0.5); bad item {item!r}"
            )
        shares[lang.strip()] = share
    total = sum(shares.values())
    return {k: v / total for k, v in shares.items()}


def input_files(inputs: Sequence[str]) -> list[Path]:
    """Record files: a run directory stands for its RUN/output/*.jsonl.gz."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted((p / "output").glob("*.jsonl*")) or sorted(p.glob("*.jsonl*"))
            if not found:
                raise TokenizerTrainError(
                    f"{p}: no records (expected RUN/output/*.jsonl.gz; was the run made with "
                    "keep_records: false?)"
                )
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise TokenizerTrainError(f"{p}: no such file or run directory")
    return files


def record_texts(record: dict[str, Any]) -> str:
    """The text a record contributes: its text plus its instruction/response pairs."""
    parts = [record.get("text") or ""]
    for pair in record.get("pairs") or []:
        parts += [str(v) for v in pair.values() if isinstance(v, str)]
    return "\n".join(p for p in parts if p)


def read_records(files: list[Path]) -> Iterator[tuple[str, str, str]]:
    """(id, lang, text) of every record; a line that is not a record is an error naming it."""
    for path in files:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8", errors="surrogateescape") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    rid = str(record.get("id", f"{path.name}:{n}"))
                except (json.JSONDecodeError, AttributeError) as exc:
                    raise TokenizerTrainError(f"{path}:{n}: not a JSON record ({exc})") from exc
                text = record_texts(record)
                if text:
                    yield rid, record.get("lang") or UNSET_LANG, text


def balanced_sample(
    records: Iterator[tuple[str, str, str]],
    balance: dict[str, float] | None,
    sample_chars: int,
    seed: int,
) -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, float]]:
    """(training texts, held-out texts, shares) per language.

    The total is the largest that keeps the shares with the data there is, up to sample_chars,
    so a small language caps the sample rather than skewing it.
    """
    by_lang: dict[str, list[tuple[int, str]]] = defaultdict(list)
    held: dict[str, list[str]] = defaultdict(list)
    for rid, lang, text in records:
        if balance is not None and lang not in balance:
            continue
        h = seeded_int(seed, rid)
        if h % HELD_OUT_EVERY == 0:
            held[lang].append(text)
        else:
            by_lang[lang].append((h, text))
    if balance is not None:
        shares = balance
    else:
        shares = {lang: 1 / len(by_lang) for lang in by_lang}
    missing = [lang for lang in shares if not by_lang.get(lang)]
    if not shares or missing:
        raise TokenizerTrainError(
            f"no training text for language(s) {missing or list(balance or [])}; languages in the "
            f"input: {sorted(set(by_lang) | set(held)) or 'none'}"
        )
    chars = {lang: sum(len(t) for _, t in items) for lang, items in by_lang.items()}
    total = min(sample_chars, *(chars[lang] / s for lang, s in shares.items()))
    sample: dict[str, list[str]] = {}
    for lang, share in shares.items():
        budget, taken, texts = share * total, 0, []
        for _, text in sorted(by_lang[lang]):
            if taken >= budget:
                break
            texts.append(text)
            taken += len(text)
        sample[lang] = texts
    return sample, dict(held), shares


def _lines(text: str) -> Iterator[str]:
    for line in text.split("\n"):
        line = line.strip()
        while len(line.encode("utf-8", "surrogateescape")) > MAX_LINE_BYTES:
            yield line[: MAX_LINE_BYTES // 4]
            line = line[MAX_LINE_BYTES // 4 :]
        if line:
            yield line


def train_spm(texts: list[str], opts: TrainOptions, model_prefix: Path) -> None:
    import sentencepiece

    with tempfile.NamedTemporaryFile(
        "w", suffix=".txt", encoding="utf-8", errors="surrogateescape", delete=False
    ) as fh:
        for text in texts:
            for line in _lines(text):
                fh.write(line + "\n")
    try:
        sentencepiece.SentencePieceTrainer.train(
            input=fh.name,
            model_prefix=str(model_prefix),
            model_type=opts.model,
            vocab_size=opts.vocab_size,
            byte_fallback=opts.byte_fallback,
            # Every character seen stays a piece (Japanese has thousands); rarer ones go to
            # bytes when byte_fallback is on.
            character_coverage=0.9995 if opts.byte_fallback else 1.0,
            user_defined_symbols=opts.special,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=3,
            # Llama-style settings, which the Hugging Face conversion reproduces exactly.
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=True,
            split_digits=True,
            max_sentence_length=MAX_LINE_BYTES,
            input_sentence_size=0,
            num_threads=min(4, os.cpu_count() or 1),
            minloglevel=2,
        )
    except RuntimeError as exc:
        raise TokenizerTrainError(
            f"sentencepiece could not train: {exc} (the vocabulary must hold a piece per common "
            "character, over a thousand for Japanese: raise --vocab-size)"
        ) from exc
    finally:
        os.unlink(fh.name)


def spm_to_hf(model_file: Path, model: str, special: list[str]) -> Any:
    """The sentencepiece model as a `tokenizers.Tokenizer` that encodes identically.

    Built from the model's pieces and scores (sentencepiece's own API, no protobuf, whose
    version pins clash between sentencepiece and transformers), with the normalizer and decoder
    transformers' LlamaConverter uses for models trained like ours (identity normalization,
    dummy prefix, byte fallback); BPE merges come from transformers' `generate_merges`.
    """
    import sentencepiece
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers
    from tokenizers.models import BPE, Unigram
    from transformers.tokenization_utils_base import generate_merges

    sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    n = sp.get_piece_size()
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(n)]
    # unk, control (bos/eos/pad) and user-defined pieces are matched whole, never merged into.
    atomic = sorted(
        {i for i in range(n) if sp.is_unknown(i) or sp.is_control(i)}
        | {sp.piece_to_id(t) for t in special}
    )
    if model == "unigram":
        tok = Tokenizer(Unigram(vocab, unk_id=sp.unk_id(), byte_fallback=True))
    else:
        ids = {piece: i for i, (piece, _) in enumerate(vocab)}
        skip = {vocab[i][0] for i in atomic}
        merges = generate_merges(ids, dict(vocab), skip_tokens=skip)
        tok = Tokenizer(
            BPE(
                ids,
                merges,
                unk_token=sp.id_to_piece(sp.unk_id()),
                fuse_unk=True,
                byte_fallback=True,
            )
        )
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(content=" ", left=1),
        ]
    )
    tok.add_special_tokens(
        [AddedToken(vocab[i][0], normalized=False, special=True) for i in atomic]
    )
    return tok


def write_hf_folder(model_file: Path, model: str, out: Path, special: list[str]) -> None:
    """tokenizer.json and tokenizer_config.json naming bos/eos/pad/unk."""
    spm_to_hf(model_file, model, special).save(str(out / "tokenizer.json"))
    config = {f"{role}_token": token for role, token in SPECIALS.items()}
    config |= {
        "additional_special_tokens": special,
        "add_bos_token": False,
        "add_eos_token": False,
        "model_max_length": 1_000_000_000,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def train_tokenizer(inputs: Sequence[str], opts: TrainOptions) -> TrainReport:
    """Sample, train, convert, and measure; returns the report also written to report.json."""
    if opts.vocab_size < 100:
        raise TokenizerTrainError(f"--vocab-size {opts.vocab_size}: use at least 100")
    sample, held, shares = balanced_sample(
        read_records(input_files(inputs)), opts.lang_balance, opts.sample_chars, opts.seed
    )
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    train_spm([t for texts in sample.values() for t in texts], opts, out / "tokenizer")
    write_hf_folder(out / "tokenizer.model", opts.model, out, opts.special)

    from iptkit.transforms.tail.tokenizer import load_tokenizer

    tok = load_tokenizer(out / "tokenizer.json")
    unk = tok.special_tokens["unk"]
    cpt, unks = {}, {}
    for lang, texts in sorted(held.items()):
        chosen, n = [], 0
        for text in texts:
            if n >= HELD_OUT_CHARS:
                break
            chosen.append(text)
            n += len(text)
        ids = [i for e in tok.encode_batch(chosen) for i in e]
        cpt[lang] = n / max(1, len(ids))
        unks[lang] = sum(1 for i in ids if i == unk)
    report = TrainReport(
        out=str(out),
        model=opts.model,
        vocab_size=tok.vocab_size,
        byte_fallback=opts.byte_fallback,
        special_tokens={t: tok.token_to_id(t) for t in [*SPECIALS.values(), *opts.special]},
        sample_chars={lang: sum(map(len, texts)) for lang, texts in sample.items()},
        requested_share=shares,
        held_out_chars_per_token=cpt,
        held_out_unk_tokens=unks,
    )
    (out / "report.json").write_text(json.dumps(asdict(report), indent=2, sort_keys=True) + "\n")
    return report
