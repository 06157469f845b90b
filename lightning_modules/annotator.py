"""A trained attribute classifier, frozen, as an annotator of (generated) images.

    from latentnav.lightning_modules.annotator import load_annotator
    annotator = load_annotator("demo")           # the bundled demo classifier
    probs = annotator(images)                    # images (B, 3, H, W) in [-1, 1] -> (B, K) in [0, 1]
    annotator.attributes                         # the K names, in column order

``load_annotator`` takes ``"demo"``, a checkpoint written by ``train.py`` (``*.ckpt``) or a
file written by :func:`export_annotator`. Files are read with ``torch.load(weights_only=True)``;
one that needs arbitrary code to unpickle is refused unless ``trust_pickle=True``.

Export a trained classifier to the small format (weights and settings only)::

    latentnav classifier export runs/.../best.ckpt out.pt
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from latentnav.assets import bundled, resolve_source
from latentnav.errors import DataFormatError
from latentnav.frozen import Frozen
from latentnav.safe_load import safe_torch_load, sha256_of, strict_load_state_dict
from latentnav.atomic import atomic_torch_save
from latentnav.lightning_modules.backbones import build_backbone

BUNDLED = bundled("annotator")
FORMAT = "latentnav.annotator/1"
_SETTINGS = ("attributes", "backbone", "width", "image_size")


def square_input(images: torch.Tensor, size: int, who: str) -> torch.Tensor:
    """Images (B, 3, H, W) as a frozen image model trained at ``size`` px takes them: resized with
    antialiasing when H, W differ; any other shape is a ValueError naming ``who``."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{who}: expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size,) * 2, mode="bilinear", antialias=True, align_corners=False)
    return images


class Annotator(Frozen, nn.Module):
    """Frozen classifier mapping images to attribute probabilities.

    ``forward``: float images (B, 3, H, W) in [-1, 1], any H = W (resized to
    ``image_size`` with antialiasing) -> probabilities (B, K) in [0, 1]. Gradients flow
    to the images (later methods need them) but never into the frozen weights (also under a
    parent's ``requires_grad_(True)``), and the module stays in eval mode whatever ``train()``
    is called with, so batch-norm statistics never move (:class:`latentnav.frozen.Frozen`).
    """

    def __init__(self, net: nn.Module, attributes: list[str], image_size: int, source: str = "", sha256: str = "") -> None:
        super().__init__()
        self.net = net
        self.attributes = list(attributes)
        self.image_size = image_size
        self.source = source
        self.sha256 = sha256
        self.freeze()

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(square_input(images, self.image_size, "annotator"))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, F): the input of the backbone's last linear layer (the one
        whose output is the logits), with the same checks and resizing as :meth:`logits`.

        Found generically (a forward hook on the last ``nn.Linear`` of the backbone), so it works
        for every backbone in ``BACKBONES``; a backbone whose output is not that layer's output
        is refused. Gradients flow to the images as in :meth:`logits`.
        """
        return self.features_and_logits(images)[0]

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`features` (B, F) and :meth:`logits` (B, K) of one forward pass."""
        head = self._head()
        seen: dict[str, torch.Tensor] = {}

        def hook(module, inputs, output):
            seen["input"], seen["output"] = inputs[0], output

        handle = head.register_forward_hook(hook)
        try:
            logits = self.logits(images)
        finally:
            handle.remove()
        if seen.get("output") is not logits:
            raise TypeError(f"annotator: the backbone's output is not the output of its last linear layer "
                            f"({type(head).__name__}); cannot tell its penultimate features")
        return seen["input"].flatten(1), logits

    def _head(self) -> nn.Linear:
        linears = [m for m in self.net.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise TypeError(f"annotator: backbone {type(self.net).__name__} has no linear layer to take features from")
        return linears[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(images).float())


def _load(path: Path, trust_pickle: bool, map_location) -> dict:
    if not path.is_file():
        raise DataFormatError(f"{path}: annotator file not found")
    return safe_torch_load(path, trust_pickle=trust_pickle, map_location=map_location)


def _settings_and_weights(blob: dict, path: Path) -> tuple[dict, dict]:
    if not isinstance(blob, dict):
        raise DataFormatError(f"{path}: expected a dict checkpoint, got {type(blob).__name__}")
    if blob.get("format") == FORMAT:
        if not isinstance(blob.get("settings"), dict) or not isinstance(blob.get("state_dict"), dict):
            raise DataFormatError(f"{path}: exported annotator lacks its settings or state_dict")
        return blob["settings"], blob["state_dict"]
    if "hyper_parameters" in blob and "state_dict" in blob:  # written by train.py
        hp = blob["hyper_parameters"]
        missing = [k for k in ("attributes", "backbone") if k not in hp]
        if missing:
            raise DataFormatError(f"{path}: not an attribute-classifier checkpoint (hyper-parameters lack {missing})")
        weights = {k[len("net."):]: v for k, v in blob["state_dict"].items() if k.startswith("net.")}
        settings = {k: hp[k] for k in _SETTINGS if k in hp}
        return settings, weights
    raise DataFormatError(f"{path}: neither a train.py checkpoint nor an exported annotator (keys {sorted(blob)[:6]})")


def load_annotator(
    source: str | os.PathLike = "demo", trust_pickle: bool = False, map_location: str | torch.device = "cpu"
) -> Annotator:
    """Load a trained attribute classifier, frozen. ``source``: ``"demo"`` or a file path."""
    path = resolve_source(source, "annotator")
    settings, weights = _settings_and_weights(_load(path, trust_pickle, map_location), path)
    net = build_backbone(settings["backbone"], len(settings["attributes"]), width=settings.get("width", 32))
    strict_load_state_dict(net, weights, str(path), what=f"weights of backbone {settings['backbone']!r}")
    return Annotator(net, settings["attributes"], settings.get("image_size", 32), source=str(path), sha256=sha256_of(path))


def export_annotator(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the classifier in ``checkpoint`` as a small weights-only file; returns ``out``."""
    checkpoint, out = Path(checkpoint), Path(out)
    settings, weights = _settings_and_weights(_load(checkpoint, False, "cpu"), checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save({"format": FORMAT, "settings": settings, "state_dict": {k: v.clone() for k, v in weights.items()}}, out)
    return out


if __name__ == "__main__":  # python -m ... (an entry point: it may reach the commands layer)
    from latentnav.commands.tools import classifier_main

    raise SystemExit(classifier_main())
