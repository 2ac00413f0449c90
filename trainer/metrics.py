"""What a run reports: JSONL metrics, a progress bar, TensorBoard, a loss curve.

Only rank 0 reports. metrics.jsonl has one object per optimizer step (step,
stage, loss, lr, grad_norm, tokens_per_s, mfu; in the preference modes also
chosen_logp, rejected_logp, reward_margin, reward_accuracy) and one per
evaluation (step, stage, split "validation", val_loss, val_<preference number>,
gen_length, gen_truncated: evaluate.py); on resume, lines after the
checkpoint's step are dropped, so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tqdm import tqdm

from iptkit.trainer.config import MetricsConfig


class MetricsLog:
    """Per-step metrics of rank 0; other ranks get an instance that does nothing."""

    def __init__(
        self,
        run_dir: Path,
        cfg: MetricsConfig,
        *,
        enabled: bool,
        resumed_step: int,
        total_steps: int,
        peak_flops: float | None,
    ) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self._peak_flops = peak_flops
        self._bar = None
        self._tensorboard = None
        if not enabled:
            return
        kept = _records(self.path, up_to_step=resumed_step)
        # Through a temporary file and a rename: a kill here must not cost the earlier steps.
        temp = self.path.with_name(f".{self.path.name}.tmp")
        temp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        temp.replace(self.path)
        if cfg.progress_bar:
            self._bar = tqdm(
                total=total_steps,
                initial=resumed_step,
                unit="step",
                dynamic_ncols=True,
                disable=None,  # off when stderr is not a terminal: logs get metrics.jsonl
            )
        if cfg.tensorboard:
            self._tensorboard = _tensorboard_writer(run_dir / "tensorboard")

    def log(
        self,
        *,
        step: int,
        stage: str,
        loss: float,
        lr: float,
        grad_norm: float | None,
        tokens: int,
        seconds: float,
        flops_per_token: float,
        extra: dict[str, float] | None = None,
    ) -> None:
        """Record optimizer step `step` (1-based): `tokens` of the global batch in `seconds`;
        `extra`: the step's preference numbers."""
        if not self.enabled:
            return
        tokens_per_s = tokens / seconds
        record = {
            "step": step,
            "stage": stage,
            "loss": loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens_per_s": tokens_per_s,
            "mfu": flops_per_token * tokens_per_s / self._peak_flops if self._peak_flops else None,
            **(extra or {}),
        }
        self._append(record)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(stage=stage, loss=f"{loss:.4f}", lr=f"{lr:.2e}")
        if self._tensorboard is not None:
            for key, value in record.items():
                if key not in ("step", "stage") and value is not None:
                    self._tensorboard.add_scalar(f"train/{key}", value, step)

    def log_eval(self, *, step: int, stage: str, values: dict[str, float]) -> None:
        """Record an evaluation after optimizer step `step` (evaluate.Evaluator.run)."""
        if not self.enabled:
            return
        self._append({"step": step, "stage": stage, "split": "validation", **values})
        if self._bar is not None:
            self._bar.write(
                f"step {step} {stage}: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items())
            )
        if self._tensorboard is not None:
            for key, value in values.items():
                self._tensorboard.add_scalar(f"validation/{key}", value, step)

    def _append(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def plot_loss(metrics_path: Path, png: Path) -> None:
    """Draw loss over steps, one colour per stage, the validation loss as dots of the same
    colour (matplotlib's headless Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = _records(metrics_path, up_to_step=None)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for stage in dict.fromkeys(r["stage"] for r in records):
        points = [(r["step"], r["loss"]) for r in records if r["stage"] == stage and "loss" in r]
        (line,) = ax.plot(*zip(*points, strict=True), label=stage)
        val = [
            (r["step"], r["val_loss"]) for r in records if r["stage"] == stage and "val_loss" in r
        ]
        if val:
            ax.plot(
                *zip(*val, strict=True), "o", color=line.get_color(), label=f"{stage} (validation)"
            )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def _records(path: Path, up_to_step: int | None) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [r for r in records if up_to_step is None or r["step"] <= up_to_step]


def _tensorboard_writer(log_dir: Path) -> Any:
    """Imported here: tensorboard is optional (the config check ensures it is installed)."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))
