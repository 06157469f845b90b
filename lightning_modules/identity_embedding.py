"""Identity preservation for real generators: a face-embedding network the user supplies.

Nothing is downloaded: the user gives a path to a **TorchScript** file (``torch.jit.save`` of any
face-recognition network, e.g. an ArcFace or FaceNet port they have). The contract:

    images (B, 3, H, W) float in [-1, 1], the generator's own resolution  ->  embeddings (B, D)

The scripted module does its own resizing, cropping and normalisation. TorchScript is the format
because loading it runs no pickled Python (``torch.jit.load`` rebuilds TorchScript code and tensors
only), so a user's file needs no ``trust_pickle``. The identity distance of an edit is
``1 - cos(embedding(edited), embedding(unedited))`` per image, in [0, 2]: 0 = the network sees the
same person. It is only as meaningful as the network: on the demo's drawn faces no face-recognition
network applies, and the demo reports its nuisance factors and plain image distances instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from latentnav.errors import ConfigError, DataFormatError
from latentnav.frozen import Frozen
from latentnav.safe_load import sha256_of


class IdentityEmbedding(Frozen, nn.Module):
    """A frozen user embedding network: ``forward(images (B, 3, H, W) in [-1, 1]) -> (B, D)`` float32."""

    def __init__(self, net: nn.Module, source: str = "", sha256: str = "", role: str = "identity") -> None:
        super().__init__()
        self.net, self.source, self.sha256, self.role = net, source, sha256, role
        self.freeze()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        try:
            out = self.net(images)
        except torch.cuda.OutOfMemoryError:  # the device's limit, not the user's file: let it say so itself
            raise
        except Exception as e:  # a scripted module's own error (wrong size, channels): one line naming the file
            first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise ConfigError(f"{self.role}: {self.source} failed on images of shape {tuple(images.shape)} "
                              f"(expected images (B, 3, H, W) in [-1, 1] -> embeddings (B, D)): {first}") from None
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or len(out) != len(images):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ConfigError(f"{self.role}: {self.source} returned {shape} for {len(images)} images; "
                              "expected embeddings (B, D)")
        return out.float()


def identity_distance(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """``1 - cos`` between embeddings (B, D) -> (B, 1), in [0, 2]."""
    return 1 - torch.nn.functional.cosine_similarity(before.double(), after.double(), dim=1, eps=1e-12)[:, None]


def load_identity_embedding(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                            role: str = "identity") -> IdentityEmbedding:
    """Load a TorchScript face-embedding network (see the module docstring), frozen. ``role`` names the
    setting in error messages (``perceptual`` for the projection's feature network: the same contract)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{role}: {path} not found (a TorchScript file: images (B, 3, H, W) -> embeddings (B, D))")
    try:
        net = torch.jit.load(str(path), map_location=map_location)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataFormatError(f"{path}: not a TorchScript file (save the network with torch.jit.save): {first}") from None
    net.eval()
    return IdentityEmbedding(net, source=str(path), sha256=sha256_of(path), role=role)
