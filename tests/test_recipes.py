"""The papers' recipes as example specs (pipelines/examples/), validated and run on the bundled
corpus: Cheng et al. 2024 from scratch and domain-adaptive continual pre-training, Kodama &
Oda's bilingual raw/instruction/category mix."""

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli

EXAMPLES = REPO / "pipelines" / "examples"
RECIPES = ("ipt_from_scratch", "ipt_domain_cpt", "kodama_oda_mix")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("recipes")
    out = {}
    for name in RECIPES:
        assert run_cli("validate", EXAMPLES / f"{name}.yaml") == 0
        assert run_cli("run", EXAMPLES / f"{name}.yaml", "--out", root / name) == 0
        out[name] = root / name
    return out


def _read(run: Path, *parts: str):
    return json.loads(run.joinpath(*parts).read_text())


def _output(run: Path) -> list[dict]:
    records = []
    for path in sorted((run / "output").glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            records += [json.loads(line) for line in fh]
    return records


def _stage(run: Path, name: str) -> dict:
    spec = yaml.safe_load((run / "spec.resolved.yaml").read_text())
    (options,) = [s[name] for s in spec["stages"] if name in s]
    return options


def test_recipes_are_listed_in_the_docs():
    page = (REPO / "docs" / "pipeline.md").read_text()
    for name in RECIPES:
        assert f"pipelines/examples/{name}.yaml" in page


def test_cheng_from_scratch(runs):
    """2 rounds over 1/5 of the raw texts; raw and augmented once; tuning data exactly 4 times."""
    run = runs["ipt_from_scratch"]
    synth = _stage(run, "synthesize")
    assert (synth["rounds"], synth["fraction"]) == (2, 0.2)
    report = _read(run, "mix", "report.json")["groups"]
    tuning = report["tuning"]
    assert tuning["requested_repeats"] == 4 and tuning["repeats"] == 4
    assert tuning["copies"] == 4 * tuning["available_documents"] > 0
    assert tuning["taken_tokens"] == 4 * tuning["available_tokens"]
    for group in ("raw", "augmented"):
        assert report[group]["copies"] == report[group]["available_documents"] > 0
        assert report[group]["taken_tokens"] == report[group]["available_tokens"]
    stats = _read(run, "stats.json")["stages"]
    assert stats["mix"]["added"] == {"repeat": 3 * tuning["available_documents"]}
    records = _output(run)
    augmented = [r for r in records if r["kind"] == "augmented"]
    raw = [r for r in records if r["kind"] == "raw"]
    assert augmented and all(r["meta"]["synth"]["rounds"] <= 2 for r in augmented)
    converted = sum(r["meta"]["synth"]["rounds"] for r in augmented)
    assert 0.1 < converted / (converted + len(raw)) < 0.35  # about 1/5 of the raw texts
    pairs = _read(run, "synthesize", "pairs.json")
    assert pairs["paper"] == {"pairs_per_text": 5, "tokens_per_pair": 52}
    assert pairs["augmented_records"] == len(augmented)
    assert pairs["pairs"] == sum(len(r["pairs"]) for r in augmented)
    assert pairs["pairs_per_text"] > 1 and pairs["tokens_per_pair"] > 10


def test_cheng_domain_continual_pretraining(runs):
    """Every raw text selected, 3 rounds, all augmented texts and instructions once, no tuning."""
    run = runs["ipt_domain_cpt"]
    synth = _stage(run, "synthesize")
    assert (synth["rounds"], synth["fraction"]) == (3, 1.0)
    records = _output(run)
    kinds = Counter(r["kind"] for r in records)
    assert kinds["augmented"] > 0 and kinds["instruction"] > 0 and "tuning" not in kinds
    rounds = Counter(r["meta"]["synth"]["rounds"] for r in records if r["kind"] == "augmented")
    assert max(rounds) == 3
    # A raw text left raw is one the miner found nothing to ask about (rules backend).
    leftover = [r for r in records if r["kind"] == "raw"]
    assert len(leftover) < kinds["augmented"]
    report = _read(run, "mix", "report.json")
    assert all(row["repeats"] == 1 for row in report["groups"].values())
    assert _read(run, "stats.json")["stages"]["mix"]["dropped"] == {}


def test_kodama_oda_bilingual_category_mix(runs):
    run = runs["kodama_oda_mix"]
    report = _read(run, "mix", "report.json")
    groups = report["groups"]
    assert {"raw/en", "raw/ja"} <= set(groups)
    assert {f"instruction/en/{c}" for c in ("general", "coding", "math", "reasoning")} <= set(
        groups
    )
    assert {"instruction/ja/general", "instruction/ja/coding"} <= set(groups)
    assert report["max_share_error"] < 0.02
    assert sum(row["requested_share"] for row in groups.values()) == pytest.approx(1.0)
    assert max(row["repeats"] for row in groups.values()) <= 4 + 1e-9
