"""The unsupervised method's reconstructor R: which direction moved, and by how much."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from latentnav.errors import ConfigError
from latentnav.lightning_modules.backbones import SmallCNN

TRUNKS = ("small_cnn", "resnet18", "resnet34")


def _trunk(name: str, width: int) -> tuple[nn.Module, int]:
    """A feature extractor for 6-channel inputs (the image pair) and its feature size."""
    if name == "small_cnn":
        net = SmallCNN(1, width=width, in_channels=6)
        return net.features, 4 * width * 16
    if name in TRUNKS:
        import torchvision

        net = getattr(torchvision.models, name)(weights=None)
        old = net.conv1
        net.conv1 = nn.Conv2d(6, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
        features = net.fc.in_features
        net.fc = nn.Identity()
        return net, features
    raise ConfigError(f"model.reconstructor: unknown trunk {name!r}; expected one of {', '.join(TRUNKS)}")


class Reconstructor(nn.Module):
    """From an image pair, predict the direction index and the shift.

    ``forward(x0, x1)``: images (B, 3, R, R) in [-1, 1], before and after the shift ->
    ``(logits (B, K), shift (B,))``. The pair is stacked on channels; ``small_cnn`` suits
    the 32-64 px demo, a torchvision ResNet (no downloaded weights) large images.
    """

    def __init__(self, num_directions: int, trunk: Literal["small_cnn", "resnet18", "resnet34"] = "small_cnn",
                 width: int = 32) -> None:
        super().__init__()
        self.trunk, features = _trunk(trunk, width)
        self.direction_head = nn.Linear(features, num_directions)
        self.shift_head = nn.Linear(features, 1)

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(torch.cat([x0, x1], dim=1)).flatten(1)
        return self.direction_head(h), self.shift_head(h).squeeze(1)
