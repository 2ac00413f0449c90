"""Tiny tokenizers, causal LMs and a trained synthesizer, built locally for the inference tests.

The tokenizer is word-level over byte-level pre-tokens (exact round trip of spaces and blank
lines), with the synthesizer's markers as added tokens: `<s>`, `</s>`, `<pad>`, `<unk>` special
(decoding skips them), `<CON>`, `</CON>`, `<QUE>`, `<ANS>`, `</END>` ordinary (decoding keeps
them, as the parser needs).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL = ["<pad>", "<unk>", "<s>", "</s>"]
MARKERS = ["<CON>", "</CON>", "<QUE>", "<ANS>", "</END>"]

CAPITALS = [
    ("Paris", "France"),
    ("Rome", "Italy"),
    ("Madrid", "Spain"),
    ("Berlin", "Germany"),
    ("Vienna", "Austria"),
    ("Lisbon", "Portugal"),
    ("Athens", "Greece"),
    ("Dublin", "Ireland"),
    ("Oslo", "Norway"),
    ("Warsaw", "Poland"),
    ("Prague", "Czechia"),
    ("Tokyo", "Japan"),
]


def build_tokenizer(
    texts: list[str], path: Path, per_character: bool = False
) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose vocabulary is every word of `texts` (or, `per_character`,
    every character: like real tokenizers on Japanese, about a token a character), with the
    synthesizer's markers as whole tokens; saved under `path`."""
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    if per_character:
        tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in MARKERS])
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=SPECIAL))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    fast.save_pretrained(path)
    return fast


def tiny_llama(tokenizer: PreTrainedTokenizerFast, seed: int = 0, max_len: int = 512):
    """A randomly initialised 2-layer Llama sized for CPU tests."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=max_len,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def save(model, tokenizer, path: Path) -> Path:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def fact(city: str, country: str) -> str:
    return f"{city} is the capital of {country}."


def task_lines(n: int, seed: int) -> list[dict]:
    """Context-based task data: a few capital facts, with a question about each."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        facts = rng.sample(CAPITALS, rng.randint(1, 3))
        lines.append(
            {
                "context": " ".join(fact(c, k) for c, k in facts),
                "questions": [f"What is the capital of {k}?" for _, k in facts],
                "answers": [c for c, _ in facts],
            }
        )
    return lines


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def train_synthesizer(root: Path, steps: int = 300, seed: int = 0) -> Path:
    """A tiny synthesizer tuned on tuning sequences from `iptkit.transforms.synth.tuning_data`,
    with the loss on the pair spans only; saved under `root`, which is returned."""
    from iptkit.transforms.synth.tuning_data import convert

    data = write_jsonl(root / "capitals.jsonl", task_lines(240, seed))
    words = [fact(c, k) + f" What is the capital of {k}?" for c, k in CAPITALS]
    # A first tokenizer over the words counts tokens for packing; the final one adds the
    # formatted sequences so every pre-token (blank lines, `?`) is in the vocabulary.
    sequences, _ = convert([(data, "capitals")], lambda t: len(t.split()) * 2, 128)
    tokenizer = build_tokenizer(words + [s.text for s in sequences], root)
    sequences, _ = convert(
        [(data, "capitals")],
        lambda t: len(tokenizer(t, add_special_tokens=False)["input_ids"]),
        128,
    )
    rows, masks = [], []
    for s in sequences:
        enc = tokenizer(s.text, add_special_tokens=False, return_offsets_mapping=True)
        mask = [
            int(any(a <= start < b for a, b in s.loss_spans)) for start, _ in enc["offset_mapping"]
        ]
        rows.append(enc["input_ids"])
        masks.append(mask)
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    for i, (row, mask) in enumerate(zip(rows, masks, strict=True)):
        ids[i, : len(row)] = torch.tensor(row)
        labels[i, : len(row)] = torch.tensor(
            [t if m else -100 for t, m in zip(row, mask, strict=True)]
        )
    model = tiny_llama(tokenizer, seed)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        batch = torch.randint(0, len(rows), (16,), generator=gen)
        loss = model(input_ids=ids[batch], labels=labels[batch]).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
    model.eval()
    return save(model, tokenizer, root)
