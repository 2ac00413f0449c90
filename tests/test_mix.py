"""mix: the solver on its own, the share precision on a synthetic corpus, and the PTransform on
the DirectRunner with its report and ledger counts."""

import json
import pickle
import random
from collections import Counter, defaultdict
from pathlib import Path

import apache_beam as beam
import pytest
from pydantic import ValidationError

from iptkit.hashing import seeded_int
from iptkit.rundir import RunDir
from iptkit.transforms.document import TokenizedDoc
from iptkit.transforms.stage import StageContext, stage_types
from iptkit.transforms.stages.mix import Mix, MixConfig, manifest_mix
from iptkit.transforms.tail.mix_solver import (
    MixError,
    copies,
    hash_range,
    range_total,
    remainder_boundary,
    remainder_cutoff,
    solve_mix,
)

NESTED = {"raw": 0.6, "augmented": {"en": 0.15, "ja": 0.15}, "instruction": 0.1}


def corpus(n: int = 3000, seed: int = 0) -> list[TokenizedDoc]:
    """Documents of 20..400 tokens; raw is plentiful, instruction scarce."""
    rng = random.Random(seed)
    kinds = ["raw"] * 6 + ["augmented"] * 3 + ["instruction"]
    return [
        TokenizedDoc(
            id=f"d{i:05d}",
            source="s",
            kind=rng.choice(kinds),
            lang=rng.choice(["en", "ja"]),
            ids=[1] * rng.randint(20, 400),
        )
        for i in range(n)
    ]


def select(cfg: MixConfig, docs: list[TokenizedDoc], seed: int) -> list[tuple[TokenizedDoc, int]]:
    """The stage's selection without Beam: the same solver, cutoff and copies functions."""
    available: Counter = Counter()
    by_group = defaultdict(list)
    for d in docs:
        g = cfg.group(d)
        if g is not None:
            available[g] += d.n_tokens
            by_group[g].append((seeded_int(seed, d.id), d.id, d.n_tokens))
    plan = cfg.solve(dict(available))
    cut = {g: remainder_cutoff(items, plan.groups[g].remainder) for g, items in by_group.items()}
    return [
        (d, copies(plan.groups[cfg.group(d)], (seeded_int(seed, d.id), d.id), cut[cfg.group(d)]))
        for d in docs
        if cfg.group(d) is not None
    ]


def shares(cfg: MixConfig, taken: list[tuple[TokenizedDoc, int]]) -> dict[str, float]:
    tokens: Counter = Counter()
    for d, n in taken:
        tokens[cfg.group(d)] += d.n_tokens * n
    total = sum(tokens.values())
    return {g: t / total for g, t in tokens.items()}


# --------------------------------------------------------------------------- solver


def test_solver_feasible_targets_and_repeats():
    plan = solve_mix(
        {"raw": 1000, "tuning": 100}, {"raw": 0.8, "tuning": 0.2}, 1000, {"raw": 1, "tuning": 4}
    )
    assert plan.groups["raw"].target == 800 and plan.groups["raw"].repeats == 0
    assert plan.groups["tuning"].target == 200 and plan.groups["tuning"].repeats == 2
    assert plan.groups["tuning"].remainder == 0


def test_solver_all_is_bound_by_the_tightest_group():
    plan = solve_mix(
        {"raw": 1000, "tuning": 100}, {"raw": 0.5, "tuning": 0.5}, "all", {"raw": 1, "tuning": 4}
    )
    assert plan.total == 800  # tuning: 100 tokens x 4 repeats = 400 = half of 800
    assert plan.groups["tuning"].repeats == 4 and plan.groups["raw"].target == 400


def test_solver_infeasible_fails_with_the_numbers():
    with pytest.raises(MixError) as err:
        solve_mix({"raw": 1000, "ins": 50}, {"raw": 0.5, "ins": 0.5}, 1000, {"raw": 1, "ins": 1})
    msg = str(err.value)
    assert "ins" in msg and "100" in msg and "500" in msg  # largest feasible, needed


def test_solver_degrades_as_asked():
    avail, share, rep = {"raw": 1000, "ins": 50}, {"raw": 0.5, "ins": 0.5}, {"raw": 1, "ins": 1}
    down = solve_mix(avail, share, 1000, rep, "scale_down")
    assert down.total == 100 and down.groups["raw"].target == 50
    best = solve_mix(avail, share, 1000, rep, "best_effort")
    assert best.groups["raw"].target == 500 and best.groups["ins"].target == 50
    assert best.shortfall == {"ins": 450}


def test_solver_group_without_tokens_is_an_error():
    with pytest.raises(MixError, match="group augmented/ja has 0 tokens"):
        solve_mix(
            {"augmented/en": 10},
            {"augmented/en": 0.5, "augmented/ja": 0.5},
            "all",
            {"augmented/en": 1, "augmented/ja": 1},
        )


def test_remainder_cutoff_is_exact_to_half_a_document():
    docs = [(h, f"d{h}", 10) for h in range(100)]
    assert remainder_cutoff(docs, 0) is None
    assert remainder_cutoff(docs, 44) == (3, "d3")  # 40 tokens: 4 off; 50 would be 6 off
    assert remainder_cutoff(docs, 46) == (4, "d4")


@pytest.mark.parametrize("bits", [1, 3, 6])
def test_cutoff_by_ranges_equals_the_whole_group_cutoff(bits):
    """The stage finds a cutoff from per-range totals and one range's documents; that must be
    the cutoff of the whole group in hash order, for every remainder."""
    rng = random.Random(bits)
    docs = [(seeded_int(7, f"d{i}"), f"d{i}", rng.randint(1, 50)) for i in range(300)]
    total = sum(n for _, _, n in docs)
    by_range = defaultdict(list)
    for h, i, n in docs:
        by_range[hash_range(h, bits)].append((h, i, n))
    totals = [(r, *range_total((n, (h, i)) for h, i, n in ds)) for r, ds in by_range.items()]
    for remainder in [0.5, 1, 17, total / 3, total / 2 + 0.5, total - 1, total, total + 10]:
        r, left, before = remainder_boundary(totals, remainder)
        found = remainder_cutoff(by_range[r], left) if r is not None else None
        assert (found if found is not None else before) == remainder_cutoff(docs, remainder)


# --------------------------------------------------------------------------- options


def test_config_nested_groups_and_repeat_limits():
    cfg = MixConfig(group_by=["kind", "lang"], ratios=NESTED, max_repeat_by_group={"augmented": 2})
    assert cfg.shares == {
        "raw": 0.6,
        "augmented/en": 0.15,
        "augmented/ja": 0.15,
        "instruction": 0.1,
    }
    doc = TokenizedDoc(id="a", source="s", kind="augmented", lang="ja", ids=[1])
    assert cfg.group(doc) == "augmented/ja"
    assert cfg.group(TokenizedDoc(id="b", source="s", kind="raw", lang="fr", ids=[1])) == "raw"
    assert cfg.group(TokenizedDoc(id="c", source="s", kind="augmented", lang="fr", ids=[1])) is None
    assert cfg.repeat_limit("augmented/en") == 2 and cfg.repeat_limit("raw") == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"ratios": {"raw": 0.5, "instruction": 0.4}},
            "ratios sum to 0.9 (raw 0.5 + instruction 0.4)",
        ),
        (
            {"ratios": {"raw": 1.2, "instruction": -0.2}},
            "share -0.2 is not a finite, non-negative number",
        ),
        ({"group_by": "langue", "ratios": {"en": 1}}, "each field once, of source, kind"),
        ({"ratios": {"raw": 0.5, "instruktion": 0.5}}, "unknown kind 'instruktion'"),
        ({"ratios": {"raw": {"en": 1.0}}}, "nested deeper than group_by"),
        ({"ratios": {"raw": 1.0}, "total_tokens": 0}, "total_tokens must be positive"),
        ({"ratios": {"raw": 1.0}, "max_repeat_by_group": {"tuning": 4}}, "no such group"),
    ],
)
def test_config_errors_name_the_problem(options, message):
    with pytest.raises(
        ValidationError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")
    ):
        MixConfig(**options)


# --------------------------------------------------------------------------- precision


@pytest.mark.parametrize("total", [200_000, 300_000])
def test_achieved_shares_within_one_percent(total):
    docs = corpus()
    cfg = MixConfig(
        group_by=["kind", "lang"],
        ratios=NESTED,
        total_tokens=total,
        max_repeat_by_group={"instruction": 4},
    )
    taken = select(cfg, docs, seed=7)
    achieved = shares(cfg, taken)
    for group, share in cfg.shares.items():
        assert abs(achieved[group] - share) <= 0.01 * share, (group, achieved[group], share)
    assert abs(sum(d.n_tokens * n for d, n in taken) - total) <= 0.01 * total
    # instruction is scarce (about 1/10 of 630k tokens); at 300k it needs more than one pass
    if total == 300_000:
        assert max(n for d, n in taken if d.kind == "instruction") >= 1


def test_selection_does_not_depend_on_order():
    docs = corpus(1000)
    cfg = MixConfig(ratios={"raw": 0.5, "augmented": 0.3, "instruction": 0.2}, total_tokens=50_000)
    first = {d.id: n for d, n in select(cfg, docs, seed=3)}
    shuffled = docs[:]
    random.Random(1).shuffle(shuffled)
    assert {d.id: n for d, n in select(cfg, shuffled, seed=3)} == first
    assert {d.id: n for d, n in select(cfg, docs, seed=4)} != first


# --------------------------------------------------------------------------- the PTransform


def run_mix(docs: list[TokenizedDoc], cfg: MixConfig, run_dir: Path, seed: int = 5):
    """Runs Mix on the DirectRunner; outputs come back through a pickle file."""
    dump = run_dir / "out.pkl"

    def write(rows):
        dump.write_bytes(pickle.dumps(rows))

    with beam.Pipeline(runner="DirectRunner") as p:
        result = p | beam.Create(docs) | Mix(cfg, StageContext("mix", seed, RunDir(str(run_dir))))
        (
            [
                result[t] | f"Tag {t}" >> beam.Map(lambda x, t=t: (t, x))
                for t in ("kept", "rejects", "added", "report")
            ]
            | beam.Flatten()
            | beam.combiners.ToList()
            | beam.Map(write)
        )
    out: dict[str, list] = defaultdict(list)
    for tag, x in pickle.loads(dump.read_bytes()):
        out[tag].append(x)
    return out, json.loads((run_dir / "mix" / "report.json").read_text())


def test_mix_transform_balances_and_reports(tmp_path):
    docs = corpus(1500, seed=2)
    docs.append(TokenizedDoc(id="tun0", source="t", kind="tuning", ids=[1] * 50))
    cfg = MixConfig(
        ratios={"raw": 0.5, "augmented": 0.3, "instruction": 0.2},
        total_tokens=250_000,
        max_repeat_by_group={"instruction": 3},
    )
    out, report = run_mix(docs, cfg, tmp_path)
    kept, rejects, added = out["kept"], out.get("rejects", []), out.get("added", [])
    assert len(docs) + len(added) == len(kept) + len(rejects)  # the ledger's check
    assert set(added) == {"repeat"}
    reasons = Counter(r.reason for r in rejects)
    assert reasons["not_in_mix"] == 1 and reasons["not_sampled"] > 0
    assert all("ids" not in r.record for r in rejects)
    copies_of = Counter(d.id for d in kept)
    assert max(copies_of.values()) == 2  # instruction is repeated
    assert {d.copy for d in kept if copies_of[d.id] == 2} == {0, 1}
    assert len({d.key for d in kept}) == len(kept)
    # The report agrees with the documents that came out.
    tokens = Counter()
    for d in kept:
        tokens[d.kind] += d.n_tokens
    for group, row in report["groups"].items():
        assert row["taken_tokens"] == tokens[group]
        assert abs(row["achieved_share"] - row["requested_share"]) <= 0.01 * row["requested_share"]
    assert report["taken_total_tokens"] == sum(tokens.values())
    assert out["report"] == [report]  # the same dict, for the manifest
    assert manifest_mix(report)["groups"]["raw"]["taken_tokens"] == tokens["raw"]
    # Same selection as the pure functions.
    expected = {d.id: n for d, n in select(cfg, docs, seed=5) if n}
    assert dict(copies_of) == expected


def test_mix_transform_fails_early_on_infeasible(tmp_path):
    cfg = MixConfig(ratios={"raw": 0.5, "instruction": 0.5}, total_tokens=10**9)
    with pytest.raises(Exception, match="not feasible"):
        run_mix(corpus(200), cfg, tmp_path)
    assert not (tmp_path / "mix" / "report.json").exists()


def test_solver_repeats_are_exact_and_ratios_split_the_rest():
    """Cheng et al. 3.2: the tuning data repeats 4 times, the corpus fills the rest."""
    avail = {"raw": 8000, "augmented": 2000, "tuning": 300}
    plan = solve_mix(avail, {"raw": 0.8, "augmented": 0.2}, 11_200, {"raw": 1, "augmented": 1},
                     fixed={"tuning": 4})  # fmt: skip
    tuning = plan.groups["tuning"]
    assert tuning.fixed and tuning.repeats == 4 and tuning.remainder == 0 and tuning.target == 1200
    assert plan.groups["raw"].target == 8000 and plan.groups["augmented"].target == 2000
    assert plan.total == 11_200 and abs(tuning.share - 1200 / 11_200) < 1e-12
    every = solve_mix(avail, {}, "all", {}, fixed={"raw": 1, "augmented": 1, "tuning": 4})
    assert every.total == 11_200 and every.groups["raw"].repeats == 1
    with pytest.raises(MixError, match="alone take 1,200"):
        solve_mix(avail, {"raw": 1.0}, 1000, {"raw": 1}, fixed={"tuning": 4})
    with pytest.raises(MixError, match="group tuning has 0 tokens but repeats 4"):
        solve_mix({"raw": 10}, {"raw": 1.0}, "all", {"raw": 1}, fixed={"tuning": 4})
    with pytest.raises(MixError, match="needs ratios"):
        solve_mix(avail, {}, 5000, {}, fixed={"tuning": 4})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs ratios, repeats or both"),
        ({"ratios": {"raw": 1.0}, "repeats": {"raw": 2}}, "repeats.raw overlaps ratios group raw"),
        ({"ratios": {"raw": 1.0}, "repeats": {"tunning": 4}}, "unknown kind 'tunning'"),
        ({"ratios": {"raw": 1.0}, "repeats": {"tuning": 0}}, "not a whole number"),
        ({"ratios": {"raw": 1.0}, "repeats": {"tuning/en": 2}}, "at most 1 values"),
    ],
)
def test_repeats_config_errors(options, message):
    with pytest.raises(ValidationError, match=message):
        MixConfig(**options)


def test_mix_transform_honours_repeats_exactly(tmp_path):
    """Every tuning document comes out exactly 4 times (copies 0..3), the ratios split the
    rest, and the report says so."""
    docs = corpus(600, seed=4)
    tuning = [
        TokenizedDoc(id=f"t{i}", source="t", kind="tuning", ids=[1] * (30 + i)) for i in range(7)
    ]
    cfg = MixConfig(
        ratios={"raw": 0.8, "augmented": 0.2}, repeats={"tuning": 4}, total_tokens=60_000
    )
    out, report = run_mix(docs + tuning, cfg, tmp_path)
    copies_of = Counter(d.id for d in out["kept"])
    assert {t.id: copies_of[t.id] for t in tuning} == {t.id: 4 for t in tuning}
    assert {d.copy for d in out["kept"] if d.kind == "tuning"} == {0, 1, 2, 3}
    assert Counter(r.reason for r in out["rejects"])["not_in_mix"] == sum(
        d.kind == "instruction" for d in docs
    )
    row = report["groups"]["tuning"]
    assert row["requested_repeats"] == 4 and row["repeats"] == 4
    assert row["taken_tokens"] == 4 * sum(t.n_tokens for t in tuning)
    assert abs(report["taken_total_tokens"] - 60_000) <= 400
    ratio_tokens = sum(report["groups"][g]["taken_tokens"] for g in ("raw", "augmented"))
    assert abs(report["groups"]["raw"]["taken_tokens"] / ratio_tokens - 0.8) < 0.01
    for g, row in report["groups"].items():
        assert abs(row["achieved_share"] - row["requested_share"]) < 0.01, g


def test_mix_is_registered():
    assert stage_types()["mix"].config_class is MixConfig and stage_types()["mix"].tail
