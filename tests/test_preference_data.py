"""Preference records: the source formats (iptkit's, UltraFeedback, HH-RLHF) with their
rejects, the preference stage's pairing decision and its ledger, pack's pair routing."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from iptkit.transforms.preference import preference_of, rejected_view
from iptkit.transforms.reading.sources import SourceConfig, record_from_object
from iptkit.transforms.record import Record, Reject
from iptkit.transforms.stage import Drop
from iptkit.transforms.stages.preference import make_pair
from iptkit.transforms.tail.tokenizer import load_tokenizer

HH_CHOSEN = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: A joke?\n\nAssistant: Why did..."
HH_REJECTED = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: A joke?\n\nAssistant: No."


def read(obj, dialect=None, **fields):
    cfg = SourceConfig(name="p", format="preference", path="x", dialect=dialect, **fields)
    return record_from_object(cfg, obj, "p:f:1", "f:1")


def test_each_dialect_reads_into_one_preference_record():
    own = read({"prompt": "Q?", "chosen": "good", "rejected": "bad", "chosen_score": 9,
                "rejected_score": 2, "reason": "clearer", "topic": "t"})  # fmt: skip
    assert own.kind == "instruction" and own.text == "Q?"
    assert own.pairs == [{"instruction": "Q?", "response": "good"}]
    assert own.meta == {"topic": "t", "preference": {"rejected": "bad", "chosen_score": 9.0,
                                                     "rejected_score": 2.0, "reason": "clearer"}}  # fmt: skip
    assert rejected_view(own).pairs == [{"instruction": "Q?", "response": "bad"}]

    messages = read({
        "chosen": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "good"}],
        "rejected": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "bad"}],
        "score_chosen": 8.5, "score_rejected": 4,
    })  # fmt: skip
    assert messages.pairs == own.pairs
    assert messages.meta["preference"] == {"rejected": "bad", "chosen_score": 8.5,
                                           "rejected_score": 4.0}  # fmt: skip

    uf = read({"instruction": "Q?", "completions": [
        {"response": "mid", "overall_score": 5}, {"response": "best", "overall_score": 8,
         "critique": "thorough"}, {"response": "worst", "overall_score": 2},
        {"response": "also worst", "overall_score": 2}]})  # fmt: skip
    assert uf.pairs == [{"instruction": "Q?", "response": "best"}]
    assert uf.meta["preference"] == {"rejected": "worst", "chosen_score": 8.0,
                                     "rejected_score": 2.0, "reason": "thorough"}  # fmt: skip

    hh = read({"chosen": HH_CHOSEN, "rejected": HH_REJECTED})
    assert hh.pairs == [{"instruction": "Hi", "response": "Hello!"},
                        {"instruction": "A joke?", "response": "Why did..."}]  # fmt: skip
    assert hh.text == "A joke?" and hh.meta["preference"] == {"rejected": "No."}

    # A run's own output (pairs + meta.preference) reads back as the same record.
    again = read(json.loads(json.dumps(own.to_dict())), id_field="id")
    assert again.pairs == own.pairs and again.meta == own.meta


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"prompt": "Q", "chosen": "same", "rejected": "same"}, "same_response"),
        ({"prompt": "Q", "chosen": "a", "rejected": "  "}, "empty_response"),
        ({"prompt": "Q", "chosen": 3, "rejected": "b"}, "wrong_type"),
        ({"instruction": "Q", "completions": [{"response": "a", "overall_score": 4},
                                              {"response": "b", "overall_score": 4}]}, "tie"),
        ({"instruction": "Q", "completions": [{"response": "a", "overall_score": 4}]}, "no_pair"),
        ({"chosen": HH_CHOSEN, "rejected": HH_REJECTED.replace("Hello!", "Hey")},
         "prompt_mismatch"),
        ({"chosen": "no turns here", "rejected": "x"}, "bad_conversation"),
        ({"question": "Q", "answer": "A"}, "not_a_pair"),
    ],
)  # fmt: skip
def test_rows_that_are_no_pair_are_rejects_with_the_reason(obj, reason):
    out = read(obj)
    assert isinstance(out, Reject) and out.reason == reason, out
    assert out.record == obj and "f:1" in out.detail


def test_dialect_belongs_to_its_format():
    with pytest.raises(ValidationError, match="does not apply to format: preference"):
        SourceConfig(name="p", format="preference", path="x", dialect="lmsys")
    assert SourceConfig(name="p", format="preference", path="x", dialect="hh_rlhf").dialect


def candidate(k: int, score: float | None, response: str, of: str = "q1") -> Record:
    judge = {"score": score, "model": "judge-m"} | ({"reason": f"why {k}"} if score else {})
    return Record(
        id=f"{of}#r{k}", source="s", text="Q?", kind="instruction",
        pairs=[{"instruction": "Q?", "response": response}],
        meta={"respond": {"sample": k, "of": of, "n": 4}, "judge": judge, "kept": 1},
    )  # fmt: skip


def decide(records, min_gap=1.0, key="candidates:q1"):
    kept, dropped = [], []
    for out in make_pair(key, records, seed=7, min_gap=min_gap):
        (dropped if isinstance(out, tuple) else kept).append(out)
    assert len(kept) + len(dropped) == len(records) or key.startswith("record:")
    return kept, dropped


def test_best_against_worst_with_every_candidate_accounted_for():
    group = [candidate(0, 6, "mid"), candidate(1, 9, "best"), candidate(2, 2, "worst"),
             candidate(3, None, "unscored")]  # fmt: skip
    kept, dropped = decide(group)
    (pair,) = kept
    assert pair.id == "q1" and pair.pairs[-1]["response"] == "best"
    assert preference_of(pair) == {
        "rejected": "worst", "chosen_score": 9.0, "rejected_score": 2.0, "chosen_id": "q1#r1",
        "rejected_id": "q1#r2", "candidates": 4, "judge": "judge-m", "reason": "why 1",
    }  # fmt: skip
    assert pair.meta["kept"] == 1 and "respond" not in pair.meta and "judge" not in pair.meta
    reasons = {r.id: d.reason for r, d in dropped}
    assert reasons == {"q1#r2": "pair_rejected", "q1#r0": "not_extreme", "q1#r3": "not_extreme"}
    # Arrival order does not matter.
    assert decide(group[::-1])[0] == kept


@pytest.mark.parametrize(
    ("scores", "responses", "min_gap", "reason"),
    [
        ((5, 5, 5), ("a", "b", "c"), 1.0, "tie"),
        ((5, 5.5), ("a", "b"), 1.0, "small_gap"),
        ((3, 8), ("same", "same"), 1.0, "same_response"),
        ((7, None), ("a", "b"), 1.0, "no_pair"),
    ],
)
def test_groups_without_a_trustworthy_pair_are_dropped_whole(scores, responses, min_gap, reason):
    group = [candidate(k, s, r) for k, (s, r) in enumerate(zip(scores, responses, strict=True))]
    kept, dropped = decide(group, min_gap)
    assert kept == [] and {d.reason for _, d in dropped} == {reason}
    assert all(isinstance(d, Drop) and "q1" in d.detail for _, d in dropped)


def test_records_that_are_no_candidates_pass_through():
    plain = Record(id="x", source="s", text="t", kind="raw")
    kept, dropped = decide([plain], key="record:x")
    assert kept == [plain] and dropped == []


def test_a_tokenizer_folder_s_chat_template_jinja_is_its_template(tmp_path):
    from llm_helpers import chat_tokenizer

    chat_tokenizer(["some text", "more text"]).save_pretrained(tmp_path)
    assert (tmp_path / "chat_template.jinja").is_file()
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert "chat_template" not in config  # transformers writes it beside the config now
    assert load_tokenizer(tmp_path).chat_template.startswith("{% for m in messages %}")
