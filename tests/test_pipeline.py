"""Whole runs on real Beam runners: ledger, rejects, outputs, determinism, runner parity."""

import base64
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import files_under, run_cli
from portable_helpers import assert_same_bytes_as_default_runner, job_service, outputs

EXPECTED_STAGES = {
    "read": {
        "in": 11,
        "out": 7,
        "dropped": {"bad_json": 1, "empty_text": 1, "missing_field": 1, "wrong_type": 1},
    },
    "normalize": {"in": 7, "out": 6, "dropped": {"invalid_utf8": 1}},
}


def records(run: Path) -> list[dict]:
    rows = []
    for path in sorted((run / "output").glob("*.jsonl.gz")):
        rows += [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
    return rows


def test_run_writes_ledger_rejects_and_records(corpus, capsys):
    run = corpus.parent / "run"
    assert run_cli("run", corpus) == 0
    stats = json.loads((run / "stats.json").read_text())
    assert stats["stages"] == EXPECTED_STAGES
    assert (stats["read"], stats["rejected_at_read"], stats["output_records"]) == (11, 4, 6)
    assert stats["violations"] == []
    table = capsys.readouterr().out
    assert "normalize" in table and "invalid_utf8 1" in table and "ledger balanced" in table

    rows = records(run)
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    by_id = {r["id"]: r for r in rows}
    assert by_id["web:web.jsonl.gz:2"]["text"] == "Full-width text"
    assert by_id["web:web.jsonl.gz:1"]["text"] == "The first document."
    assert by_id["web:web.jsonl.gz:1"]["lang"] == "en"
    assert by_id["docs:a.txt:2"]["text"] == "Para two has nbsp."
    assert by_id["c1"]["kind"] == "instruction" and by_id["c1"]["text"] == "Hi there"

    read_rejects = [
        json.loads(x)
        for x in (run / "rejects/read/part-00000-of-00001.jsonl").read_text().splitlines()
    ]
    assert {r["reason"] for r in read_rejects} == {
        "bad_json",
        "missing_field",
        "wrong_type",
        "empty_text",
    }
    bad_json = next(r for r in read_rejects if r["reason"] == "bad_json")
    assert bad_json["detail"].endswith(
        "web.jsonl.gz:3: Expecting property name enclosed in double quotes (column 2)"
    )
    assert bad_json["record"] == "{not json"
    raw = (run / "rejects/normalize/part-00000-of-00001.jsonl").read_bytes()
    (utf8,) = [json.loads(x) for x in raw.decode("utf-8").splitlines()]  # strict UTF-8
    assert utf8["id"] == "docs:a.txt:3" and utf8["reason"] == "invalid_utf8"
    # The rejected record keeps its original bytes, in an explicit form: nothing is lost.
    assert utf8["record"]["text"] == {
        "$invalid_utf8": base64.b64encode(b"Bad \xff byte\n").decode(),
        "replaced": "Bad \ufffd byte\n",
    }

    resolved = (run / "spec.resolved.yaml").read_text()
    assert resolved.startswith("# iptkit resolved spec") and stats["spec_hash"] in resolved
    assert yaml.safe_load(resolved)["stages"][0]["normalize"]["form"] == "NFKC"
    timings = json.loads((run / "timings.json").read_text())
    assert set(timings["stage_seconds"]) == {"read", "normalize"}


def test_same_spec_twice_gives_identical_bytes_and_shards_partition(corpus):
    base = corpus.parent
    assert run_cli("run", corpus, "--out", base / "a") == 0
    assert run_cli("run", corpus, "--out", base / "b") == 0
    assert outputs(base / "a") == outputs(base / "b")
    # A rerun of another spec (other settings) into the same directory needs --force; it
    # replaces the earlier run's files, leaving no stale file or folder, and keeps the trainer's.
    (base / "a" / "train" / "checkpoints" / "step-00000045" / "state").mkdir(parents=True)
    (base / "a" / "train" / "checkpoints" / "step-00000045" / "state" / "x").write_text("x")
    other = ["--set", "output_shards=3", "--set", "stages.normalize.save=true"]
    assert run_cli("run", corpus, "--out", base / "a", *other, "--force") == 0
    names = sorted(files_under(base / "a"))
    assert [n for n in names if n.startswith("output/")] == [
        f"output/part-0000{i}-of-00003.jsonl.gz" for i in range(3)
    ]
    assert len([n for n in names if n.startswith("data/normalize/")]) == 3
    assert not [n for n in names if ".tmp-" in n]
    assert (base / "a" / "train" / "checkpoints" / "step-00000045" / "state" / "x").exists()
    assert sorted(r["id"] for r in records(base / "a")) == sorted(
        r["id"] for r in records(base / "b")
    )


def test_multiprocess_direct_runner_gives_same_bytes(corpus):
    assert_same_bytes_as_default_runner(
        corpus, "--direct_num_workers=2", "--direct_running_mode=multi_processing"
    )


@pytest.fixture
def job_endpoint(tmp_path):
    """Beam's own local job service, as a separate process."""
    with job_service(tmp_path) as endpoint:
        yield endpoint


def test_portable_runner_matches_direct_runner(corpus, job_endpoint):
    assert_same_bytes_as_default_runner(
        corpus,
        "--runner=PortableRunner",
        f"--job_endpoint={job_endpoint}",
        "--environment_type=LOOPBACK",
    )


def test_bad_spec_exits_2_before_any_run(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"output: {tmp_path / 'run'}\nsources:\n  - {{name: a, format: jsonl, path: 'none/*.jsonl'}}\n"
    )
    assert run_cli("run", spec) == 2
    assert "spec.yaml:3: sources.0.path: no file matches" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_refuses_to_clear_a_directory_it_did_not_make(corpus, capsys):
    precious = corpus.parent / "project"
    (precious / "data").mkdir(parents=True)
    (precious / "data" / "corpus.jsonl").write_text("{}")
    assert run_cli("run", corpus, "--out", precious) == 1
    assert "holds files iptkit did not write: data" in capsys.readouterr().err
    assert (precious / "data" / "corpus.jsonl").exists()


DEMO_SOURCES = {
    "web_en.jsonl.gz": "web_en",
    "web_ja.jsonl.zst": "web_ja",
    "web_pl.jsonl.gz": "web_pl",
    "web_multi.parquet": "web_multi",
    "chats_lmsys.jsonl": "chats",
    "chats_sharegpt.jsonl": "sharegpt",
    "chats_pl.jsonl": "chats_pl",
}


def _reject_rows(directory: Path) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted(directory.glob("*.jsonl"))
        for line in path.read_bytes().decode("utf-8", "surrogateescape").splitlines()
    ]


def test_console_script_runs_the_demo_and_accounts_for_every_broken_record(tmp_path):
    """The bundled corpus's inventory says which records are broken, where, and why."""
    from conftest import DEMO_SPEC

    inventory = json.loads((DEMO_SPEC.parent / "data" / "inventory.json").read_text())
    expected_read, expected_normalize = set(), set()
    for name, entry in inventory.items():
        source, rel = (DEMO_SOURCES[name], name) if name in DEMO_SOURCES else ("docs", name[5:])
        for reason, positions in entry["malformed_at"].items():
            for pos in positions:
                target = expected_normalize if reason == "invalid_utf8" else expected_read
                target.add((f"{source}:{rel}:{pos}", reason))
    total = sum(entry["records"] for entry in inventory.values())

    run = tmp_path / "demo"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "iptkit"), "run", str(DEMO_SPEC), "--out", str(run)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ledger balanced" in proc.stdout
    stats = json.loads((run / "stats.json").read_text())
    for name, row in stats["stages"].items():
        assert row["in"] == row["out"] + sum(row["dropped"].values()), name
    assert stats["read"] == total
    assert {(r["id"], r["reason"]) for r in _reject_rows(run / "rejects" / "read")} == expected_read
    assert {
        (r["id"], r["reason"]) for r in _reject_rows(run / "rejects" / "normalize")
    } == expected_normalize
    assert stats["output_records"] == stats["stages"]["decontaminate_2"]["out"]  # last record stage
    # Of every planted duplicate pair, exactly one record leaves, as the right kind of duplicate.
    for stage, key in (
        ("dedup_exact", "exact_duplicates_at"),
        ("dedup_near", "near_duplicates_at"),
    ):
        removed = {r["id"] for r in _reject_rows(run / "rejects" / stage)}
        planted = [
            (f"{DEMO_SOURCES[name]}:{name}:{a}", f"{DEMO_SOURCES[name]}:{name}:{b}")
            for name in ("web_en.jsonl.gz", "web_ja.jsonl.zst", "web_pl.jsonl.gz")
            for a, b in inventory[name][key]
        ]
        assert all(len({a, b} & removed) == 1 for a, b in planted), (stage, planted, removed)
        assert len(removed) == len(planted)


KILL_DURING_WRITE = """
import os, signal, sys
from iptkit import files
from iptkit.pipelines import sinks
from iptkit.pipelines.cli import main

real = files.atomic_write
written = []

def dying_write(path, data):
    # Die at the worst moment: an output file half written under its temporary name.
    data = data if isinstance(data, bytes) else b"".join(data)  # a shard comes in pieces
    if "/output/" in path and written:
        with open(path + files.TMP_MARK + "partial", "wb") as f:
            f.write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    real(path, data)
    if "/output/" in path:
        written.append(path)

sinks.atomic_write = dying_write
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_run_leaves_nothing_that_looks_complete(corpus):
    run = corpus.parent / "killed"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            KILL_DURING_WRITE,
            "run",
            str(corpus),
            "--out",
            str(run),
            "--set",
            "output_shards=4",
        ],
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr.decode()
    names = sorted(files_under(run))
    assert "stats.json" not in names  # the mark of a finished run is absent
    finals = [n for n in names if n.startswith("output/") and ".tmp-" not in n]
    partial = [n for n in names if n.startswith("output/") and ".tmp-" in n]
    assert len(finals) == 1 and len(partial) == 1
    gzip.decompress((run / finals[0]).read_bytes())  # what has a final name is whole
    # A rerun into the same directory clears the debris and completes.
    assert run_cli("run", corpus, "--out", run, "--set", "output_shards=4") == 0
    names = sorted(files_under(run))
    assert "stats.json" in names and not [n for n in names if ".tmp-" in n]


def test_stage_applies_only_to_selected_sources_and_kinds(corpus):
    run = corpus.parent / "run"
    assert (
        run_cli(
            "run",
            corpus,
            "--set",
            "stages.normalize.sources=[web, docs]",
            "--set",
            "stages.normalize.kinds=[raw]",
        )
        == 0
    )
    by_id = {r["id"]: r for r in records(run)}
    assert by_id["web:web.jsonl.gz:2"]["text"] == "Full-width text"  # normalized
    assert by_id["c1"]["text"] == "Hi  there"  # a conversation: passed through untouched
    stats = json.loads((run / "stats.json").read_text())
    assert stats["stages"]["normalize"] == {"in": 7, "out": 6, "dropped": {"invalid_utf8": 1}}
