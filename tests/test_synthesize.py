"""synthesize: selection, chaining, real-token budgeting, joining, and whole runs with a tiny
synthesizer trained in the test (the LLM path end to end) and with the rule-based miner."""

import gzip
import json
import textwrap
from pathlib import Path

import apache_beam as beam
import pytest
from conftest import files_under, run_cli
from pydantic import ValidationError
from synth_helpers import CAPITALS, build_tokenizer, fact, train_synthesizer

from iptkit.transforms.inference.core import ModelSpec, SamplingSpec
from iptkit.transforms.record import Record
from iptkit.transforms.stage import StageContext
from iptkit.transforms.stages.synthesize import (
    Chain,
    MemberResult,
    Synthesize,
    SynthesizeConfig,
    assemble,
    build_prompt,
    chains_of,
    previous_examples,
    segments,
    selected,
)
from iptkit.transforms.synth.lmops_format import cook_read

JA = (
    "茶道は、湯を沸かし、茶を点て、茶を振る舞う行為と、それを基本とした様式と芸道である。"
    "茶の湯とも呼ばれ、客人をもてなす心を大切にする。"
)


def rec(i, text="t", kind="raw", lang="en", source="web"):
    return Record(id=f"r{i:02d}", source=source, text=text, kind=kind, lang=lang)


def qa(q, a):
    return {"instruction": q, "response": a}


# ---------------------------------------------------------------- selection and chaining


def test_chains_are_deterministic_groups_of_m_whatever_the_arrival_order():
    records = [rec(i) for i in range(11)]
    chains = list(chains_of(records, 3, seed=5, key="web|en|0"))
    again = list(chains_of(list(reversed(records)), 3, seed=5, key="web|en|0"))
    assert [[m.id for m in c.members] for c in chains] == [[m.id for m in c.members] for c in again]
    assert [len(c.members) for c in chains] == [3, 3, 3, 2]
    assert sorted(m.id for c in chains for m in c.members) == [r.id for r in records]
    other_seed = list(chains_of(records, 3, seed=6, key="web|en|0"))
    assert [m.id for m in other_seed[0].members] != [m.id for m in chains[0].members]


def test_fraction_selects_raw_records_by_hash():
    records = [rec(i) for i in range(400)]
    chosen = [r.id for r in records if selected(r, 1, 0.2)]
    assert 50 < len(chosen) < 110
    assert chosen == [r.id for r in records if selected(r, 1, 0.2)]
    assert not selected(rec(1, kind="instruction"), 1, 1.0)
    assert all(selected(r, 1, 1.0) for r in records) and not any(selected(r, 1, 0) for r in records)


def test_options():
    assert SynthesizeConfig().backend == "rules"
    with pytest.raises(ValidationError, match="backend vllm needs a model"):
        SynthesizeConfig(backend="vllm")
    with pytest.raises(ValidationError, match="backend rules runs no model"):
        SynthesizeConfig(model="hub:instruction-pretrain/instruction-synthesizer")
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        SynthesizeConfig(rounds=0)


# ---------------------------------------------------------------- prompts and budget


@pytest.fixture(scope="module")
def ja_tokenizer(tmp_path_factory):
    root = tmp_path_factory.mktemp("ja_tok")
    return build_tokenizer([JA * 3, cook_read("x"), "質問 答え"], root, per_character=True)


def ja_spec(policy="truncate") -> ModelSpec:
    return ModelSpec(
        "transformers", "unused", max_model_len=160, add_special_tokens=False,
        prompt_too_long=policy, sampling=SamplingSpec(max_new_tokens=40),
    )  # fmt: skip


def test_budget_counts_real_tokens_where_lmops_words_x_1_5_overflows(ja_tokenizer):
    chain = Chain("c", [rec(0, JA, lang="ja"), rec(1, JA, lang="ja")])
    chain.results.append(MemberResult(pairs=[qa("茶道とは?", "芸道")]))
    spec = ja_spec()
    chained = previous_examples(chain, 1) + cook_read(JA)
    # LMOps' estimate: the whole chained prompt is a handful of space-separated "words"...
    assert len(chained.split(" ")) * 1.5 <= spec.prompt_budget
    # ...but it is far over the budget in real tokens, so round 2 reads its text alone.
    assert len(ja_tokenizer(chained, add_special_tokens=False)["input_ids"]) > spec.prompt_budget
    prompt = build_prompt(chain, 1, ja_tokenizer, spec)
    assert (prompt.text, prompt.chained) == (cook_read(JA), False)
    assert prompt.tokens == len(ja_tokenizer(cook_read(JA), add_special_tokens=False)["input_ids"])


def test_chained_prompt_when_it_fits(ja_tokenizer):
    short = JA[:30]
    chain = Chain("c", [rec(0, short, lang="ja"), rec(1, short, lang="ja")])
    chain.results.append(MemberResult(pairs=[qa("茶道とは?", "芸道")]))
    prompt = build_prompt(chain, 1, ja_tokenizer, ja_spec())
    assert prompt.chained
    assert prompt.text == (
        f"<s> <CON> {short} </CON>\n\n<QUE> 茶道とは? <ANS> 芸道 </END></s><s> <CON> {short} </CON>\n\n"
    )


def test_text_over_the_budget_is_cut_from_its_start_or_rejected(ja_tokenizer):
    long_text = JA * 3
    chain = Chain("c", [rec(0, long_text, lang="ja")])
    cut = build_prompt(chain, 0, ja_tokenizer, ja_spec("truncate"))
    assert cut.tokens <= 120 and cut.truncated_tokens > 0
    kept = cut.text[len("<s> <CON> ") : -len(" </CON>\n\n")]
    assert long_text.endswith(kept) and len(kept) < len(long_text)
    rejected = build_prompt(chain, 0, ja_tokenizer, ja_spec("reject"))
    assert rejected.text is None and rejected.tokens > 120


def test_inheritance_follows_lmops():
    chain = Chain("c", [rec(i) for i in range(4)])
    chain.results += [
        MemberResult(pairs=[qa("a?", "1")]),
        MemberResult(pairs=[qa("b?", "2")], inherit=True),
        MemberResult(pairs=[]),  # no pairs: the chain breaks here
        MemberResult(pairs=[qa("d?", "4")]),
    ]
    assert previous_examples(chain, 2) == (
        "<s> <CON> t </CON>\n\n<QUE> a? <ANS> 1 </END></s><s> <CON> t </CON>\n\n<QUE> b? <ANS> 2 </END></s>"
    )
    assert previous_examples(chain, 3) == ""
    assert list(segments(chain)) == [[0, 1], [2], [3]]


def test_assemble_joins_runs_keeps_pairless_raw_and_rejects_failures():
    chain = Chain("c", [rec(i, f"Text {i}.") for i in range(4)])
    chain.results += [
        MemberResult(pairs=[qa("a?", "1")], parse={"kept": 1}),
        MemberResult(pairs=[qa("b?", "2")], inherit=True, parse={"kept": 1, "unterminated": 1}),
        MemberResult(error="prompt_too_long", detail="900 > 200"),
        MemberResult(pairs=[]),
    ]
    out = list(assemble(chain, 3, "m"))
    assert [member.id for member, _ in out] == ["r00", "r01", "r02", "r03"]
    aug, joined, too_long, raw = (decision for _, decision in out)
    assert (aug.id, aug.kind, aug.source) == ("aug:r00", "augmented", "web")
    assert aug.pairs == [qa("a?", "1"), qa("b?", "2")]
    assert "Text 0." in aug.text and "Text 1." in aug.text
    assert aug.meta["synth"]["members"] == ["r00", "r01"]
    assert aug.meta["synth"]["parse"] == {"kept": 2, "unterminated": 1}
    assert (joined.reason, joined.detail) == ("joined", "joined into aug:r00")
    assert (too_long.reason, too_long.detail) == ("prompt_too_long", "900 > 200")
    assert raw == chain.members[3]


# ---------------------------------------------------------------- whole runs


@pytest.fixture(scope="session")
def synthesizer(tmp_path_factory) -> Path:
    """A tiny synthesizer tuned on capital-city QA in the tuning format (trained once)."""
    return train_synthesizer(tmp_path_factory.mktemp("synthesizer"), steps=400)


def write_corpus(root: Path) -> None:
    data = root / "data"
    data.mkdir()
    texts = [
        fact(c, k) + " " + fact(c2, k2)
        for (c, k), (c2, k2) in zip(CAPITALS, CAPITALS[3:] + CAPITALS[:3], strict=True)
    ]
    rows = [{"text": t} for t in texts[:7]] + [{"text": " ".join([texts[0]] * 30)}]
    (data / "web.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (data / "chat.jsonl").write_text(json.dumps({"text": "What is the capital of Peru?"}) + "\n")


def output_rows(run: Path) -> list[dict]:
    rows = []
    for path in sorted((run / "output").glob("*.jsonl.gz")):
        rows += [json.loads(x) for x in gzip.decompress(path.read_bytes()).splitlines()]
    return rows


def rejects(run: Path, stage: str) -> list[dict]:
    return [
        json.loads(x)
        for p in sorted((run / "rejects" / stage).glob("*.jsonl"))
        for x in p.read_text().splitlines()
    ]


def test_llm_path_end_to_end_with_a_trained_synthesizer(tmp_path, synthesizer):
    write_corpus(tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        seed: 11
        output: {tmp_path / "run"}
        sources:
          - {{name: web, format: jsonl, path: data/web.jsonl, lang: en}}
          - {{name: chat, format: jsonl, path: data/chat.jsonl, kind: instruction, lang: en}}
        stages:
          - synthesize:
              backend: transformers
              model: {synthesizer}
              device: cpu
              rounds: 2
              max_model_len: 256
              max_new_tokens: 64
              batch_size: 4
              add_special_tokens: false
              prompt_too_long: reject
        """)
    )
    assert run_cli("run", spec) == 0
    run = tmp_path / "run"
    stats = json.loads((run / "stats.json").read_text())
    assert stats["violations"] == []
    row = stats["stages"]["synthesize"]
    assert row["in"] == 9 and row["dropped"]["prompt_too_long"] == 1

    out = output_rows(run)
    augmented = [r for r in out if r["kind"] == "augmented"]
    passed = [r for r in out if r["kind"] != "augmented"]
    assert [r["source"] for r in passed if r["kind"] == "instruction"] == ["chat"]
    assert augmented, "the trained synthesizer's generations must parse into pairs"
    cities = {c for c, _ in CAPITALS}
    for r in augmented:
        members = r["meta"]["synth"]["members"]
        assert r["id"] == "aug:" + members[0] and r["meta"]["synth"]["model"] == str(synthesizer)
        assert r["pairs"] and all(p["response"] in cities for p in r["pairs"])
        # grounded: every answer is a city named in one of the texts that were read
        assert all(p["response"] in r["text"] for p in r["pairs"])
    assert any(r["meta"]["synth"]["rounds"] == 2 for r in augmented)  # round 2 inherited

    joined = [x for x in rejects(run, "synthesize") if x["reason"] == "joined"]
    assert row["dropped"].get("joined", 0) == len(joined)
    aug_ids = {r["id"] for r in augmented}
    assert all(x["detail"].removeprefix("joined into ") in aug_ids for x in joined)
    # every raw record is accounted for: in an augmented record, kept raw, or a reject
    accounted = [m for r in augmented for m in r["meta"]["synth"]["members"]]
    accounted += [r["id"] for r in passed if r["kind"] == "raw"]
    accounted += [x["id"] for x in rejects(run, "synthesize") if x["reason"] != "joined"]
    assert len(accounted) == len(set(accounted)) == 8

    assert run_cli("run", spec, "--out", tmp_path / "again") == 0
    same = {k: v for k, v in files_under(tmp_path / "again").items() if k.startswith("output/")}
    assert same == {k: v for k, v in files_under(run).items() if k.startswith("output/")}


def test_rules_backend_in_a_pipeline_on_english_and_japanese_paragraphs(tmp_path):
    """The demo's CPU default: the AdaptLLM miner, chained and joined like the LLM path."""
    docs = Path(__file__).resolve().parents[1] / "pipelines" / "examples" / "data" / "docs"
    paragraphs = {
        lang: [p for name in names for p in (docs / name).read_text().split("\n\n")]
        for lang, names in {
            "en": ["compost.txt", "beam_intro.txt"],
            "ja": ["tea_ceremony_ja.txt"],
        }.items()
    }
    records = [
        Record(id=f"{lang}:{i}", source="docs", text=p, lang=lang)
        for lang, ps in paragraphs.items()
        for i, p in enumerate(ps)
    ] + [Record(id="chat:1", source="chat", text="Hi", kind="instruction")]
    cfg = SynthesizeConfig(backend="rules", rounds=2)

    def run() -> tuple[list[Record], list]:
        with beam.Pipeline() as p:
            out = p | beam.Create(records) | Synthesize(cfg, StageContext("synthesize", seed=3))
            kept = out["kept"] | "K" >> beam.Map(lambda r: json.dumps(r.to_dict(), sort_keys=True))
            rej = out["rejects"] | "R" >> beam.Map(
                lambda r: json.dumps(r.to_dict(), sort_keys=True)
            )
            kept | "WK" >> beam.io.WriteToText(str(tmp_path / "kept"), shard_name_template="")
            rej | "WR" >> beam.io.WriteToText(str(tmp_path / "rej"), shard_name_template="")
        kept = sorted((tmp_path / "kept").read_text().splitlines())
        rej = sorted((tmp_path / "rej").read_text().splitlines())
        return [Record(**json.loads(x)) for x in kept], [json.loads(x) for x in rej]

    kept, rejected = run()
    assert len(kept) + len(rejected) == len(records)  # the ledger balances
    augmented = [r for r in kept if r.kind == "augmented"]
    assert {r.lang for r in augmented} == {"en", "ja"}  # chains never mix languages
    for r in augmented:
        members = r.meta["synth"]["members"]
        assert r.pairs and r.meta["synth"]["model"] == "rules"
        assert len({m.split(":")[0] for m in members}) == 1
    assert {x["reason"] for x in rejected} <= {"joined"}
    assert any(r.kind == "raw" for r in kept)  # paragraphs the miner found nothing in stay raw
    assert any(len(r.meta["synth"]["members"]) == 2 for r in augmented)
    assert "chat:1" in {r.id for r in kept}
    assert run() == (kept, rejected)  # same seed, same records
