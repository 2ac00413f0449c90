"""Build the tiny local chat models the example specs (swallow_ja.yaml, xcit.yaml) run with.

Nothing is downloaded: a byte-level BPE tokenizer with a chat template is trained on the
bundled chat fixtures and the stages' prompts, and two 2-layer Llama models are written:

- `chat-random/`: random weights. Its outputs are garbage, so translate, respond and judge
  reject what it writes, each with its check's reason: the failure paths.
- `chat-constant/`: trained for a few hundred steps (about 20 s on one CPU core) to answer every
  chat prompt with `CONSTANT_ANSWER`, a short Japanese sentence that carries a judge's verdict.
  It passes the translation checks for short sources (Japanese script and language, length
  within bounds, a sentence end), is a valid response, and parses as score 7: the success
  paths of all three stages, end to end.
- `chat-mixed/` (`make_mixed_model`, only on request: it costs another training run): answers a
  chat prompt with `GOOD_ANSWER` or `POOR_ANSWER`, about equally likely (so sampled responses
  differ), and judges a response that is one of them with that answer, whose verdict is
  `[[8]]` or `[[3]]`: respond with n samples, judge and the preference stage then make real
  pairs, the good answer chosen (pipelines/examples/preference.yaml).

Usage: python scripts/make_tiny_models.py [OUT]   (default runs/tiny-models; `make tiny-models`)
Then: iptkit run pipelines/examples/swallow_ja.yaml --set stages.translate.model=OUT/chat-constant ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "pipelines" / "examples" / "data"
SPECIAL = ["<pad>", "<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
CONSTANT_ANSWER = "はい、わかりました。評価：[[7]]"
GOOD_ANSWER = "Yes, gladly: here is a careful answer. Rating: [[8]]"
POOR_ANSWER = "No. Rating: [[3]]"
MAX_LEN = 2048
CONTEXT = 48  # prompt tokens per training example


# The chat fixtures the tokenizer and the constant model learn from, named (not globbed): tests
# pin what these seeded models write, so a file or prompt added to iptkit must not change them.
FIXTURE_CHATS = ("chats_lmsys.jsonl", "chats_sharegpt.jsonl")
PROMPT_PAIRS = ("en-ja", "ja-en")  # likewise the translation prompts (more are built in)


def fixture_texts() -> list[str]:
    """Every user and assistant turn of the bundled chat fixtures (FIXTURE_CHATS)."""
    texts = []
    for path in (FIXTURES / name for name in FIXTURE_CHATS):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            for turn in row.get("conversation") or row.get("conversations") or []:
                texts.append(turn.get("content") or turn.get("value") or "")
    return [t for t in texts if t]


def stage_prompts() -> list[str]:
    from iptkit.transforms.stages.judge import DEFAULT_RUBRIC
    from iptkit.transforms.stages.translate import DEFAULT_PROMPTS

    return [DEFAULT_RUBRIC, *(DEFAULT_PROMPTS[pair] for pair in PROMPT_PAIRS), CONSTANT_ANSWER]
    # GOOD_ANSWER and POOR_ANSWER are left out: the tokenizer (shared by every model) stays
    # the one the constant model's tests were written against; byte-level BPE encodes them.


def build_tokenizer(texts: list[str], vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """Byte-level BPE (any input encodes, nothing is unknown) with the chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        unk_token="<unk>", chat_template=CHAT_TEMPLATE,
    )  # fmt: skip
    return fast


def tiny_llama(tokenizer, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=MAX_LEN,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def train_constant(model, tokenizer, prompts: list[str], steps: int, seed: int) -> None:
    """Tune `model` to answer every prompt with CONSTANT_ANSWER then EOS (loss on the answer)."""
    train_answers(model, tokenizer, [(p, CONSTANT_ANSWER) for p in prompts], steps, seed)


def train_answers(model, tokenizer, examples: list[tuple[str, str]], steps: int, seed: int) -> None:
    """Tune `model` to answer each (prompt, answer) example's prompt with its answer then EOS
    (loss on the answer); a prompt given with two answers learns both as equally likely."""
    rows, labels = [], []
    for prompt, text in examples:
        answer = tokenizer(text, add_special_tokens=False)["input_ids"]
        answer.append(tokenizer.eos_token_id)
        # The answer follows the assistant turn whatever came before: its last tokens suffice.
        ids = tokenizer(prompt, add_special_tokens=True)["input_ids"][-CONTEXT:]
        rows.append(ids + answer)
        labels.append([-100] * len(ids) + answer)
    gen = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains fastest on one core, never oversubscribed
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = torch.randint(0, len(rows), (8,), generator=gen).tolist()
        width = max(len(rows[i]) for i in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        target = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for j, i in enumerate(batch):  # left padding, as the handler feeds prompts
            n = len(rows[i])
            ids[j, width - n :] = torch.tensor(rows[i])
            target[j, width - n :] = torch.tensor(labels[i])
            mask[j, width - n :] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=target).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
    torch.set_num_threads(threads)
    model.eval()


def training_prompts(tokenizer, texts: list[str]) -> list[str]:
    """Chat prompts like the stages': translation requests, bare instructions, judge rubrics."""
    from iptkit.transforms.inference.chat_prompt import chat_prompt
    from iptkit.transforms.stages.judge import DEFAULT_RUBRIC, rubric_text
    from iptkit.transforms.stages.translate import DEFAULT_PROMPTS

    prompts = []
    for i, text in enumerate(texts):
        short = text[:300]
        template = DEFAULT_PROMPTS["en-ja" if i % 2 else "ja-en"]
        prompts.append(chat_prompt(tokenizer, template.replace("{text}", short)))
        prompts.append(chat_prompt(tokenizer, short))
        pair = {"instruction": short, "response": texts[(i + 1) % len(texts)][:200]}
        prompts.append(chat_prompt(tokenizer, rubric_text(DEFAULT_RUBRIC, pair)))
    return prompts


def mixed_examples(tokenizer, texts: list[str]) -> list[tuple[str, str]]:
    """Each instruction answered with GOOD_ANSWER and with POOR_ANSWER; a judge rubric holding
    one of them as its response answered with that one (its verdict: 8 or 3)."""
    from iptkit.transforms.inference.chat_prompt import chat_prompt
    from iptkit.transforms.stages.judge import DEFAULT_RUBRIC, rubric_text

    examples = []
    for text in texts:
        short = text[:300]
        examples += [(chat_prompt(tokenizer, short), a) for a in (GOOD_ANSWER, POOR_ANSWER)]
        for answer in (GOOD_ANSWER, POOR_ANSWER):
            pair = {"instruction": short, "response": answer}
            examples.append((chat_prompt(tokenizer, rubric_text(DEFAULT_RUBRIC, pair)), answer))
    return examples


def make_mixed_model(out: Path, steps: int = 300, seed: int = 0) -> Path:
    """Write chat-mixed/ under `out` (see the module docstring); return its folder."""
    texts = fixture_texts()
    tokenizer = build_tokenizer(texts + stage_prompts())
    path = out / "chat-mixed"
    tokenizer.save_pretrained(path)
    model = tiny_llama(tokenizer, seed)
    train_answers(model, tokenizer, mixed_examples(tokenizer, texts), steps, seed)
    model.save_pretrained(path)
    return path


def make_tiny_models(out: Path, steps: int = 200, seed: int = 0) -> dict[str, Path]:
    """Write chat-random/ and chat-constant/ under `out`; return their folders."""
    texts = fixture_texts()
    paths = {"random": out / "chat-random", "constant": out / "chat-constant"}
    tokenizer = build_tokenizer(texts + stage_prompts())
    for name, path in paths.items():
        tokenizer.save_pretrained(path)
        model = tiny_llama(tokenizer, seed)
        if name == "constant":
            train_constant(model, tokenizer, training_prompts(tokenizer, texts), steps, seed)
        model.save_pretrained(path)
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "runs" / "tiny-models"
    for name, path in make_tiny_models(target).items():
        print(f"{name}: {path}")
    print(f"mixed: {make_mixed_model(target)}")
