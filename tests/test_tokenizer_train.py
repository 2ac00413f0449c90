"""`iptkit tokenizer train` on records made from the bundled demo corpus (English and Japanese web
text): both languages tokenize without unk, special tokens are there, the HF folder agrees with
the sentencepiece model, and the sample keeps the language balance."""

import gzip
import io
import json
from pathlib import Path

import pytest
import sentencepiece
import zstandard

from iptkit.pipelines.cli import main
from iptkit.pipelines.tokenizer_train import (
    TokenizerTrainError,
    TrainOptions,
    balanced_sample,
    parse_balance,
    read_records,
    train_tokenizer,
)
from iptkit.transforms.tail.tokenizer import load_tokenizer

DATA = Path(__file__).resolve().parents[1] / "pipelines" / "examples" / "data"
PROBES = {
    "en": "Photosynthesis turns light into chemical energy in 2024.",
    "ja": "光合成は光のエネルギーを化学エネルギーに変える。",
}


def _texts(raw: bytes) -> list[str]:
    """The texts of the demo's JSONL lines; the demo's deliberately broken lines are skipped."""
    texts = []
    for line in raw.decode("utf-8", "replace").splitlines():
        try:
            text = json.loads(line).get("text")
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(text, str) and text.strip():
            texts.append(text)
    return texts


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run directory whose output holds the demo's English and Japanese web records."""
    en = _texts(gzip.decompress((DATA / "web_en.jsonl.gz").read_bytes()))
    ja_raw = zstandard.ZstdDecompressor().stream_reader(
        io.BytesIO((DATA / "web_ja.jsonl.zst").read_bytes())
    )
    ja = _texts(ja_raw.read())
    run = tmp_path_factory.mktemp("run")
    (run / "output").mkdir()
    rows = [{"id": f"en{i}", "lang": "en", "text": t, "kind": "raw"} for i, t in enumerate(en)]
    rows += [{"id": f"ja{i}", "lang": "ja", "text": t, "kind": "raw"} for i, t in enumerate(ja)]
    rows.append(
        {
            "id": "c1",
            "lang": "en",
            "text": "",
            "pairs": [{"instruction": "Hi", "response": "Hello"}],
        }
    )
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    (run / "output" / "part-00000-of-00001.jsonl.gz").write_bytes(gzip.compress(data))
    return run


@pytest.mark.parametrize("model", ["unigram", "bpe"])
def test_trains_a_bilingual_tokenizer(tmp_path, run_dir, model):
    out = tmp_path / "tok"
    report = train_tokenizer(
        [str(run_dir)],
        TrainOptions(
            out=str(out),
            vocab_size=2000,
            model=model,
            byte_fallback=True,
            special=["<|user|>", "<|assistant|>"],
            lang_balance={"en": 0.5, "ja": 0.5},
        ),
    )
    assert {p.name for p in out.iterdir()} >= {
        "tokenizer.model",
        "tokenizer.json",
        "tokenizer_config.json",
        "report.json",
    }
    assert report.vocab_size == 2000
    assert report.held_out_unk_tokens == {"en": 0, "ja": 0}
    assert all(v > 1 for v in report.held_out_chars_per_token.values())
    hf = load_tokenizer(out)  # the folder: tokenizer.json is taken
    spm = sentencepiece.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    assert hf.special_tokens == {"unk": 0, "bos": 1, "eos": 2, "pad": 3}
    for token in ("<|user|>", "<|assistant|>"):
        assert hf.token_to_id(token) == spm.piece_to_id(token) > 3
        assert hf.encode(f"a {token} b").count(hf.token_to_id(token)) == 1
    for text in [*PROBES.values(), "絵文字😀と未知の字𠮷"]:
        ids = hf.encode(text)
        assert ids == spm.encode(text), "the HF conversion must tokenize like sentencepiece"
        assert 0 not in ids and hf.decode(ids) == text


def test_sample_is_balanced_and_deterministic(run_dir):
    records = list(read_records([run_dir / "output" / "part-00000-of-00001.jsonl.gz"]))
    sample, held, shares = balanced_sample(iter(records), {"en": 0.5, "ja": 0.5}, 10**9, seed=1)
    chars = {lang: sum(map(len, texts)) for lang, texts in sample.items()}
    # The smaller language caps the total; the other is cut to the same size (to one record).
    longest = max(len(t) for texts in sample.values() for t in texts)
    assert abs(chars["en"] - chars["ja"]) <= longest
    assert held["en"] and held["ja"] and shares == {"en": 0.5, "ja": 0.5}
    again = balanced_sample(iter(records[::-1]), {"en": 0.5, "ja": 0.5}, 10**9, seed=1)
    assert again[0] == sample


def test_bad_inputs_are_named(tmp_path, run_dir, capsys):
    with pytest.raises(TokenizerTrainError, match="bad item 'en'"):
        parse_balance("en,ja=1")
    with pytest.raises(TokenizerTrainError, match=r"no training text for language\(s\) \['fr'\]"):
        train_tokenizer(
            [str(run_dir)],
            TrainOptions(out=str(tmp_path), vocab_size=500, lang_balance={"en": 0.5, "fr": 0.5}),
        )
    assert main(["tokenizer", "train", str(tmp_path / "nope"), "--out", "x", "--vocab-size", "500"])
    assert "no such file or run directory" in capsys.readouterr().err


def test_cli(tmp_path, run_dir, capsys):
    code = main(
        [
            "tokenizer",
            "train",
            str(run_dir),
            "--out",
            str(tmp_path / "t"),
            "--vocab-size",
            "2000",
            "--byte-fallback",
            "--special",
            "<|im_start|>",
            "--lang-balance",
            "en=1,ja=1",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "unigram, vocab 2,000" in out and "ja" in out
    assert json.loads((tmp_path / "t" / "report.json").read_text())["requested_share"] == {
        "en": 0.5,
        "ja": 0.5,
    }
