"""Image backbones for the attribute classifier, all built without downloaded weights.

Each maps float images (B, 3, H, W) in [-1, 1] to logits (B, num_outputs).
"""

from __future__ import annotations

import torch
from torch import nn

from latentnav.errors import ConfigError


class SmallCNN(nn.Module):
    """Four strided conv blocks and a linear head: about 0.15 M parameters at width 32.

    Works for any input side that is a multiple of 8 (32 px demo faces, 64 px, ...):
    the last feature map is pooled to 4x4 so the head's size does not depend on it.
    """

    def __init__(self, num_outputs: int, width: int = 32, in_channels: int = 3) -> None:
        super().__init__()
        chans = [in_channels, width, width, 2 * width, 4 * width]
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4))
        self.head = nn.Linear(4 * width * 16, num_outputs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images).flatten(1))


def _resnet(depth: int, num_outputs: int) -> nn.Module:
    import torchvision

    builder = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34, 50: torchvision.models.resnet50}[depth]
    return builder(weights=None, num_classes=num_outputs)


BACKBONES = ("small_cnn", "resnet18", "resnet34", "resnet50")


def build_backbone(name: str, num_outputs: int, width: int = 32) -> nn.Module:
    """A freshly initialised backbone; ``width`` applies to ``small_cnn`` only."""
    if name == "small_cnn":
        return SmallCNN(num_outputs, width=width)
    if name.startswith("resnet") and name in BACKBONES:
        return _resnet(int(name[len("resnet"):]), num_outputs)
    raise ConfigError(f"model.backbone: unknown backbone {name!r}; expected one of {', '.join(BACKBONES)}")
