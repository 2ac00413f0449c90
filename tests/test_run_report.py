"""The run's one report (RUN/report.html): each section from crafted inputs, "not in this run"
notes, escaping, a real run (mix, pack, decontaminate) reported by `iptkit report` with a
trainer's metrics.jsonl and an eval summary written by their own writers, and the page opened
in headless Chromium with no console errors."""

import json
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, run_cli
from pack_helpers import write_tokenizer

from iptkit.errors import IptkitError
from iptkit.eval.files import write_json
from iptkit.eval.report_data_sections import ledger_section, mix_section, shards_section
from iptkit.eval.report_model_sections import eval_section, training_section
from iptkit.eval.run_report import RunReportInputs, render_run_report
from iptkit.eval.summary import Row, Summary
from iptkit.pipelines.reports import training_runs
from iptkit.rundir import RunDir
from iptkit.trainer.config import MetricsConfig
from iptkit.trainer.metrics import MetricsLog
from iptkit.transforms.stages.mix import mix_report
from iptkit.transforms.tail.mix_solver import solve_mix

DATA = REPO / "pipelines" / "examples" / "data"
PAYLOAD = "<script>alert('x')</script>"
EXTERNAL = re.compile(r"(src|href)\s*=\s*\"(?!#)|url\(|@import|https?://(?!www\.w3\.org/2000/svg)")
SECTION_IDS = ("ledger", "synthesis", "mix", "shards", "contamination", "training", "eval")


def stats(stage: str = "filters", reason: str = "min_words") -> dict:
    return {
        "read": 12,
        "rejected_at_read": 2,
        "output_records": 7,
        "spec_hash": "sha256:abc",
        "seed": 3,
        "violations": [],
        "stages": {
            "read": {"in": 12, "out": 10, "dropped": {"bad_json": 2}},
            stage: {"in": 10, "out": 6, "dropped": {reason: 3, "min_chars": 1}},
            "xcit": {"in": 6, "out": 7, "dropped": {}, "added": {"translation": 1}},
        },
    }


def metrics(steps: int = 6) -> list[dict]:
    return [
        {"step": s, "stage": "cpt" if s <= 3 else "sft", "loss": 5.0 - 0.5 * s, "lr": 1e-3,
         "grad_norm": 1.0, "tokens_per_s": 100.0 * s, "mfu": None}
        for s in range(1, steps + 1)
    ]  # fmt: skip


def summary(task: str = "arc_easy", model: str = "runs/m/hf") -> dict:
    rows = [
        Row(task, "acc_norm", 0.5, 0.05, 100, "en", 5),
        Row("mmlu", "acc", 0.25, None, 57, "en", 5),
        Row("ja-basic", "target_char_ratio", 0.42, 0.03, 20, "ja", source="generation",
            flag="generation/ja: target-language character ratio 0.42 < 0.60"),
    ]  # fmt: skip
    return Summary(model=model, suite="smoke", rows=rows, limit=100).to_json()


def mix() -> dict:
    plan = solve_mix({"raw": 900, "instruction": 100}, {"raw": 0.8, "instruction": 0.2}, 1000,
                     {"raw": 1.0, "instruction": 4.0}, "best_effort")  # fmt: skip
    return mix_report(
        plan, {"raw": 9, "instruction": 2}, {"raw": (800, 8, 8), "instruction": (200, 4, 2)}
    )


def manifest(folder: str = "train") -> dict:
    return {
        "split": folder,
        "seq_len": 64,
        "dtype": "uint16",
        "vocab_size": 500,
        "has_loss_mask": True,
        "tokenizer": {"path": "tok/tokenizer.json", "sha256": "0" * 64},
        "shards": [{"name": "train-00000"}, {"name": "train-00001"}],
        "totals": {"sequences": 10, "tokens": 600, "documents": 12},
    }


def text(html: str) -> str:
    """The page's visible text, tags removed, whitespace squeezed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_ledger_section_tables_and_chart():
    html = ledger_section(stats(), {"wall_seconds": 4.5, "stage_seconds": {"filters": 0.25}})
    words = text(html)
    assert "filters 10 6 4 0 min_words 3, min_chars 1 - 0.25" in words
    assert "xcit 6 7 0 1 - translation 1" in words
    assert "read 12 10 2 0 bad_json 2" in words
    assert "rejected at read 2" in words and "output records 7" in words
    assert "wall time (s) 4.5" in words and "balances for every stage" in words
    assert (
        html.count("<svg") == 1
        and "6 kept, 4 dropped" in html
        and "7 kept, 0 dropped, 1 added" in html
    )
    broken = {**stats(), "violations": ["stage filters: in 10 != out 6 + dropped 3"]}
    assert "does not balance" in text(ledger_section(broken))


def test_mix_section_requested_vs_achieved():
    words = text(mix_section({"mix": mix()}))
    assert "Stage mix" in words
    assert "raw 0.8 0.8 900 800 0.8889 1 9 8 8" in words
    assert "instruction 0.2 0.2 100 200 2 4 2 2 4" in words
    assert "raw requested" in words and "instruction achieved" in words and "20.0%" in words
    short = {**mix(), "shortfall_tokens": {"raw": 120}}
    assert "Shortfall" in text(mix_section({"mix": short})) and "raw 120" in text(
        mix_section({"mix": short})
    )


def test_shards_section_sizes_and_fill():
    words = text(shards_section({"train": manifest(), "sft/validation": manifest("validation")}))
    assert "train 2 10 600 12 64 uint16 500 true 0.9375 tok/tokenizer.json" in words
    assert "sft/validation 2" in words


def test_training_section_one_line_per_stage():
    html = training_section({"train": metrics()})
    words = text(html)
    assert "cpt 3 1-3 4.5 3.5 3.5 - 200 -" in words and "sft 3 4-6 3 2 2 - 500 -" in words
    assert html.count("<polyline") == 2 and "Loss per step: train" in html
    assert "Alignment" not in html  # no preference numbers, no answer lengths
    one = training_section({"one": metrics(1)})
    assert "<circle" in one and "<polyline" not in one


def test_training_section_validation_loss_and_alignment():
    """Validation lines are their own series and column, not steps; a preference stage's
    numbers and the answer lengths go into an alignment table, first -> last."""
    pref = {"chosen_logp": -1.0, "rejected_logp": -1.2, "reward_margin": 0.2,
            "reward_accuracy": 0.5}  # fmt: skip
    lines = metrics(3) + [
        {"step": 3, "stage": "cpt", "split": "validation", "val_loss": 3.9, "gen_length": 10.0},
        {"step": 4, "stage": "orpo", "loss": 1.0, **pref},
        {"step": 5, "stage": "orpo", "loss": 0.8, **pref, "reward_margin": 0.9},
        {"step": 5, "stage": "orpo", "split": "validation", "val_loss": 0.9,
         "val_reward_margin": 0.7, "gen_length": 24.0},
    ]  # fmt: skip
    html = training_section({"run": lines})
    words = text(html)
    assert "cpt 3 1-3 4.5 3.5 3.5 3.9 200 -" in words and "orpo 2 4-5 1 0.8 0.8 0.9" in words
    # cpt and orpo are lines; each validation series has one point here, drawn as a circle.
    assert html.count("<polyline") == 2 and html.count("<circle") == 2
    assert "orpo (validation)" in html and "cpt (validation)" in html
    assert "Alignment (first → last)" in words
    assert "0.2 → 0.9" in words and "0.7 → 0.7" in words and "24 → 24" in words
    assert "10 → 10" in words


def test_eval_section_tasks_stderr_and_generation():
    words = text(eval_section({"eval/smoke": summary()}))
    assert "arc_easy acc_norm 0.5 ± 0.05 100 en 5 none" in words
    assert "mmlu acc 0.25 57" in words  # no stderr from lm-eval: the value alone
    assert "Generation metrics" in words
    assert "ja-basic target_char_ratio 0.42 ± 0.03 20 ja generation/ja: target-language" in words
    assert "model runs/m/hf; suite smoke; limit 100 task metric" in words


def test_missing_inputs_give_one_line_each():
    html = render_run_report(RunReportInputs(run="runs/x"))
    assert html.count("Not in this run:") == len(SECTION_IDS)
    assert all(f'<section id="{s}">' in html for s in SECTION_IDS)
    full = render_run_report(
        RunReportInputs(
            run="r",
            stats=stats(),
            mix={"mix": mix()},
            synthesis={
                "synthesize": {
                    "pairs_per_text": 4.2,
                    "tokens_per_pair": 61.5,
                    "paper": {"pairs_per_text": 5, "tokens_per_pair": 52},
                    "layouts": {"classic": 3},
                    "question_first": 0,
                }
            },
            shards={"train": manifest()},
            training={"t": metrics()},
            evals={"e": summary()},
        )  # fmt: skip
    )
    assert full.count("Not in this run:") == 1  # contamination only
    assert 'tokens per pair</td><td class="n">61.5</td><td class="n">52' in full


def test_every_text_is_escaped():
    contamination = {
        "table": [{"benchmark": PAYLOAD, "examples": 2, "raw": 1, "ins_aug": 1, "introduced": 0,
                   "instruction": 0, "by_detector": {}, "source": "b"}],
        "stages": [{"stage": PAYLOAD, "action": "report", "detectors": ["ngram"], "records": {}}],
        "evidence": [],
    }  # fmt: skip
    mixed = mix()
    mixed["groups"] = {PAYLOAD: mixed["groups"]["raw"]}
    html = render_run_report(
        RunReportInputs(
            run=PAYLOAD,
            stats=stats(stage=PAYLOAD, reason=PAYLOAD),
            timings={"wall_seconds": 1.0, "stage_seconds": {PAYLOAD: 1.0}},
            mix={PAYLOAD: mixed},
            shards={PAYLOAD: manifest(PAYLOAD)},
            contamination=contamination,
            training={PAYLOAD: [{**m, "stage": PAYLOAD} for m in metrics()]},
            evals={PAYLOAD: summary(task=PAYLOAD, model=PAYLOAD)},
        )
    )
    assert "<script" not in html and html.count("&lt;script&gt;") >= 10
    assert not EXTERNAL.search(html)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")


def test_bad_metrics_line_names_the_file_and_line(tmp_path):
    train = tmp_path / "train"
    train.mkdir()
    (train / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{oops\n')
    with pytest.raises(IptkitError, match=r"metrics.jsonl:2: not JSON"):
        training_runs(RunDir(str(tmp_path / "run")), [str(train)])
    with pytest.raises(IptkitError, match="--train takes a trainer's run_dir"):
        training_runs(RunDir(str(tmp_path / "run")), [str(tmp_path / "nowhere")])


def _trainer_metrics(run_dir: Path) -> None:
    """metrics.jsonl as the trainer writes it (its own MetricsLog), two stages."""
    run_dir.mkdir(parents=True)
    log = MetricsLog(run_dir, MetricsConfig(progress_bar=False, plot=False), enabled=True,
                     resumed_step=0, total_steps=8, peak_flops=None)  # fmt: skip
    for step in range(1, 9):
        log.log(step=step, stage="cpt" if step <= 5 else "sft", loss=6.0 / step, lr=1e-3,
                grad_norm=0.5, tokens=512, seconds=0.5, flops_per_token=1.0)  # fmt: skip


def _spec(tmp_path: Path, tok: Path) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        seed: 5
        output: {tmp_path / "run"}
        sources:
          - {{name: web_en, format: jsonl, path: {DATA / "web_en.jsonl.gz"}, lang: en}}
          - {{name: chats, format: conversations, path: {DATA / "chats_lmsys.jsonl"},
              id_field: conversation_id}}
        stages:
          - normalize: {{}}
          - filters: {{}}
          - dedup_exact: {{}}
          - decontaminate:
              benchmarks: ["{DATA / "bench" / "arc_mini_en.jsonl"}"]
          - synthesize: {{backend: rules, rounds: 2, fraction: 0.5, kinds: [raw]}}
          - mix: {{ratios: {{raw: 0.8, instruction: 0.2}}, on_infeasible: scale_down}}
          - pack: {{tokenizer: {tok}, seq_len: 64, packing: best_fit}}
        """)
    )
    return spec


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory) -> Path:
    """A real run, then `iptkit report` with a trainer run dir and RUN/eval/ found by itself."""
    tmp_path = tmp_path_factory.mktemp("report")
    tok = write_tokenizer(tmp_path / "tok")
    assert run_cli("run", _spec(tmp_path, tok)) == 0
    run = tmp_path / "run"
    assert (run / "report.html").is_file()  # `iptkit run` writes it at the end
    _trainer_metrics(tmp_path / "trainer")
    write_json(run / "eval" / "smoke" / "summary.json", summary())
    assert run_cli("report", run, "--train", tmp_path / "trainer") == 0
    return run / "report.html"


def test_real_run_report_has_every_section(demo_report):
    html = demo_report.read_text()
    run = demo_report.parent
    stats_json = json.loads((run / "stats.json").read_text())
    words = text(html)
    for name, row in stats_json["stages"].items():
        dropped = sum(row["dropped"].values())
        assert f"{name} {row['in']} {row['out']} {dropped}" in words
    assert "Not in this run" not in html
    assert "Stage mix" in words and "raw requested" in words
    pairs = json.loads((run / "synthesize" / "pairs.json").read_text())
    assert f"pairs per raw text {pairs['pairs_per_text']} 5" in words  # beside the paper's
    manifest_json = json.loads((run / "shards" / "train" / "manifest.json").read_text())
    assert f"train {len(manifest_json['shards'])} {manifest_json['totals']['sequences']}" in words
    assert "arc_mini_en 32" in words  # contamination table
    assert "Loss per step" in html and "cpt 5 1-5 6 1.2" in words  # trainer's metrics
    assert "Eval eval/smoke" in words and "arc_easy acc_norm 0.5 ± 0.05" in words
    assert not EXTERNAL.search(html)
    assert (run / "contamination" / "report.html").is_file()


def test_report_on_a_run_without_contamination_or_training(corpus):
    assert run_cli("run", corpus) == 0
    run = corpus.parent / "run"
    (run / "report.html").unlink()
    assert run_cli("report", run) == 0
    html = (run / "report.html").read_text()
    assert "Ledger: where the data went" in html and html.count("Not in this run:") == 6
    assert not (run / "contamination").exists()
    assert run_cli("report", corpus.parent / "nowhere") == 1


CHROMIUM = next(
    (shutil.which(b) for b in ("chromium", "chromium-browser") if shutil.which(b)), None
)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_page_opens_in_headless_chromium_without_console_errors(demo_report, tmp_path):
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
               "--v=0", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
               demo_report.as_uri()]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not re.search(r"CONSOLE|Uncaught", done.stderr), done.stderr[-2000:]
    dom = text(done.stdout)
    for heading in ("Ledger: where the data went", "Instruction synthesis", "Mix: requested vs achieved", "Shards",
                    "Benchmark contamination", "Training", "Evaluation", "Generation metrics"):  # fmt: skip
        assert heading in dom
    assert "arc_mini_en" in dom and "ja-basic target_char_ratio" in dom
