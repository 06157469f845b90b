"""Frozen means frozen: a mixin for pretrained modules whose weights must never train.

``Frozen.freeze()`` replaces every parameter by a :class:`FrozenParameter`, whose
``requires_grad`` is False and stays False: ``nn.Module.requires_grad_`` on a *parent* sets each
parameter directly (it never calls the child's ``requires_grad_``), so overriding the method on the
frozen module alone does not survive ``nn.Sequential(G).requires_grad_(True)``; the parameter
itself has to refuse. Being parameters that need no gradient, DDP neither syncs nor buckets them,
and they stay out of any optimiser's updates (they never get a ``.grad``). The module also stays in
eval mode whatever ``train()`` is called with, so batch-norm statistics never move.
TorchScript submodules cannot take a Parameter subclass: their parameters get ``requires_grad``
False, and the mixin's ``requires_grad_`` re-applies that.
"""

from __future__ import annotations

import torch
from torch import nn


def _rebuild_frozen(data: torch.Tensor) -> "FrozenParameter":
    return FrozenParameter(data)


class FrozenParameter(nn.Parameter):
    """A parameter whose ``requires_grad`` cannot be turned on (``requires_grad_(True)`` and
    ``p.requires_grad = True`` are ignored). Survives ``.to()``, ``deepcopy`` and pickling (spawned workers)."""

    def __new__(cls, data: torch.Tensor | None = None, requires_grad: bool = False):
        return super().__new__(cls, data, requires_grad=False)

    def requires_grad_(self, requires_grad: bool = True) -> "FrozenParameter":
        return self

    @property
    def requires_grad(self) -> bool:
        return False

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        pass

    def __reduce_ex__(self, protocol):
        return (_rebuild_frozen, (self.detach(),))

    def __repr__(self) -> str:
        return "Frozen" + super().__repr__()


def freeze_parameters(module: nn.Module) -> None:
    """Every parameter of ``module`` (and its children) becomes a :class:`FrozenParameter` in place;
    a parameter shared by several submodules stays shared."""
    done: dict[int, nn.Parameter] = {}
    for m in module.modules():
        if isinstance(m, torch.jit.ScriptModule):
            for p in m.parameters():
                p.requires_grad_(False)
            continue
        for name, p in list(m._parameters.items()):
            if p is None or isinstance(p, FrozenParameter):
                continue
            if id(p) not in done:
                done[id(p)] = FrozenParameter(p.detach())
            m._parameters[name] = done[id(p)]


class Frozen:
    """Mixin for an ``nn.Module`` (listed before it): call ``self.freeze()`` at the end of ``__init__``."""

    def freeze(self):
        freeze_parameters(self)
        nn.Module.train(self, False)
        return self

    def train(self, mode: bool = True):
        # Lightning calls train() on every submodule at each epoch start: stay in eval mode.
        return nn.Module.train(self, False)

    def requires_grad_(self, requires_grad: bool = True):
        # Parameter by parameter: TorchScript modules refuse Module.requires_grad_.
        for p in self.parameters():
            p.requires_grad_(False)
        return self
