"""One view of a tokenizer for every stage that counts or produces tokens (mix, pack, synthesize).

Users bring either a Hugging Face tokenizer (a `tokenizer.json`, or a model folder holding one)
or a sentencepiece model (`*.model`, or a folder holding `tokenizer.model` and no
`tokenizer.json`). Both are wrapped in `LoadedTokenizer`, which encodes without adding special
tokens (the pack stage decides where BOS and EOS go), names its special token ids, and pickles
as its path only, so a Beam worker loads the model once in its own process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from iptkit.errors import IptkitError
from iptkit.shards import sha256_file

# Names a bare tokenizer.json commonly gives its special tokens, by role, most usual first.
_ROLE_TOKENS = {
    "bos": ("<s>", "<|begin_of_text|>", "<bos>", "[CLS]", "<|startoftext|>"),
    "eos": ("</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", "[SEP]", "<|im_end|>"),
    "pad": ("<pad>", "[PAD]", "<|pad|>", "<|finetune_right_pad_id|>"),
    "unk": ("<unk>", "[UNK]", "<|unk|>"),
}
SPECIAL_ROLES = tuple(_ROLE_TOKENS)


class TokenizerError(IptkitError):
    """A tokenizer path that cannot be used, with what to give instead."""


def resolve_tokenizer_file(path: str | Path) -> Path:
    """The file a tokenizer path names: tokenizer.json, or a sentencepiece model.

    A folder is searched for tokenizer.json first (a Hugging Face folder may hold both), then
    for tokenizer.model.
    """
    p = Path(path)
    if p.is_dir():
        for name in ("tokenizer.json", "tokenizer.model"):
            if (p / name).is_file():
                return p / name
        raise TokenizerError(
            f"{p} holds neither tokenizer.json nor tokenizer.model; point `tokenizer` at a "
            "Hugging Face tokenizer folder or file, or a sentencepiece .model file"
        )
    if not p.is_file():
        raise TokenizerError(f"tokenizer {p} does not exist")
    if p.suffix not in (".json", ".model"):
        raise TokenizerError(
            f"tokenizer {p}: expected a tokenizer.json (Hugging Face) or a .model "
            "(sentencepiece) file"
        )
    return p


def _token_content(value: Any) -> str | None:
    """tokenizer_config.json writes a special token as a string or as {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


@dataclass
class LoadedTokenizer:
    """A tokenizer loaded lazily from `path` (see `resolve_tokenizer_file`)."""

    path: Path
    _model: Any = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._model = None

    @property
    def kind(self) -> str:
        """ "hf" for a tokenizer.json, "sentencepiece" for a .model file."""
        return "hf" if self.path.suffix == ".json" else "sentencepiece"

    @property
    def model(self) -> Any:
        if self._model is None:
            if self.kind == "hf":
                from tokenizers import Tokenizer

                self._model = Tokenizer.from_file(str(self.path))
            else:
                import sentencepiece

                self._model = sentencepiece.SentencePieceProcessor(model_file=str(self.path))
        return self._model

    @cached_property
    def sha256(self) -> str:
        return sha256_file(self.path)

    @property
    def vocab_size(self) -> int:
        """Ids run from 0 to vocab_size - 1, added tokens included."""
        if self.kind == "hf":
            return self.model.get_vocab_size(with_added_tokens=True)
        return self.model.get_piece_size()

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, with no special tokens added."""
        if self.kind == "hf":
            # encode_batch_fast skips the character offsets (a seventh of the encode time).
            return [e.ids for e in self.model.encode_batch_fast(texts, add_special_tokens=False)]
        return self.model.encode(texts)

    def encode_batch_offsets(
        self, texts: list[str]
    ) -> list[tuple[list[int], list[tuple[int, int]]]] | None:
        """Token ids of each text with each token's character span, or None where the
        tokenizer cannot give spans (sentencepiece models)."""
        if self.kind != "hf":
            return None
        return [
            (e.ids, e.offsets) for e in self.model.encode_batch(texts, add_special_tokens=False)
        ]

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        if self.kind == "hf":
            return self.model.decode(ids, skip_special_tokens=skip_special_tokens)
        return self.model.decode(ids)

    def token_to_id(self, token: str) -> int | None:
        if self.kind == "hf":
            return self.model.token_to_id(token)
        piece = self.model.piece_to_id(token)
        return piece if self.model.id_to_piece(piece) == token else None

    def id_to_token(self, token_id: int) -> str:
        if self.kind == "hf":
            return self.model.id_to_token(token_id)
        return self.model.id_to_piece(token_id)

    @cached_property
    def config(self) -> dict[str, Any]:
        """tokenizer_config.json next to the file, when there is one (chat template, roles)."""
        cfg = self.path.parent / "tokenizer_config.json"
        return json.loads(cfg.read_text(encoding="utf-8")) if cfg.is_file() else {}

    @property
    def chat_template(self) -> str | None:
        """tokenizer_config.json's chat_template, else chat_template.jinja beside it (where
        transformers' save_pretrained writes it since 4.43)."""
        template = self.config.get("chat_template")
        if isinstance(template, str):
            return template
        jinja = self.path.parent / "chat_template.jinja"
        return jinja.read_text(encoding="utf-8") if jinja.is_file() else None

    @cached_property
    def special_tokens(self) -> dict[str, int]:
        """Ids of the bos, eos, pad and unk tokens this tokenizer has.

        Taken from tokenizer_config.json when present, from the sentencepiece model's own ids,
        else from the usual token names of a bare tokenizer.json.
        """
        found: dict[str, int] = {}
        if self.kind == "sentencepiece":
            m = self.model
            for role, token_id in (
                ("bos", m.bos_id()),
                ("eos", m.eos_id()),
                ("pad", m.pad_id()),
                ("unk", m.unk_id()),
            ):
                if token_id >= 0:
                    found[role] = token_id
        for role in SPECIAL_ROLES:
            name = _token_content(self.config.get(f"{role}_token"))
            token_id = self.token_to_id(name) if name else None
            if token_id is not None:
                found[role] = token_id
        for role, names in _ROLE_TOKENS.items():
            if role not in found:
                for name in names:
                    token_id = self.token_to_id(name)
                    if token_id is not None:
                        found[role] = token_id
                        break
        return found


def load_tokenizer(path: str | Path) -> LoadedTokenizer:
    """The tokenizer at `path` (file or folder), checked to exist; loaded on first use."""
    return LoadedTokenizer(resolve_tokenizer_file(path))
