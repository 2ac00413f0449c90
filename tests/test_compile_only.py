"""`iptkit run --compile-only`: the job a runner would get, built offline and never run.

The Dataflow case is Beam's dry run of an example with model stages carrying resource hints;
the checks read the job Beam built (its job request and portable pipeline), not iptkit's echo.
"""

from compile_helpers import (
    ACCELERATOR,
    EXAMPLE,
    MACHINE_TYPE,
    MIN_RAM_URN,
    check_dataflow_job,
    dataflow_flags,
    hints_by_stage,
    model_stage_sets,
    read_pipeline,
)
from conftest import run_cli

from iptkit.pipelines.spec import load_plan


def test_dataflow_dry_run_puts_model_stages_on_gpu_workers(tmp_path, capsys):
    run, job = tmp_path / "run", tmp_path / "job"
    args = ["run", EXAMPLE, "--out", run, "--compile-only", "--job-out", job]
    assert run_cli(*args, *model_stage_sets(), *dataflow_flags()) == 0
    assert not run.exists()  # nothing run, RUN untouched
    check_dataflow_job(job)
    out = capsys.readouterr().out
    assert f"machine type      {MACHINE_TYPE}" in out
    assert "translate" in out and f"accelerator={ACCELERATOR}" in out


def test_other_runners_compile_to_the_portable_pipeline(corpus, tmp_path, capsys):
    job = tmp_path / "job"
    args = ["run", corpus, "--compile-only", "--job-out", job]
    args += ["--set", "stages.normalize.resources.min_ram=2GiB"]
    args += ["--runner=FlinkRunner", "--flink_master=flink:8081"]
    args += ["--environment_type=EXTERNAL", "--environment_config=workers:50000"]
    assert run_cli(*args) == 0
    assert not (corpus.parent / "run").exists()
    assert not (job / "job.json").exists()
    pipeline = read_pipeline(job)
    hints = hints_by_stage(pipeline)
    assert hints["normalize"] == {(MIN_RAM_URN, str(2 * 2**30).encode())}
    assert hints["read"] == set()
    out = capsys.readouterr().out
    assert "external workers:50000" in out and "FlinkRunner" in out


def test_resources_are_validated_and_outside_the_spec_hash(corpus, capsys):
    base = load_plan(str(corpus)).spec_hash
    hinted = load_plan(str(corpus), [f"stages.normalize.resources.accelerator={ACCELERATOR}"])
    assert hinted.spec_hash == base  # where a stage runs, not what it writes
    assert "accelerator: type:nvidia-tesla-t4" in hinted.resolved_yaml()
    for key, value, message in (
        ("accelerator", "count:1", "names no accelerator type"),
        ("accelerator", "type:nvidia-l4;count:two", "not a positive whole number"),
        ("min_ram", "16 parsecs", "is not a size"),
        ("gpus", "1", "gpus"),
    ):
        assert (
            run_cli("validate", corpus, "--set", f"stages.normalize.resources.{key}={value}") == 2
        )
        err = capsys.readouterr().err
        assert f"stages.0.normalize.resources.{key}" in err and message in err, err


def test_worker_accelerator_with_stage_accelerators_is_refused(corpus, capsys):
    flags = [f for f in dataflow_flags() if not f.startswith("--dataflow_service_options")]
    args = [
        "run",
        corpus,
        "--compile-only",
        "--set",
        f"stages.normalize.resources.accelerator={ACCELERATOR}",
    ]
    args += [*flags, f"--dataflow_service_options=worker_accelerator={ACCELERATOR}"]
    assert run_cli(*args) == 1
    err = capsys.readouterr().err
    assert "worker_accelerator" in err and "normalize" in err and "right fitting" in err


def test_job_out_needs_compile_only(corpus, capsys):
    assert run_cli("run", corpus, "--job-out", corpus.parent / "job") == 1
    assert "--compile-only" in capsys.readouterr().err
    assert not (corpus.parent / "run").exists()
