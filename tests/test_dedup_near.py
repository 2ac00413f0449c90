"""dedup_near: shingles, signatures, bands and components as pure functions; the stage on the
bundled corpus, on a chain, with verify; its report; and byte-identical runs across workers."""

import collections
import json
import random
import textwrap
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from conftest import DEMO_SPEC, files_under, run_cli
from datasketch import MinHash
from pydantic import ValidationError
from test_dedup_exact import run_stage

from iptkit.rundir import RunDir
from iptkit.transforms.dedup.components import (
    ConnectedComponents,
    large_star,
    small_star,
    star_label,
)
from iptkit.transforms.reading.sources import SourceConfig, SourceFile, parse_file
from iptkit.transforms.record import Record
from iptkit.transforms.stage import StageContext
from iptkit.transforms.stages.dedup_near import (
    ClusterReportFn,
    DedupNear,
    DedupNearConfig,
    MinHasher,
    band_keys,
    lsh_params,
    permutation_seed,
)
from iptkit.transforms.text.shingles import (
    comparable_text,
    jaccard,
    shingle_hashes,
    shingle_unit,
    shingles,
)

DATA = DEMO_SPEC.parent / "data"
INVENTORY = json.loads((DATA / "inventory.json").read_text())
CORPUS = {"web_en": "web_en.jsonl.gz", "web_ja": "web_ja.jsonl.zst"}


def read(source: str) -> list[Record]:
    """The bundled file's records, as the pipeline's reader makes them."""
    name = CORPUS[source]
    cfg = SourceConfig(name=source, format="jsonl", path=str(DATA / name))
    with open(DATA / name, "rb") as raw:
        items = parse_file(cfg, SourceFile(source, str(DATA / name), name), raw)
        return [r for r in items if isinstance(r, Record)]


def words(changed: dict[int, str] | None = None, n: int = 200) -> str:
    """A text of `n` distinct words, some replaced: each replaced word changes 5 shingles."""
    tokens = [f"w{i}" for i in range(n)]
    for position, word in (changed or {}).items():
        tokens[position] = word
    return " ".join(tokens)


def sets(texts: dict[str, str], cfg: DedupNearConfig) -> dict[str, np.ndarray]:
    return {k: shingle_hashes(shingles(t, cfg.shingle_size, "word")) for k, t in texts.items()}


def share_a_band(a: np.ndarray, b: np.ndarray, cfg: DedupNearConfig, seed: int) -> bool:
    hasher, (bands, rows) = MinHasher(cfg.num_perm, seed), lsh_params(cfg)
    keys = [set(band_keys(hasher.signature(s), bands, rows)) for s in (a, b)]
    return bool(keys[0] & keys[1])


# ---------------------------------------------------------------------------------------------
# Pure functions


def test_word_shingles_for_spaced_languages_and_character_shingles_for_japanese():
    ja = next(r for r in read("web_ja") if r.id == "web_ja:web_ja.jsonl.zst:9")
    assert shingle_unit(ja.text, None) == "char"  # from its script
    assert shingle_unit(ja.text, "ja") == shingle_unit(ja.text, "jpn_Jpan") == "char"
    assert shingle_unit(ja.text, "en") == "word"  # a declared language decides
    assert shingle_unit("안녕하세요 반갑습니다", None) == "word"  # Korean is written with spaces
    assert shingle_unit("สวัสดีครับ", None) == shingle_unit("hello", "th") == "char"
    grams = shingles(ja.text, 5, "char")
    canonical = "".join(comparable_text(ja.text).split())
    assert all(len(g) == 5 and " " not in g and "。" not in g for g in grams)
    assert len(grams) == len({canonical[i : i + 5] for i in range(len(canonical) - 4)})
    # The title "ぐっすり眠るための生活習慣", a blank line, then "睡眠の質": one run of characters.
    assert {"ぐっすり眠", "生活習慣睡", "習慣睡眠の"} <= grams

    assert shingles("Hello, World! How are you today?", 3, "word") == {
        "hello world how",
        "world how are",
        "how are you",
        "are you today",
    }
    assert shingles("日本語の　テキスト。", 5, "char") == {
        "日本語のテ",
        "本語のテキ",
        "語のテキス",
        "のテキスト",
    }


def test_texts_too_short_for_a_shingle_are_one_shingle_and_never_crash():
    assert shingles("Click here now", 5, "word") == {"click here now"}
    assert shingles("「短い」", 5, "char") == {"短い"}
    assert shingles("!!!", 5, "word") == {"!!!"}  # nothing comparable left: the text itself
    assert shingles("", 5, "char") == {""}
    hasher = MinHasher(128, 0)
    for text in ("", "   ", "!!!", "x", "bad \udcff byte"):
        signature = hasher.signature(shingle_hashes(shingles(text, 5, shingle_unit(text, None))))
        assert signature.shape == (128,)


def test_signature_is_datasketch_minhash_with_permutations_from_the_seed():
    a = shingle_hashes(shingles(words(), 5, "word"))
    b = shingle_hashes(shingles(words({50: "x", 120: "y"}), 5, "word"))
    hasher = MinHasher(128, 1234)
    plain = MinHash(num_perm=128, seed=permutation_seed(1234), hashfunc=lambda h: h)
    plain.update_batch(a.tolist())
    assert np.array_equal(hasher.signature(a), plain.hashvalues)
    assert not np.array_equal(MinHasher(128, 1235).signature(a), hasher.signature(a))
    estimate = np.mean(hasher.signature(a) == hasher.signature(b))
    assert abs(estimate - jaccard(a, b)) < 0.12 and round(jaccard(a, b), 3) == 0.903


def test_bands_and_rows_follow_the_threshold_or_are_given():
    assert lsh_params(DedupNearConfig()) == (14, 9)
    # datasketch's own default weighting gives its MinHashLSH choice.
    assert lsh_params(DedupNearConfig(false_negative_weight=0.5)) == (9, 13)
    assert lsh_params(DedupNearConfig(threshold=0.9)) == (8, 16)
    assert lsh_params(DedupNearConfig(kinds=["raw"], sources=["web"])) == (14, 9)  # lists in cfg
    assert lsh_params(DedupNearConfig(bands=20, rows=5, num_perm=100)) == (20, 5)
    with pytest.raises(ValidationError, match="both bands and rows"):
        DedupNearConfig(bands=20)
    with pytest.raises(ValidationError, match="exceeds num_perm"):
        DedupNearConfig(bands=20, rows=7)
    signature = np.arange(128, dtype=np.uint32)
    keys = band_keys(signature, 14, 9)
    assert len(keys) == 14 and len(set(keys)) == 14 and all(len(k) == 2 + 9 * 4 for k in keys)
    assert band_keys(signature, 14, 9) == band_keys(signature.astype(np.uint64), 14, 9)


def _simulate(edges: list[tuple[int, int]], rounds: int) -> dict[int, tuple[int, bool]]:
    """The components algorithm with dicts for GroupByKey."""

    def grouped(pairs):
        groups = collections.defaultdict(list)
        for k, v in pairs:
            groups[k].append(v)
        return groups.items()

    for _ in range(rounds):
        both = [e for a, b in edges for e in ((a, b), (b, a))]
        edges = [e for u, nb in grouped(both) for e in large_star(u, nb)]
        edges = [e for u, nb in grouped((max(e), min(e)) for e in edges) for e in small_star(u, nb)]
    both = [e for a, b in edges for e in ((a, b), (b, a))]
    return {u: star_label(u, nb) for u, nb in grouped(both)}


def test_star_rounds_join_a_long_chain_and_flag_what_did_not_converge():
    rng = random.Random(5)
    order = list(range(1000))
    rng.shuffle(order)
    chain = [(order[i], order[i + 1]) for i in range(999)]
    labels = _simulate(chain + [(2000, 2001), (2001, 2002)], rounds=10)
    assert {labels[n] for n in order} == {(0, True)}
    assert {labels[n] for n in (2000, 2001, 2002)} == {(2000, True)}
    # One round is not enough for a chain of 1,000: nodes are flagged, and a shared label still
    # never joins nodes of different components.
    early = _simulate(chain + [(2000, 2001)], rounds=1)
    assert not all(settled for _, settled in early.values())
    assert {early[2000][0], early[2001][0]} == {2000}
    assert all(label in order for n, (label, _) in early.items() if n in order)
    assert star_label(5, [1, 1]) == (1, True) and star_label(1, [5, 7]) == (1, True)
    assert star_label(5, [1, 3]) == (1, False)


def test_report_combine_does_not_depend_on_order_or_bundles():
    events = [None, None] + [
        (f"s{c}", size, f"s{c}" if m == 0 else f"s{c}m{m}", f"text {c} {m}")
        for c, size in enumerate([2, 3, 7, 2, 9, 2, 3])
        for m in range(size)
    ]
    fn = ClusterReportFn()

    def combine(items, parts):
        accs = []
        for part in range(parts):
            acc = fn.create_accumulator()
            for event in items[part::parts]:
                acc = fn.add_input(acc, event)
            accs.append(acc)
        return fn.extract_output(fn.merge_accumulators(accs))

    expected = combine(events, 1)
    shuffled = list(events)
    random.Random(1).shuffle(shuffled)
    assert combine(shuffled, 3) == combine(shuffled[::-1], 5) == expected
    assert expected["records"] == len(events)
    assert expected["histogram"] == {2: 3, 3: 2, 7: 1, 9: 1}
    assert list(expected["examples"]) == ["s4", "s2", "s1", "s6", "s0"]
    assert expected["examples"]["s4"][1][0] == ["s4", "text 4 0"]
    assert all(len(members) == 5 for _, members in list(expected["examples"].values())[:2])


# ---------------------------------------------------------------------------------------------
# The stage on Beam


def run_near(records, tmp_path, seed=1234, **options):
    cfg = DedupNearConfig(**options)
    context = StageContext("dedup_near", seed, RunDir(str(tmp_path / "run")))
    kept, rejects = run_stage(DedupNear(cfg, context), records, tmp_path)
    report = json.loads((tmp_path / "run" / "dedup_near" / "clusters.json").read_text())
    return kept, rejects, report


def test_bundled_corpus_every_planted_pair_found_and_nothing_else_merged(tmp_path):
    records = read("web_en") + read("web_ja")
    kept, rejects, report = run_near(records, tmp_path)

    expected = {}
    for source, name in CORPUS.items():
        entry = INVENTORY[name]
        for line, original in entry["near_duplicates_at"] + entry["exact_duplicates_at"]:
            pair = sorted(f"{source}:{name}:{n}" for n in (line, original))
            expected[pair[1]] = pair[0]  # the lowest id survives
    assert len(expected) == 14
    assert {i: r["reason"] for i, r in rejects.items()} == dict.fromkeys(expected, "near_duplicate")
    for rid, survivor in expected.items():
        assert rejects[rid]["detail"] == f"near-duplicate of {survivor} (cluster of 2 records)"
        assert survivor in kept
    assert len(kept) == len(records) - 14

    assert report["records"] == len(records)
    assert (report["clusters"], report["records_in_clusters"], report["removed"]) == (14, 28, 14)
    assert report["size_histogram"] == {"2": 14} and report["converged"] is True
    assert report["params"]["bands"] == 14 and report["params"]["rows"] == 9
    examples = report["largest_clusters"]
    assert len(examples) == 5
    assert [c["survivor"] for c in examples] == sorted(expected.values())[:5]
    by_id = {r.id: r.text for r in records}
    for cluster in examples:
        assert cluster["size"] == 2 and cluster["members"][0]["id"] == cluster["survivor"]
        for member in cluster["members"]:
            assert member["text"] == by_id[member["id"]][:200]


def test_a_chain_is_one_cluster_with_one_survivor(tmp_path):
    cfg = DedupNearConfig()
    texts = {
        "t:2": words({20: "a20", 60: "a60", 100: "a100"}),
        "t:3": words(),
        "t:1": words({140: "c140", 170: "c170", 190: "c190"}),
        "t:4": words({i: f"z{i}" for i in range(0, 200, 2)}),  # unrelated
        "t:5": "Too short.",
        "t:6\udcff": "TOO  short",  # an undecodable byte in the id; a text of one shingle
    }
    s = sets(texts, cfg)
    # t:2 ~ t:3 ~ t:1, while t:2 and t:1 are not candidates of each other (seed 7).
    assert share_a_band(s["t:2"], s["t:3"], cfg, 7) and share_a_band(s["t:3"], s["t:1"], cfg, 7)
    assert not share_a_band(s["t:2"], s["t:1"], cfg, 7)
    assert round(jaccard(s["t:2"], s["t:1"]), 3) == 0.735

    records = [Record(id=i, source="t", text=t) for i, t in texts.items()]
    kept, rejects, report = run_near(records, tmp_path, seed=7)
    assert sorted(kept) == ["t:1", "t:4", "t:5"]
    for rid in ("t:2", "t:3"):
        assert rejects[rid]["detail"] == "near-duplicate of t:1 (cluster of 3 records)"
        assert rejects[rid]["stage"] == "dedup_near"
    assert rejects["t:6\udcff"]["detail"] == "near-duplicate of t:5 (cluster of 2 records)"
    assert report["size_histogram"] == {"2": 1, "3": 1}
    assert [m["id"] for m in report["largest_clusters"][0]["members"]] == ["t:1", "t:2", "t:3"]


def test_verify_drops_a_candidate_pair_below_the_threshold(tmp_path):
    options = {"bands": 64, "rows": 2, "verify": True}
    cfg = DedupNearConfig(**options)
    texts = {
        "v:1": words(),
        "v:2": words({i: f"x{i}" for i in range(0, 200, 15)}),  # Jaccard 0.5
        "v:3": words({100: "y"}),  # Jaccard 0.95
    }
    s = sets(texts, cfg)
    assert round(jaccard(s["v:1"], s["v:2"]), 2) == 0.5
    assert share_a_band(s["v:1"], s["v:2"], cfg, 1234)  # a candidate, but not similar enough
    records = [Record(id=i, source="v", text=t) for i, t in texts.items()]
    kept, rejects, _ = run_near(records, tmp_path, **options)
    assert sorted(kept) == ["v:1", "v:2"]
    assert rejects["v:3"]["detail"] == "near-duplicate of v:1 (cluster of 2 records)"


def test_components_transform_matches_the_simulation(tmp_path):
    rng = random.Random(9)
    nodes = [f"n{i:03d}" for i in range(300)]
    rng.shuffle(nodes)
    edges = [(nodes[i], nodes[i + 1]) for i in range(199)] + [(nodes[250], nodes[251])] * 3
    out = tmp_path / "labels.json"
    with beam.Pipeline() as p:
        (
            p
            | beam.Create(edges)
            | ConnectedComponents(rounds=8, metrics_namespace="test")
            | beam.combiners.ToList()
            | beam.Map(lambda rows: out.write_text(json.dumps(sorted(rows))))
        )
    labels = {node: (label, settled) for node, label, settled in json.loads(out.read_text())}
    assert len(labels) == 202
    assert {labels[n] for n in nodes[:200]} == {(min(nodes[:200]), True)}
    assert labels[nodes[251]] == (min(nodes[250:252]), True)


def test_same_bytes_with_two_worker_processes_and_a_balanced_ledger(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        seed: 11
        output: {tmp_path / "single"}
        output_shards: 2
        sources:
          - {{name: web_en, format: jsonl, path: "{DATA / CORPUS["web_en"]}"}}
          - {{name: web_ja, format: jsonl, path: "{DATA / CORPUS["web_ja"]}"}}
        stages:
          - normalize: {{form: NFKC}}
          - dedup_exact: {{}}
          - dedup_near: {{}}
        """)
    )
    assert run_cli("run", spec) == 0
    multi = tmp_path / "multi"
    flags = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    assert run_cli("run", spec, "--out", multi, *flags) == 0

    def outputs(run: Path) -> dict[str, bytes]:
        keep = ("output/", "rejects/", "dedup_near/")
        return {k: v for k, v in files_under(run).items() if k.startswith(keep)}

    single = outputs(tmp_path / "single")
    assert single == outputs(multi)
    assert (
        "dedup_near/clusters.json" in single
        and "rejects/dedup_exact/part-00001-of-00002.jsonl" in single
    )
    stats = json.loads((multi / "stats.json").read_text())
    assert stats["violations"] == []
    for name, row in stats["stages"].items():
        assert row["in"] == row["out"] + sum(row["dropped"].values()), name
    assert stats["stages"]["dedup_exact"]["dropped"] == {"exact_duplicate": 7}
    assert stats["stages"]["dedup_near"]["dropped"] == {"near_duplicate": 7}


def test_a_huge_record_is_shingled_only_up_to_max_chars(tmp_path):
    """Per-record work is bounded (issue 18, item 9): two records that share their first
    max_chars characters and differ after are near duplicates, because only that much of each
    is shingled (a 30 MB record's shingles took 5 GB uncapped; benchmarks/RESULTS.md)."""
    head = words()
    a = head + " " + words({i: f"a{i}" for i in range(200)})
    b = head + " " + words({i: f"b{i}" for i in range(200)})
    records = [Record(id="a", source="t", text=a), Record(id="b", source="t", text=b)]
    kept, rejects, _ = run_near(records, tmp_path / "capped", max_chars=len(head))
    assert list(kept) == ["a"] and rejects["b"]["reason"] == "near_duplicate"
    kept, rejects, _ = run_near(records, tmp_path / "whole")
    assert sorted(kept) == ["a", "b"] and rejects == {}
