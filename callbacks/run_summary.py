"""Tell the user, at the end of a run, where everything is and how it went."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Optional

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from latentnav.atomic import atomic_write_text


def per_name_table(metrics: dict[str, float], split: str) -> tuple[list[str], dict[str, dict[str, float]]]:
    """Group ``{split}/{metric}/{name}`` entries into metric columns and name rows."""
    rows: dict[str, dict[str, float]] = defaultdict(dict)
    columns: list[str] = []
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == split:
            _, metric, name = parts
            rows[name][metric] = float(value)
            if metric not in columns:
                columns.append(metric)
    return columns, dict(rows)


def format_table(columns: list[str], rows: dict[str, dict[str, float]]) -> str:
    width = max([9] + [len(n) for n in rows])
    lines = [f"{'attribute':<{width}}  " + "  ".join(f"{c:>6}" for c in columns)]
    for name, values in rows.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{values.get(c, float('nan')):6.4f}" for c in columns))
    means = [sum(r.get(c, float("nan")) for r in rows.values()) / len(rows) for c in columns]
    lines.append(f"{'mean':<{width}}  " + "  ".join(f"{m:6.4f}" for m in means))
    return "\n".join(lines)


class RunSummary(pl.Callback):
    """Prints the log folder, the checkpoints and the per-attribute metrics of a run.

    After ``fit`` the table is the last validation's; after ``validate``/``test`` it is
    that stage's. Each table is also written as ``metrics_{split}.tsv`` in the log folder.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._t0: Optional[float] = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def _report(self, trainer: pl.Trainer, split: str, header: str) -> None:
        # trainer.log_dir is a broadcast under DDP: every rank must ask for it.
        log_dir = Path(trainer.log_dir) if trainer.log_dir else None
        if not self.enabled or not trainer.is_global_zero:
            return
        print(f"\nlatentnav: {header}")
        if log_dir is not None:
            print(f"  TensorBoard logs: {log_dir}   (view: tensorboard --logdir {log_dir.parent})")
        ckpt = trainer.checkpoint_callback
        if isinstance(ckpt, ModelCheckpoint):
            if ckpt.best_model_path and ckpt.monitor:
                score = f" ({ckpt.monitor}={float(ckpt.best_model_score):.4f})" if ckpt.best_model_score is not None else ""
                print(f"  best checkpoint: {ckpt.best_model_path}{score}")
            if ckpt.last_model_path:
                print(f"  last checkpoint: {ckpt.last_model_path}   (resume: fit --ckpt_path {ckpt.last_model_path})")
        columns, rows = per_name_table(trainer.callback_metrics, split)
        if rows:
            table = format_table(columns, rows)
            print(f"  per-attribute {split} metrics:\n" + "\n".join("    " + line for line in table.splitlines()))
            if log_dir is not None:
                atomic_write_text(log_dir / f"metrics_{split}.tsv",
                                  "\n".join("\t".join(line.split()) for line in table.splitlines()) + "\n")
                print(f"  table written to {log_dir / f'metrics_{split}.tsv'}")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        took = f" in {time.perf_counter() - self._t0:.0f} s" if self._t0 is not None else ""
        self._report(trainer, "val", f"fit finished at global step {trainer.global_step}{took}")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._report(trainer, "val", "validation finished")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer, "test", "test finished")
