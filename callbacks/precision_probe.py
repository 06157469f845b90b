"""Warn before a long pass under ``bf16-mixed`` on a CPU where bf16 is slower than float32.

Whether bf16 pays on a CPU depends on the processor: measured in this project, bf16 autocast ran one pass
2.9x faster than fp32 on an Intel Xeon with AVX-512 BF16 and another 16x slower on an AMD EPYC without it.
So nothing is assumed: at the start of a fit / validate / test / predict loop under ``bf16-mixed`` on a CPU,
each process times a few batches of its frozen generator (the module's ``generator``) under bf16 autocast
and in fp32, alternating, and rank 0 warns in one line when bf16 was slower. The probe changes nothing.
"""

from __future__ import annotations

import platform
import statistics
import time

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn


def processor_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "this CPU"


def time_generator(G, batch_size: int, batches: int) -> dict[str, float]:
    """Median seconds of ``G.synthesize`` on ``batch_size`` latents in fp32 and under bf16 autocast (CPU),
    ``batches`` timed calls each after one untimed warm-up each, alternating the order."""
    z = G.latents_at(range(batch_size), seed=0)
    classes = G.classes_at(range(batch_size))
    times: dict[str, list[float]] = {"32": [], "bf16": []}
    with torch.no_grad():
        for i in range(batches + 1):
            for kind in (("32", "bf16") if i % 2 else ("bf16", "32")):
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=kind == "bf16"):
                    G.synthesize(z, classes=classes)
                if i:  # the first round warms both up
                    times[kind].append(time.perf_counter() - start)
    return {kind: statistics.median(values) for kind, values in times.items()}


class PrecisionProbe(pl.Callback):
    """Under ``bf16-mixed`` on a CPU: a short timed probe of the generator, one warning line when bf16 is slower.

    Args:
        batches: timed batches per precision (after one warm-up each).
        batch_size: latents per probe batch.
        enabled: False skips the probe.
    """

    def __init__(self, batches: int = 2, batch_size: int = 4, enabled: bool = True) -> None:
        self.batches, self.batch_size, self.enabled = batches, batch_size, enabled
        self.result: dict[str, float] | None = None

    def _probe(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        G = getattr(pl_module, "generator", None)
        if not self.enabled or self.result is not None or G is None or not hasattr(G, "synthesize"):
            return
        if not str(trainer.precision).startswith("bf16") or trainer.strategy.root_device.type != "cpu":
            return
        self.result = time_generator(G, self.batch_size, self.batches)
        ratio = self.result["bf16"] / max(self.result["32"], 1e-9)
        if ratio > 1.0:
            rank_zero_warn(f"precision bf16-mixed: the generator ran {ratio:.1f}x slower than in float32 on this CPU "
                           f"({processor_name()}; a {self.batches}-batch probe); --precision 32-true is faster here")

    def on_fit_start(self, trainer, pl_module) -> None:
        self._probe(trainer, pl_module)

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.training:  # validate on its own; a fit has probed already
            self._probe(trainer, pl_module)

    def on_test_start(self, trainer, pl_module) -> None:
        self._probe(trainer, pl_module)

    def on_predict_start(self, trainer, pl_module) -> None:
        self._probe(trainer, pl_module)
