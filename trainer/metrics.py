"""What a run reports: JSONL metrics, a progress bar, TensorBoard, a loss curve.

Only rank 0 reports. metrics.jsonl has one object per optimizer step (step,
stage, loss, lr, grad_norm, tokens_per_s, mfu); on resume, lines after the
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
    ) -> None:
        """Record optimizer step `step` (1-based): `tokens` of the global batch in `seconds`."""
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
        }
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(stage=stage, loss=f"{loss:.4f}", lr=f"{lr:.2e}")
        if self._tensorboard is not None:
            for key in ("loss", "lr", "grad_norm", "tokens_per_s", "mfu"):
                if record[key] is not None:
                    self._tensorboard.add_scalar(f"train/{key}", record[key], step)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def plot_loss(metrics_path: Path, png: Path) -> None:
    """Draw loss over steps, one colour per stage (matplotlib's headless Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = _records(metrics_path, up_to_step=None)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for stage in dict.fromkeys(r["stage"] for r in records):
        points = [(r["step"], r["loss"]) for r in records if r["stage"] == stage]
        ax.plot(*zip(*points, strict=True), label=stage)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
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
