"""The run directory never destroys work: another spec's run, the trainer's and eval's runs,
files iptkit did not write, the generation cache; nothing is touched before the pipeline is
known to start; no system folder is a run directory; no temp folder is left behind."""

import os
import tempfile
from pathlib import Path

import pytest
from conftest import files_under, run_cli

from iptkit.errors import IptkitError
from iptkit.rundir import RunDir


def _snapshot(run: Path) -> dict[str, bytes]:
    return files_under(run)


def test_another_specs_run_is_refused_without_force_and_left_as_it_was(corpus, capsys):
    run = corpus.parent / "run"
    assert run_cli("run", corpus) == 0
    before = _snapshot(run)
    assert run_cli("run", corpus, "--set", "seed=4") == 1
    err = capsys.readouterr().err
    assert "holds a run of another spec" in err and "--force" in err
    assert _snapshot(run) == before
    assert run_cli("run", corpus, "--set", "seed=4", "--force") == 0
    assert "seed: 4" in (run / "spec.resolved.yaml").read_text()


def test_a_rerun_deletes_only_what_iptkit_wrote(corpus):
    run = corpus.parent / "run"
    assert run_cli("run", corpus) == 0
    kept = {
        "train/checkpoints/step-00000010/model.pt": b"weights",
        "train/metrics.jsonl": b'{"step": 1, "loss": 2.5}\n',
        "eval/smoke/results.json": b"{}",
        "cache/respond/ab/cd/abcd.json": b"{}",
    }
    for name, data in kept.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(data)
    (run / "rejects" / "normalize" / "stale-part.jsonl").write_text("stale\n")
    assert run_cli("run", corpus) == 0
    after = _snapshot(run)
    assert {k: after[k] for k in kept} == kept
    assert "rejects/normalize/stale-part.jsonl" not in after


def test_files_iptkit_did_not_write_are_refused_and_kept_with_force(corpus, capsys):
    run = corpus.parent / "run"
    assert run_cli("run", corpus) == 0
    (run / "notes.txt").write_text("mine")
    assert run_cli("run", corpus) == 1
    assert "files iptkit did not write: notes.txt" in capsys.readouterr().err
    assert run_cli("run", corpus, "--force") == 0
    assert (run / "notes.txt").read_text() == "mine"


def test_a_bad_runner_fails_before_anything_is_deleted(corpus, capsys):
    run = corpus.parent / "run"
    assert run_cli("run", corpus) == 0
    before = _snapshot(run)
    assert run_cli("run", corpus, "--runner=FlinkRuner") == 1
    err = capsys.readouterr().err
    assert "Unexpected pipeline runner: FlinkRuner" in err and "Traceback" not in err
    assert _snapshot(run) == before


@pytest.mark.parametrize("where", ["/", "/etc", "/usr/share/iptkit-run", "/proc/x", "/var"])
def test_system_folders_are_never_run_directories(where):
    with pytest.raises(IptkitError, match="a system folder"):
        RunDir(where).check_location()
    RunDir(os.path.join(tempfile.gettempdir(), "iptkit-ok-run")).check_location()


def test_a_relative_run_directory_is_printed_resolved(corpus, capsys, monkeypatch):
    monkeypatch.chdir(corpus.parent)
    assert run_cli("run", corpus, "--out", "../x/../rel-run") == 0
    assert f"into {corpus.parent.parent / 'rel-run'}\n" in capsys.readouterr().out


def test_a_run_leaves_no_temp_folder_behind(corpus):
    temp = Path(tempfile.gettempdir())
    before = set(os.listdir(temp))
    assert run_cli("run", corpus) == 0
    assert run_cli("run", corpus, "--runner=NoSuchRunner") == 1
    assert sorted(set(os.listdir(temp)) - before) == []
