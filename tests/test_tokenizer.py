"""The tokenizer view: Hugging Face and sentencepiece models built here, encoded the same way."""

import json
import pickle

import pytest
import sentencepiece
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from iptkit.transforms.tail.tokenizer import TokenizerError, load_tokenizer

TEXT = [
    "The river runs past the old mill and into the sea.",
    "川は古い水車小屋のそばを流れ、海に注ぐ。",
    "Packing joins documents with an end-of-text token between them.",
] * 40


def _hf_folder(tmp_path, with_config: bool):
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=310,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TEXT, trainer)
    folder = tmp_path / "hf"
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    if with_config:
        config = {"bos_token": {"content": "<s>"}, "eos_token": "</s>", "chat_template": "{{x}}"}
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def _spm(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXT), encoding="utf-8")
    prefix = tmp_path / "spm"
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        vocab_size=310,
        byte_fallback=True,
        pad_id=3,
        minloglevel=2,
        character_coverage=1.0,
    )
    return prefix.with_suffix(".model")


@pytest.mark.parametrize("with_config", [True, False])
def test_hf_folder_round_trips_and_names_special_tokens(tmp_path, with_config):
    tok = load_tokenizer(_hf_folder(tmp_path, with_config))
    assert tok.kind == "hf" and tok.path.name == "tokenizer.json"
    ids = tok.encode(TEXT[1])
    assert tok.decode(ids) == TEXT[1] and tok.id_to_token(ids[0])
    assert 0 < max(ids) < tok.vocab_size <= 400
    assert tok.special_tokens == {"unk": 0, "bos": 1, "eos": 2, "pad": 3}
    assert tok.chat_template == ("{{x}}" if with_config else None)
    assert tok.encode_batch(TEXT[:2]) == [tok.encode(TEXT[0]), ids]


def test_sentencepiece_model_encodes_without_special_tokens_and_pickles_as_a_path(tmp_path):
    tok = load_tokenizer(_spm(tmp_path))
    assert tok.kind == "sentencepiece"
    ids = tok.encode(TEXT[0])
    assert tok.decode(ids) == TEXT[0]
    assert tok.special_tokens == {"bos": 1, "eos": 2, "pad": 3, "unk": 0}
    assert 1 not in ids and 2 not in ids
    blob = pickle.dumps(tok)
    assert len(blob) < 300  # the path, not the model
    assert pickle.loads(blob).encode(TEXT[0]) == ids
    assert tok.sha256 == pickle.loads(blob).sha256


def test_bad_paths_say_what_to_give(tmp_path):
    with pytest.raises(TokenizerError, match="does not exist"):
        load_tokenizer(tmp_path / "missing.json")
    with pytest.raises(TokenizerError, match="neither tokenizer.json nor tokenizer.model"):
        load_tokenizer(tmp_path)
    (tmp_path / "vocab.txt").write_text("a")
    with pytest.raises(TokenizerError, match="expected a tokenizer.json"):
        load_tokenizer(tmp_path / "vocab.txt")
