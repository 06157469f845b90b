"""Classes of a class-conditional generator in the training passes whose latents are drawn at random.

A sample of a class-conditional generator is a pair (latent, class) (``FrozenGenerator.num_classes`` > 0). Passes
over latent indices take latent i's class from ``generator.classes_at``; passes that draw latents from a seeded
stream (the unsupervised method's and the encoder's ``(z, k, eps)`` batches) draw the classes from that same
stream: the module tells the datamodule the chosen classes in ``setup`` (:func:`hand_classes`), the datamodule
appends a (B,) class tensor to each batch, and the module reads it back (:func:`batch_classes`). An unconditional
generator changes nothing: no class is drawn, the streams are the ones they always were.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from latentnav.errors import ConfigError


def draw_classes(choice: Sequence[int], n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` class ids drawn uniformly from ``choice`` with the stream ``generator`` (on the CPU), as
    ``FrozenGenerator.sample_classes`` draws them."""
    pick = torch.randint(len(choice), (n,), generator=generator)
    return torch.tensor(list(choice), dtype=torch.int64)[pick]


def hand_classes(module) -> None:
    """In a module's ``setup``: a datamodule that draws classes (one with a ``classes`` attribute, e.g.
    ``LatentShiftsDataModule``) gets the conditional generator's chosen classes."""
    trainer = getattr(module, "_trainer", None)
    dm = getattr(trainer, "datamodule", None) if trainer is not None else None
    if dm is not None and hasattr(dm, "classes"):
        dm.classes = tuple(module.generator.class_choice) if module.generator.conditional else None


def batch_classes(generator, batch) -> Optional[torch.Tensor]:
    """The classes of a ``(z, k, eps[, classes])`` batch on the generator's device (None when unconditional); a
    conditional generator with a batch that carries none is one line."""
    if not generator.conditional:
        return None
    if len(batch) < 4:
        raise ConfigError(f"{type(generator).__name__} is class-conditional: the data must draw a class per latent; "
                          "use data.class_path latentnav.datamodules.latent_shifts.LatentShiftsDataModule")
    return batch[3].to(generator.device, torch.int64)
