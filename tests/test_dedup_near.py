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
from iptkit.transforms.dedup.star import (
    ASSIGNED,
    CENTRE,
    CENTRES,
    UNSETTLED,
    StarClusters,
    adjacency,
    best_centre,
    star_step,
    tie_to_centres,
)
from iptkit.transforms.reading.sources import SourceConfig, SourceFile, parse_file
from iptkit.transforms.record import Record
from iptkit.transforms.stage import StageContext
from iptkit.transforms.stages.dedup_near import (
    COPIES,
    HOT,
    SIGNATURES,
    ClusterReportFn,
    DedupNear,
    DedupNearConfig,
    MinHasher,
    band_keys,
    bucket_pairs,
    chunk_entries,
    estimate_bar,
    estimated_jaccard,
    lsh_params,
    permutation_seed,
    resolve_copies,
    signature_heads,
    split_bucket,
    sub_bucket_chunks,
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


def greedy_stars(edges: list[tuple]) -> dict:
    """The sequential walk the star rounds must equal: nodes in order, a node is a centre unless
    a neighbour already is; every other node is tied to its most similar centre (ties: the
    smallest)."""
    neighbours = collections.defaultdict(dict)
    for a, b, sim in edges:
        neighbours[a][b] = neighbours[b][a] = sim
    centres: set = set()
    for node in sorted(neighbours):
        if not centres.intersection(neighbours[node]):
            centres.add(node)
    return {
        node: min((c for c in nb if c in centres), key=lambda c: (-nb[c], c))
        for node, nb in neighbours.items()
        if node not in centres
    }


def run_star_rounds(edges: list[tuple], rounds: int) -> tuple[dict, set]:
    """StarClusters with dicts for GroupByKey: (assignments, unsettled nodes)."""
    both = [e for a, b, s in edges for e in ((a, (b, s)), (b, (a, s)))]
    state = [adjacency(node, nb) for node, nb in _grouped(both)]
    centres, unsettled = [], set()
    for i in range(rounds):
        nxt = []
        for node, values in _grouped(state):
            for out in star_step(node, values, final=i == rounds - 1):
                if isinstance(out, beam.pvalue.TaggedOutput):
                    (centres if out.tag == CENTRES else []).append(out.value)
                    unsettled |= {out.value} if out.tag == UNSETTLED else set()
                else:
                    nxt.append(out)
        state = nxt
    marked = both + [(c, (CENTRE,)) for c in centres]
    offers = [o for node, values in _grouped(marked) for o in tie_to_centres(node, values)]
    assigned = {n: c for n, c, _ in (best_centre(n, o) for n, o in _grouped(offers))}
    return assigned, unsettled


def _grouped(pairs):
    groups = collections.defaultdict(list)
    for k, v in pairs:
        groups[k].append(v)
    return sorted(groups.items())


def random_graph(seed: int) -> list[tuple]:
    """Cliques of near-duplicates joined into chains, plus random extra edges."""
    rng = random.Random(seed)
    nodes = [b"%08d" % rng.randrange(10**8) for _ in range(400)]
    edges = [(nodes[i], nodes[i + 1], round(rng.uniform(0.8, 1), 3)) for i in range(0, 300)]
    edges += [
        (rng.choice(nodes), rng.choice(nodes), round(rng.uniform(0.8, 1), 3)) for _ in range(200)
    ]
    return [e for e in edges if e[0] != e[1]]


def test_star_rounds_equal_the_sequential_greedy_walk_and_flag_what_did_not_settle():
    for seed in range(3):
        edges = random_graph(seed)
        assigned, unsettled = run_star_rounds(edges, rounds=40)
        assert unsettled == set() and assigned == greedy_stars(edges)
        nb = {(a, b) for a, b, _ in edges} | {(b, a) for a, b, _ in edges}
        assert all((node, centre) in nb for node, centre in assigned.items())
        assert not set(assigned).intersection(assigned.values())  # a centre is never removed
        # Too few rounds: the centres found so far are the walk's; the undecided nodes next to
        # none of them stay; every removed node is still tied to a neighbouring centre.
        early, left = run_star_rounds(edges, rounds=3)
        assert left - set(early) and set(early.values()).isdisjoint(assigned)
        assert all((node, centre) in nb for node, centre in early.items())
        assert not set(early).intersection(early.values())
    # A chain whose middle comes first in the order: it is the centre, both ends tied to it.
    assert run_star_rounds([(b"1", b"2", 0.9), (b"1", b"3", 0.85)], 4)[0] == {
        b"2": b"1",
        b"3": b"1",
    }
    # A chain a~b~c in that order keeps a and c (a far from c), b tied to the more similar.
    assert run_star_rounds([(b"a", b"b", 0.82), (b"b", b"c", 0.9)], 4) == ({b"b": b"c"}, set())


def test_copies_are_one_node_and_bucket_pairs_keep_estimates_at_the_bar():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**32, 128, dtype=np.uint32)
    near = base.copy()
    near[:20] += 1  # estimate 108/128
    far = base.copy()
    far[:60] += 1  # estimate 68/128
    assert estimated_jaccard(base, np.stack([near, far])).tolist() == [108 / 128, 68 / 128]
    # Records with one signature are one node, the smallest: its buckets, and its copies.
    out = list(signature_heads((base.tobytes(), [b"e", b"a", b"d"]), 4, 8))
    tagged = [o for o in out if isinstance(o, beam.pvalue.TaggedOutput)]
    assert sorted(o.value for o in tagged if o.tag == COPIES) == [(b"a", b"d"), (b"a", b"e")]
    assert [o.value for o in tagged if o.tag == SIGNATURES] == [(b"a", base.tobytes())]
    # The buckets carry the head alone; its signature is joined to the chunks afterwards.
    entries = [o for o in out if not isinstance(o, beam.pvalue.TaggedOutput)]
    assert entries == [(key, b"a") for key in band_keys(base, 4, 8)]
    # A chunk's entries share one id, a digest of its members: the same chunk from another
    # band gets the same id (one comparison after a Distinct), another chunk another.
    first = list(chunk_entries([b"a", b"c"]))
    assert [node for node, _ in first] == [b"a", b"c"] and first[0][1] == first[1][1]
    assert list(chunk_entries([b"a", b"c"])) == first
    assert {i for _, i in chunk_entries([b"a", b"b", b"c"])} != {first[0][1]}
    assert {i for _, i in chunk_entries([b"ac"])} != {first[0][1]}

    members = sorted(
        (node, sig.tobytes()) for node, sig in [(b"c", near), (b"a", base), (b"b", far)]
    )
    assert list(bucket_pairs(members, 0.8)) == [(b"a", b"c", 108 / 128)]
    assert len(list(bucket_pairs(members, 0.0))) == 3
    assert list(bucket_pairs(members[:1], 0.0)) == []
    # A copy follows its head: removed with it (tied to the head's centre), or tied to it.
    assert list(resolve_copies(b"a", [(False, b"d"), (True, (b"c", 0.9))])) == [(b"d", b"c", 0.9)]
    assert list(resolve_copies(b"a", [(False, b"d")])) == [(b"d", b"a", 1.0)]


def test_a_hot_bucket_is_split_into_sub_buckets_that_all_hold_its_representative():
    cap = 8
    rng = np.random.default_rng(1)
    members = [rng.bytes(8) + b"id%d" % i for i in range(500)]
    small = list(split_bucket((b"k", members[:cap]), cap))
    assert small == [sorted(members[:cap])]  # a bucket within the cap: one chunk
    assert list(split_bucket((b"k", members[:1]), cap)) == []

    hot = list(split_bucket((b"k", members), cap))
    assert all(isinstance(o, beam.pvalue.TaggedOutput) and o.tag == HOT for o in hot)
    representative = min(members)
    subs = collections.defaultdict(list)
    for o in hot:
        key, value = o.value
        assert key.startswith(b"k") and len(key) == 5
        subs[key].append(value)
    assert len(subs) == -(-499 // (cap // 2))  # about cap/2 members a sub-bucket
    chunks = [c for values in subs.values() for c in sub_bucket_chunks(values[::-1], cap)]
    assert all(len(c) <= cap and c[0] == representative and c == sorted(c) for c in chunks)
    # Every member once, besides the representative in every chunk; the same chunks from the
    # same members in any order.
    assert sorted(m for c in chunks for m in c[1:]) == sorted(set(members) - {representative})
    shuffled = list(split_bucket((b"k", members[::-1]), cap))
    assert sorted(o.value for o in shuffled) == sorted(o.value for o in hot)


def test_star_transform_in_beam_matches_the_walk(tmp_path):
    edges = random_graph(7) + [(b"x", b"y", 0.9)] * 3  # a repeated edge
    out = tmp_path / "stars.json"
    with beam.Pipeline() as p:
        stars = p | beam.Create(edges) | StarClusters(rounds=40, metrics_namespace="test")
        (
            (
                stars[ASSIGNED] | "A" >> beam.MapTuple(lambda n, c, s: ["a", n.hex(), c.hex(), s]),
                stars[UNSETTLED] | "U" >> beam.Map(lambda n: ["u", n.hex()]),
            )
            | beam.Flatten()
            | beam.combiners.ToList()
            | beam.Map(lambda rows: out.write_text(json.dumps(sorted(rows))))
        )
    rows = json.loads(out.read_text())
    assert all(row[0] == "a" for row in rows)
    got = {bytes.fromhex(n): bytes.fromhex(c) for _, n, c, _ in rows}
    assert got == greedy_stars(edges)


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


def run_near(records, tmp_path, seed=1234, distributions=None, **options):
    cfg = DedupNearConfig(**options)
    context = StageContext("dedup_near", seed, RunDir(str(tmp_path / "run")))
    kept, rejects = run_stage(DedupNear(cfg, context), records, tmp_path, distributions)
    report = json.loads((tmp_path / "run" / "dedup_near" / "clusters.json").read_text())
    return kept, rejects, report


def test_bundled_corpus_every_planted_pair_found_and_nothing_else_merged(tmp_path):
    records = read("web_en") + read("web_ja")
    kept, rejects, report = run_near(records, tmp_path)

    pairs = []
    for source, name in CORPUS.items():
        entry = INVENTORY[name]
        for line, original in entry["near_duplicates_at"] + entry["exact_duplicates_at"]:
            pairs.append({f"{source}:{name}:{n}" for n in (line, original)})
    assert len(pairs) == 14
    removed = {}
    for pair in pairs:
        (gone,) = pair - set(kept)
        (survivor,) = pair - {gone}
        removed[gone] = survivor
    assert {i: r["reason"] for i, r in rejects.items()} == dict.fromkeys(removed, "near_duplicate")
    for rid, survivor in removed.items():
        evidence = rejects[rid]["record"]["meta"]["near_duplicate"]
        assert evidence["survivor"] == survivor and evidence["similarity"] >= 0.8
        detail = f"estimated Jaccard {evidence['similarity']:.3f}; cluster of 2 records)"
        assert rejects[rid]["detail"] == f"near-duplicate of {survivor} ({detail}"
    assert len(kept) == len(records) - 14

    assert report["records"] == len(records)
    assert (report["clusters"], report["records_in_clusters"], report["removed"]) == (14, 28, 14)
    assert report["size_histogram"] == {"2": 14} and report["converged"] is True
    assert report["params"]["bands"] == 14 and report["params"]["rows"] == 9
    examples = report["largest_clusters"]
    assert len(examples) == 5
    assert [c["survivor"] for c in examples] == sorted(removed.values())[:5]
    by_id = {r.id: r.text for r in records}
    for cluster in examples:
        assert cluster["size"] == 2 and cluster["survivor"] in kept
        for member in cluster["members"]:
            assert member["text"] == by_id[member["id"]][:200]


CHAIN = {
    "c:1": words({10: "a10", 40: "a40", 70: "a70", 90: "a90"}),
    "c:2": words(),
    "c:3": words({110: "c110", 140: "c140", 170: "c170", 190: "c190"}),
    "t:4": words({i: f"z{i}" for i in range(0, 200, 2)}),  # unrelated
    "t:5": "Too short.",
    "t:6\udcff": "TOO  short",  # an undecodable byte in the id; a text of one shingle
}


@pytest.mark.parametrize(
    ("seed", "verify", "kept_ids"),
    [
        (20, False, ["c:1", "c:3"]),  # order c:1 < c:2 < c:3: the ends kept
        (13, False, ["c:2"]),  # c:2 first: the middle kept, both ends tied to it
        (20, True, ["c:1", "c:3"]),
    ],
)
def test_a_chain_never_removes_a_record_without_a_similar_survivor(
    tmp_path, seed, verify, kept_ids
):
    """c:1 ~ c:2 ~ c:3 (true Jaccard 0.815 each), while c:1 and c:3 are far apart (0.661):
    connected components made one cluster of them and removed c:3 as a duplicate of c:1."""
    cfg = DedupNearConfig()
    s = sets(CHAIN, cfg)
    assert round(jaccard(s["c:1"], s["c:2"]), 3) == round(jaccard(s["c:2"], s["c:3"]), 3) == 0.815
    assert round(jaccard(s["c:1"], s["c:3"]), 3) == 0.661
    assert share_a_band(s["c:1"], s["c:2"], cfg, seed) and share_a_band(
        s["c:2"], s["c:3"], cfg, seed
    )
    records = [Record(id=i, source="t", text=t) for i, t in CHAIN.items()]
    kept, rejects, report = run_near(records, tmp_path, seed=seed, verify=verify)
    assert sorted(k for k in kept if k.startswith("c:")) == kept_ids
    assert "t:4" in kept and len({"t:5", "t:6\udcff"} & set(kept)) == 1
    measure = "jaccard" if verify else "minhash_estimate"
    for rid, reject in rejects.items():
        evidence = reject["record"]["meta"]["near_duplicate"]
        survivor = evidence["survivor"]
        assert survivor in kept and reject["reason"] == "near_duplicate"
        assert evidence["measure"] == measure and evidence["similarity"] >= 0.8
        assert jaccard(sets(CHAIN, cfg)[rid], s[survivor]) >= 0.8
        assert reject["detail"].startswith(f"near-duplicate of {survivor} (")
    assert report["converged"] is True and report["removed"] == len(rejects)


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
    evidence = rejects["v:3"]["record"]["meta"]["near_duplicate"]
    true = round(jaccard(s["v:1"], s["v:3"]), 4)
    assert evidence == {"survivor": "v:1", "similarity": true, "measure": "jaccard"}
    assert rejects["v:3"]["detail"] == "near-duplicate of v:1 (Jaccard 0.950; cluster of 2 records)"


def test_same_bytes_with_two_worker_processes_and_a_balanced_ledger(tmp_path):
    # Besides the bundled pairs: chains and a clique of near-duplicates, so stars take rounds.
    variants = [words({i: f"v{k}{i}" for i in range(k, 200, 50)}) for k in range(12)]
    chains = [*CHAIN.values(), *variants]
    (tmp_path / "chains.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in chains))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        seed: 11
        output: {tmp_path / "single"}
        output_shards: 2
        sources:
          - {{name: web_en, format: jsonl, path: "{DATA / CORPUS["web_en"]}"}}
          - {{name: web_ja, format: jsonl, path: "{DATA / CORPUS["web_ja"]}"}}
          - {{name: chains, format: jsonl, path: "{tmp_path / "chains.jsonl"}"}}
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
    near = stats["stages"]["dedup_near"]["dropped"]["near_duplicate"]
    assert near > 7 + 5  # the bundled pairs, and most of the chains and the clique
    rejects = [
        json.loads(line)
        for name, data in single.items()
        if name.startswith("rejects/dedup_near/")
        for line in data.decode().splitlines()
    ]
    survivors = {r["record"]["meta"]["near_duplicate"]["survivor"] for r in rejects}
    assert len(rejects) == near and not survivors & {r["id"] for r in rejects}


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


def near_copies(n: int, prefix: str) -> list[Record]:
    """A planted cluster: `n` copies of a 40-word text, each with one word of its own (word
    Jaccard 38/41 between two copies), and 5 byte-identical copies of the first."""
    texts = [words({i % 40: f"{prefix}{i}"}, n=40) for i in range(n)] + [
        words({0: f"{prefix}0"}, n=40)
    ] * 5
    return [Record(id=f"{prefix}:{i}", source="p", text=t) for i, t in enumerate(texts)]


HOT_OPTIONS = {"shingle_size": 1, "num_perm": 64, "bands": 16, "rows": 4}


def stars_of(kept, rejects) -> dict[str, tuple]:
    return {
        i: (
            r["record"]["meta"]["near_duplicate"]["survivor"],
            r["record"]["meta"]["near_duplicate"]["similarity"],
        )
        for i, r in rejects.items()
    } | {i: None for i in kept}


def test_a_capped_hot_bucket_gives_the_same_stars_as_comparing_every_pair(tmp_path):
    records = near_copies(300, "n") + read("web_en")
    capped = {}
    kept, rejects, report = run_near(
        records, tmp_path / "capped", distributions=capped, bucket_cap=8, **HOT_OPTIONS
    )
    whole = {}
    all_kept, all_rejects, all_report = run_near(
        records, tmp_path / "whole", distributions=whole, bucket_cap=4096, **HOT_OPTIONS
    )
    assert capped["bucket_pair_estimates"].max <= 8 * 7 // 2
    assert whole["bucket_pair_estimates"].max >= 150 * 149 // 2  # a bucket of most copies
    assert stars_of(kept, rejects) == stars_of(all_kept, all_rejects)
    assert report["size_histogram"] == all_report["size_histogram"]
    planted = {r.id for r in records if r.id.startswith("n:")}
    assert len(planted & set(rejects)) == len(planted) - 1  # one star: every copy but its centre


def test_a_planted_cluster_of_10k_near_copies_costs_bounded_work_per_key(tmp_path):
    records = near_copies(10_000, "h")
    got = {}
    options = {**HOT_OPTIONS, "num_perm": 32, "bands": 4, "rows": 4, "rounds": 6}
    kept, rejects, _ = run_near(records, tmp_path, distributions=got, bucket_cap=8, **options)
    estimates = got["bucket_pair_estimates"]
    assert 0 < estimates.max <= 8 * 7 // 2
    assert estimates.count >= 10_000 // 4  # the hot buckets were cut into many small chunks
    assert len(rejects) >= 0.95 * len(records)
    # Precision: each removed copy is tied to a survivor it has an edge with.
    bar = estimate_bar(0.8, 32)
    for reject in rejects.values():
        evidence = reject["record"]["meta"]["near_duplicate"]
        assert evidence["survivor"] in kept and evidence["similarity"] >= bar - 1e-4
