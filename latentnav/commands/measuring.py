"""The Trainer of a measuring pass (comparison, generator quality, GANSpace): the user's devices,
ranks and precision, no logger, no checkpoints; and ``--classes``, merged into the generator's load options."""

from __future__ import annotations

from typing import Optional

from latentnav.errors import ConfigError


PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed")


def make_trainer(accelerator: str = "auto", devices: int | str = 1, strategy: str = "auto", num_nodes: int = 1,
                 precision: str = "32-true", inference_mode: bool = True):
    """A ``pl.Trainer`` for ``test``/``predict`` loops over latent indices; a flag Lightning refuses is one
    line. ``inference_mode=False`` for passes that need gradients (classifier-guided edits)."""
    import pytorch_lightning as pl
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    from latentnav.callbacks.precision_probe import PrecisionProbe
    from latentnav.callbacks.preemption import Preemption
    from latentnav.callbacks.process_group_exit import ProcessGroupExit
    from latentnav.callbacks.thread_budget import ThreadBudget

    if isinstance(strategy, str) and any(word in strategy for word in ("spawn", "fork", "notebook")):
        # These launch workers from this process and hand back only the model: the passes' writers and
        # metrics, which rank 0 reads after the loop, would come back empty.
        raise ConfigError(f"strategy {strategy!r}: these passes need one process per device launched as a script; "
                          "use --strategy ddp")
    if str(precision) not in PRECISIONS:
        # "-true" half precisions cast the whole module, the metrics' float64 sums and counts included.
        raise ConfigError(f"precision {precision!r}: these passes take {', '.join(PRECISIONS)} (mixed precision "
                          "runs the networks in half precision and keeps the sums in float64)")
    try:
        return pl.Trainer(accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes,
                          precision=precision, inference_mode=inference_mode, logger=False, enable_checkpointing=False, enable_model_summary=False,
                          callbacks=[ThreadBudget(), ProcessGroupExit(), Preemption(), PrecisionProbe()])
    except (MisconfigurationException, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"trainer (accelerator {accelerator!r}, devices {devices!r}, strategy {strategy!r}, "
                          f"precision {precision!r}): {first}") from None


def merge_classes(generator_options: Optional[dict], classes: Optional[list[int]]) -> Optional[dict]:
    """``--generator_options`` with ``--classes`` merged in as the load option ``classes`` (the class ids a
    class-conditional generator's samples are drawn from: latent i gets ``classes[i % n]``). Both given with
    different ids is one line; an unconditional generator refuses ``--classes`` when it is loaded."""
    if classes is None:
        return generator_options
    merged = dict(generator_options or {})
    chosen = [int(c) for c in classes]
    if merged.get("classes") is not None and [int(c) for c in merged["classes"]] != chosen:
        raise ConfigError(f"--classes {' '.join(map(str, chosen))} and --generator_options classes "
                          f"{list(merged['classes'])} differ; give the classes once")
    merged["classes"] = chosen
    return merged
