"""pack: packing logic, shards readable with numpy alone, determinism, spec errors, e2e run."""

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, files_under, run_cli
from pack_helpers import write_tokenizer
from test_megatron import read_megatron

from iptkit.errors import SpecError
from iptkit.files import publish_tree
from iptkit.pipelines.spec import load_plan
from iptkit.shards import open_shards, sha256_file, verify_shards
from iptkit.trainer.data import open_stage, resolve_tokenizer
from iptkit.transforms.document import TokenizedDoc
from iptkit.transforms.record import Record
from iptkit.transforms.stages.pack import (
    bucket_count,
    curriculum_bucket,
    difficulty_of,
    doc_bytes,
    doc_piece,
    value_tokens,
)
from iptkit.transforms.tail.packing import Piece, efficiency, pack_best_fit, pack_concat

DATA = REPO / "pipelines" / "examples" / "data"


def _pieces(lengths):
    return [Piece(np.arange(1, n + 1, dtype=np.uint32) + 100 * k, np.ones(n, np.uint8))
            for k, n in enumerate(lengths)]  # fmt: skip


def test_concat_keeps_the_stream_and_best_fit_cuts_less():
    lengths = [5, 9, 3, 7, 2, 8, 4, 6, 10, 1, 12]
    docs = _pieces(lengths)
    concat = list(pack_concat(docs, 10, 0))
    stream = np.concatenate([r.tokens[: r.used] for r in concat])
    assert np.array_equal(stream, np.concatenate([d.ids for d in docs]))
    assert all(r.starts[0] == 0 for r in concat)
    best = list(pack_best_fit(docs, 10, 0))
    # best fit only cuts the one document longer than a row; every other piece is whole
    whole = {tuple(d.ids) for d in docs if len(d.ids) <= 10}
    placed = {tuple(r.tokens[a:b]) for r in best
              for a, b in zip(r.starts, [*r.starts[1:], r.used], strict=True)}  # fmt: skip
    assert whole <= placed
    e_concat, e_best = efficiency(concat, len(docs)), efficiency(best, len(docs))
    assert e_best["cut_share"] == pytest.approx(1 / len(docs))  # the 12-token document
    assert e_concat["cut_share"] > e_best["cut_share"]
    assert e_concat["padding_share"] < 0.1  # only the last row is padded
    # best fit needs as few rows as the lower bound allows here
    assert len(best) == -(-sum(lengths) // 10)
    assert all(np.all(r.mask[r.used :] == 0) and np.all(r.tokens[r.used :] == 0) for r in best)


@pytest.mark.parametrize("bos", [None, 1])
@pytest.mark.parametrize("eos", [None, 2])
def test_doc_bytes_add_bos_eos_and_masks_round_trip(bos, eos):
    """BOS is never a target; EOS is one when the document's last token is; a document
    without a mask sends no mask bytes and comes back all targets but BOS."""
    head, tail = [bos] if bos else [], [eos] if eos else []
    raw = TokenizedDoc("a", "s", "raw", ids=[70000, 5, 6])
    ids, mask = doc_bytes(raw, bos, eos)
    piece = doc_piece(ids, mask, bos is not None)
    assert mask == b"" and piece.ids.tolist() == [*head, 70000, 5, 6, *tail]
    assert piece.mask.tolist() == [*([0] if bos else []), 1, 1, 1, *([1] if eos else [])]
    sft = TokenizedDoc("b", "s", "instruction", ids=[7, 8, 9], mask=[0, 1, 1])
    piece = doc_piece(*doc_bytes(sft, bos, eos), bos is not None)
    assert piece.ids.tolist() == [*head, 7, 8, 9, *tail]
    assert piece.mask.tolist() == [*([0] if bos else []), 0, 1, 1, *([1] if eos else [])]
    prompt_last = TokenizedDoc("c", "s", "instruction", ids=[7, 8], mask=[1, 0])
    assert doc_piece(*doc_bytes(prompt_last, None, eos), False).mask.tolist()[-1] == 0


def _spec(tmp: Path, tok: Path, pack: str, extra_stages: str = "", out: str = "run") -> Path:
    spec = tmp / f"{out}.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        seed: 5
        output: {tmp / out}
        sources:
          - {{name: web_en, format: jsonl, path: {DATA / "web_en.jsonl.gz"}, lang: en}}
          - {{name: chats, format: conversations, path: {DATA / "chats_lmsys.jsonl"},
              id_field: conversation_id}}
        stages:
          - normalize: {{}}
        {extra_stages}
          - pack: {pack.replace("TOK", str(tok))}
        """)
    )
    return spec


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return write_tokenizer(tmp_path_factory.mktemp("tok"))


def _numpy_read(root: Path):
    """The iptkit/shards.py docstring recipe, verbatim in spirit: numpy and json only."""
    m = json.load(open(f"{root}/manifest.json"))
    L = m["seq_len"]
    rows, masks, starts = [], [], []
    for shard in m["shards"]:
        n, f = shard["sequences"], shard["files"]
        tok_dtype = np.dtype(m["dtype"]).newbyteorder("<")
        tokens = np.memmap(f"{root}/{f['tokens']['path']}", dtype=tok_dtype, mode="r", shape=(n, L))
        mask = np.memmap(f"{root}/{f['mask']['path']}", dtype=np.uint8, mode="r", shape=(n, L))
        docs = np.memmap(f"{root}/{f['docs']['path']}", dtype="<u4", mode="r",
                         shape=(shard["documents"],))  # fmt: skip
        docidx = np.memmap(f"{root}/{f['docidx']['path']}", dtype="<u8", mode="r", shape=(n + 1,))
        rows += list(tokens)
        masks += list(mask)
        starts += [docs[docidx[r] : docidx[r + 1]] for r in range(n)]
    return m, rows, masks, starts


def test_end_to_end_run_writes_shards_the_trainer_accepts(tmp_path, tok):
    pack = "{tokenizer: TOK, seq_len: 64, packing: best_fit, validation: 3, megatron: true}"
    mix = "  - mix: {ratios: {raw: 0.8, instruction: 0.2}, on_infeasible: scale_down}"
    assert run_cli("run", _spec(tmp_path, tok, pack, mix)) == 0
    run = tmp_path / "run"
    stats = json.loads((run / "stats.json").read_text())
    assert stats["violations"] == []
    rows = stats["stages"]
    assert list(rows)[-3:] == ["format", "mix", "pack"]
    assert rows["format"]["in"] == rows["normalize"]["out"] == stats["output_records"]
    assert rows["pack"]["in"] == rows["mix"]["out"] == rows["pack"]["out"]
    for split in ("train", "validation"):
        assert verify_shards(run / "shards" / split) == []
    m, tokens, masks, starts = _numpy_read(run / "shards" / "train")
    shards = open_shards(run / "shards" / "train")
    assert len(tokens) == len(shards) == m["totals"]["sequences"]
    for i in (0, len(shards) - 1):
        assert np.array_equal(tokens[i], shards[i].tokens)
        assert np.array_equal(masks[i], shards[i].loss_mask)
        assert np.array_equal(starts[i], shards[i].doc_starts)
    assert m["tokenizer"] == {"path": str(tok), "sha256": sha256_file(tok)}
    assert m["special_tokens"] == {"bos": 1, "eos": 2, "pad": 0}
    assert m["has_loss_mask"] and m["seq_len"] == 64 and m["seed"] == 5
    assert set(m["mix"]["groups"]) == {"raw", "instruction"}
    report = json.loads((run / "mix" / "report.json").read_text())
    assert m["mix"]["taken_total_tokens"] == report["taken_total_tokens"]
    validation = json.loads((run / "shards/validation/manifest.json").read_text())
    assert validation["totals"]["documents"] >= 3
    assert sorted(p.name for p in (run / "shards/train/megatron").iterdir()) == [
        "train-b00000.bin", "train-b00000.idx"]  # fmt: skip
    _, megatron_docs, _ = read_megatron(str(run / "shards/train/megatron/train-b00000"))
    # validation: 3 documents (the mix made no repeats here, max_repeat 1)
    assert len(megatron_docs) == rows["pack"]["out"] - 3
    assert all(d[0] == 1 and d[-1] == 2 for d in megatron_docs)  # BOS ... EOS
    # best fit places every document token once; the rest of the cells are padding
    assert sum(map(len, megatron_docs)) == int(np.count_nonzero(np.stack(tokens)))
    # what the trainer checks before training: tokenizer sha256 and the loss mask for SFT
    assert resolve_tokenizer(None, None, shards) == tok
    stage = type("S", (), {"name": "sft", "data": str(run / "shards/train"), "mode": "sft"})
    assert len(open_stage(stage, sha256_file(tok), verify=True)) == len(shards)
    # instruction documents carry masked prompts; BOS is never a target
    all_masks = np.stack(masks)
    all_tokens = np.stack(tokens)
    assert 0 < all_masks.mean() < 1 and not np.any(all_masks[all_tokens == 1])


def test_bucket_count_follows_the_tokens_with_a_floor():
    assert bucket_count(0, 100, 1) == 1
    assert bucket_count(100, 100, 1) == 1 and bucket_count(101, 100, 1) == 2
    assert bucket_count(50, 100, 3) == 3  # buckets is the fewest
    assert bucket_count(10**11, 2**25, 1) == 2981  # 100B tokens in 32 Mi-token buckets
    # a routed value: (sort key, ids, mask[, rejected ids, rejected mask]); ids are uint32
    assert value_tokens(((0.0, 1, "k"), b"\0" * 40, b"")) == 10
    assert value_tokens(((0.0, 1, "k"), b"\0" * 40, b"", b"\0" * 8, b"")) == 12


def test_shards_are_byte_identical_across_runs_and_worker_counts(tmp_path, tok):
    """bucket_tokens small enough that the split needs several buckets (buckets is 1): the
    count follows the tokens and is the same on every run and worker count."""
    pack = (
        "{tokenizer: TOK, seq_len: 48, packing: concat, bucket_tokens: 2000, validation: 0.1,"
        " training_stages: [{name: en, where: {kind: raw}}, {name: chat, where: {}}]}"
    )
    spec = _spec(tmp_path, tok, pack)
    outputs = []
    for i, flags in enumerate(
        ([], [], ["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    ):
        out = tmp_path / f"run{i}"
        assert run_cli("run", spec, "--out", out, *flags) == 0
        outputs.append(files_under(out / "shards"))
    assert outputs[0] == outputs[1] == outputs[2]
    names = set(outputs[0])
    assert {"en/train/manifest.json", "chat/train/manifest.json"} <= names
    en = json.loads(outputs[0]["en/train/manifest.json"])
    buckets = {int(s["name"].split("-")[2][1:]) for s in en["shards"]}
    # the manifest's tokens count padding too: an upper bound on the documents' tokens
    assert len(buckets) > 5 and max(buckets) < bucket_count(en["totals"]["tokens"], 2000, 1)


def test_object_store_run_stages_buckets_locally_and_publishes_them(tmp_path, tok, monkeypatch):
    """A RUN on an object store (gs://): each bucket is written to a local staging folder, copied
    through Beam's FileSystems and the staging folder removed; the shards equal a local run's.
    (The copy runs against the local file system here: no object store is reachable.)"""
    from iptkit.transforms.stages import pack as pack_stage

    pack = "{tokenizer: TOK, seq_len: 48, buckets: 2, megatron: true}"
    spec = _spec(tmp_path, tok, pack)
    assert run_cli("run", spec, "--out", tmp_path / "local") == 0
    staged = []

    def publish(local, dest):
        staged.append(local)
        assert not dest.startswith(str(local))
        return publish_tree(local, dest)

    monkeypatch.setattr(pack_stage, "is_local", lambda path: False)
    monkeypatch.setattr(pack_stage, "publish_tree", publish)
    assert run_cli("run", spec, "--out", tmp_path / "remote") == 0
    assert len(staged) == 2 and not any(p.exists() for p in staged)
    remote = files_under(tmp_path / "remote" / "shards")
    assert remote == files_under(tmp_path / "local" / "shards")
    assert "train/megatron/train-b00001.idx" in remote and not any(".parts" in n for n in remote)


def test_curriculum_buckets_follow_difficulty_and_odd_values_go_last():
    assert [curriculum_bucket(d, (0.0, 1.0), 4) for d in (0, 0.24, 0.25, 0.99, 1.0)] == [
        0, 0, 1, 3, 3,
    ]  # fmt: skip
    assert curriculum_bucket(None, (0.0, 1.0), 4) == 3 and curriculum_bucket(5, (5, 5), 4) == 0
    values = [0.5, 3, float("nan"), float("inf"), True, "hard", None]
    got = [difficulty_of(Record("a", "s", "t", meta={"difficulty": v})) for v in values]
    assert got == [0.5, 3.0, None, None, None, None, None]


@pytest.mark.parametrize("buckets", ["buckets: 1", "buckets: 3", "bucket_tokens: 20"])
def test_curriculum_orders_easy_to_hard(tmp_path, tok, buckets):
    """Over the whole split, buckets included (set, or from bucket_tokens); a document without
    a difficulty comes last."""
    difficulties = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, None]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(
        json.dumps({"text": f"The quick brown fox {i}.",
                    **({"difficulty": d} if d is not None else {})}) + "\n"
        for i, d in enumerate(difficulties)))  # fmt: skip
    spec = tmp_path / "c.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        seed: 1
        output: {tmp_path / "run"}
        sources: [{{name: d, format: jsonl, path: {data}, meta_fields: [difficulty]}}]
        stages:
          - pack: {{tokenizer: {tok}, seq_len: 16, packing: concat, order: curriculum,
                    {buckets}, sequences_per_shard: 2}}
        """)
    )
    assert run_cli("run", spec) == 0
    shards = open_shards(tmp_path / "run/shards/train")
    from iptkit.transforms.tail.tokenizer import load_tokenizer

    text = load_tokenizer(tok).decode(
        [int(t) for i in range(len(shards)) for t in shards[i].tokens], skip_special_tokens=True
    )
    easy_to_hard = sorted(range(len(difficulties)), key=lambda i: difficulties[i] or 2)
    positions = [text.index(f"fox {i}.") for i in easy_to_hard]
    assert positions == sorted(positions)


@pytest.mark.parametrize(
    "pack, message",
    [
        ("{tokenizer: TOK, seq_len: 8192}", "seq_len 8192 exceeds the model context"),
        ("{tokenizer: TOK, seq_len: 64, model_max_length: 32}", "(model_max_length 32)"),
        ("{tokenizer: /nonexistent/tok.json, seq_len: 64}", "no such file or folder"),
        ("{tokenizer: TOK, seq_len: 64, validation: 2.5}", "a share below 1 or a whole count"),
    ],
)
def test_spec_errors_before_the_run(tmp_path, tok, pack, message):
    spec = _spec(tmp_path, tok, pack)
    with pytest.raises(SpecError) as err:
        load_plan(str(spec))
    assert message in str(err.value)


def test_mix_without_pack_is_a_spec_error(tmp_path, tok):
    spec = _spec(tmp_path, tok, "{}", "  - mix: {ratios: {raw: 1}}")
    spec.write_text(spec.read_text().split("  - pack:")[0])
    with pytest.raises(SpecError) as err:
        load_plan(str(spec))
    assert "mix needs a pack stage after it" in str(err.value)


def test_record_stage_after_pack_names_its_line(tmp_path, tok):
    spec = _spec(tmp_path, tok, "{tokenizer: TOK, seq_len: 64}")
    spec.write_text(spec.read_text() + "  - dedup_exact: {}\n")
    with pytest.raises(SpecError) as err:
        load_plan(str(spec))
    line = spec.read_text().splitlines().index("  - dedup_exact: {}") + 1
    assert f":{line}:" in str(err.value) and "after pack" in str(err.value)


def test_rows_are_the_same_whichever_width_ids_cross_the_shuffle_in(tmp_path, tok):
    """The test tokenizer (416 ids: uint16 through the shuffle) and the same one grown past
    65,536 ids with pieces no text reaches (uint32): the same documents give the same rows."""
    big = tmp_path / "big-tokenizer"
    big.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (big / name).write_bytes((tok.parent / name).read_bytes())
    grown = json.loads((big / "tokenizer.json").read_text())
    vocab = grown["model"]["vocab"]
    vocab.update({f"<unused{i}>": len(vocab) + i for i in range(2**16)})
    (big / "tokenizer.json").write_text(json.dumps(grown))
    pack = "{tokenizer: TOK, seq_len: 48, packing: best_fit, validation: 0.2, bucket_tokens: 500}"
    rows = []
    for name, path in (("small", tok), ("big", big / "tokenizer.json")):
        assert run_cli("run", _spec(tmp_path, path, pack, out=name)) == 0
        for split in ("train", "validation"):
            m, tokens, masks, starts = _numpy_read(tmp_path / name / "shards" / split)
            rows.append((m["dtype"], [(t.tolist(), k.tolist(), s.tolist())
                                      for t, k, s in zip(tokens, masks, starts, strict=True)]))  # fmt: skip
    (d_train, train), (_, val), (b_train, big_train), (_, big_val) = rows
    assert (d_train, b_train) == ("uint16", "uint32") and len(train) > 5 and val
    assert train == big_train and val == big_val
